//! Load and isolation tests against the reference stack live in `tests/`.
