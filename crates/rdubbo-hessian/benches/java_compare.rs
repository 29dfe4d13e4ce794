//! rdubbo-hessian beside Java's own Caucho Hessian (Debian `libhessian-java` 4.0.38) on the
//! same bytes: the interop POJO `com.example.User` (`Samples.user(7)`), decoded (and
//! encoded) over and over by each, each warmed up first, medians of rounds.
//!
//! ```sh
//! taskset -c 1 cargo bench -p rdubbo-hessian --bench java_compare
//! ```
//!
//! Needs `javac`/`java` and /usr/share/java/hessian.jar (as tests/caucho.rs). The Java side is
//! benches/java/HessianBench.java compiled with the interop POJOs of
//! crates/rdubbo/tests/java/com/example (User, Address, Level). Settings (environment):
//! `WARMUP_S` (default 10: seconds of warm-up per measurement, for the JIT), `ROUNDS`
//! (default 15), `ROUND_MS` (default 200).

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

#[path = "common/user.rs"]
mod user;
use user::{user, User};

const HESSIAN_JAR: &str = "/usr/share/java/hessian.jar";
const OPENS: [&str; 6] = [
    "--add-opens",
    "java.base/java.lang=ALL-UNNAMED",
    "--add-opens",
    "java.base/java.util=ALL-UNNAMED",
    "--add-opens",
    "java.base/java.math=ALL-UNNAMED",
];

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// Runs `op` for the warm-up, then `rounds` rounds of about `round`; ns/op per round, sorted.
fn measure(mut op: impl FnMut(), warmup: Duration, rounds: usize, round: Duration) -> Vec<f64> {
    let t0 = Instant::now();
    let mut done = 0u64;
    while t0.elapsed() < warmup {
        for _ in 0..1000 {
            op();
        }
        done += 1000;
    }
    let per_op = t0.elapsed().as_nanos() as f64 / done.max(1) as f64;
    let n = ((round.as_nanos() as f64 / per_op.max(1.0)) as u64).max(1000);
    let mut out: Vec<f64> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..n {
                op();
            }
            start.elapsed().as_nanos() as f64 / n as f64
        })
        .collect();
    out.sort_by(f64::total_cmp);
    out
}

fn compile_java() -> PathBuf {
    assert!(
        Path::new(HESSIAN_JAR).exists(),
        "{HESSIAN_JAR} missing: apt-get install libhessian-java"
    );
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let pojos = manifest.join("../rdubbo/tests/java/com/example");
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("hessian-bench");
    std::fs::create_dir_all(&out).unwrap();
    let status = Command::new("javac")
        .args(["-nowarn", "-d"])
        .arg(&out)
        .args(["-cp", HESSIAN_JAR])
        .arg(manifest.join("benches/java/HessianBench.java"))
        .args(["User.java", "Address.java", "Level.java"].map(|f| pojos.join(f)))
        .status()
        .expect("javac (apt-get install default-jdk-headless)");
    assert!(status.success(), "javac failed");
    out
}

struct JavaFigures {
    encoded: Vec<u8>,
    decode: (f64, f64, f64),
    encode: (f64, f64, f64),
}

fn run_java(
    classes: &Path,
    bytes: &[u8],
    warmup: f64,
    rounds: usize,
    round_ms: u64,
) -> JavaFigures {
    let out = Command::new("java")
        .args(OPENS)
        .arg("-cp")
        .arg(format!("{}:{HESSIAN_JAR}", classes.display()))
        .arg("HessianBench")
        .arg(hex(bytes))
        .arg(warmup.to_string())
        .arg(rounds.to_string())
        .arg(round_ms.to_string())
        .output()
        .expect("java");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "HessianBench failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let figures = |what: &str| -> (f64, f64, f64) {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{what} ns/op ")))
            .unwrap_or_else(|| panic!("no `{what}` line in:\n{text}"));
        let w: Vec<&str> = line.split_whitespace().collect();
        (
            w[2].parse().unwrap(),
            w[4].parse().unwrap(),
            w[6].parse().unwrap(),
        )
    };
    let encoded = text
        .lines()
        .find_map(|l| l.strip_prefix("java-encoded "))
        .map(unhex)
        .expect("java-encoded line");
    JavaFigures {
        encoded,
        decode: figures("decode"),
        encode: figures("encode"),
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument that is not ours means another
    // bench was asked for.
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with("--") && a != "java_compare")
    {
        return;
    }
    let warmup: f64 = env_or("WARMUP_S", 10.0);
    let rounds: usize = env_or("ROUNDS", 15);
    let round_ms: u64 = env_or("ROUND_MS", 200);
    let u = user();
    let bytes = rdubbo_hessian::to_bytes(&u).unwrap();
    assert_eq!(rdubbo_hessian::from_slice::<User>(&bytes).unwrap(), u);

    let classes = compile_java();
    eprintln!("Java: Caucho Hessian decoding {} bytes ({warmup} s warm-up, {rounds} rounds of {round_ms} ms)…", bytes.len());
    let java = run_java(&classes, &bytes, warmup, rounds, round_ms);
    let back: User = rdubbo_hessian::from_slice(&java.encoded).expect("Java's encoding decodes");
    assert_eq!(back, u, "Java's re-encoding decodes to the same user");

    eprintln!("rdubbo-hessian: the same…");
    let wu = Duration::from_secs_f64(warmup.min(3.0));
    let rd = Duration::from_millis(round_ms);
    let decode = measure(
        || {
            black_box(rdubbo_hessian::from_slice::<User>(black_box(&bytes)).unwrap());
        },
        wu,
        rounds,
        rd,
    );
    let decode_java_bytes = if bytes == java.encoded {
        decode.clone()
    } else {
        measure(
            || {
                black_box(rdubbo_hessian::from_slice::<User>(black_box(&java.encoded)).unwrap());
            },
            wu,
            rounds,
            rd,
        )
    };
    let encode = measure(
        || {
            black_box(rdubbo_hessian::to_bytes(black_box(&u)).unwrap());
        },
        wu,
        rounds,
        rd,
    );
    let med = |v: &[f64]| v[v.len() / 2];
    println!();
    println!(
        "com.example.User: rdubbo writes {} bytes, Java {} bytes{}",
        bytes.len(),
        java.encoded.len(),
        if bytes == java.encoded {
            " (identical)".to_string()
        } else {
            format!(
                "\n  rdubbo {}\n  java   {}",
                hex(&bytes),
                hex(&java.encoded)
            )
        }
    );
    println!();
    println!(
        "| com.example.User | Caucho Hessian (Java) ns/op | rdubbo-hessian ns/op | Java / rdubbo |"
    );
    println!("|---|---:|---:|---:|");
    println!(
        "| decode (rdubbo's bytes) | {:.0} (min {:.0}, max {:.0}) | {:.0} (min {:.0}, max {:.0}) | {:.2}× |",
        java.decode.0,
        java.decode.1,
        java.decode.2,
        med(&decode),
        decode[0],
        decode[decode.len() - 1],
        java.decode.0 / med(&decode)
    );
    if bytes != java.encoded {
        println!(
            "| decode (Java's bytes), rdubbo only | – | {:.0} | |",
            med(&decode_java_bytes)
        );
    }
    println!(
        "| encode | {:.0} (min {:.0}, max {:.0}) | {:.0} (min {:.0}, max {:.0}) | {:.2}× |",
        java.encode.0,
        java.encode.1,
        java.encode.2,
        med(&encode),
        encode[0],
        encode[encode.len() - 1],
        java.encode.0 / med(&encode)
    );
}
