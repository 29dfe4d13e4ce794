//! Real Apache Dubbo (Java) peers for interop tests.
//!
//! The jars live outside the repository (`../shared/java-dubbo` for 2.7.23,
//! `../shared/java-dubbo3` for 3.3.1, or `RDUBBO_JAVA_DUBBO_DIR` / `RDUBBO_JAVA_DUBBO3_DIR`);
//! their dependencies come from Debian packages under `/usr/share/java` (see the README.md
//! beside each jar). The Java programs (`com.example.JavaProvider`, `com.example.JavaConsumer`,
//! the `UserService` interface and its POJOs) are kept in `crates/rdubbo/tests/java`
//! ([`interop_sources`]) and compiled on demand into `target/tmp/java-peer-<version>-<hash>/`.
//!
//! When something is missing, [`JavaDubbo::find`] prints a loud `SKIPPED:` line and returns
//! `None`, so tests can skip; set `RDUBBO_REQUIRE_JAVA=1` to make that a panic instead (CI).
//!
//! ```no_run
//! use rdubbo_testkit::java::{interop_sources, DubboVersion, JavaDubbo};
//! use std::time::Duration;
//!
//! let Some(java) = JavaDubbo::find(DubboVersion::V2_7) else { return };
//! let classes = java.compile(&interop_sources());
//! let provider = java.spawn_provider(&classes, rdubbo_testkit::free_port(), &[]);
//! let url = format!("dubbo://127.0.0.1:{}/com.example.UserService", provider.port());
//! let out = java.run_consumer(&classes, &["--url", &url, "check"], Duration::from_secs(60));
//! out.assert_ok("Java consumer check");
//! ```

use std::fs::{self, File, OpenOptions};
use std::hash::Hasher;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use crate::ChildGuard;

/// Where the Debian packages put their jars.
pub const DEBIAN_JAVA_DIR: &str = "/usr/share/java";

/// `--add-opens` packages Hessian and javassist need on Java 17.
pub const ADD_OPENS: &[&str] = &[
    "java.lang",
    "java.lang.reflect",
    "java.util",
    "java.util.concurrent",
    "java.math",
    "java.net",
    "java.text",
    "java.io",
    "java.nio",
    "sun.nio.ch",
];

/// The JVM flags for a small, fast-starting peer.
pub const JVM_FLAGS: &[&str] = &["-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"];

/// How long [`JavaDubbo::spawn_provider`] waits for `READY <port>`.
pub const PROVIDER_START_TIMEOUT: Duration = Duration::from_secs(60);

const DEPS_2_7: &[&str] = &[
    "netty-buffer",
    "netty-codec",
    "netty-common",
    "netty-handler",
    "netty-resolver",
    "netty-transport",
    "netty-transport-native-epoll",
    "netty-transport-native-unix-common",
    "netty-handler-proxy",
    "netty-codec-socks",
    "netty-codec-http",
    "javassist",
    "curator-client",
    "curator-framework",
    "curator-recipes",
    "curator-x-discovery",
    "zookeeper",
    "zookeeper-jute",
    "guava",
    "gson",
    "snakeyaml",
    "slf4j-api",
    "slf4j-log4j12",
    "log4j-1.2",
    "commons-logging",
    "commons-io",
    "commons-lang3",
];

/// What 3.3.1 needs besides 2.7.23's classpath (HTTP/2 for Triple, log4j 2, metrics, JSON).
const DEPS_3_3_EXTRA: &[&str] = &[
    "netty-codec-http2",
    "log4j-api",
    "log4j-core",
    "commons-compress",
    "snappy-java",
    "protobuf",
    "protobuf-util",
    "jsr305",
    "t-digest",
    "jackson-core",
    "jackson-databind",
    "jackson-annotations",
];

const APT_2_7: &str = "apt-get install -y default-jdk-headless libnetty-java libjavassist-java \
    libcurator-client-java libcurator-framework-java libcurator-recipes-java \
    libcurator-discovery-java libguava-java libzookeeper-java zookeeper libslf4j-java \
    liblog4j1.2-java libgoogle-gson-java libyaml-snake-java libcommons-io-java \
    libcommons-logging-java libcommons-lang3-java";

const APT_3_3_EXTRA: &str = "liblog4j2-java libcommons-compress-java libsnappy-java \
    libprotobuf-java protobuf-compiler libjsr305-java libt-digest-java libjackson2-core-java \
    libjackson2-databind-java libjackson2-annotations-java libmustache-java";

