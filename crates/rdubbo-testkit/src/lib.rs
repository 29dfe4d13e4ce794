//! Test harness: real ZooKeeper servers (Debian package `zookeeper`) started on loopback
//! with a port and a data directory of their own, stopped by PID, cleaned up on drop even
//! when a test fails.
//!
//! ```no_run
//! let zk = rdubbo_testkit::ZkServer::start();
//! println!("zookeeper://{}", zk.address());
//! ```
//!
//! [`java`] runs real Apache Dubbo (Java) providers and consumers for interop tests.

pub mod java;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Where the Debian package puts the server jar (its manifest names the dependencies).
pub const ZOOKEEPER_JAR: &str = "/usr/share/java/zookeeper.jar";
/// The Debian package's command-line client.
pub const ZK_CLI: &str = "/usr/share/zookeeper/bin/zkCli.sh";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A free TCP port on 127.0.0.1 (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot find a free port on 127.0.0.1")
}

fn check_installed() {
    assert!(
        Path::new(ZOOKEEPER_JAR).exists(),
        "ZooKeeper is not installed ({ZOOKEEPER_JAR} missing): run ./scripts/test-all.sh, \
         which installs the Debian package `zookeeper`, or `apt-get install zookeeper`"
    );
}

fn scratch_dir(kind: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "rdubbo-{kind}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("cannot create a scratch directory");
    dir
}

/// Sends a four-letter command (`srvr`, `ruok`, `mntr` …) and returns the answer.
pub fn four_letter(addr: SocketAddr, command: &str) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(command.as_bytes()).ok()?;
    let mut out = String::new();
    stream.read_to_string(&mut out).ok()?;
    Some(out)
}

/// The server's mode (`standalone`, `leader`, `follower`) when it serves requests.
pub fn server_mode(addr: SocketAddr) -> Option<String> {
    let answer = four_letter(addr, "srvr")?;
    answer
        .lines()
        .find_map(|l| l.strip_prefix("Mode: "))
        .map(|m| m.trim().to_owned())
}

