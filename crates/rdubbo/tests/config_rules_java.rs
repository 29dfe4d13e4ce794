//! Configurator documents read by rdubbo and by the real Java Dubbo 3.3.1 (its
//! `ConfigParser` and `OverrideConfigurator`, run by `tests/java-rules/RuleParser.java`):
//! the same `override://` URLs, and the same parameters changed on consumer and provider
//! URLs. Skipped (loudly) without the Java peer, as the other Java tests.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use rdubbo::cluster::configurator::{configure_layers, configure_provider_layers};
use rdubbo::cluster::rules::parse_configurators;
use rdubbo::Url;
use rdubbo_testkit::java::{target_tmp, DubboVersion, JavaDubbo};

/// (name, document, target URLs as Java sees them: `side` says which side applies).
const DOCS: &[(&str, &str, &[&str])] = &[
    (
        "service_group_version",
        "configVersion: v2.7\nscope: service\nkey: testgroup/servicekey:1.0.0\nconfigs:\n- addresses: ['127.0.0.1:20880']\n  parameters: {weight: 222}\n",
        &["dubbo://127.0.0.1:20880/servicekey?interface=servicekey&group=testgroup&version=1.0.0&side=consumer&application=web"],
    ),
    (
        "app_multi_services",
        "configVersion: v2.7\nscope: application\nkey: demo-consumer\nconfigs:\n- addresses: [127.0.0.1]\n  providerAddresses: ['127.0.0.1:20880']\n  services: ['service1', 'service2']\n  parameters: {loadbalance: random, cluster: failfast, timeout: 6666}\n",
        &[
            "dubbo://127.0.0.1:20880/service1?interface=service1&side=consumer&application=demo-consumer",
            "dubbo://127.0.0.1:20881/service1?interface=service1&side=consumer&application=demo-consumer",
            "dubbo://127.0.0.1:20880/service3?interface=service3&side=consumer&application=demo-consumer",
        ],
    ),
    (
        "sides",
        "configVersion: v2.7\nscope: service\nkey: demo.Api\nconfigs:\n- addresses: ['0.0.0.0']\n  parameters: {weight: 222}\n- side: consumer\n  addresses: ['0.0.0.0']\n  providerAddresses: ['127.0.0.1:20881']\n  parameters: {timeout: 5}\n- side: provider\n  addresses: ['127.0.0.1:20881']\n  parameters: {retries: 7}\n- side: consumer\n  applications: [web, batch]\n  parameters: {loadbalance: roundrobin}\n",
        &[
            "dubbo://127.0.0.1:20881/demo.Api?interface=demo.Api&side=consumer&application=web",
            "dubbo://127.0.0.1:20882/demo.Api?interface=demo.Api&side=consumer&application=mall",
            "dubbo://127.0.0.1:20881/demo.Api?interface=demo.Api&side=provider&application=shop",
            "dubbo://127.0.0.1:20882/demo.Api?interface=demo.Api&side=provider&application=shop",
        ],
    ),
    (
        "typed_items_and_no_version",
        "scope: service\nkey: a.B\nenabled: false\nconfigs:\n- type: weight\n  side: provider\n  parameters: {weight: 5}\n- type: weight\n  enabled: true\n  side: provider\n  addresses: ['127.0.0.1:20880']\n  parameters: {weight: 6}\n- side: consumer\n  addresses: [\"1.2.3.4:80\", 127.0.0.1]\n  parameters: {a: \"x y\", b: \"\"}\n",
        &[
            "dubbo://127.0.0.1:20880/a.B?interface=a.B&side=provider&application=shop",
            "dubbo://127.0.0.1:20880/a.B?interface=a.B&side=consumer&application=web",
        ],
    ),
    (
        "v3_match",
        "configVersion: v3.0\nscope: application\nkey: shop\nconfigs:\n- side: provider\n  match:\n    service: {oneof: [{exact: demo.Api}, {prefix: other.}]}\n    param: [{key: region, value: {exact: eu}}]\n  parameters: {weight: 200}\n- side: provider\n  match:\n    address: {cird: '127.0.0.0/8'}\n    providerAddress: {wildcard: '127.0.0.1:2088*'}\n  parameters: {threads: 9}\n",
        &[
            "dubbo://127.0.0.1:20880/demo.Api?interface=demo.Api&side=provider&application=shop&region=eu",
            "dubbo://127.0.0.1:20880/demo.Api?interface=demo.Api&side=provider&application=shop&region=us",
            "dubbo://127.0.0.1:30880/other.Api?interface=other.Api&side=provider&application=shop&region=eu",
            "dubbo://127.0.0.1:20880/demo.Api?interface=demo.Api&side=provider&application=mall&region=eu",
        ],
    ),
    (
        "v3_consumer_match",
        "configVersion: v3.0\nscope: service\nkey: demo.Api\nconfigs:\n- side: consumer\n  match:\n    address: {cird: '127.0.0.0/8'}\n    providerAddress: {exact: '10.0.0.1:20880'}\n    app: {oneof: [{regex: 'w.b'}]}\n  parameters: {timeout: 77}\n",
        &[
            "dubbo://10.0.0.1:20880/demo.Api?interface=demo.Api&side=consumer&application=web",
            "dubbo://10.0.0.2:20880/demo.Api?interface=demo.Api&side=consumer&application=web",
            "dubbo://10.0.0.1:20880/demo.Api?interface=demo.Api&side=consumer&application=mall",
        ],
    ),
    (
        "app_scope_consumer",
        "configVersion: v2.7\nscope: application\nkey: web\nconfigs:\n- side: consumer\n  addresses: [127.0.0.1]\n  providerAddresses: ['127.0.0.1:20880']\n  services: [demo.Api]\n  parameters: {timeout: 100}\n- side: consumer\n  parameters: {retries: 0}\n",
        &[
            "dubbo://127.0.0.1:20880/demo.Api?interface=demo.Api&side=consumer&application=web",
            "dubbo://127.0.0.1:20881/demo.Api?interface=demo.Api&side=consumer&application=web",
            "dubbo://127.0.0.1:20880/demo.Api?interface=demo.Api&side=consumer&application=mall",
            "dubbo://127.0.0.1:20880/other.Api?interface=other.Api&side=consumer&application=web",
        ],
    ),
    (
        "json_list",
        "[\"override://0.0.0.0/demo.Api?weight=3\", \"override://1.2.3.4:5/demo.Api?timeout=3\"]",
        &[],
    ),
    ("no_parameters", "configVersion: v2.7\nkey: x\nconfigs:\n- addresses: [0.0.0.0]\n", &[]),
    ("not_yaml", "key: [", &[]),
    ("empty_service", "configVersion: v2.7\nscope: service\nconfigs:\n- parameters: {a: 1}\n", &[]),
];