/// A Java Dubbo release the tests can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DubboVersion {
    /// Apache Dubbo 2.7.23 with dubbo-hessian-lite 3.2.13.
    V2_7,
    /// Apache Dubbo 3.3.1 with dubbo-hessian-lite 4.0.3.
    V3_3,
}

impl DubboVersion {
    /// Both versions, oldest first.
    pub const ALL: [DubboVersion; 2] = [DubboVersion::V2_7, DubboVersion::V3_3];

    /// `"2.7.23"` or `"3.3.1"`.
    pub fn label(self) -> &'static str {
        match self {
            DubboVersion::V2_7 => "2.7.23",
            DubboVersion::V3_3 => "3.3.1",
        }
    }

    /// The environment variable that overrides the jar directory.
    pub fn env_var(self) -> &'static str {
        match self {
            DubboVersion::V2_7 => "RDUBBO_JAVA_DUBBO_DIR",
            DubboVersion::V3_3 => "RDUBBO_JAVA_DUBBO3_DIR",
        }
    }

    fn default_dir_name(self) -> &'static str {
        match self {
            DubboVersion::V2_7 => "java-dubbo",
            DubboVersion::V3_3 => "java-dubbo3",
        }
    }

    fn jar_name(self) -> &'static str {
        match self {
            DubboVersion::V2_7 => "apache-dubbo-2.7.23-loopback.jar",
            DubboVersion::V3_3 => "apache-dubbo-3.3.1-loopback.jar",
        }
    }

    /// The Debian jars (names under /usr/share/java) of this version's classpath.
    fn deps(self) -> impl Iterator<Item = &'static str> {
        let extra: &[&str] = match self {
            DubboVersion::V2_7 => &[],
            DubboVersion::V3_3 => DEPS_3_3_EXTRA,
        };
        DEPS_2_7.iter().chain(extra).copied()
    }

    fn apt_line(self) -> String {
        match self {
            DubboVersion::V2_7 => APT_2_7.to_owned(),
            DubboVersion::V3_3 => format!("{APT_2_7} {APT_3_3_EXTRA}"),
        }
    }
}

impl std::fmt::Display for DubboVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Java Dubbo {}", self.label())
    }
}

/// The workspace root (`crates/rdubbo-testkit/../..`).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = manifest.join("..").join("..");
    root.canonicalize().unwrap_or(root)
}

/// `crates/rdubbo/tests/java`: the Java interop programs (`com.example.*`) and their
/// resources (`security/serialize.allowlist`, `META-INF/dubbo/...`).
pub fn interop_sources() -> PathBuf {
    workspace_root()
        .join("crates")
        .join("rdubbo")
        .join("tests")
        .join("java")
}

