//! Engines of a test's own, never the machine's: a private dockerd (own socket, pid file, data
//! and exec roots) in a network namespace of its own, optionally listening on tcp at the
//! namespace's address (a "remote" engine reached over a veth pair) with whatever extra flags a
//! test passes (`--tlsverify ...` for the TLS tests); and a podman service under its own root,
//! run root, network configuration and namespace. The harness can start such a dockerd itself
//! (its `harness.toml` names the wrapper, pid file and arguments), or the test starts it.
//! Dropping one stops everything it started and removes its files and namespace.
//!
//! Traffic stays on loopback and on the namespaces' own addresses (10.213.N.0/30).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use stackgate::config::Config;
use stackgate::engine::{self, DiscoveryEnv, Platform};
use stackgate::state;

/// A named network namespace (`/var/run/netns/NAME`), with only loopback, or with a veth pair:
/// `host_addr` on this side, `addr` inside. Deleted on drop.
pub struct Netns {
    pub name: String,
    /// The namespace's own address, when it has a veth pair.
    pub addr: Option<String>,
    host_if: Option<String>,
}

/// A short name unique to this process and call (interface names hold at most 15 bytes).
fn short_name(prefix: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}{:x}{n:x}", std::process::id() % 0x10000)
}

fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().unwrap();
    assert!(
        output.status.success(),
        "`ip {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Netns {
    /// A namespace with loopback only: what runs inside reaches nothing but itself.
    pub fn isolated() -> Netns {
        let name = short_name("xtn");
        ip(&["netns", "add", &name]);
        ip(&["netns", "exec", &name, "ip", "link", "set", "lo", "up"]);
        Netns {
            name,
            addr: None,
            host_if: None,
        }
    }

    /// A namespace joined to this one by a veth pair on a /30 nobody uses here yet.
    pub fn with_address() -> Netns {
        let mut netns = Netns::isolated();
        let used = String::from_utf8_lossy(
            &Command::new("ip")
                .args(["-o", "-4", "addr", "show"])
                .output()
                .unwrap()
                .stdout,
        )
        .into_owned();
        let third = (0..250u32)
            .map(|i| (std::process::id() * 7 + i) % 250 + 1)
            .find(|n| !used.contains(&format!("10.213.{n}.")))
            .expect("a free 10.213.N.0/30");
        let host_if = format!("{}h", netns.name);
        let ns_if = format!("{}n", netns.name);
        let (host_addr, addr) = (format!("10.213.{third}.1"), format!("10.213.{third}.2"));
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
        ]);
        netns.host_if = Some(host_if.clone());
        ip(&["link", "set", &ns_if, "netns", &netns.name]);
        ip(&["addr", "add", &format!("{host_addr}/30"), "dev", &host_if]);
        ip(&["link", "set", &host_if, "up"]);
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &netns.name, "ip"];
            all.extend(args);
            ip(&all);
        };
        inside(&["addr", "add", &format!("{addr}/30"), "dev", &ns_if]);
        inside(&["link", "set", &ns_if, "up"]);
        netns.addr = Some(addr);
        netns
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/var/run/netns").join(&self.name)
    }

    /// `nsenter --net=PATH PROGRAM ...`: unlike `ip netns exec`, it keeps the cgroup mounts a
    /// daemon needs.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net={}", self.path().display()))
            .arg(program);
        command
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        if let Some(host_if) = &self.host_if {
            let _ = Command::new("ip").args(["link", "del", host_if]).output();
        }
    }
}

/// How a private dockerd is made.
#[derive(Default)]
pub struct DockerdOptions {
    /// Listen on tcp at its namespace's own address (port 2375), besides its unix socket.
    pub tcp: bool,
    /// More dockerd flags (`--tlsverify`, `--tlscacert ...`).
    pub extra_args: Vec<String>,
}