/// A URL as Java's `toFullString` prints it (parameters sorted).
fn java_string(u: &Url) -> String {
    let mut params: Vec<(&str, &str)> = u.params().collect();
    params.sort();
    let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
    format!(
        "{}://{}{}/{}?{}",
        u.protocol(),
        u.host(),
        port,
        u.path(),
        query.join("&")
    )
}

/// What rdubbo prints for one document, in the Java program's format.
fn rdubbo_output(name: &str, text: &str, targets: &[&str]) -> Vec<String> {
    let mut out = vec![format!("== {name}")];
    let rules = match parse_configurators(text) {
        Ok(rules) => rules,
        Err(_) => {
            out.push("ERROR".into());
            return out;
        }
    };
    out.extend(rules.iter().map(|r| java_string(&r.url)));
    for target in targets {
        let java: Url = target.parse().unwrap();
        let mut url = java.clone();
        url.remove_param("side");
        let (configured, _) = if java.param("side") == Some("consumer") {
            // A Java consumer judges rules with its own host (loopback here).
            configure_layers(&url, &[&rules], url.param("application"), "127.0.0.1")
        } else {
            configure_provider_layers(&url, &[&rules])
        };
        let before: BTreeMap<&str, &str> = url.params().collect();
        let changed: Vec<String> = configured
            .params()
            .filter(|(k, v)| before.get(k) != Some(v))
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        out.push(format!("=> {}", changed.join("&")));
    }
    out
}

#[test]
fn configurator_documents_read_and_applied_as_java_does() {
    let Some(java) = JavaDubbo::find(DubboVersion::V3_3) else {
        return;
    };
    let sources = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/java-rules");
    let classes = java.compile(&sources);
    let docs = target_tmp().join(format!("config-rules-java-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&docs);
    std::fs::create_dir_all(&docs).unwrap();
    for (i, (name, text, targets)) in DOCS.iter().enumerate() {
        let file = format!("{i:02}-{name}");
        std::fs::write(docs.join(format!("{file}.yml")), text).unwrap();
        if !targets.is_empty() {
            std::fs::write(docs.join(format!("{file}.targets")), targets.join("\n")).unwrap();
        }
    }
    let mut classpath = vec![classes.display().to_string()];
    classpath.extend(java.classpath().iter().map(|p| p.display().to_string()));
    let out = Command::new("java")
        .arg("-cp")
        .arg(classpath.join(":"))
        .arg("com.example.RuleParser")
        .arg(&docs)
        .output()
        .expect("cannot run java");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Java copies `providerAddresses` into the configured URL too; rdubbo does not (it
    // is a condition, not a setting).
    let java_lines: Vec<String> = stdout
        .lines()
        .filter(|l| {
            l.starts_with("==") || l.starts_with("=>") || l.contains("://") || *l == "ERROR"
        })
        .map(|l| {
            if let Some(changed) = l.strip_prefix("=> ") {
                let kept: Vec<&str> = changed
                    .split('&')
                    .filter(|kv| !kv.is_empty() && !kv.starts_with("providerAddresses="))
                    .collect();
                format!("=> {}", kept.join("&"))
            } else {
                l.to_owned()
            }
        })
        .collect();
    let mut ours = Vec::new();
    for (i, (name, text, targets)) in DOCS.iter().enumerate() {
        ours.extend(rdubbo_output(&format!("{i:02}-{name}"), text, targets));
    }
    assert_eq!(ours.join("\n"), java_lines.join("\n"));
    let _ = std::fs::remove_dir_all(&docs);
}
