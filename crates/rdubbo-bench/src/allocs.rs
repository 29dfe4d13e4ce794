//! `alloc-bench`: heap allocations per Dubbo call, client and server side, counted by a
//! counting global allocator.
//!
//! Client and server run in one process on two threads, each with a current-thread tokio
//! runtime of its own, so every allocation is charged to the side whose thread made it. Calls
//! are typed (`#[rdubbo::service]` stubs and dispatchers) over loopback: a string echo
//! (`EchoService.echo("hello, rdubbo")`) and the interop POJO echo (`UserService.echoUser`
//! of `sample(7)`), one at a time and with 64 in flight.
//!
//! ```sh
//! cargo run --release -p rdubbo-bench --bin alloc-bench -- --calls 20000
//! ```

mod services;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, Result};
use clap::Parser;
use rdubbo::dubbo::DubboClient;
use rdubbo::Url;
use services::user_service::{sample, UserServiceClient};
use services::EchoServiceClient;

struct Counter {
    allocs: AtomicU64,
    reallocs: AtomicU64,
    bytes: AtomicU64,
}

const ROLES: usize = 3;
const OTHER: usize = 0;
const SERVER: usize = 1;
const CLIENT: usize = 2;

static COUNTS: [Counter; ROLES] = [const {
    Counter {
        allocs: AtomicU64::new(0),
        reallocs: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
    }
}; ROLES];

thread_local! {
    static ROLE: Cell<usize> = const { Cell::new(OTHER) };
    /// Set while a backtrace is being taken (its own allocations are not traced).
    static IN_TRACE: Cell<bool> = const { Cell::new(false) };
}

/// Whether to take a backtrace of every allocation (`--trace`: one call of each case).
static TRACING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static TRACES: std::sync::Mutex<Vec<(usize, String)>> = std::sync::Mutex::new(Vec::new());

fn trace(size: usize) {
    if !TRACING.load(Ordering::Relaxed) || IN_TRACE.with(Cell::get) {
        return;
    }
    IN_TRACE.with(|t| t.set(true));
    let bt = std::backtrace::Backtrace::force_capture().to_string();
    let frames: Vec<&str> = bt
        .lines()
        .filter(|l| !l.trim_start().starts_with("at "))
        .filter(|l| {
            !l.contains("alloc::") && !l.contains("allocs::") && !l.contains("std::backtrace")
        })
        .take(8)
        .collect();
    let side = ["other", "server", "client"][role()];
    let text = format!("[{side}] {size} bytes\n{}", frames.join("\n"));
    TRACES.lock().unwrap().push((size, text));
    IN_TRACE.with(|t| t.set(false));
}

fn role() -> usize {
    ROLE.try_with(Cell::get).unwrap_or(OTHER)
}

/// The system allocator, counting allocations per role of the calling thread.
struct Counting;

