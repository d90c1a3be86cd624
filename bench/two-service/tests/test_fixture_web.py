# The gate fixture's web tests (crates/stackgate/tests/fixtures/gate), run against the benchmark's stack, which
# builds the fixture's images: one copy of the server and its tests.
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "crates", "stackgate", "tests", "fixtures", "gate", "tests"))

from test_web import test_echoes_the_path, test_health  # noqa: E402,F401
