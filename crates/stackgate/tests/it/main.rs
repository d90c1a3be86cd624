//! Integration tests, one binary: one module per area. Tests that need the engine use the real one.
//!
//! Unix only: they drive a real dockerd, compose, `sh` and /proc. The Windows code is covered by
//! the library's tests, which `cargo xtask ci` runs as a Windows program under Wine.
#![cfg(unix)]

mod config;
mod contract;
mod daemons;
mod engine;
mod engines;
mod engines_shared;
mod gate;
mod history;
mod hook;
mod images;
mod init;
mod interrupt;
mod junit;
mod layers;
mod parallel;
mod require;
mod retries;
mod speed;
mod stack;
mod suites;
mod support;
mod tidy;
mod tls;
mod tls_engine;
mod ws;
