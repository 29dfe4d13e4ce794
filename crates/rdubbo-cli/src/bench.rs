//! `rdubbo bench <provider-url>`: a bounded load generator with an HDR-histogram summary.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use rdubbo::{Invoker, RpcError};

use crate::target::{call_args, Discovery, ProvidersSeen, Target};

/// Arguments of `rdubbo bench`.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// Provider URL, e.g. jsonrpc://127.0.0.1:30880/org.apache.dubbo.demo.DemoService, or
    /// the interface name with --registry
    provider_url: String,
    /// Method to call.
    #[arg(long, default_value = "echo")]
    method: String,
    /// Arguments as a JSON array.
    #[arg(long, default_value = r#"["hello"]"#)]
    args: String,
    /// Java parameter types for dubbo://, comma-separated (as `rdubbo call --types`).
    #[arg(long, value_name = "TYPES")]
    types: Option<String>,
    /// Calls kept in flight.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Run for this many seconds (default 10 unless --calls is given).
    #[arg(long, conflicts_with = "calls")]
    duration: Option<f64>,
    /// Stop after this many calls.
    #[arg(long)]
    calls: Option<u64>,
    /// Per-call timeout in milliseconds.
    #[arg(long)]
    timeout: Option<u64>,
    #[command(flatten)]
    discovery: Discovery,
}

/// What the workers accumulate.
struct Totals {
    histogram: Histogram<u64>,
    errors: BTreeMap<String, u64>,
}

pub async fn run(args: BenchArgs) -> Result<ExitCode> {
    if args.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    let target = Target::resolve(
        &args.provider_url,
        &args.discovery,
        args.timeout.map(Duration::from_millis),
    )
    .await?;
    let result = bench(&target, &args).await;
    target.close().await;
    result
}

async fn bench(target: &Target, args: &BenchArgs) -> Result<ExitCode> {
    let call_args = Arc::new(call_args(&args.args, args.types.as_deref())?);
    let (limit, duration) = match (args.calls, args.duration) {
        (Some(n), _) => (n, Duration::from_secs(3600)),
        (None, Some(s)) if s > 0.0 && s.is_finite() => (u64::MAX, Duration::from_secs_f64(s)),
        (None, Some(s)) => bail!("--duration must be a positive number of seconds, got {s}"),
        (None, None) => (u64::MAX, Duration::from_secs(10)),
    };

    let bar = match args.calls {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::new(duration.as_millis() as u64),
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );

    let claimed = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let totals = Arc::new(Mutex::new(Totals {
        histogram: Histogram::new(3)?,
        errors: BTreeMap::new(),
    }));
    let start = Instant::now();
    let deadline = start + duration;
    let mut workers = Vec::with_capacity(args.concurrency);
    for _ in 0..args.concurrency {
        let (target, call_args, claimed, done, totals) = (
            target.clone(),
            call_args.clone(),
            claimed.clone(),
            done.clone(),
            totals.clone(),
        );
        let method = args.method.clone();
        workers.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new(3).expect("3 significant figures is valid");
            let mut errors: BTreeMap<String, u64> = BTreeMap::new();
            while Instant::now() < deadline && claimed.fetch_add(1, Ordering::Relaxed) < limit {
                let inv = target.invocation(&method, &call_args);
                let t = Instant::now();
                match target.invoker().invoke(inv).await {
                    Ok(_) => {
                        let _ = hist.record(t.elapsed().as_micros() as u64);
                    }
                    Err(e) => *errors.entry(error_kind(&e)).or_default() += 1,
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            let mut totals = totals.lock().unwrap_or_else(|p| p.into_inner());
            let _ = totals.histogram.add(&hist);
            for (k, v) in errors {
                *totals.errors.entry(k).or_default() += v;
            }
        }));
    }
    let seen = Arc::new(ProvidersSeen::default());
    let ticker = {
        let (bar, done) = (bar.clone(), done.clone());
        let (target, seen) = (target.clone(), seen.clone());
        let by_calls = args.calls.is_some();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                target.record_providers(&seen);
                let n = done.load(Ordering::Relaxed);
                let secs = start.elapsed().as_secs_f64();
                bar.set_position(if by_calls {
                    n
                } else {
                    start.elapsed().as_millis() as u64
                });
                bar.set_message(format!("{n} calls, {:.0}/s", n as f64 / secs.max(1e-9)));
            }
        })
    };
    for w in workers {
        w.await?;
    }
    ticker.abort();
    bar.finish_and_clear();
    let elapsed = start.elapsed().as_secs_f64();
    let totals = totals.lock().unwrap_or_else(|p| p.into_inner());
    let h = &totals.histogram;
    let ok = h.len();
    let errors: u64 = totals.errors.values().sum();
    match (&args.discovery.registry, target.providers()) {
        (Some(registry), Some(providers)) => {
            println!("target:      {} via {registry}", args.provider_url);
            println!("providers:   {}", providers.join(", "));
        }
        _ => println!("target:      {}", args.provider_url),
    }
    println!("method:      {} {}", args.method, args.args);
    println!("concurrency: {}", args.concurrency);
    println!(
        "calls:       {} ok, {} errors in {:.2} s = {:.0} calls/s",
        ok,
        errors,
        elapsed,
        (ok + errors) as f64 / elapsed.max(1e-9)
    );
    if ok > 0 {
        println!(
            "latency µs:  p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  mean {:.1}",
            h.value_at_quantile(0.50),
            h.value_at_quantile(0.90),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.max(),
            h.mean()
        );
    }
    for (kind, n) in &totals.errors {
        println!("errors:      {n} × {kind}");
    }
    if let Some(stats) = target.provider_stats(&seen) {
        let total: u64 = stats.iter().map(|(_, ok, _, _)| ok).sum();
        for (addr, ok, failed, listed) in stats {
            println!(
                "provider:    {addr}  {ok} ok ({:.1}%), {failed} failed{}",
                100.0 * ok as f64 / total.max(1) as f64,
                if listed { "" } else { " (left during the run)" }
            );
        }
    }
    Ok(if errors == 0 && ok > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A short label for grouping errors in the summary.
fn error_kind(e: &RpcError) -> String {
    match e {
        RpcError::Remote { code, message, .. } => format!("remote {code}: {message}"),
        RpcError::Timeout(_) => "timeout".into(),
        RpcError::Connect { reason, .. } => format!("connect: {reason}"),
        other => other.to_string(),
    }
}