/// `$CARGO_TARGET_DIR/tmp` (default `<workspace>/target/tmp`), created if needed.
pub fn target_tmp() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| {
            if p.is_relative() {
                workspace_root().join(p)
            } else {
                p
            }
        })
        .unwrap_or_else(|| workspace_root().join("target"));
    let dir = target.join("tmp");
    let _ = fs::create_dir_all(&dir);
    dir
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("JAVA_HOME") {
        let p = Path::new(&home).join("bin").join(program);
        if p.is_file() {
            return Some(p);
        }
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

static RUN_COUNTER: AtomicU32 = AtomicU32::new(0);

/// One installed Java Dubbo release with everything needed to compile and run peers.
#[derive(Debug, Clone)]
pub struct JavaDubbo {
    version: DubboVersion,
    dir: PathBuf,
    classpath: Vec<PathBuf>,
    java: PathBuf,
    javac: PathBuf,
}

impl JavaDubbo {
    /// Finds `version`: its jar directory (`RDUBBO_JAVA_DUBBO_DIR` / `RDUBBO_JAVA_DUBBO3_DIR`,
    /// else `../shared/java-dubbo` / `../shared/java-dubbo3` beside the workspace), the
    /// Debian jars of its classpath, `java` and `javac`. When anything is missing it prints
    /// a loud `SKIPPED: …` line to stderr and returns `None` (or panics when
    /// `RDUBBO_REQUIRE_JAVA` is set to a non-empty value other than `0`).
    pub fn find(version: DubboVersion) -> Option<JavaDubbo> {
        let dir = std::env::var_os(version.env_var())
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                workspace_root()
                    .join("..")
                    .join("shared")
                    .join(version.default_dir_name())
            });
        let dir = dir.canonicalize().unwrap_or(dir);
        match Self::probe(version, &dir) {
            Ok(found) => Some(found),
            Err(reason) => {
                let msg = format!(
                    "SKIPPED: {version} not found at {}: {reason}",
                    dir.display()
                );
                let require = std::env::var("RDUBBO_REQUIRE_JAVA").unwrap_or_default();
                if !require.is_empty() && require != "0" {
                    panic!("{msg} (RDUBBO_REQUIRE_JAVA is set)");
                }
                let bar = "!".repeat(78);
                eprintln!("{bar}\n!! {msg}\n!! interop tests against {version} do NOT run\n{bar}");
                None
            }
        }
    }

    fn probe(version: DubboVersion, dir: &Path) -> Result<JavaDubbo, String> {
        let jar = dir.join(version.jar_name());
        if !jar.is_file() {
            return Err(format!(
                "{} is missing (set {} to the directory holding it)",
                jar.display(),
                version.env_var()
            ));
        }
        let java = find_in_path("java")
            .ok_or_else(|| format!("no `java` on PATH (install it: {})", version.apt_line()))?;
        let javac = find_in_path("javac")
            .ok_or_else(|| format!("no `javac` on PATH (install it: {})", version.apt_line()))?;
        let mut classpath = vec![jar];
        let mut missing = Vec::new();
        for dep in version.deps() {
            let p = Path::new(DEBIAN_JAVA_DIR).join(format!("{dep}.jar"));
            if p.exists() {
                classpath.push(p);
            } else {
                missing.push(p.display().to_string());
            }
        }
        if !missing.is_empty() {
            return Err(format!(
                "classpath jars missing: {} (install them: {})",
                missing.join(", "),
                version.apt_line()
            ));
        }
        Ok(JavaDubbo {
            version,
            dir: dir.to_path_buf(),
            classpath,
            java,
            javac,
        })
    }

    /// The version found.
    pub fn version(&self) -> DubboVersion {
        self.version
    }

    /// The directory holding the Dubbo jar, its README.md and `log4j.properties`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The Dubbo jar followed by its Debian dependencies.
    pub fn classpath(&self) -> &[PathBuf] {
        &self.classpath
    }

    fn classpath_with(&self, classes: &Path) -> String {
        std::iter::once(classes)
            .chain(self.classpath.iter().map(PathBuf::as_path))
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(":")
    }

    /// Compiles every `.java` file under `sources` (recursively) against this version and
    /// copies the other files (resources such as `security/serialize.allowlist`) beside the
    /// classes. The result is cached in `target/tmp/java-peer-<version>-<hash>/`, the hash
    /// covering the sources' paths and contents and the Dubbo jar; concurrent callers (threads
    /// or processes) are safe: each compiles into a private directory that is renamed into
    /// place atomically. Returns the class directory; panics with javac's output on errors.
    pub fn compile(&self, sources: &Path) -> PathBuf {
        static LOCK: Mutex<()> = Mutex::new(());
        let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());

        let mut files = Vec::new();
        collect_files(sources, sources, &mut files);
        files.sort();
        assert!(
            files.iter().any(|f| is_java(f)),
            "no .java files under {}",
            sources.display()
        );

        let mut hash = Fnv::new();
        hash.write_str(self.version.label());
        for cp in &self.classpath[..1] {
            hash.write_str(&cp.display().to_string());
            if let Ok(meta) = fs::metadata(cp) {
                hash.write_u64(meta.len());
                if let Ok(t) = meta.modified() {
                    let since = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                    hash.write_u64(since.as_nanos() as u64);
                }
            }
        }
        for rel in &files {
            hash.write_str(&rel.display().to_string());
            let bytes = fs::read(sources.join(rel))
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", sources.join(rel).display()));
            hash.write_u64(bytes.len() as u64);
            hash.write(&bytes);
        }
        let out = target_tmp().join(format!(
            "java-peer-{}-{:016x}",
            self.version.label(),
            hash.finish()
        ));
        if out.join(".complete").is_file() {
            return out;
        }

        let staging = target_tmp().join(format!(
            ".java-peer-staging-{}-{}",
            std::process::id(),
            RUN_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&staging);
        fs::create_dir_all(&staging).expect("cannot create the javac output directory");
        let java_files: Vec<PathBuf> = files
            .iter()
            .filter(|f| is_java(f))
            .map(|f| sources.join(f))
            .collect();
        let cp = self
            .classpath
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(":");
        let started = Instant::now();
        let result = Command::new(&self.javac)
            .args(["-nowarn", "-proc:none", "-encoding", "UTF-8", "-g", "-d"])
            .arg(&staging)
            .arg("-cp")
            .arg(&cp)
            .args(&java_files)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.javac.display()));
        if !result.status.success() {
            let _ = fs::remove_dir_all(&staging);
            panic!(
                "javac failed for {} against {}:\n{}{}",
                sources.display(),
                self.version,
                String::from_utf8_lossy(&result.stdout),
                String::from_utf8_lossy(&result.stderr)
            );
        }
        for rel in files.iter().filter(|f| !is_java(f)) {
            let dest = staging.join(rel);
            if let Some(parent) = dest.parent() {
                fs::create_dir_all(parent).expect("cannot create a resource directory");
            }
            fs::copy(sources.join(rel), &dest)
                .unwrap_or_else(|e| panic!("cannot copy resource {}: {e}", rel.display()));
        }
        File::create(staging.join(".complete")).expect("cannot mark the class directory");
        if fs::rename(&staging, &out).is_err() {
            // Another process won the race (the target exists and is not empty); use theirs.
            let _ = fs::remove_dir_all(&staging);
            assert!(
                out.join(".complete").is_file(),
                "cannot move compiled classes into {}",
                out.display()
            );
        } else {
            eprintln!(
                "compiled {} Java sources for {} into {} in {:.1?}",
                java_files.len(),
                self.version,
                out.display(),
                started.elapsed()
            );
        }
        out
    }

    /// A `java` command running `main_class` (e.g. `com.example.JavaProvider`) with
    /// `classes` plus the full Dubbo classpath, the JVM flags (`-Xmx256m -XX:+UseSerialGC
    /// -XX:TieredStopAtLevel=1`, the `--add-opens` list), log4j 1.2 configured from the jar
    /// directory's `log4j.properties`, and `user.home` and the working directory set to a
    /// fresh scratch directory under `target/tmp/java-run/` (Dubbo's cache files go there).
    /// Standard input is null.
    pub fn command(&self, classes: &Path, main_class: &str) -> Command {
        let run_dir = self.run_dir(main_class);
        self.command_in(classes, main_class, &run_dir)
    }

    fn run_dir(&self, main_class: &str) -> PathBuf {
        static PRUNE: std::sync::Once = std::sync::Once::new();
        let runs = target_tmp().join("java-run");
        // Logs of earlier runs stay for debugging, but not forever.
        PRUNE.call_once(|| prune_older_than(&runs, Duration::from_secs(24 * 3600)));
        let short = main_class.rsplit('.').next().unwrap_or(main_class);
        let dir = runs.join(format!(
            "{}-{short}-{}-{}",
            self.version.label(),
            std::process::id(),
            RUN_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("cannot create a Java run directory");
        dir
    }

    fn command_in(&self, classes: &Path, main_class: &str, run_dir: &Path) -> Command {
        let mut cmd = Command::new(&self.java);
        cmd.args(JVM_FLAGS);
        for p in ADD_OPENS {
            cmd.arg("--add-opens")
                .arg(format!("java.base/{p}=ALL-UNNAMED"));
        }
        cmd.arg(format!(
            "-Dlog4j.configuration=file:{}",
            self.dir.join("log4j.properties").display()
        ))
        .arg("-Ddubbo.application.logger=log4j")
        .arg(format!("-Duser.home={}", run_dir.display()))
        .arg("-cp")
        .arg(self.classpath_with(classes))
        .arg(main_class)
        .current_dir(run_dir)
        .stdin(Stdio::null());
        cmd
    }

    /// Starts `com.example.JavaProvider --port <port> --exit-on-stdin-eof <extra_args…>`
    /// and waits (at most [`PROVIDER_START_TIMEOUT`]) for its `READY <port>` line. Its
    /// standard output and error go to a log file under `target/tmp/java-run/`; on failure
    /// this panics with the log. The returned guard kills the JVM (by PID) when dropped;
    /// the provider also exits when the test process dies (its stdin closes).
    pub fn spawn_provider(&self, classes: &Path, port: u16, extra_args: &[&str]) -> JavaProcess {
        let run_dir = self.run_dir("JavaProvider");
        let log_path = run_dir.join("output.log");
        let log = Arc::new(Mutex::new(
            File::create(&log_path).expect("cannot create the provider log"),
        ));
        let mut cmd = self.command_in(classes, "com.example.JavaProvider", &run_dir);
        cmd.arg("--port")
            .arg(port.to_string())
            .arg("--exit-on-stdin-eof")
            .args(extra_args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        write_header(&log, &cmd);
        let mut guard = ChildGuard::spawn(&mut cmd)
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.java.display()));
        let stdin = guard.0.stdin.take();
        let (ready_tx, ready_rx) = mpsc::channel::<String>();
        tee(
            guard.0.stdout.take().expect("piped stdout"),
            log.clone(),
            None,
            Some(ready_tx),
        );
        tee(
            guard.0.stderr.take().expect("piped stderr"),
            log,
            None,
            None,
        );

        let deadline = Instant::now() + PROVIDER_START_TIMEOUT;
        let expected = format!("READY {port}");
        loop {
            match ready_rx.recv_timeout(Duration::from_millis(200)) {
                Ok(line) if line.trim() == expected => break,
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = guard.0.wait().ok();
                    drop(guard);
                    panic!(
                        "{} JavaProvider exited before READY ({status:?}); log {}:\n{}",
                        self.version,
                        log_path.display(),
                        read_log(&log_path)
                    );
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(Some(status)) = guard.0.try_wait() {
                        std::thread::sleep(Duration::from_millis(200));
                        drop(guard);
                        panic!(
                            "{} JavaProvider exited before READY ({status}); log {}:\n{}",
                            self.version,
                            log_path.display(),
                            read_log(&log_path)
                        );
                    }
                    if Instant::now() > deadline {
                        drop(guard);
                        panic!(
                            "{} JavaProvider printed no `{expected}` within {:?}; log {}:\n{}",
                            self.version,
                            PROVIDER_START_TIMEOUT,
                            log_path.display(),
                            read_log(&log_path)
                        );
                    }
                }
            }
        }
        JavaProcess {
            child: guard,
            _stdin: stdin,
            port,
            log: log_path,
        }
    }

    /// Runs `com.example.JavaConsumer <args…>` to completion, killing it (by PID) after
    /// `timeout`. Its standard output is returned and, with standard error, also written to
    /// a log file under `target/tmp/java-run/`.
    pub fn run_consumer(&self, classes: &Path, args: &[&str], timeout: Duration) -> ConsumerOutput {
        let run_dir = self.run_dir("JavaConsumer");
        let log_path = run_dir.join("output.log");
        let log = Arc::new(Mutex::new(
            File::create(&log_path).expect("cannot create the consumer log"),
        ));
        let mut cmd = self.command_in(classes, "com.example.JavaConsumer", &run_dir);
        cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        write_header(&log, &cmd);
        let mut guard = ChildGuard::spawn(&mut cmd)
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.java.display()));
        let stdout_text = Arc::new(Mutex::new(String::new()));
        let out_done = tee(
            guard.0.stdout.take().expect("piped stdout"),
            log.clone(),
            Some(stdout_text.clone()),
            None,
        );
        let err_done = tee(
            guard.0.stderr.take().expect("piped stderr"),
            log.clone(),
            None,
            None,
        );

        let deadline = Instant::now() + timeout;
        let (status_ok, timed_out) = loop {
            match guard.0.try_wait() {
                Ok(Some(status)) => break (status.success(), false),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Ok(None) => {
                    let _ = guard.0.kill();
                    let _ = guard.0.wait();
                    break (false, true);
                }
                Err(e) => panic!("cannot wait for the Java consumer: {e}"),
            }
        };
        // The pipes close when the JVM is gone; wait for the copies to finish.
        let _ = out_done.recv_timeout(Duration::from_secs(5));
        let _ = err_done.recv_timeout(Duration::from_secs(5));
        drop(guard);
        let mut stdout = stdout_text
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if timed_out {
            let note = format!("TIMEOUT: JavaConsumer killed after {timeout:?}\n");
            if let Ok(mut f) = log.lock() {
                let _ = f.write_all(note.as_bytes());
            }
            stdout.push_str(&note);
        }
        ConsumerOutput {
            status_ok,
            stdout,
            log: log_path,
        }
    }
}