// A counting global allocator cannot be written without `unsafe`.
#[allow(unsafe_code)]
// SAFETY: every method forwards to the system allocator with the same arguments.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        trace(layout.size());
        let c = &COUNTS[role()];
        c.allocs.fetch_add(1, Ordering::Relaxed);
        c.bytes.fetch_add(layout.size() as u64, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let c = &COUNTS[role()];
        c.allocs.fetch_add(1, Ordering::Relaxed);
        c.bytes.fetch_add(layout.size() as u64, Ordering::Relaxed);
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        trace(new_size);
        let c = &COUNTS[role()];
        c.reallocs.fetch_add(1, Ordering::Relaxed);
        c.bytes.fetch_add(
            new_size.saturating_sub(layout.size()) as u64,
            Ordering::Relaxed,
        );
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[derive(Clone, Copy, Default)]
struct Snapshot([[u64; 3]; ROLES]);

fn snapshot() -> Snapshot {
    let mut s = Snapshot::default();
    for (i, c) in COUNTS.iter().enumerate() {
        s.0[i] = [
            c.allocs.load(Ordering::Relaxed),
            c.reallocs.load(Ordering::Relaxed),
            c.bytes.load(Ordering::Relaxed),
        ];
    }
    s
}

#[derive(Parser)]
#[command(about = "Heap allocations per typed Dubbo call, client and server side")]
struct Args {
    /// Calls measured per case (after a tenth as many for warm-up).
    #[arg(long, default_value_t = 20000)]
    calls: u64,
    /// Calls in flight in the concurrent cases.
    #[arg(long, default_value_t = 64)]
    inflight: u64,
    /// Print a backtrace of every allocation of one serial call of each case instead.
    #[arg(long)]
    trace: bool,
}

#[derive(Clone, Copy)]
enum Case {
    Echo,
    Pojo,
}

async fn one_call(case: Case, echo: &EchoServiceClient, users: &UserServiceClient) -> Result<()> {
    match case {
        Case::Echo => {
            let back = echo.echo(String::from("hello, rdubbo")).await?;
            anyhow::ensure!(back.len() == 13, "wrong echo");
        }
        Case::Pojo => {
            let back = users.echo_user(sample(7)).await?;
            anyhow::ensure!(back.age == 7, "wrong user");
        }
    }
    Ok(())
}

async fn run_calls(
    case: Case,
    echo: &EchoServiceClient,
    users: &UserServiceClient,
    calls: u64,
    inflight: u64,
) -> Result<()> {
    if inflight <= 1 {
        for _ in 0..calls {
            one_call(case, echo, users).await?;
        }
        return Ok(());
    }
    let mut tasks = Vec::new();
    for t in 0..inflight {
        let (echo, users) = (echo.clone(), users.clone());
        let n = calls / inflight + u64::from(t < calls % inflight);
        tasks.push(tokio::spawn(async move {
            for _ in 0..n {
                one_call(case, &echo, &users).await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || -> Result<()> {
        ROLE.with(|r| r.set(SERVER));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let server = services::dubbo_provider("127.0.0.1:0".parse()?).await?;
            addr_tx.send(server.local_addr())?;
            let _ = stop_rx.await;
            server.shutdown(std::time::Duration::from_millis(100)).await;
            anyhow::Ok(())
        })
    });
    let addr = addr_rx.recv()?;

    ROLE.with(|r| r.set(CLIENT));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let rows = rt.block_on(async {
        let echo_url: Url =
            format!("dubbo://{addr}/org.apache.dubbo.demo.EchoService?timeout=10000").parse()?;
        let user_url: Url =
            format!("dubbo://{addr}/com.example.UserService?timeout=10000").parse()?;
        let echo = EchoServiceClient::new(Arc::new(DubboClient::new(&echo_url)?));
        let users = UserServiceClient::new(Arc::new(DubboClient::new(&user_url)?));
        if args.trace {
            for case in [Case::Echo, Case::Pojo] {
                run_calls(case, &echo, &users, 100, 1).await?;
                TRACING.store(true, Ordering::SeqCst);
                run_calls(case, &echo, &users, 1, 1).await?;
                TRACING.store(false, Ordering::SeqCst);
                let traces = std::mem::take(&mut *TRACES.lock().unwrap());
                println!("==== {} allocations in one call", traces.len());
                for (_, t) in traces {
                    println!("{t}\n");
                }
            }
            return anyhow::Ok(Vec::new());
        }
        let mut rows = Vec::new();
        for (name, case, inflight) in [
            ("string echo, serial", Case::Echo, 1),
            ("POJO echoUser, serial", Case::Pojo, 1),
            ("string echo, in flight", Case::Echo, args.inflight),
            ("POJO echoUser, in flight", Case::Pojo, args.inflight),
        ] {
            run_calls(case, &echo, &users, args.calls / 10, inflight).await?;
            let before = snapshot();
            run_calls(case, &echo, &users, args.calls, inflight).await?;
            let after = snapshot();
            let per = |role: usize, k: usize| {
                (after.0[role][k] - before.0[role][k]) as f64 / args.calls as f64
            };
            let name = if inflight > 1 {
                name.replace("in flight", &format!("{inflight} in flight"))
            } else {
                name.to_string()
            };
            rows.push((
                name,
                [per(CLIENT, 0), per(CLIENT, 1), per(CLIENT, 2)],
                [per(SERVER, 0), per(SERVER, 1), per(SERVER, 2)],
                per(OTHER, 0),
            ));
        }
        anyhow::Ok(rows)
    })?;
    let _ = stop_tx.send(());
    if args.trace {
        let _ = server.join();
        return Ok(());
    }
    server
        .join()
        .map_err(|_| anyhow!("server thread panicked"))??;

    println!(
        "\nAllocations per call ({} calls per case; client and server each on a current-thread runtime).\n",
        args.calls
    );
    println!("| call | client allocs | client reallocs | server allocs | server reallocs | both sides (allocs + reallocs) | client bytes | server bytes |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (name, c, s, other) in rows {
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {:.1} | **{:.1}** | {:.0} | {:.0} |",
            c[0],
            c[1],
            s[0],
            s[1],
            c[0] + c[1] + s[0] + s[1],
            c[2],
            s[2]
        );
        if other > 0.05 {
            eprintln!("  ({other:.2} allocations per call on other threads)");
        }
    }
    Ok(())
}
