//! Checks the repository itself: every module says what lives in it, no stray `dbg!`, no ignored
//! or should-panic tests, `.ci/run` calls exactly the README's test command.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            if !path.ends_with("target") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn every_module_has_a_doc_line_and_no_leftovers() {
    let mut files = Vec::new();
    rust_files(&repo().join("crates"), &mut files);
    rust_files(&repo().join("xtask"), &mut files);
    rust_files(&repo().join("tests/load"), &mut files);
    assert!(files.len() > 10, "found only {files:?}");
    let ignore = ["#[", "ignore]"].concat();
    let should_panic = ["#[", "should_panic"].concat();
    let dbg = ["dbg", "!("].concat();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let is_module_root =
            !file.ends_with("main.rs") || file.parent().is_some_and(|p| p.ends_with("it"));
        if is_module_root || file.ends_with("main.rs") {
            assert!(
                text.trim_start().starts_with("//!"),
                "{} has no `//!` line saying what lives there",
                file.display()
            );
        }
        for forbidden in [&ignore, &should_panic, &dbg] {
            assert!(
                !text.contains(forbidden.as_str()),
                "{} contains {forbidden}",
                file.display()
            );
        }
    }
}

#[test]
fn ci_run_calls_the_readme_test_command() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let first_block: Vec<&str> = readme.split("```").nth(1).unwrap().lines().collect();
    assert!(
        first_block
            .iter()
            .any(|l| l.starts_with("cargo xtask mission-critical")),
        "README must start with the gate command"
    );
    assert!(
        first_block.iter().any(|l| l.starts_with("cargo xtask ci")),
        "README must start with the test command"
    );
    let run = std::fs::read_to_string(repo().join(".ci/run")).unwrap();
    assert!(
        run.lines().any(|l| l.trim() == "exec cargo xtask ci"),
        ".ci/run must call exactly `cargo xtask ci`"
    );
}

/// The shape the restructure gave the tree: no file holds more than one step's worth (1000
/// lines), process groups are made and signalled only by the process runner, and state.json is
/// read and written only through the run store.
#[test]
fn the_tree_keeps_its_shape() {
    let src = repo().join("crates/stackgate/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let group_calls = [
        ["kill", "pg("].concat(),
        ["process", "_group("].concat(),
        ["set", "sid("].concat(),
        ["set", "pgid("].concat(),
        // Windows: Job objects and console process groups.
        ["Assign", "ProcessToJobObject"].concat(),
        ["CREATE_NEW", "_PROCESS_GROUP"].concat(),
    ];
    let state_file = ["join(\"state", ".json\")"].concat();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let lines = text.lines().count();
        assert!(
            lines <= 1000,
            "{} has {lines} lines: split it along its steps",
            file.display()
        );
        if !file.starts_with(src.join("process")) {
            for call in &group_calls {
                assert!(
                    !text.contains(call.as_str()),
                    "{} calls {call}: process groups belong to the process runner",
                    file.display()
                );
            }
        }
        if !file.ends_with("state.rs") {
            assert!(
                !text.contains(state_file.as_str()),
                "{} opens state.json itself: use state::Store",
                file.display()
            );
        }
    }
}
