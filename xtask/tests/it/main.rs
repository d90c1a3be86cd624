//! Integration tests, one binary: one module per area. Tests that need the engine use the real one.

mod engine;
mod images;
