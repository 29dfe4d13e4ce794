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

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU32;
use std::time::Duration;

mod compile;
mod process;

pub use process::{ConsumerOutput, JavaProcess};

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
}
