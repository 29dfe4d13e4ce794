//! Compiling the Java peers: `javac` over a source tree, cached by a hash of the sources
//! and the Dubbo jar, built in a private directory and renamed into place.

use std::fs::{self, File};
use std::hash::Hasher;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::Instant;

use super::{target_tmp, JavaDubbo, RUN_COUNTER};

impl JavaDubbo {
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
