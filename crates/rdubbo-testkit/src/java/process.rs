//! Running the Java peers: the `java` command line, providers waited for until ready,
//! consumers run to completion, their output teed into logs.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use crate::ChildGuard;

use super::{target_tmp, JavaDubbo, ADD_OPENS, JVM_FLAGS, PROVIDER_START_TIMEOUT, RUN_COUNTER};

impl JavaDubbo {
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

    /// [`spawn_provider`](Self::spawn_provider) of a Dubbo 3 provider (application
    /// `java-provider`) serving UserService 1.0.0 over `protocol` (`dubbo` or `tri`),
    /// registered at `registry` (a `zookeeper://` URL) by instance only — its instance
    /// under `/services` and the interface mapping, no `/dubbo/<interface>/providers` URLs
    /// — with its MetadataInfo published to the metadata center.
    pub fn spawn_instance_provider(
        &self,
        classes: &Path,
        port: u16,
        registry: &str,
        protocol: &str,
    ) -> JavaProcess {
        self.spawn_provider(
            classes,
            port,
            &[
                "--registry",
                registry,
                "--version",
                "1.0.0",
                "--register-mode",
                "instance",
                "--metadata-center",
                "--protocol",
                protocol,
            ],
        )
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
