//! Pre-flight checks (`doctor`, and the first stage of docker-up and the gate): memory, disk, CPU
//! load, free ports (and who holds them), other container runtimes, the engine (pinged), the
//! compose flavour, Python. It only reads: it never kills, stops or changes anything.
//! `run_checks(&Config) -> Vec<Check>` is what docker-up and the gate call; `doctor`
//! ([crate::commands::doctor]) prints them. Nothing here prints.
//!
//! Not here: reading the machine itself (`host`, the platform-specific part), starting the engine
//! ([`crate::engine`]).

// What the checks read from the machine, per platform: /proc, sysctl and lsof, the Windows APIs.
mod host;
// What the checks ask the engine: does it answer, where does it write.
mod engine;

pub use host::{port_holder, processes};

use std::time::{Duration, Instant};

use crate::config::{Config, OnShortfall};
use crate::process::Cmd;
use crate::report::{Check, Outcome};
use crate::ui;

/// Every pre-flight check. The CPU sample (about a second) runs while the others run.
pub async fn run_checks(config: &Config) -> Vec<Check> {
    let sample = config.preflight.cpu_sample_ms.duration();
    let cpu = tokio::spawn(async move {
        let started = Instant::now();
        (host::cpu_busy_percent(sample).await, started.elapsed())
    });
    let (engine_check, reached) = engine::engine_check().await;
    let mut checks = vec![memory(config).await, disk(config, reached.as_ref())];
    let ports_started = Instant::now();
    for port in &config.preflight.free_ports {
        checks.push(port_check(config, port.0, ports_started).await);
    }
    checks.push(runtimes().await);
    checks.push(engine_check);
    checks.push(compose_flavour(config).await);
    checks.push(python(config).await);
    let (busy, elapsed) = cpu.await.unwrap_or((None, Duration::ZERO));
    checks.insert(2, cpu_check(config, busy, elapsed));
    checks
}

fn shortfall(config: &Config) -> Outcome {
    match config.preflight.on_shortfall {
        OnShortfall::Warn => Outcome::Warned,
        OnShortfall::Fail => Outcome::Failed,
    }
}

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

async fn memory(config: &Config) -> Check {
    let started = Instant::now();
    let Some((total, available)) = host::meminfo().await else {
        return Check::skipped("memory", "not readable on this machine");
    };
    let (total, available) = (total as f64 / GIB, available as f64 / GIB);
    let min = config.preflight.min_memory_gib.0;
    let detail = format!("{available:.1} GiB available of {total:.1} GiB (need {min} GiB)");
    if available >= min {
        Check::passed("memory", started.elapsed(), detail)
    } else {
        Check::new("memory", shortfall(config), started.elapsed(), detail)
            .with_remedy("close memory-hungry programs or lower preflight.min_memory_gib")
    }
}

fn disk(config: &Config, engine: Option<&engine::Reached>) -> Check {
    let started = Instant::now();
    let (path, why) = match engine::disk_place(engine) {
        engine::DiskPlace::Remote(detail) => return Check::skipped("disk", detail),
        engine::DiskPlace::Local(Some(path), why) => (Some(path), why),
        engine::DiskPlace::Local(None, _) => {
            let (path, why) = host::docker_data_root();
            (path, why.to_owned())
        }
    };
    let path = match path {
        Some(path) => path,
        None => config.root.clone(),
    };
    let Some(free) = host::free_bytes(&path) else {
        return Check::skipped("disk", format!("cannot stat {}", path.display()));
    };
    let free = free as f64 / GIB;
    let min = config.preflight.min_disk_gib.0;
    let detail = format!(
        "{free:.1} GiB free on {} ({why}; need {min} GiB)",
        path.display()
    );
    if free >= min {
        Check::passed("disk", started.elapsed(), detail)
    } else {
        Check::new("disk", shortfall(config), started.elapsed(), detail)
            .with_remedy("free space (docker system prune removes unused images) or lower preflight.min_disk_gib")
    }
}

