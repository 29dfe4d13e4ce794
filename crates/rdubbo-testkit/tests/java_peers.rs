//! Proves the Java interop peers themselves (crates/rdubbo/tests/java): a real Java Dubbo
//! consumer checks a real Java Dubbo provider, for every Java Dubbo version found. Any
//! rdubbo interop test builds on these programs, so every check must pass Java <-> Java.
//!
//! Skips (loudly) a version whose jars, Debian classpath or JDK are missing; set
//! `RDUBBO_REQUIRE_JAVA=1` to fail instead.
//!
//! cargo test -p rdubbo-testkit --test java_peers -- --nocapture

use std::time::Duration;

use rdubbo_testkit::java::{interop_sources, ConsumerOutput, DubboVersion, JavaDubbo};
use rdubbo_testkit::{free_port, ZkServer};

const CONSUMER_TIMEOUT: Duration = Duration::from_secs(120);

fn show(title: &str, out: &ConsumerOutput) {
    println!("===== {title} (log {})\n{}", out.log.display(), out.stdout);
}

fn direct(version: DubboVersion) {
    let Some(java) = JavaDubbo::find(version) else {
        return;
    };
    let classes = java.compile(&interop_sources());
    let provider = java.spawn_provider(&classes, free_port(), &[]);
    let url = format!(
        "dubbo://127.0.0.1:{}/com.example.UserService",
        provider.port()
    );
    for mode in ["check", "echo-types"] {
        let out = java.run_consumer(&classes, &["--url", &url, mode], CONSUMER_TIMEOUT);
        let title = format!("{version} consumer -> {version} provider, direct, {mode}");
        show(&title, &out);
        out.assert_ok(&title);
        assert!(out.stdout.contains("DONE "), "{title}: no DONE line");
    }
}

#[test]
fn java_to_java_direct_2_7() {
    direct(DubboVersion::V2_7);
}

#[test]
fn java_to_java_direct_3_3() {
    direct(DubboVersion::V3_3);
}

/// Provider and consumer find each other through a real ZooKeeper, with a service version.
fn through_zookeeper(version: DubboVersion, provider_args: &[&str], consumer_args: &[&str]) {
    let Some(java) = JavaDubbo::find(version) else {
        return;
    };
    let classes = java.compile(&interop_sources());
    let zk = ZkServer::start();
    let registry = zk.registry_url("");
    let mut args = vec!["--registry", registry.as_str(), "--version", "1.0.0"];
    args.extend_from_slice(provider_args);
    let provider = java.spawn_provider(&classes, free_port(), &args);

    let mut args = vec!["--registry", registry.as_str(), "--version", "1.0.0"];
    args.extend_from_slice(consumer_args);
    args.push("check");
    let out = java.run_consumer(&classes, &args, CONSUMER_TIMEOUT);
    let title = format!("{version} consumer -> {version} provider, via ZooKeeper, check");
    show(&title, &out);
    if !out.status_ok {
        eprintln!(
            "provider log {}:\n{}",
            provider.log_path().display(),
            provider.log()
        );
    }
    out.assert_ok(&title);
    drop(provider);
}

#[test]
fn java_to_java_zookeeper_2_7() {
    through_zookeeper(DubboVersion::V2_7, &[], &[]);
}

/// 3.3 with its defaults: the provider registers interface- and application-level
/// (`register-mode=all`), the consumer migrates APPLICATION_FIRST. Without a metadata center
/// no interface -> application mapping is written, so the consumer ends up on the
/// interface-level URLs.
#[test]
fn java_to_java_zookeeper_3_3() {
    through_zookeeper(DubboVersion::V3_3, &[], &[]);
}

/// 3.3, interface-level discovery only (the model 2.7 and rdubbo's ZooKeeper registry use).
#[test]
fn java_to_java_zookeeper_3_3_interface_level() {
    through_zookeeper(
        DubboVersion::V3_3,
        &["--register-mode", "interface"],
        &["--migration-step", "FORCE_INTERFACE"],
    );
}

/// 3.3, application-level discovery only (`/services/<app>/<ip:port>`; the consumer finds
/// the application through `/dubbo/mapping/<interface>`, which needs ZooKeeper as metadata
/// center, and fetches the provider's metadata from its MetadataService).
#[test]
fn java_to_java_zookeeper_3_3_application_level() {
    through_zookeeper(
        DubboVersion::V3_3,
        &["--register-mode", "instance", "--metadata-center"],
        &["--migration-step", "FORCE_APPLICATION", "--metadata-center"],
    );
}

/// 2.7 and 3.3 talk to each other directly (dubbo:// + Hessian2), both ways.
#[test]
fn java_cross_version_direct() {
    let (Some(v2), Some(v3)) = (
        JavaDubbo::find(DubboVersion::V2_7),
        JavaDubbo::find(DubboVersion::V3_3),
    ) else {
        return;
    };
    let classes2 = v2.compile(&interop_sources());
    let classes3 = v3.compile(&interop_sources());
    for (server, server_classes, client, client_classes) in [
        (&v2, &classes2, &v3, &classes3),
        (&v3, &classes3, &v2, &classes2),
    ] {
        let provider = server.spawn_provider(server_classes, free_port(), &[]);
        let url = format!(
            "dubbo://127.0.0.1:{}/com.example.UserService",
            provider.port()
        );
        for mode in ["check", "echo-types"] {
            let out = client.run_consumer(client_classes, &["--url", &url, mode], CONSUMER_TIMEOUT);
            let title = format!(
                "{} consumer -> {} provider, direct, {mode}",
                client.version(),
                server.version()
            );
            show(&title, &out);
            out.assert_ok(&title);
        }
    }
}
