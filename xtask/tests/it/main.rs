//! Integration tests, one binary: one module per area. Tests that need the engine use the real one.

mod config;
mod engine;
mod hook;
mod images;
mod junit;
mod stack;
mod suites;
mod tidy;
mod ws;
