//! Running the [[suite]]s: the pytest venv, pytest and nextest runners, collecting skipped cases.
