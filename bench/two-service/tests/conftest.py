# pytest-docker's view of the same stack, used only by bench/gate-vs-hand.sh and bench/speed.sh
# (the pytest-docker leg; BENCH_COMPOSE names the compose program, docker-compose by default).
import os
import urllib.request

import pytest

if os.environ.get("BENCH_PYTEST_DOCKER") == "1":

    @pytest.fixture(scope="session")
    def docker_compose_command():
        return os.environ.get("BENCH_COMPOSE", "docker-compose")

    @pytest.fixture(scope="session")
    def docker_setup():
        # Detached (v1 has no `up --wait`); wait_until_responsive polls the service itself.
        return ["up -d"]

    @pytest.fixture(scope="session")
    def docker_compose_file():
        return os.path.join(os.path.dirname(__file__), "..", "compose.yaml")

    @pytest.fixture(scope="session", autouse=True)
    def web_url(docker_ip, docker_services):
        url = "http://127.0.0.1:%d" % docker_services.port_for("web", 8080)

        def responsive():
            try:
                with urllib.request.urlopen(url + "/health", timeout=1):
                    return True
            except Exception:
                return False

        docker_services.wait_until_responsive(timeout=60.0, pause=0.1, check=responsive)
        os.environ["WEB_URL"] = url
        return url
