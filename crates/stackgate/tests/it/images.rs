//! Base image provisioning against the machine's engine: a present image is a fast check; an
//! absent one is built with debootstrap under a unique name, imported, and removed by the test.

use std::time::Instant;

use stackgate::engine::{self, SmokeRun};
use stackgate::progress::Progress;
use stackgate::report::Outcome;
use stackgate::state;

use crate::engine::config_in;
use crate::require;

/// Removes the image this test created, whatever happened (Drop cannot await: its own runtime).
struct ImageGuard {
    name: String,
}

impl Drop for ImageGuard {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(docker) = bollard::Docker::connect_with_defaults() {
                    let _ = docker
                        .remove_image(
                            &name,
                            None::<bollard::query_parameters::RemoveImageOptions>,
                            None,
                        )
                        .await;
                }
            })
        })
        .join();
    }
}

#[tokio::test]
async fn present_image_is_a_fast_idempotent_check() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(
        dir.path(),
        "",
        "[images.\"debian:bookworm-slim\"]\nprovision = \"debootstrap\"\n",
    );
    let Some(_) = require::engine_async().await else {
        return;
    };
    let engine = engine::connect(&config).await.unwrap();
    if !engine::image_present(&engine.docker, "debian:bookworm-slim").await {
        return require::skip("debian:bookworm-slim is not on the machine's engine");
    }
    let began = Instant::now();
    let checks = stackgate::images::provision(&engine, &config, &Progress::silent())
        .await
        .unwrap();
    eprintln!(
        "provision with the image present: {:.3}s",
        began.elapsed().as_secs_f64()
    );
    assert_eq!(checks.len(), 1);
    assert_eq!(checks[0].name, "image debian:bookworm-slim");
    assert_eq!(checks[0].outcome, Outcome::Passed);
    assert_eq!(checks[0].detail, "present");
}

#[tokio::test]
async fn absent_image_is_built_with_debootstrap_imported_and_runs() {
    // debootstrap needs root (mounts, chroot); the image goes into the machine's engine.
    let Some(()) = require::root() else { return };
    let Some(_) = require::debootstrap() else {
        return;
    };
    let Some(_) = require::engine_async().await else {
        return;
    };
    let name = format!("xtask-test-{}:bookworm", state::new_run_id());
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(
        dir.path(),
        "",
        &format!("[images.\"{name}\"]\nprovision = \"debootstrap\"\ntimeout_s = 600\n"),
    );
    let engine = engine::connect(&config).await.unwrap();
    let _guard = ImageGuard { name: name.clone() };
    assert!(!engine::image_present(&engine.docker, &name).await);

    let (progress, said) = crate::engine::recording();
    let began = Instant::now();
    let checks = stackgate::images::provision(&engine, &config, &progress)
        .await
        .unwrap();
    eprintln!(
        "debootstrap provision: {:.1}s: {}",
        began.elapsed().as_secs_f64(),
        checks[0].detail
    );
    assert_eq!(checks[0].outcome, Outcome::Passed, "{:?}", checks[0]);
    assert!(
        checks[0].detail.contains("debootstrap"),
        "{}",
        checks[0].detail
    );
    assert!(engine::image_present(&engine.docker, &name).await);
    // What it did was said through the progress handle, not printed.
    let said = said.lock().unwrap().clone();
    assert!(
        said.iter()
            .any(|m| m.contains("building it with debootstrap bookworm")),
        "{said:?}"
    );
    assert!(
        said.iter()
            .any(|m| m.starts_with("running `") && m.contains("--variant=minbase")),
        "{said:?}"
    );
    // The temporary rootfs is gone.
    let leftovers: Vec<_> = std::fs::read_dir(config.work_dir())
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        !leftovers
            .iter()
            .any(|n| n.to_string_lossy().starts_with("rootfs-")),
        "{leftovers:?}"
    );

    // The image runs: the smoke container with it as the fallback.
    let smoke_config = config_in(dir.path(), &format!("smoke_image = \"{name}\"\n"), "");
    let run = SmokeRun::new(state::new_run_id());
    let smoke = engine::smoke(&engine, &smoke_config, &run, &Progress::silent()).await;
    assert_eq!(smoke.outcome, Outcome::Passed, "{smoke:?}");

    // Idempotent: the second run finds it.
    let began = Instant::now();
    let again = stackgate::images::provision(&engine, &config, &Progress::silent())
        .await
        .unwrap();
    eprintln!("second provision: {:.3}s", began.elapsed().as_secs_f64());
    assert_eq!(again[0].detail, "present");
}
