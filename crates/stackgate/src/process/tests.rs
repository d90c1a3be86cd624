//! The runner against real processes: capture, deadlines that end whole groups, drops, lines,
//! logs and daemons.

use super::*;
use tokio::io::AsyncReadExt;

fn sh(script: &str) -> Cmd {
    Cmd::new("sh").arg("-c").arg(script)
}

/// Live (not zombie) processes whose process group is `pgid`, from /proc.
fn live_members(pgid: i32) -> Vec<i32> {
    let mut live = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp ...: comm may hold spaces, so split after the last ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() > 2 && fields[2] == pgid.to_string() && !["Z", "X"].contains(&fields[0]) {
            live.push(pid);
        }
    }
    live
}

/// Waits (at most 5 s) until no live process is left in the group.
fn assert_group_gone(pgid: i32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !live_members(pgid).is_empty() {
        assert!(
            Instant::now() < deadline,
            "group {pgid} still has live members: {:?}",
            live_members(pgid)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn captures_both_streams_and_the_status() {
    let finished = sh("echo out; echo err >&2; exit 3")
        .output(Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(finished.code(), Some(3));
    assert_eq!(finished.stdout, "out\n");
    assert_eq!(finished.stderr, "err\n");
    assert!(!finished.success());
    let error = format!("{:#}", finished.failure());
    assert!(error.contains("exit code 3"), "{error}");
    assert!(error.contains("err"), "{error}");
}

#[tokio::test]
async fn a_deadline_kills_the_whole_group() {
    let pid_file = tempfile::NamedTempFile::new().unwrap();
    let script = format!("sleep 300 & echo $! > {}; wait", pid_file.path().display());
    let finished = sh(&script)
        .on_deadline(&[(Signal::Terminate, Duration::from_millis(200))])
        .output(Duration::from_millis(300))
        .await
        .unwrap();
    assert!(finished.timed_out);
    assert!(
        finished.describe().starts_with("timed out"),
        "{}",
        finished.describe()
    );
    let grandchild: i32 = std::fs::read_to_string(pid_file.path())
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The grandchild was in the group of the shell. The signal has been sent
    // by now, but on a loaded machine the grandchild may not have acted on it
    // yet: it gets the few seconds `assert_group_gone` allows, far fewer than
    // the 300 s it would live if the group had not been signalled.
    let stat = std::fs::read_to_string(format!("/proc/{grandchild}/stat")).unwrap_or_default();
    if let Some(pgid) = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(2))
        .and_then(|pgid| pgid.parse().ok())
    {
        assert_group_gone(pgid);
    }
}

#[tokio::test]
async fn a_stop_request_ends_it_as_the_deadline_would_and_says_so() {
    // It writes its report on the interrupt, as pytest does, then exits.
    let script =
        "trap 'echo report written; exit 2' INT; echo running; while :; do sleep 0.05; done";
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let waiting = sh(script)
        .on_deadline(&[(Signal::Interrupt, Duration::from_secs(5))])
        .spawn()
        .unwrap()
        .wait_or_stop(Duration::from_secs(60), async {
            let _ = stopped.await;
        });
    let stopper = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.send(()).unwrap();
    };
    let (finished, ()) = tokio::join!(waiting, stopper);
    let finished = finished.unwrap();
    assert!(finished.stopped && !finished.timed_out, "{finished:?}");
    assert!(!finished.success());
    assert_eq!(finished.code(), Some(2));
    assert!(finished.stdout.contains("report written"), "{finished:?}");
    // Without a stop, it is an ordinary wait.
    let finished = sh("exit 0")
        .spawn()
        .unwrap()
        .wait_or_stop(Duration::from_secs(10), std::future::pending())
        .await
        .unwrap();
    assert!(finished.success() && !finished.stopped);
}

#[tokio::test]
async fn a_dropped_process_is_stopped_with_its_group() {
    let process = sh("trap '' TERM; sleep 300")
        .stop_grace(Duration::from_millis(100))
        .spawn()
        .unwrap();
    let pid = process.pid().unwrap() as i32;
    drop(process);
    finish_pending_kills();
    assert_group_gone(pid);
}

/// A dropped process whose group ends on terminate is not waited for over its whole grace: an
/// interrupted harness exits as soon as its children are gone.
#[tokio::test]
async fn a_dropped_process_that_ends_on_terminate_is_not_waited_for() {
    let process = sh("sleep 300")
        .stop_grace(Duration::from_secs(3600))
        .spawn()
        .unwrap();
    let pid = process.pid().unwrap() as i32;
    drop(process);
    let joined = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::task::spawn_blocking(finish_pending_kills),
    )
    .await;
    assert!(
        joined.is_ok(),
        "the kill waited out its hour of grace although the group had ended"
    );
    assert_group_gone(pid);
}

#[tokio::test]
async fn lines_arrive_as_printed_and_the_log_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("out.log");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink: LineSink = {
        let seen = seen.clone();
        Arc::new(move |stream, line: &str| seen.lock().unwrap().push((stream, line.to_owned())))
    };
    let finished = sh("printf 'a\\nb\\n'; printf 'c' >&2")
        .keep_tail(2)
        .log_to(&log)
        .on_line(sink)
        .run(Duration::from_secs(10))
        .await
        .unwrap();
    let seen = seen.lock().unwrap().clone();
    assert!(seen.contains(&(Stream::Stdout, "a".to_owned())), "{seen:?}");
    assert!(seen.contains(&(Stream::Stdout, "b".to_owned())), "{seen:?}");
    assert!(seen.contains(&(Stream::Stderr, "c".to_owned())), "{seen:?}");
    // The tail is bounded; the log is not.
    assert_eq!(finished.stdout.len(), 2);
    assert!(finished.dropped > 0);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("a\nb\n") && logged.contains('c'),
        "{logged}"
    );
}

