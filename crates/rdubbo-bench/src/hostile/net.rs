//! Raw wire helpers of the hostile soak: a minimal HTTP/1.1 client (keep-alive, chunked or
//! sized bodies, optional source address), Dubbo request frames written by hand, and the
//! process helpers (RSS of a PID, RLIMIT_NOFILE).
#![allow(unsafe_code)] // kill and setrlimit through libc

use std::net::{IpAddr, SocketAddr};

use anyhow::{bail, Context, Result};
use rdubbo::dubbo::codec::{self, FLAG_REQUEST, FLAG_TWO_WAY, HESSIAN2};
use rdubbo::hessian::Encoder;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

/// The demo service of `rdubbo demo provider`.
pub const IFACE: &str = "org.apache.dubbo.demo.DemoService";

/// A TCP connection to `addr`, from `source` when given (another loopback address lets a
/// legit client stand apart from the attacker in per-address limits). `recv_buf` shrinks
/// the receive buffer (a client that never reads fills it sooner).
pub async fn connect(
    addr: SocketAddr,
    source: Option<IpAddr>,
    recv_buf: Option<u32>,
) -> Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if let Some(size) = recv_buf {
        socket.set_recv_buffer_size(size)?;
    }
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    Ok(socket.connect(addr).await?)
}

/// One HTTP/1.1 connection, reused for successive requests.
pub struct HttpConn {
    r: BufReader<TcpStream>,
    host: String,
}

impl HttpConn {
    /// Connects to `addr` (from `source` when given).
    pub async fn connect(addr: SocketAddr, source: Option<IpAddr>) -> Result<HttpConn> {
        let stream = connect(addr, source, None).await?;
        stream.set_nodelay(true)?;
        Ok(HttpConn {
            r: BufReader::new(stream),
            host: addr.to_string(),
        })
    }

    /// Sends a request and reads the whole answer: status and body.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<(u16, Vec<u8>)> {
        let mut out = Vec::new();
        let status = self.exchange(method, path, body, Some(&mut out)).await?;
        Ok((status, out))
    }

    /// Sends a request and reads the answer, counting its body bytes without keeping them.
    pub async fn request_discard(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<(u16, u64)> {
        let mut n = 0u64;
        let status = self.exchange_counted(method, path, body, &mut n).await?;
        Ok((status, n))
    }

    async fn exchange(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
        out: Option<&mut Vec<u8>>,
    ) -> Result<u16> {
        let mut n = 0;
        let mut sink = out;
        self.write_request(method, path, body).await?;
        let (status, framing) = self.read_head().await?;
        self.read_body(framing, &mut n, &mut sink).await?;
        Ok(status)
    }

    async fn exchange_counted(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
        n: &mut u64,
    ) -> Result<u16> {
        self.write_request(method, path, body).await?;
        let (status, framing) = self.read_head().await?;
        self.read_body(framing, n, &mut None).await?;
        Ok(status)
    }

    async fn write_request(&mut self, method: &str, path: &str, body: &[u8]) -> Result<()> {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.host).into_bytes();
        if !body.is_empty() || method == "POST" || method == "PUT" {
            let kind = if body.first() == Some(&b'[') || body.first() == Some(&b'{') {
                "application/json"
            } else {
                "application/x-www-form-urlencoded"
            };
            req.extend(
                format!("Content-Type: {kind}\r\nContent-Length: {}\r\n", body.len()).bytes(),
            );
        }
        req.extend(b"\r\n");
        req.extend_from_slice(body);
        self.r.get_mut().write_all(&req).await?;
        Ok(())
    }

    async fn read_head(&mut self) -> Result<(u16, Framing)> {
        let mut line = String::new();
        if self.r.read_line(&mut line).await? == 0 {
            bail!("connection closed before an answer");
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("bad status line {line:?}"))?;
        let mut framing = Framing::ToEof;
        loop {
            line.clear();
            if self.r.read_line(&mut line).await? == 0 {
                bail!("connection closed in the headers");
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
                if k == "content-length" {
                    framing = Framing::Length(v.parse().context("bad content-length")?);
                } else if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
                    framing = Framing::Chunked;
                }
            }
        }
        Ok((status, framing))
    }

    async fn read_body(
        &mut self,
        framing: Framing,
        n: &mut u64,
        sink: &mut Option<&mut Vec<u8>>,
    ) -> Result<()> {
        match framing {
            Framing::Length(len) => self.read_exact_into(len, n, sink).await,
            Framing::ToEof => {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let got = self.r.read(&mut buf).await?;
                    if got == 0 {
                        return Ok(());
                    }
                    *n += got as u64;
                    if let Some(out) = sink {
                        out.extend_from_slice(&buf[..got]);
                    }
                }
            }
            Framing::Chunked => loop {
                let mut line = String::new();
                self.r.read_line(&mut line).await?;
                let size = u64::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .with_context(|| format!("bad chunk size {line:?}"))?;
                if size == 0 {
                    // Trailers, then the empty line.
                    loop {
                        line.clear();
                        if self.r.read_line(&mut line).await? == 0 || line.trim().is_empty() {
                            return Ok(());
                        }
                    }
                }
                self.read_exact_into(size, n, sink).await?;
                line.clear();
                self.r.read_line(&mut line).await?;
            },
        }
    }

    async fn read_exact_into(
        &mut self,
        mut len: u64,
        n: &mut u64,
        sink: &mut Option<&mut Vec<u8>>,
    ) -> Result<()> {
        let mut buf = vec![0u8; 64 * 1024];
        while len > 0 {
            let want = len.min(buf.len() as u64) as usize;
            let got = self.r.read(&mut buf[..want]).await?;
            if got == 0 {
                bail!("connection closed in the body");
            }
            len -= got as u64;
            *n += got as u64;
            if let Some(out) = sink {
                out.extend_from_slice(&buf[..got]);
            }
        }
        Ok(())
    }
}

