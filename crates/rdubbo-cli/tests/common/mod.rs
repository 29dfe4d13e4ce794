//! What every test of the `rdubbo` command needs.
#![allow(dead_code)] // each test file compiles this module and uses part of it

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `rdubbo` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_rdubbo");

/// A child process killed (by its PID) on drop, so a failing test leaves nothing behind.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `rdubbo <args>` to completion.
pub fn rdubbo(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run rdubbo")
}

/// Output bytes as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Starts `rdubbo <args>` and reads stdout until a line starting with `until`; returns
/// the process and the lines read.
pub fn start(args: &[&str], until: &str) -> (Running, Vec<String>) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn rdubbo");
    let stdout = child.stdout.take().expect("stdout");
    let running = Running(child);
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.expect("read output");
        let done = line.starts_with(until);
        seen.push(line);
        if done {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    assert!(
        seen.last().is_some_and(|l| l.starts_with(until)),
        "{seen:?}"
    );
    (running, seen)
}

/// Starts `rdubbo demo provider --listen 127.0.0.1:0 <args…>` (a port it binds itself) and
/// reads its output up to a line starting with `until`, as [`start`].
pub fn start_demo_provider(args: &[&str], until: &str) -> (Running, Vec<String>) {
    let mut all = vec!["demo", "provider", "--listen", "127.0.0.1:0"];
    all.extend_from_slice(args);
    start(&all, until)
}

/// Starts `rdubbo demo provider --protocol <protocol>` on a port of its own and returns it
/// with the URL of its first line, `serving <url>`.
pub fn serve_demo(protocol: &str) -> (Running, String) {
    let (running, lines) = start_demo_provider(&["--protocol", protocol], "serving ");
    assert_eq!(lines.len(), 1, "unexpected provider output {lines:?}");
    (running, serving(&lines).remove(0))
}

/// Starts `rdubbo demo provider <args…>` registered at `registry` (it unregisters 0.2 s
/// before it stops) and waits until it says it has registered.
pub fn start_registered_demo(args: &[&str], registry: &str) -> (Running, Vec<String>) {
    let mut all = args.to_vec();
    all.extend_from_slice(&["--registry", registry, "--unregister-wait", "0.2"]);
    start_demo_provider(&all, "registered in ")
}

/// The URLs of the `serving <url>` lines a provider printed.
pub fn serving(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("serving ").map(str::to_owned))
        .collect()
}

/// The port of a `<scheme>://127.0.0.1:<port>/…` URL.
pub fn port_of(url: &str) -> String {
    url.split_once("://127.0.0.1:")
        .and_then(|(_, rest)| rest.split('/').next())
        .unwrap_or_else(|| panic!("not a 127.0.0.1 URL: {url}"))
        .to_owned()
}

/// Starts `rdubbo registry <args…>` and returns it with the address it serves on (from
/// its first line, `… nacos://<addr> …`), once it has printed its `data:` line.
pub fn start_rdubbo_registry(args: &[&str]) -> (Running, String) {
    let mut all = vec!["registry"];
    all.extend_from_slice(args);
    let (registry, lines) = start(&all, "data:");
    let addr = lines[0]
        .split("nacos://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no nacos:// address in {lines:?}"))
        .to_owned();
    (registry, addr)
}

/// Sends SIGTERM and waits (up to 15 s) for a successful exit.
pub fn stop(mut p: Running) {
    // SAFETY: kill(2) on the PID of a child we started and have not reaped.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(p.0.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = p.0.try_wait().unwrap() {
            assert!(status.success(), "{status:?}");
            return;
        }
        assert!(Instant::now() < deadline, "did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One HTTP/1.1 request; the status and the body.
pub fn http(addr: &str, method: &str, target: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (
        status,
        out.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default(),
    )
}
