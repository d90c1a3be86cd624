//! Finding, starting, proving and stopping the Docker engine.