/// A running Java peer; killed by PID when dropped.
pub struct JavaProcess {
    child: ChildGuard,
    _stdin: Option<std::process::ChildStdin>,
    port: u16,
    log: PathBuf,
}

impl JavaProcess {
    /// The port the provider serves dubbo:// on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The JVM's process id.
    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// The file receiving the process's standard output and error.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// What the process has logged so far.
    pub fn log(&self) -> String {
        read_log(&self.log)
    }

    /// Whether the JVM still runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.0.try_wait(), Ok(None))
    }
}

impl std::fmt::Debug for JavaProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JavaProcess")
            .field("pid", &self.pid())
            .field("port", &self.port)
            .field("log", &self.log)
            .finish()
    }
}

/// What a [`JavaDubbo::run_consumer`] run produced.
#[derive(Debug, Clone)]
pub struct ConsumerOutput {
    /// The JVM exited with status 0 (and was not killed for its timeout).
    pub status_ok: bool,
    /// Everything it printed on standard output.
    pub stdout: String,
    /// The log file with standard output and error.
    pub log: PathBuf,
}

impl ConsumerOutput {
    /// The `FAIL …` lines (including `FAIL startup: …`) and a `TIMEOUT` note, if any.
    pub fn failures(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .filter(|l| l.starts_with("FAIL") || l.starts_with("TIMEOUT"))
            .collect()
    }

