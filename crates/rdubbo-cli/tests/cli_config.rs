//! `rdubbo config set|get|rm|ls` against `rdubbo registry` (the embedded registry's config
//! API), checked by HTTP as a user would.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

mod common;

use common::{http, rdubbo, start_rdubbo_registry, stop, text, BIN};

#[test]
fn config_set_get_ls_rm_round_trip_through_rdubbo_registry() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("cli-config-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (registry, addr) = start_rdubbo_registry(&[
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        dir.to_str().unwrap(),
    ]);
    let url = format!("nacos://{addr}");
    let key = "demo-provider.configurators";
    let rule = "configVersion: v3.0\nscope: application\nkey: demo-provider\nconfigs:\n- side: provider\n  parameters:\n    weight: 200\n";

    // Nothing yet: exit status 1 and a message.
    let out = rdubbo(&["config", "get", "--registry", &url, key]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("no config dubbo/"),
        "{}",
        text(&out.stderr)
    );

    // From a file.
    let file = dir.join("rule.yaml");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(&file, rule).unwrap();
    let out = rdubbo(&[
        "config",
        "set",
        "--registry",
        &url,
        key,
        "-f",
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = rdubbo(&["config", "get", "--registry", &url, key]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), rule);
    // As a user reads it over the Nacos API.
    let (status, body) = http(
        &addr,
        "GET",
        &format!("/nacos/v1/cs/configs?dataId={key}&group=dubbo"),
    );
    assert_eq!((status, body.as_str()), (200, rule));

    // From standard input, in another group; an argument.
    let mut child = Command::new(BIN)
        .args([
            "config",
            "set",
            "--registry",
            &url,
            "--group",
            "DUBBO_SERVICEDISCOVERY_MIGRATION",
            "demo-consumer.migration",
            "-f",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"key: demo-consumer\nstep: FORCE_APPLICATION\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = rdubbo(&[
        "config",
        "set",
        "--registry",
        &url,
        "demo-provider.tag-router",
        "force: false\ntags: []\n",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let out = rdubbo(&["config", "ls", "--registry", &url]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "demo-provider.configurators\ndemo-provider.tag-router\n"
    );
    let out = rdubbo(&[
        "config",
        "ls",
        "--registry",
        &url,
        "--group",
        "DUBBO_SERVICEDISCOVERY_MIGRATION",
    ]);
    assert_eq!(text(&out.stdout), "demo-consumer.migration\n");

    let out = rdubbo(&["config", "rm", "--registry", &url, key]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = rdubbo(&["config", "get", "--registry", &url, key]);
    assert_eq!(out.status.code(), Some(1));
    let (status, _) = http(
        &addr,
        "GET",
        &format!("/nacos/v1/cs/configs?dataId={key}&group=dubbo"),
    );
    assert_eq!(status, 404);

    // A registry that does not answer: an error naming it, within the timeout.
    let out = rdubbo(&[
        "config",
        "get",
        "--registry",
        "nacos://127.0.0.1:1",
        "--timeout",
        "10",
        key,
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("127.0.0.1:1"),
        "{}",
        text(&out.stderr)
    );

    stop(registry);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn config_set_get_ls_rm_through_zookeeper_as_zkcli_sees_it() {
    let zk = rdubbo_testkit::ZkServer::start();
    let url = zk.registry_url("file.cache=false");
    let key = "org.apache.dubbo.demo.DemoService:1.0.0:.condition-router";
    let rule = "scope: service\nkey: org.apache.dubbo.demo.DemoService:1.0.0\nconditions:\n- => host != 10.0.0.1\n";
    let out = rdubbo(&["config", "set", "--registry", &url, key, rule]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Where Java Dubbo reads it: /dubbo/config/dubbo/<key>.
    let got = zk.cli(&["get", &format!("/dubbo/config/dubbo/{key}")]);
    assert!(got.contains("host != 10.0.0.1"), "{got}");
    let out = rdubbo(&["config", "get", "--registry", &url, key]);
    assert_eq!(text(&out.stdout), rule);
    let out = rdubbo(&["config", "ls", "--registry", &url]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).lines().any(|l| l == key),
        "{}",
        text(&out.stdout)
    );
    let out = rdubbo(&["config", "rm", "--registry", &url, key]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = rdubbo(&["config", "get", "--registry", &url, key]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
}