/// A private dockerd's directory and namespace; dropping it stops whatever dockerd runs from it,
/// unmounts and removes it.
pub struct Dockerd {
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub pid_file: PathBuf,
    /// `tcp://ADDR:2375` when it listens on tcp.
    pub tcp: Option<String>,
    /// A harness.toml in `dir` whose [engine] starts exactly this daemon.
    pub config: Config,
    /// The `[engine]` table of `config`, for tests that write their own harness.toml.
    pub engine_table: String,
    wrapper: PathBuf,
    args: Vec<String>,
    netns: Option<Netns>,
}

impl Dockerd {
    /// Its directory, wrapper and configuration; nothing runs yet. It lives in a named network
    /// namespace of its own: loopback only, or with an address it listens on (tcp).
    pub fn prepare(options: DockerdOptions) -> Dockerd {
        // Short: unix socket paths (containerd's too) are limited to 108 bytes.
        let dir = PathBuf::from(format!("/tmp/xt-{}", state::new_run_id()));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("docker.sock");
        let pid_file = dir.join("docker.pid");
        // In a network namespace of its own: a second dockerd in the host's namespace would fight
        // the machine's daemon over docker0 (and with `--bridge none` it deletes docker0). A
        // named one, with loopback up (ports publish there), that outlives a killed daemon: the
        // harness restarts it into the same namespace.
        let netns = if options.tcp {
            Netns::with_address()
        } else {
            Netns::isolated()
        };
        let wrapper = dir.join("dockerd-netns");
        let script = format!(
            "#!/bin/sh\nexec nsenter --net={} dockerd \"$@\"\n",
            netns.path().display()
        );
        std::fs::write(&wrapper, script).unwrap();
        std::fs::set_permissions(
            &wrapper,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let d = dir.display();
        let mut args: Vec<String> = vec![
            "--data-root".into(),
            format!("{d}/data"),
            "--exec-root".into(),
            format!("{d}/exec"),
            "--iptables=false".into(),
            "--ip-masq=false".into(),
            "--host".into(),
            format!("unix://{}", socket.display()),
        ];
        let tcp = netns.addr.as_ref().map(|addr| format!("tcp://{addr}:2375"));
        if let Some(tcp) = &tcp {
            args.extend(["--host".to_owned(), tcp.clone()]);
        }
        args.extend(options.extra_args);
        let quoted: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
        let engine_table = format!(
            "start_if_stopped = true\nstart_timeout_s = 120\nrespond_within_s = 30\n\
             smoke_image = \"hello-world\"\nsmoke_fallback_image = \"debian:bookworm-slim\"\n\
             smoke_timeout_s = 60\npid_file = \"{pid}\"\n\
             dockerd_args = [{args}]\ndockerd = \"{wrapper}\"\n",
            wrapper = wrapper.display(),
            pid = pid_file.display(),
            args = quoted.join(", "),
        );
        let config = crate::engine::config_in(&dir, &engine_table, "");
        Dockerd {
            dir,
            socket,
            pid_file,
            tcp,
            config,
            engine_table,
            wrapper,
            args,
            netns: Some(netns),
        }
    }

    /// `unix://SOCKET`.
    pub fn unix_host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// Discovery pointed at its socket (without touching the process environment).
    pub fn env(&self) -> DiscoveryEnv {
        DiscoveryEnv {
            docker_host: Some(self.unix_host()),
            platform: Platform::Linux,
            ..DiscoveryEnv::default()
        }
    }

    /// Starts it as the harness would (the wrapper, its arguments, a pid file), detached, and
    /// waits until it answers at its socket (and at its tcp address).
    pub async fn start(&self) -> bollard::Docker {
        let log = std::fs::File::create(self.dir.join("dockerd.log")).unwrap();
        let mut command = Command::new(&self.wrapper);
        command
            .args(&self.args)
            .arg("--pidfile")
            .arg(&self.pid_file)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        // Its own session: the test's process group is not its.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command.spawn().unwrap();
        let docker = self.wait_for_answer(&mut child).await;
        // Reaped by whoever outlives it; the harness may restart it after a kill.
        std::mem::forget(child);
        docker
    }

    async fn wait_for_answer(&self, child: &mut std::process::Child) -> bollard::Docker {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "the private dockerd exited with {status}:\n{}",
                    self.log_tail()
                );
            }
            // The socket exists only once it listens.
            if let Ok(docker) = bollard::Docker::connect_with_socket(
                &self.socket.to_string_lossy(),
                10,
                bollard::API_DEFAULT_VERSION,
            ) {
                if let Ok(docker) = docker.negotiate_version().await {
                    if docker.ping().await.is_ok() && self.tcp_answers().await {
                        return docker;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "the private dockerd did not answer within 60s:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Its tcp address accepts connections (a connection, not a ping: with `--tlsverify` only a
    /// client with the right certificate gets an answer).
    async fn tcp_answers(&self) -> bool {
        let Some(tcp) = &self.tcp else { return true };
        tokio::net::TcpStream::connect(tcp.trim_start_matches("tcp://"))
            .await
            .is_ok()
    }

    /// The last lines of its log, for failures.
    pub fn log_tail(&self) -> String {
        let mut text = String::new();
        for log in [
            self.dir.join("dockerd.log"),
            self.dir.join("target/xtask/dockerd.log"),
        ] {
            let content = std::fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<&str> = content.lines().collect();
            text.push_str(&format!("--- {}\n", log.display()));
            text.push_str(&lines[lines.len().saturating_sub(30)..].join("\n"));
            text.push('\n');
        }
        text
    }

    /// The pid its pid file names, when it runs.
    pub fn pid(&self) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(&self.pid_file)
            .ok()?
            .trim()
            .parse()
            .ok()?;
        (!engine::process_gone(pid)).then_some(pid)
    }
}

/// Pids of processes whose command line names `dir`.
fn processes_naming(dir: &Path) -> Vec<u32> {
    let needle = dir.to_string_lossy().into_owned();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&needle) {
            pids.push(pid);
        }
    }
    pids
}