struct Node {
    client_port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Node {
    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.client_port))
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "server already running");
        let log = std::fs::File::create(self.dir.join("server.log")).expect("log file");
        let mut cmd = Command::new("java");
        cmd.args([
            "-Xmx256m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-Dzookeeper.admin.enableServer=false",
            "-cp",
            ZOOKEEPER_JAR,
            "org.apache.zookeeper.server.quorum.QuorumPeerMain",
        ])
        .arg(self.dir.join("zoo.cfg"))
        .current_dir(&self.dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log file"))
        .stderr(log);
        // The server dies with the test process, even if the test is killed.
        // SAFETY: the closure runs in the forked child before exec and only calls prctl(2),
        // which is async-signal-safe; it touches no memory of the parent.
        #[allow(unsafe_code)]
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        self.child = Some(
            cmd.spawn()
                .expect("cannot start java (is a JRE installed?)"),
        );
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Wait until the port is free again so that a restart can bind it.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && TcpStream::connect(self.addr()).is_ok() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the server answers `srvr`; false after `timeout`, or as soon as the
    /// process has exited (it could not bind its port, for instance).
    fn wait_serving(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if server_mode(self.addr()).is_some() {
                return true;
            }
            if let Some(child) = self.child.as_mut() {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    return false;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn write_config(dir: &Path, client_port: u16, tick_ms: u32, servers: &[(u16, u16)]) {
    std::fs::create_dir_all(dir.join("data")).expect("data dir");
    let mut cfg = format!(
        "tickTime={tick_ms}\ninitLimit=10\nsyncLimit=5\ndataDir={}\nclientPort={client_port}\n\
         clientPortAddress=127.0.0.1\nadmin.enableServer=false\n4lw.commands.whitelist=*\n\
         minSessionTimeout={}\nmaxSessionTimeout=60000\n",
        dir.join("data").display(),
        tick_ms * 2
    );
    for (i, (peer, election)) in servers.iter().enumerate() {
        cfg.push_str(&format!("server.{}=127.0.0.1:{peer}:{election}\n", i + 1));
    }
    std::fs::write(dir.join("zoo.cfg"), cfg).expect("zoo.cfg");
}

/// One standalone ZooKeeper server on 127.0.0.1.
pub struct ZkServer {
    node: Node,
}

impl ZkServer {
    /// Starts a server on a free port with a fresh data directory (tick 500 ms, so session
    /// timeouts down to 1 s are allowed) and waits until it serves requests.
    ///
    /// ZooKeeper binds its port itself, so another process may take the port found free
    /// before it does; the server then exits, and it is started again on another port.
    pub fn start() -> ZkServer {
        check_installed();
        let mut server = ZkServer {
            node: Node {
                client_port: 0,
                dir: scratch_dir("zk"),
                child: None,
            },
        };
        for attempt in 1.. {
            server.node.client_port = free_port();
            write_config(&server.node.dir, server.node.client_port, 500, &[]);
            server.node.spawn();
            if server.node.wait_serving(Duration::from_secs(30)) {
                break;
            }
            let log = server.log();
            server.node.kill();
            if attempt == 3 || !log.contains("Address already in use") {
                panic!("zookeeper did not start on {}:\n{log}", server.address());
            }
        }
        server
    }

    /// What the server process printed so far.
    fn log(&self) -> String {
        std::fs::read_to_string(self.node.dir.join("server.log")).unwrap_or_default()
    }

    /// `127.0.0.1:<port>`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.node.client_port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.node.client_port
    }

    /// The registry URL `zookeeper://127.0.0.1:<port>` plus `params` (`a=b&c=d`).
    pub fn registry_url(&self, params: &str) -> String {
        if params.is_empty() {
            format!("zookeeper://{}", self.address())
        } else {
            format!("zookeeper://{}?{params}", self.address())
        }
    }

    /// Whether the server process runs.
    pub fn is_running(&self) -> bool {
        self.node.child.is_some()
    }

    /// Kills the server (SIGKILL, by PID); its data directory stays, so sessions and
    /// nodes survive a [`restart`](ZkServer::restart) as after a crash.
    pub fn stop(&mut self) {
        self.node.kill();
    }

    /// Starts the server again on the same port and data directory and waits until it
    /// serves requests.
    pub fn restart(&mut self) {
        self.node.spawn();
        if !self.node.wait_serving(Duration::from_secs(30)) {
            panic!(
                "zookeeper did not start on {}:\n{}",
                self.address(),
                self.log()
            );
        }
    }

    /// Deletes the (stopped) server's data: on the next start every session is unknown,
    /// so clients see their session expire, and every node is gone.
    pub fn wipe_data(&mut self) {
        assert!(!self.is_running(), "stop the server before wiping its data");
        let data = self.node.dir.join("data");
        let _ = std::fs::remove_dir_all(&data);
        std::fs::create_dir_all(&data).expect("data dir");
    }

    /// Runs `zkCli.sh -server <addr> <args…>` and returns what it printed.
    pub fn cli(&self, args: &[&str]) -> String {
        zk_cli(&self.address(), args)
    }
}

/// Runs the Debian `zkCli.sh` against `server` with one command and returns what it
/// printed (standard output, then standard error).
pub fn zk_cli(server: &str, args: &[&str]) -> String {
    let out = Command::new(ZK_CLI)
        .arg("-server")
        .arg(server)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run zkCli.sh");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    text
}

/// A ZooKeeper ensemble of several servers on loopback.
pub struct ZkEnsemble {
    nodes: Vec<Node>,
}

impl ZkEnsemble {
    /// Starts `n` servers forming one ensemble and waits until all serve requests.
    pub fn start(n: usize) -> ZkEnsemble {
        check_installed();
        let servers: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let mut nodes = Vec::with_capacity(n);
        for i in 0..n {
            let dir = scratch_dir("zk-ensemble");
            let port = free_port();
            write_config(&dir, port, 500, &servers);
            std::fs::write(dir.join("data").join("myid"), format!("{}\n", i + 1)).expect("myid");
            nodes.push(Node {
                client_port: port,
                dir,
                child: None,
            });
        }
        for node in &mut nodes {
            node.spawn();
        }
        for node in &mut nodes {
            assert!(
                node.wait_serving(Duration::from_secs(60)),
                "ensemble member on {} did not start serving",
                node.addr()
            );
        }
        ZkEnsemble { nodes }
    }

    /// `127.0.0.1:p1,127.0.0.1:p2,…`
    pub fn connect_string(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.client_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `zookeeper://first?backup=second,third` plus `params`.
    pub fn registry_url(&self, params: &str) -> String {
        let mut addrs = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.client_port));
        let first = addrs.next().unwrap_or_default();
        let backup: Vec<String> = addrs.collect();
        let mut url = format!("zookeeper://{first}?backup={}", backup.join(","));
        if !params.is_empty() {
            url.push('&');
            url.push_str(params);
        }
        url
    }

    /// Index of the current leader, if one is elected.
    pub fn leader(&self) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.child.is_some() && server_mode(n.addr()).as_deref() == Some("leader"))
    }

    /// Waits until a leader is elected among running members.
    pub fn wait_leader(&self, timeout: Duration) -> Option<usize> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(i) = self.leader() {
                return Some(i);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    /// Kills member `i` (SIGKILL, by PID).
    pub fn stop(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    /// Starts member `i` again.
    pub fn restart(&mut self, i: usize) {
        self.nodes[i].spawn();
    }

    /// Client address of member `i`.
    pub fn address(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.nodes[i].client_port)
    }
}