fn cpu_check(config: &Config, busy: Option<f64>, elapsed: Duration) -> Check {
    let Some(busy) = busy else {
        return Check::skipped("cpu load", "not readable on this machine");
    };
    let max = config.preflight.max_cpu_percent.0;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let detail = format!(
        "{busy:.0}% busy over {} on {cores} cores (max {max}%)",
        ui::duration(elapsed)
    );
    if busy <= max {
        Check::passed("cpu load", elapsed, detail)
    } else {
        Check::new("cpu load", shortfall(config), elapsed, detail)
            .with_remedy("wait for other jobs to finish or raise preflight.max_cpu_percent")
    }
}

async fn port_check(config: &Config, port: u16, started: Instant) -> Check {
    let name = format!("port {port} free");
    match host::port_holder(port).await {
        None => Check::passed(name, started.elapsed(), "free"),
        Some(holder) => Check::new(name, shortfall(config), started.elapsed(), format!("in use by {holder}"))
            .with_remedy("stop that program yourself (the harness never does), or remove the port from preflight.free_ports"),
    }
}

const RUNTIMES: &[&str] = &[
    "dockerd",
    "containerd",
    "podman",
    "colima",
    "limactl",
    "com.docker.backend",
    "com.docker.service",
    "Docker Desktop",
];

async fn runtimes() -> Check {
    let started = Instant::now();
    if !host::process_list_readable() {
        return Check::skipped(
            "container runtimes",
            "process list not readable on this platform",
        );
    }
    let running: Vec<String> = host::processes()
        .await
        .into_iter()
        .filter(|(_, comm)| RUNTIMES.contains(&comm.as_str()))
        .map(|(pid, comm)| format!("{comm} (pid {pid})"))
        .collect();
    let has = |name: &str| running.iter().any(|r| r.starts_with(name));
    if has("podman") && has("dockerd") {
        return Check::new(
            "container runtimes",
            Outcome::Warned,
            started.elapsed(),
            format!("several engines running: {}", running.join(", ")),
        )
        .with_remedy("make sure DOCKER_HOST points at the one the stack should use");
    }
    let detail = if running.is_empty() {
        "none running".to_owned()
    } else {
        running.join(", ")
    };
    Check::passed("container runtimes", started.elapsed(), detail)
}

async fn compose_flavour(config: &Config) -> Check {
    let started = Instant::now();
    match crate::stack::cache::detect_cached(&config.work_dir()).await {
        Ok(compose) => Check::passed("compose", started.elapsed(), compose.to_string()),
        Err(problem) => Check::new(
            "compose",
            Outcome::Warned,
            started.elapsed(),
            format!("{problem:#}"),
        )
        .with_remedy(
            "install docker-compose (Debian: apt-get install docker-compose) or the compose plugin",
        ),
    }
}

async fn python(config: &Config) -> Check {
    let started = Instant::now();
    let interpreter = &config.python.interpreter;
    let needed = config
        .suites
        .iter()
        .any(|s| s.runner == crate::config::Runner::Pytest);
    let output = Cmd::new(interpreter)
        .arg("--version")
        .output(Duration::from_secs(10))
        .await;
    match output {
        Ok(out) if out.success() => {
            // Python 2 printed its version on stderr.
            let version = if out.stdout.is_empty() {
                &out.stderr
            } else {
                &out.stdout
            };
            Check::passed(
                "python",
                started.elapsed(),
                format!("{} ({interpreter})", version.trim()),
            )
        }
        _ if needed => Check::failed(
            "python",
            started.elapsed(),
            format!("`{interpreter}` does not run"),
        )
        .with_remedy("install Python 3 or set python.interpreter in harness.toml"),
        _ => Check::new(
            "python",
            Outcome::Warned,
            started.elapsed(),
            format!("`{interpreter}` does not run; no pytest suite needs it"),
        ),
    }
}