/// Stops what runs from `dir` (SIGTERM, SIGKILL after 30 s), unmounts what is mounted under it
/// and removes it.
fn stop_and_remove(dir: &Path) {
    let pids = processes_naming(dir);
    for pid in &pids {
        // SAFETY: these processes run from our unique private directory: ours.
        unsafe { libc::kill(*pid as libc::pid_t, libc::SIGTERM) };
    }
    let began = Instant::now();
    while pids.iter().any(|p| !engine::process_gone(*p))
        && began.elapsed() < Duration::from_secs(30)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    for pid in pids.iter().filter(|p| !engine::process_gone(**p)) {
        // SAFETY: as above; it ignored SIGTERM for 30 s.
        unsafe { libc::kill(*pid as libc::pid_t, libc::SIGKILL) };
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut ours: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| Path::new(m).starts_with(dir))
        .collect();
    ours.sort_by_key(|m| std::cmp::Reverse(m.len()));
    // Private daemons live in Linux network namespaces: there is nothing to unmount elsewhere.
    #[cfg(target_os = "linux")]
    for mount in ours {
        let path = std::ffi::CString::new(mount).unwrap();
        // SAFETY: unmounts what our private daemon mounted under our directory.
        unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
    }
    if let Err(e) = std::fs::remove_dir_all(dir) {
        eprintln!("could not remove {}: {e}", dir.display());
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        stop_and_remove(&self.dir);
        // The namespace goes after the daemon that lived in it.
        self.netns.take();
    }
}

/// A podman service (`podman system service`) under its own root, run root, network
/// configuration and `containers.conf`, in a namespace of its own with loopback only: its
/// networks and firewall rules live and die there (what its containers publish is reachable
/// only from inside).
pub struct Podman {
    pub dir: PathBuf,
    pub socket: PathBuf,
    netns: Netns,
    service: Option<std::process::Child>,
}