/// Installs npm packages (e.g. `nacos@2.6.3`) into `dir` unless `dir/node_modules/<name>`
/// is already there, and returns `dir`. Serialized within the process; panics with npm's
/// output when the install fails.
pub fn npm_install(dir: &std::path::Path, packages: &[&str]) -> std::path::PathBuf {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| {
            let name = match p.rfind('@') {
                Some(0) | None => p,
                Some(i) => &p[..i],
            };
            !dir.join("node_modules")
                .join(name)
                .join("package.json")
                .exists()
        })
        .collect();
    if !missing.is_empty() {
        std::fs::create_dir_all(dir).expect("create the npm directory");
        if !dir.join("package.json").exists() {
            std::fs::write(dir.join("package.json"), "{\"private\":true}\n")
                .expect("write package.json");
        }
        let mut npm = std::process::Command::new("npm");
        npm.args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
            .args(&missing)
            .current_dir(dir);
        run_installer(
            npm,
            "run npm (is Node.js installed? scripts/test-all.sh installs it)",
            &format!("npm install {missing:?}"),
        );
    }
    dir.to_path_buf()
}

/// Installs a PyPI package (e.g. `python3-dubbo==0.0.8`) with pip's `--target` into `dir`
/// unless `dir/<marker>` (a file the package ships) is already there, and returns `dir`.
/// Serialized within the process; panics with pip's output when the install fails.
///
/// pip installs into a staging directory of this process that is renamed into place when
/// complete, so an install cut short by an earlier run (which `--target` refuses to
/// overwrite) is replaced, never reused half-done.
pub fn pip_install(dir: &std::path::Path, package: &str, marker: &str) -> std::path::PathBuf {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if dir.join(marker).exists() {
        return dir.to_path_buf();
    }
    let staging = dir.with_extension(format!("partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    let mut pip = std::process::Command::new("python3");
    pip.args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-warn-conflicts",
        "--target",
    ])
    .arg(&staging)
    .arg(package);
    run_installer(
        pip,
        "run pip (python3 -m pip)",
        &format!("pip install {package}"),
    );
    let _ = std::fs::remove_dir_all(dir);
    std::fs::rename(&staging, dir).expect("move the installed package into place");
    dir.to_path_buf()
}

/// Runs a package installer to its end; panics with `spawn_failed` when it cannot start,
/// or with its output when `what` fails.
fn run_installer(mut cmd: std::process::Command, spawn_failed: &str, what: &str) {
    let out = cmd.output().expect(spawn_failed);
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A child process that is killed (by its PID) when dropped, also when a test panics.
///
/// No parent-death signal is set: Linux sends it when the spawning *thread* exits, and
/// tests spawn from short-lived blocking threads. Scripts driven by a test should exit when
/// their stdin closes, which happens when the test process dies.
pub struct ChildGuard(pub std::process::Child);

impl ChildGuard {
    /// Starts `command`.
    pub fn spawn(command: &mut std::process::Command) -> std::io::Result<ChildGuard> {
        command.spawn().map(ChildGuard)
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
