//! The embedded naming server over its HTTP API, as any Nacos v1 client talks to it.
//!
//! `api`: the Open API calls, beats, pushes and persistence; `auth`: tokens and login
//! throttling; `limits`: hostile and heavy clients; `garbage`: any parameters, no panic;
//! `configs`: the config API (publish, get, delete, long polling, persistence).

mod api;
mod auth;
mod configs;
mod garbage;
mod limits;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use rdubbo_naming_server::{NamingServer, NamingServerConfig};
use rdubbo_registry_nacos::client::decode_push;
use rdubbo_registry_nacos::model::ServiceInfo;
use serde_json::Value;

/// One HTTP/1.1 exchange; returns (status, body).
fn http(addr: SocketAddr, method: &str, target: &str, body: &str) -> (u16, String) {
    let (status, _, body) = exchange(addr, method, target, &[], body, Duration::from_secs(10));
    (status, body)
}

/// One HTTP/1.1 exchange with extra headers, waiting at most `wait` for the answer;
/// returns (status, head, body).
fn exchange(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
    wait: Duration,
) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(wait)).unwrap();
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let req = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (status, head.to_owned(), body.to_owned())
}

/// A keep-alive HTTP/1.1 connection: many exchanges on one socket.
struct KeepAlive {
    s: TcpStream,
    buf: Vec<u8>,
}

impl KeepAlive {
    fn open(addr: SocketAddr) -> KeepAlive {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_nodelay(true).unwrap();
        KeepAlive { s, buf: Vec::new() }
    }

    /// Returns (status, body).
    fn call(&mut self, method: &str, target: &str, body: &str) -> (u16, String) {
        let req = format!(
            "{method} {target} HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.s.write_all(req.as_bytes()).unwrap();
        let mut chunk = [0u8; 65536];
        let end = loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            let n = self.s.read(&mut chunk).expect("an answer");
            assert!(n > 0, "connection closed");
            self.buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())
                    .flatten()
            })
            .expect("a content length");
        while self.buf.len() < end + 4 + len {
            let n = self.s.read(&mut chunk).expect("the body");
            assert!(n > 0, "connection closed");
            self.buf.extend_from_slice(&chunk[..n]);
        }
        let body = String::from_utf8_lossy(&self.buf[end + 4..end + 4 + len]).into_owned();
        self.buf.drain(..end + 4 + len);
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (status, body)
    }
}

/// Reads until the peer closes; returns what came and how long it took.
fn read_until_closed(s: &mut TcpStream, limit: Duration) -> (String, Duration) {
    let t = Instant::now();
    s.set_read_timeout(Some(limit)).unwrap();
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
        }
    }
    (String::from_utf8_lossy(&out).into_owned(), t.elapsed())
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn list(addr: SocketAddr, service: &str) -> ServiceInfo {
    let (status, body) = http(
        addr,
        "GET",
        &format!("/nacos/v1/ns/instance/list?serviceName={}", enc(service)),
        "",
    );
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

async fn start(config: NamingServerConfig) -> NamingServer {
    NamingServer::start(NamingServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..config
    })
    .await
    .unwrap()
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}