    /// The names of the passed checks (`ok <name> …`).
    pub fn passed(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .filter_map(|l| l.strip_prefix("ok "))
            .map(|l| l.split(' ').next().unwrap_or(l))
            .collect()
    }

    /// The `BENCH …` line's `key=value` fields, if the run printed one.
    pub fn bench(&self) -> Option<Vec<(String, String)>> {
        let line = self.stdout.lines().find(|l| l.starts_with("BENCH "))?;
        Some(
            line.split_whitespace()
                .skip(1)
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }

    /// Panics (with the output, the failures and the full log) unless the run succeeded
    /// without `FAIL` lines.
    pub fn assert_ok(&self, what: &str) {
        let failures = self.failures();
        if !self.status_ok || !failures.is_empty() {
            panic!(
                "{what} failed ({} FAIL lines, status ok: {}):\n{}\n--- stdout ---\n{}\n--- log {} ---\n{}",
                failures.len(),
                self.status_ok,
                failures.join("\n"),
                self.stdout,
                self.log.display(),
                read_log(&self.log)
            );
        }
    }
}

fn is_java(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "java")
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    let entries =
        fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            collect_files(root, &path, out);
        } else if kind.is_file() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            // Editor and OS droppings are neither sources nor resources.
            if name.starts_with('.') || name.ends_with('~') || name.ends_with(".class") {
                continue;
            }
            out.push(path.strip_prefix(root).expect("under root").to_path_buf());
        }
    }
}