enum Framing {
    Length(u64),
    Chunked,
    ToEof,
}

/// `echo(<string of len characters>)` as a Dubbo client sends it.
pub fn echo_request(id: i64, len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let start = codec::begin_frame(&mut out, FLAG_REQUEST | FLAG_TWO_WAY | HESSIAN2, 0, id);
    let mut e = Encoder::with_buffer(out);
    e.write_str(codec::DUBBO_VERSION);
    e.write_str(IFACE);
    e.write_str("1.0.0");
    e.write_str("echo");
    e.write_str("Ljava/lang/Object;");
    e.write_str(&"x".repeat(len));
    attachments(&mut e);
    let mut out = e.into_bytes();
    codec::finish_frame(&mut out, start);
    out
}

/// `echo(list)` where the list is one inner list of `inner` strings followed by `refs`
/// references to it: a few bytes per reference on the wire, `inner` values each if copied.
pub fn shared_ref_request(id: i64, refs: usize, inner: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let start = codec::begin_frame(&mut out, FLAG_REQUEST | FLAG_TWO_WAY | HESSIAN2, 0, id);
    let mut e = Encoder::with_buffer(out);
    e.write_str(codec::DUBBO_VERSION);
    e.write_str(IFACE);
    e.write_str("1.0.0");
    e.write_str("echo");
    e.write_str("Ljava/lang/Object;");
    e.write_list_begin(refs + 1, None); // reference 0
    e.write_list_begin(inner, None); // reference 1
    for i in 0..inner {
        e.write_str(&format!("shared-string-{i:08}"));
    }
    for _ in 0..refs {
        e.write_ref(1);
    }
    attachments(&mut e);
    let mut out = e.into_bytes();
    codec::finish_frame(&mut out, start);
    out
}

fn attachments(e: &mut Encoder) {
    e.write_map_begin(None);
    for (k, v) in [("path", IFACE), ("interface", IFACE), ("version", "1.0.0")] {
        e.write_str(k);
        e.write_str(v);
    }
    e.write_end();
}

/// A Dubbo heartbeat request.
pub fn heartbeat(id: i64) -> Vec<u8> {
    codec::heartbeat_request(id)
}

/// Resident memory of process `pid` in KiB; `None` once it is gone.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Sends `signal` to process `pid` (a child this program started).
pub fn signal(pid: u32, signal: i32) {
    if pid == 0 {
        return;
    }
    // SAFETY: kill has no memory-safety preconditions; pid is one of our children.
    unsafe { libc::kill(pid as libc::pid_t, signal) };
}

/// Raises this process's soft RLIMIT_NOFILE to its hard limit; returns the new soft limit.
/// Children started afterwards inherit it.
pub fn raise_nofile() -> u64 {
    // SAFETY: `rlimit` is two integers, for which all-zero bytes are a valid value.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 1024;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return raised.rlim_cur;
        }
    }
    lim.rlim_cur
}