#[tokio::test]
async fn a_detached_process_outlives_its_handle_and_keeps_logging_to_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("service.log");
    let process = sh("sleep 0.2; echo out; echo err >&2; sleep 300")
        .output_to_file(&log)
        .stop_grace(Duration::from_millis(100))
        .spawn()
        .unwrap();
    let pid = process.detach().unwrap() as i32;
    finish_pending_kills();
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(&log).unwrap_or_default() != "out\nerr\n" {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            std::fs::read_to_string(&log)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Had it been dropped, its group would have had its kill by now (finish_pending_kills).
    assert!(
        !live_members(pid).is_empty(),
        "the detached process was stopped"
    );
    // SAFETY: the group this test's detached process leads.
    unsafe { libc::killpg(pid, libc::SIGKILL) };
    assert_group_gone(pid);
}

#[tokio::test]
async fn a_missing_program_names_itself() {
    let error = Cmd::new("/nonexistent/program")
        .arg("x y")
        .output(Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(
        format!("{error:#}").contains("cannot run `/nonexistent/program 'x y'`"),
        "{error:#}"
    );
}

#[tokio::test]
async fn a_piped_stdout_is_the_callers_and_is_not_kept() {
    let mut process = sh("printf bytes; printf err >&2")
        .pipe_stdout()
        .spawn()
        .unwrap();
    let mut read = Vec::new();
    let mut stdout = process.take_stdout().unwrap();
    stdout.read_to_end(&mut read).await.unwrap();
    assert!(process.take_stdout().is_none());
    let finished = process.wait(Duration::from_secs(10)).await.unwrap();
    assert_eq!(
        (read.as_slice(), finished.stdout.as_str()),
        (&b"bytes"[..], "")
    );
    assert_eq!(finished.stderr, "err");
}

#[test]
fn from_std_keeps_arguments_env_and_directory() {
    let mut std_cmd = std::process::Command::new("compose");
    std_cmd
        .args(["-p", "x"])
        .env("A", "1")
        .env_remove("B")
        .current_dir("/tmp");
    let cmd = Cmd::from_std(&std_cmd);
    assert_eq!(cmd.display(), "compose -p x");
    assert_eq!(cmd.env, vec![("A".into(), "1".into())]);
    assert_eq!(cmd.env_remove, vec![OsString::from("B")]);
    assert_eq!(cmd.dir.as_deref(), Some(Path::new("/tmp")));
}