fn prune_older_than(dir: &Path, age: Duration) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|elapsed| elapsed > age);
        if old {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

fn write_header(log: &Arc<Mutex<File>>, cmd: &Command) {
    if let Ok(mut f) = log.lock() {
        let _ = writeln!(f, "$ {cmd:?}\n");
    }
}

/// Copies `from` line by line into `log` (and `text`, and each line to `lines`) on a
/// thread; the returned channel closes (or receives `()`) when `from` reaches EOF.
fn tee(
    from: impl Read + Send + 'static,
    log: Arc<Mutex<File>>,
    text: Option<Arc<Mutex<String>>>,
    lines: Option<mpsc::Sender<String>>,
) -> mpsc::Receiver<()> {
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(from);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let line = String::from_utf8_lossy(&buf).into_owned();
            if let Ok(mut f) = log.lock() {
                let _ = f.write_all(line.as_bytes());
                let _ = f.flush();
            }
            if let Some(text) = &text {
                text.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push_str(&line);
            }
            if let Some(lines) = &lines {
                let _ = lines.send(line.trim_end().to_owned());
            }
        }
        let _ = done_tx.send(());
    });
    done_rx
}

fn read_log(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut f) = OpenOptions::new().read(true).open(path) {
        let mut bytes = Vec::new();
        let _ = f.read_to_end(&mut bytes);
        text = String::from_utf8_lossy(&bytes).into_owned();
    }
    text
}

/// FNV-1a, 64 bit: stable across Rust releases, unlike `DefaultHasher`.
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn write_str(&mut self, s: &str) {
        self.write_u64(s.len() as u64);
        self.write(s.as_bytes());
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}
