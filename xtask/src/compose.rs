//! docker compose (v2) or docker-compose (v1): detection, the commands we run, parsing what they print.