impl Podman {
    /// Starts the service and waits until its socket answers.
    pub async fn start() -> Podman {
        let dir = PathBuf::from(format!("/tmp/xt-pod-{}", state::new_run_id()));
        for sub in ["root", "run", "networks", "tmp"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        // Podman raises every container's open-file and process limits to its own maximum
        // unless told otherwise; a machine without CAP_SYS_RESOURCE (this one: at most 20000
        // open files) refuses that. Its containers get the limits this process has, processes
        // at most 32768 (the service's own limit, which podman sets for itself).
        let hard = |resource| {
            let mut limit = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: getrlimit writes into the struct we own.
            unsafe { libc::getrlimit(resource, &mut limit) };
            limit.rlim_max
        };
        std::fs::write(
            dir.join("containers.conf"),
            format!(
                "[containers]\ndefault_ulimits = [\"nofile={0}:{0}\", \"nproc={1}:{1}\"]\n",
                hard(libc::RLIMIT_NOFILE),
                hard(libc::RLIMIT_NPROC).min(32768)
            ),
        )
        .unwrap();
        let socket = dir.join("podman.sock");
        let netns = Netns::isolated();
        let log = std::fs::File::create(dir.join("podman.log")).unwrap();
        let mut command = netns.command("podman");
        command
            .args(Podman::global_args(&dir))
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", socket.display()))
            .env("CONTAINERS_CONF", dir.join("containers.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let service = command.spawn().unwrap();
        let mut podman = Podman {
            dir,
            socket,
            netns,
            service: Some(service),
        };
        podman.wait_for_answer().await;
        podman
    }

    fn global_args(dir: &Path) -> Vec<String> {
        let d = dir.display();
        vec![
            format!("--root={d}/root"),
            format!("--runroot={d}/run"),
            format!("--network-config-dir={d}/networks"),
            format!("--tmpdir={d}/tmp"),
            "--cgroup-manager=cgroupfs".into(),
            "--events-backend=file".into(),
        ]
    }

    async fn wait_for_answer(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(Ok(Some(status))) = self.service.as_mut().map(|s| s.try_wait()) {
                panic!(
                    "podman system service exited with {status}:\n{}",
                    self.log()
                );
            }
            if let Ok(docker) = bollard::Docker::connect_with_socket(
                &self.socket.to_string_lossy(),
                10,
                bollard::API_DEFAULT_VERSION,
            ) {
                if docker.ping().await.is_ok() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "podman did not answer within 60s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("podman.log")).unwrap_or_default()
    }

    /// `unix://SOCKET`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// A client for its socket, the API version negotiated.
    pub async fn client(&self) -> bollard::Docker {
        bollard::Docker::connect_with_socket(
            &self.socket.to_string_lossy(),
            120,
            bollard::API_DEFAULT_VERSION,
        )
        .unwrap()
        .negotiate_version()
        .await
        .unwrap()
    }

    /// `podman ps -a` of this service's storage: every container's name.
    pub fn all_containers(&self) -> Vec<String> {
        let output = Command::new("podman")
            .args(Podman::global_args(&self.dir))
            .args(["ps", "-a", "--format", "{{.Names}}"])
            .env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "podman ps -a: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // Containers outlive the service (conmon holds them): removed first, by the same storage.
        let _ = self
            .netns
            .command("podman")
            .args(Podman::global_args(&self.dir))
            .args(["rm", "--all", "--force", "--time=0"])
            .env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .output();
        if let Some(mut service) = self.service.take() {
            let _ = service.kill();
            let _ = service.wait();
        }
        stop_and_remove(&self.dir);
    }
}

/// Copies an image from one engine into another (`docker save | docker load`).
pub async fn copy_image(from: &bollard::Docker, to: &bollard::Docker, name: &str) {
    let mut tar = Vec::new();
    let mut export = from.export_image(name);
    while let Some(chunk) = export.next().await {
        tar.extend_from_slice(&chunk.unwrap_or_else(|e| panic!("docker save {name}: {e}")));
    }
    let mut load = to.import_image(
        bollard::query_parameters::ImportImageOptions::default(),
        bollard::body_full(tar.into()),
        None,
    );
    while let Some(item) = load.next().await {
        item.unwrap_or_else(|e| panic!("docker load {name}: {e}"));
    }
}
