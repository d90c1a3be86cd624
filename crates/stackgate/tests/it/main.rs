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
mod tidy;
mod tls;
mod tls_engine;
mod ws;

/// Copies a fixture into a test's own directory, without what earlier runs left in it (`target`,
/// `__pycache__`, `.pytest_cache`).
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            if !["target", "__pycache__", ".pytest_cache"]
                .iter()
                .any(|skip| entry.file_name() == *skip)
            {
                copy_dir(&entry.path(), &target);
            }
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
