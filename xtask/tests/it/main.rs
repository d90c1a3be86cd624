//! Integration tests of the harness: one binary, one module per area.

mod ws;
