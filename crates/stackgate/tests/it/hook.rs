//! `install-hook`: installs ci/pre-push, refuses to replace a hook it did not write.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

fn xtask(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    crate::support::stackgate()
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

#[test]
fn installs_the_hook_and_refuses_a_foreign_one() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    assert!(Command::new("git")
        .args(["init", "-q"])
        .current_dir(root)
        .status()
        .unwrap()
        .success());
    std::fs::write(root.join("harness.toml"), "[project]\nname = \"hooked\"\n").unwrap();

    let installed = root.join(".git/hooks/pre-push");
    std::fs::write(&installed, "#!/bin/sh\necho someone else's hook\n").unwrap();
    let refused = xtask(root, &["install-hook"]);
    assert_eq!(
        refused.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--force"));
    assert!(std::fs::read_to_string(&installed)
        .unwrap()
        .contains("someone else"));

    let forced = xtask(root, &["install-hook", "--force"]);
    assert!(
        forced.status.success(),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    let text = std::fs::read_to_string(&installed).unwrap();
    assert!(text.contains("cargo xtask mission-critical"));
    assert_eq!(
        std::fs::metadata(&installed).unwrap().permissions().mode() & 0o111,
        0o111
    );

    // Ours may be replaced without --force.
    assert!(xtask(root, &["install-hook"]).status.success());

    // The hook honours the documented escape hatch without running the gate.
    let skipped = Command::new(&installed)
        .env("XTASK_SKIP_GATE", "1")
        .current_dir(root)
        .output()
        .unwrap();
    assert!(skipped.status.success());
    assert!(String::from_utf8_lossy(&skipped.stderr).contains("gate skipped"));
}
