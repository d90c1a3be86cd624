//! Integration tests, one binary: one module per area. Tests that need the engine use the real one.

mod config;
mod contract;
mod engine;
mod gate;
mod hook;
mod images;
mod junit;
mod parallel;
mod require;
mod stack;
mod suites;
mod tidy;
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
