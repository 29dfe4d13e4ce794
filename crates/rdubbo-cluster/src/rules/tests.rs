//! The documents of Java's own fixtures and docs, with the URLs Java 3.3.1's
//! `ConfigParser` makes of them (captured by running `ConfigParser.parseConfigurators`
//! and `OverrideConfigurator.configure` of `apache-dubbo-3.3.1` on the same text).

use std::sync::Arc;

use rdubbo_core::{Invocation, Url};

use super::*;
use crate::configurator::{configure_layers, configure_provider_layers};

fn url(s: &str) -> Url {
    s.parse().unwrap()
}

/// A URL as Java's `toFullString` prints it: parameters sorted by key.
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

fn parsed(text: &str) -> Vec<String> {
    parse_configurators(text)
        .unwrap()
        .iter()
        .map(|r| java_string(&r.url))
        .collect()
}

#[test]
fn service_scope_as_java_parses_it() {
    // Java's fixture ServiceGroupVersion.yml.
    let doc = "configVersion: v2.7\nscope: service\nkey: testgroup/servicekey:1.0.0\nconfigs:\n- addresses: ['127.0.0.1:20880']\n  parameters: {weight: 222}\n";
    assert_eq!(
        parsed(doc),
        ["override://127.0.0.1:20880/servicekey?category=dynamicconfigurators&configVersion=v2.7&enabled=true&group=testgroup&version=1.0.0&weight=222"]
    );
    // One URL per application; no configVersion prints `null` (and counts as 2.7+).
    let apps = "configVersion: v2.7\nscope: service\nkey: testgroup/servicekey:1.0.0\nconfigs:\n- applications: [a1, a2]\n  side: consumer\n  parameters: {retries: 1}\n";
    assert_eq!(
        parsed(apps),
        [
            "override://0.0.0.0/servicekey?application=a1&category=dynamicconfigurators&configVersion=v2.7&enabled=true&group=testgroup&retries=1&side=consumer&version=1.0.0",
            "override://0.0.0.0/servicekey?application=a2&category=dynamicconfigurators&configVersion=v2.7&enabled=true&group=testgroup&retries=1&side=consumer&version=1.0.0"
        ]
    );
    let unversioned =
        "scope: service\nkey: demo.Api\nconfigs:\n- side: consumer\n  parameters: {timeout: 5}\n";
    assert_eq!(
        parsed(unversioned),
        ["override://0.0.0.0/demo.Api?category=dynamicconfigurators&configVersion=null&enabled=true&side=consumer&timeout=5"]
    );
    // Typed items take their own `enabled` (absent: `null`, i.e. off); side=provider
    // copies the addresses to providerAddresses.
    let typed = "configVersion: v2.7\nscope: service\nkey: a.B\nenabled: false\nconfigs:\n- type: weight\n  side: provider\n  parameters: {weight: 5}\n- side: consumer\n  addresses: [\"1.2.3.4:80\", 5.6.7.8]\n  parameters: {a: \"x y\", b: \"\"}\n";
    assert_eq!(
        parsed(typed),
        [
            "override://0.0.0.0/a.B?category=dynamicconfigurators&configVersion=v2.7&enabled=null&providerAddresses=0.0.0.0&side=provider&weight=5",
            "override://1.2.3.4:80/a.B?a=x y&b=&category=dynamicconfigurators&configVersion=v2.7&enabled=false&side=consumer",
            "override://5.6.7.8/a.B?a=x y&b=&category=dynamicconfigurators&configVersion=v2.7&enabled=false&side=consumer"
        ]
    );
}

#[test]
fn application_scope_as_java_parses_it() {
    // Java's fixture AppMultiServices.yml.
    let doc = "configVersion: v2.7\nscope: application\nkey: demo-consumer\nconfigs:\n- addresses: [127.0.0.1]\n  providerAddresses: ['127.0.0.1:20880']\n  services: ['service1', 'service2']\n  parameters: {loadbalance: random, cluster: failfast, timeout: 6666}\n";
    assert_eq!(
        parsed(doc),
        [
            "override://127.0.0.1/service1?application=demo-consumer&category=appdynamicconfigurators&cluster=failfast&configVersion=v2.7&enabled=true&loadbalance=random&providerAddresses=127.0.0.1:20880&timeout=6666",
            "override://127.0.0.1/service2?application=demo-consumer&category=appdynamicconfigurators&cluster=failfast&configVersion=v2.7&enabled=true&loadbalance=random&providerAddresses=127.0.0.1:20880&timeout=6666"
        ]
    );
    // ConfiguratorV3.yml-like: `match` rides along, services default to `*`.
    let v3 = "configVersion: v3.0\nscope: application\nkey: demo-provider\nenabled: false\nconfigs:\n- match:\n    address: {wildcard: \"10.0.0.1:20880\"}\n    service: {oneof: [{exact: DemoService}, {exact: DemoService2}]}\n    param: [{key: match_key1, value: {exact: value1}}]\n  side: provider\n  parameters: {weight: 200}\n- type: weight\n  enabled: true\n  side: provider\n  addresses: ['127.0.0.1:20881']\n  parameters: {weight: 1.5, flag: true}\n";
    let rules = parse_configurators(v3).unwrap();
    assert_eq!(
        rules.iter().map(|r| java_string(&r.url)).collect::<Vec<_>>(),
        [
            "override://0.0.0.0/*?application=demo-provider&category=appdynamicconfigurators&configVersion=v3.0&enabled=false&providerAddresses=0.0.0.0&side=provider&weight=200",
            "override://127.0.0.1:20881/*?application=demo-provider&category=appdynamicconfigurators&configVersion=v3.0&enabled=true&flag=true&providerAddresses=127.0.0.1:20881&side=provider&weight=1.5"
        ]
    );
    assert!(rules[0].matcher.is_some() && rules[1].matcher.is_none());
}

#[test]
fn json_lists_and_malformed_documents() {
    assert_eq!(
        parsed(
            r#"["override://0.0.0.0/demo.Api?weight=3", "override://1.2.3.4:5/demo.Api?timeout=3"]"#
        ),
        [
            "override://0.0.0.0/demo.Api?weight=3",
            "override://1.2.3.4:5/demo.Api?timeout=3"
        ]
    );
    for bad in [
        "",
        "key: [",
        "- a\n- b: c",
        "configVersion: v2.7\nkey: x\nconfigs:\n- addresses: [0.0.0.0]\n",
        "configVersion: v2.7\nscope: service\nconfigs:\n- parameters: {a: 1}\n",
        "configVersion: v3.0\nkey: x\nconfigs:\n- match: {service: {oneof: [{regex: '('}]}}\n  parameters: {a: 1}\n",
    ] {
        assert!(parse_configurators(bad).is_err(), "{bad:?} must be rejected");
    }
}

#[test]
fn java_27_matching_on_both_sides() {
    // What Java 3.3.1 answers for the same rules and URLs (captured).
    let doc = "configVersion: v2.7\nscope: service\nkey: demo.Api\nconfigs:\n- addresses: ['0.0.0.0']\n  parameters: {weight: 222}\n- side: consumer\n  addresses: ['0.0.0.0']\n  providerAddresses: ['127.0.0.1:20881']\n  parameters: {timeout: 5}\n- side: provider\n  addresses: ['127.0.0.1:20881']\n  parameters: {retries: 7}\n";
    let rules = parse_configurators(doc).unwrap();
    let p1 = url("dubbo://127.0.0.1:20881/demo.Api?interface=demo.Api&application=shop");
    let p2 = url("dubbo://127.0.0.1:20882/demo.Api?interface=demo.Api&application=shop");
    // Consumer `web` on 127.0.0.1: only the consumer rule for 20881; the rule without a
    // side applies nowhere.
    let (c1, set) = configure_layers(&p1, &[&rules], Some("web"), "127.0.0.1");
    assert_eq!(c1.param("timeout"), Some("5"));
    assert_eq!(c1.param("weight"), None);
    assert_eq!(c1.param("retries"), None);
    assert_eq!(set, vec![("timeout".to_owned(), "5".to_owned())]);
    let (c2, _) = configure_layers(&p2, &[&rules], Some("web"), "127.0.0.1");
    assert_eq!(c2, p2);
    // The provider itself: the provider rule for its address.
    let (s1, _) = configure_provider_layers(&p1, &[&rules]);
    assert_eq!(s1.param("retries"), Some("7"));
    assert_eq!(s1.param("timeout"), None);
    assert_eq!(configure_provider_layers(&p2, &[&rules]).0, p2);

    // v3.0 `match` (captured from Java as well).
    let v3 = "configVersion: v3.0\nscope: service\nkey: demo.Api\nconfigs:\n- side: consumer\n  match:\n    address: {cird: \"127.0.0.0/8\"}\n    providerAddress: {wildcard: \"10.0.0.*\"}\n  parameters: {timeout: 77}\n- side: consumer\n  addresses: [127.0.0.1]\n  providerAddresses: ['10.0.0.2:20880']\n  parameters: {disabled: true}\n";
    let rules = parse_configurators(v3).unwrap();
    let at = |h: &str| url(&format!("dubbo://{h}:20880/demo.Api?interface=demo.Api"));
    let (a, _) = configure_layers(&at("10.0.0.1"), &[&rules], Some("web"), "127.0.0.1");
    assert_eq!(
        (a.param("timeout"), a.param("disabled")),
        (Some("77"), None)
    );
    let (b, _) = configure_layers(&at("10.0.0.2"), &[&rules], Some("web"), "127.0.0.1");
    assert_eq!(
        (b.param("timeout"), b.param("disabled")),
        (Some("77"), Some("true"))
    );
    let (c, _) = configure_layers(&at("11.0.0.1"), &[&rules], Some("web"), "127.0.0.1");
    assert_eq!(c, at("11.0.0.1"));
    // From another consumer host nothing applies.
    let (d, _) = configure_layers(&at("10.0.0.2"), &[&rules], Some("web"), "192.168.0.9");
    assert_eq!(d, at("10.0.0.2"));

    // Application scope with a provider-side match on a parameter.
    let app = "configVersion: v3.0\nscope: application\nkey: shop\nconfigs:\n- side: provider\n  match:\n    service: {oneof: [{exact: demo.Api}]}\n    param: [{key: region, value: {exact: eu}}]\n  parameters: {weight: 200}\n";
    let rules = parse_configurators(app).unwrap();
    let eu = url("dubbo://10.0.0.1:20880/demo.Api?interface=demo.Api&application=shop&region=eu");
    let us = url("dubbo://10.0.0.1:20880/demo.Api?interface=demo.Api&application=shop&region=us");
    assert_eq!(
        configure_provider_layers(&eu, &[&rules]).0.param("weight"),
        Some("200")
    );
    assert_eq!(configure_provider_layers(&us, &[&rules]).0, us);
    let other_app =
        url("dubbo://10.0.0.1:20880/demo.Api?interface=demo.Api&application=mall&region=eu");
    assert_eq!(
        configure_provider_layers(&other_app, &[&rules]).0,
        other_app
    );
}

#[test]
fn condition_router_documents() {
    // Java's ConditionRule.yml.
    let doc = "scope: service\nforce: true\nruntime: false\nenabled: true\npriority: 1\nkey: org.apache.dubbo.demo.DemoService\nconditions:\n- method!=sayHello =>\n- method=routeMethod1 => address=30.5.120.16:20880\n";
    let rule = parse_condition_router(doc).unwrap();
    assert!(rule.force && rule.enabled && !rule.runtime);
    assert_eq!(rule.priority, 1);
    assert_eq!(
        rule.key.as_deref(),
        Some("org.apache.dubbo.demo.DemoService")
    );
    assert_eq!(rule.rules.len(), 2);
    // Block style (`- >`), a `then`-only string, `consumer.`/`provider.` prefixes.
    let folded = "scope: application\nkey: web\nconditions:\n  - >\n    method!=sayHello =>\n  - host = 127.0.0.1\n  - consumer.host = 10.* => provider.port = 20880\n";
    let rule = parse_condition_router(folded).unwrap();
    assert_eq!(rule.rules.len(), 3);
    assert!(!rule.force && rule.enabled);
    // v3.1 (ConditionStateRouterTestV31).
    let v31 = "configVersion: v3.1\nscope: service\nkey: com.foo.BarService\nforce: false\nruntime: true\nenabled: true\nconditions:\n  - from:\n      match: env=gray\n    to:\n      - match: env!=gray\n        weight: 100\n      - match: region=beijing\n";
    let rule = parse_condition_router(v31).unwrap();
    assert_eq!(rule.rules.len(), 1);
    for bad in [
        "",
        "conditions: [",
        "scope: service\nkey: x\n",
        "key: x\nconditions: []\n",
        "key: x\nconditions:\n- host = => port = 1\n",
        "configVersion: v3.2\nkey: x\nconditions:\n- '=> host = 1.2.3.4'\n",
        "configVersion: v3.1\nkey: x\nconditions:\n- to: [{match: a=b}]\n",
        "configVersion: v3.1\nkey: x\nconditions:\n- from: {match: a=b}\n  to: [{match: c=d, weight: heavy}]\n",
    ] {
        assert!(parse_condition_router(bad).is_err(), "{bad:?} must be rejected");
    }
}

#[test]
fn tag_rule_documents() {
    // Java's TagRule.yml.
    let doc = "force: true\nruntime: false\nenabled: true\npriority: 1\nkey: demo-provider\ntags:\n- name: tag1\n  addresses: [30.5.120.16:20880]\n- name: tag2\n  addresses: [30.5.120.16:20881]\n";
    let rule = parse_tag_rule(doc).unwrap();
    assert!(rule.force && rule.is_active());
    assert_eq!(rule.tags.len(), 2);
    let p = url("dubbo://30.5.120.16:20881/demo.Api?interface=demo.Api&env=gray");
    assert!(!rule.tags[0].contains(&p) && rule.tags[1].contains(&p));
    let by_param = "key: demo-provider\ntags:\n- name: gray\n  match:\n  - key: env\n    value: {exact: gray}\n";
    let rule = parse_tag_rule(by_param).unwrap();
    assert!(rule.tags[0].contains(&p) && !rule.force);
    // No tags: valid YAML, but the rule routes nothing (Java: invalid).
    assert!(!parse_tag_rule("key: demo-provider\n").unwrap().is_active());
    for bad in [
        "",
        "tags: {a: b}",
        "tags:\n- addresses: [1.2.3.4]\n",
        "tags: [",
    ] {
        assert!(parse_tag_rule(bad).is_err(), "{bad:?} must be rejected");
    }
}

#[test]
fn rule_keys() {
    let u = url("consumer://127.0.0.1/org.demo.Api?interface=org.demo.Api");
    assert_eq!(service_rule_key(&u), "org.demo.Api::");
    let u = url("consumer://127.0.0.1/org.demo.Api?interface=org.demo.Api&version=1.0.0&group=g1");
    assert_eq!(service_rule_key(&u), "org.demo.Api:1.0.0:g1");
    assert_eq!(
        RuleKind::ServiceConfigurators.key(&service_rule_key(&u)),
        "org.demo.Api:1.0.0:g1.configurators"
    );
    assert_eq!(RuleKind::Tags.key("shop"), "shop.tag-router");
    assert_eq!(RuleKind::AppConditions.key("web"), "web.condition-router");
}

mod directory {
    use super::*;
    use crate::Directory;
    use rdubbo_core::{BoxFuture, Invoker, Protocol, Reply, RpcResult, Value};

    struct Echo;
    impl Invoker for Echo {
        fn invoke(&self, _: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
            Box::pin(async { Ok(Reply::Value(Value::Null)) })
        }
    }
    struct Jsonrpc;
    impl Protocol for Jsonrpc {
        fn name(&self) -> &'static str {
            "jsonrpc"
        }
        fn refer(&self, _: &Url) -> RpcResult<Arc<dyn Invoker>> {
            Ok(Arc::new(Echo))
        }
    }

    fn directory() -> Arc<Directory> {
        let consumer = url("consumer://127.0.0.1/demo.Api?interface=demo.Api&application=web");
        let dir = Directory::new(consumer, vec![Arc::new(Jsonrpc)]);
        dir.update(&[
            url("jsonrpc://10.0.0.1:1/demo.Api?interface=demo.Api&application=shop"),
            url("jsonrpc://10.0.0.2:2/demo.Api?interface=demo.Api&application=shop"),
            url("jsonrpc://10.0.0.3:3/demo.Api?interface=demo.Api&application=shop&dubbo.tag=blue"),
        ]);
        dir
    }

    fn ports(dir: &Directory, call: &Invocation) -> Vec<u16> {
        dir.list(call).iter().filter_map(|p| p.url.port()).collect()
    }

    #[test]
    fn configurator_documents_change_weights_and_disable() {
        let dir = directory();
        let doc = "configVersion: v2.7\nscope: service\nkey: demo.Api\nconfigs:\n- side: consumer\n  addresses: [0.0.0.0]\n  providerAddresses: ['10.0.0.1:1']\n  parameters: {weight: 900}\n- side: consumer\n  addresses: [0.0.0.0]\n  providerAddresses: ['10.0.0.2:2']\n  parameters: {disabled: true}\n";
        dir.update_rule_document(
            RuleKind::ServiceConfigurators,
            "demo.Api::.configurators",
            Some(doc),
        )
        .unwrap();
        let providers = dir.providers();
        assert_eq!(providers.len(), 2, "10.0.0.2 is disabled");
        assert_eq!(providers[0].url.param("weight"), Some("900"));
        // A malformed document keeps the rules in force.
        assert!(dir
            .update_rule_document(RuleKind::ServiceConfigurators, "k", Some("configs: ["))
            .is_err());
        assert_eq!(dir.providers().len(), 2);
        // An application document layers on top (consumer application `web` only).
        let app = "configVersion: v2.7\nscope: application\nkey: web\nconfigs:\n- side: consumer\n  parameters: {timeout: 50}\n";
        dir.update_rule_document(RuleKind::AppConfigurators, "web.configurators", Some(app))
            .unwrap();
        assert!(dir
            .providers()
            .iter()
            .all(|p| p.url.param("timeout") == Some("50")));
        // Deleting restores what the providers registered.
        dir.update_rule_document(RuleKind::ServiceConfigurators, "k", None)
            .unwrap();
        dir.update_rule_document(RuleKind::AppConfigurators, "k", None)
            .unwrap();
        let providers = dir.providers();
        assert_eq!(providers.len(), 3);
        assert!(providers.iter().all(|p| p.overrides.is_empty()));
    }

    #[test]
    fn condition_documents_route_and_keep_the_last_good_rule() {
        let dir = directory();
        let hello = Invocation::new("demo.Api", "sayHello", vec![]);
        let echo = Invocation::new("demo.Api", "echo", vec![]);
        assert_eq!(ports(&dir, &hello), [1, 2]);
        let doc = "scope: service\nkey: demo.Api\nconditions:\n- method = sayHello => host = 10.0.0.2 & port = 2\n";
        dir.update_rule_document(
            RuleKind::ServiceConditions,
            "demo.Api::.condition-router",
            Some(doc),
        )
        .unwrap();
        assert_eq!(ports(&dir, &hello), [2]);
        assert_eq!(ports(&dir, &echo), [1, 2]);
        // Per-call conditions on attachments.
        let lane = "conditions:\n- attachments[lane] = blue => port = 1\n";
        dir.update_rule_document(RuleKind::AppConditions, "lane", Some(lane))
            .unwrap();
        let mut blue = echo.clone();
        blue.attachments.insert("lane", "blue");
        assert_eq!(ports(&dir, &blue), [1]);
        assert_eq!(ports(&dir, &echo), [1, 2]);
        dir.update_rule_document(RuleKind::AppConditions, "lane", None)
            .unwrap();
        assert!(dir
            .update_rule_document(
                RuleKind::ServiceConditions,
                "k",
                Some("conditions:\n- 'host = => '\n")
            )
            .is_err());
        assert_eq!(ports(&dir, &hello), [2], "the previous rule stays");
        // enabled: false switches the document off.
        let off = format!("enabled: false\n{doc}");
        dir.update_rule_document(RuleKind::ServiceConditions, "k", Some(&off))
            .unwrap();
        assert_eq!(ports(&dir, &hello), [1, 2]);
        // Consumer application documents apply after the service's.
        let app =
            "scope: application\nkey: web\nforce: true\nconditions:\n- '=> host != 10.0.0.1'\n";
        dir.update_rule_document(RuleKind::AppConditions, "web.condition-router", Some(app))
            .unwrap();
        assert_eq!(ports(&dir, &echo), [2]);
        dir.update_rule_document(RuleKind::AppConditions, "k", None)
            .unwrap();
        assert_eq!(ports(&dir, &echo), [1, 2]);
    }

    #[test]
    fn v31_weighted_destinations() {
        let dir = directory();
        let doc = "configVersion: v3.1\nscope: service\nkey: demo.Api\nconditions:\n- from: {match: ''}\n  to:\n  - {match: port = 1, weight: 30}\n  - {match: port = 2, weight: 70}\n";
        dir.update_rule_document(RuleKind::ServiceConditions, "k", Some(doc))
            .unwrap();
        let call = Invocation::new("demo.Api", "echo", vec![]);
        let mut counts = [0u32; 3];
        for _ in 0..2000 {
            let routed = ports(&dir, &call);
            assert_eq!(routed.len(), 1);
            counts[routed[0] as usize] += 1;
        }
        assert!(counts[1] > 400 && counts[1] < 800, "{counts:?}");
        assert_eq!(counts[1] + counts[2], 2000);
        // A destination that keeps nobody is not picked; none at all: the rule does not
        // apply (unless forced); `to: []`: nothing.
        let none = "configVersion: v3.1\nconditions:\n- from: {match: method = echo}\n  to:\n  - {match: port = 9}\n";
        dir.update_rule_document(RuleKind::ServiceConditions, "k", Some(none))
            .unwrap();
        assert_eq!(ports(&dir, &call), [1, 2]);
        let forced = format!("force: true\n{none}");
        dir.update_rule_document(RuleKind::ServiceConditions, "k", Some(&forced))
            .unwrap();
        assert!(ports(&dir, &call).is_empty());
        let empty = "configVersion: v3.1\nconditions:\n- from: {match: method = echo}\n  to: []\n";
        dir.update_rule_document(RuleKind::ServiceConditions, "k", Some(empty))
            .unwrap();
        assert!(ports(&dir, &call).is_empty());
    }

    #[test]
    fn tag_documents_assign_tags_by_address() {
        let dir = directory();
        let plain = Invocation::new("demo.Api", "echo", vec![]);
        let mut gray = plain.clone();
        gray.attachments.insert("dubbo.tag", "gray");
        let mut blue = plain.clone();
        blue.attachments.insert("dubbo.tag", "blue");
        assert_eq!(
            ports(&dir, &gray),
            [1, 2],
            "unknown tag: untagged providers"
        );
        let doc = "force: false\nkey: shop\ntags:\n- name: gray\n  addresses: ['10.0.0.2:2']\n";
        dir.update_rule_document(RuleKind::Tags, "shop.tag-router", Some(doc))
            .unwrap();
        assert_eq!(ports(&dir, &gray), [2]);
        // Untagged calls avoid the rule's addresses; a provider's own tag the rule does
        // not name does not exclude it (Java's `TagStateRouter`).
        assert_eq!(ports(&dir, &plain), [1, 3]);
        assert_eq!(
            ports(&dir, &blue),
            [3],
            "the providers' own tags still work"
        );
        // The tagged address goes away: fall back (not forced) or nothing (forced).
        let gone = "key: shop\ntags:\n- name: gray\n  addresses: ['10.9.9.9:9']\n";
        dir.update_rule_document(RuleKind::Tags, "k", Some(gone))
            .unwrap();
        assert_eq!(ports(&dir, &gray), [1, 2]);
        let forced = format!("force: true\n{gone}");
        dir.update_rule_document(RuleKind::Tags, "k", Some(&forced))
            .unwrap();
        assert!(ports(&dir, &gray).is_empty());
        // A tag the rule names wins over the providers' own tag of that name, even when
        // none of its addresses is left (Java's TagStateRouter): fallback, not `blue`.
        let renamed = "key: shop\ntags:\n- name: blue\n  addresses: ['10.9.9.9:9']\n";
        dir.update_rule_document(RuleKind::Tags, "k", Some(renamed))
            .unwrap();
        assert_eq!(ports(&dir, &blue), [1, 2]);
        dir.update_rule_document(RuleKind::Tags, "k", Some(&forced))
            .unwrap();
        // Tag levels: `beta|team2` falls back to `beta` (not when forced).
        let levels = "key: shop\ntags:\n- name: beta\n  addresses: ['10.0.0.1:1']\n- name: beta|team1\n  addresses: ['10.0.0.2:2']\n";
        dir.update_rule_document(RuleKind::Tags, "k", Some(levels))
            .unwrap();
        let tagged = |tag: &str, force: bool| {
            let mut call = plain.clone();
            call.attachments.insert("dubbo.tag", tag);
            if force {
                call.attachments.insert("dubbo.force.tag", "true");
            }
            ports(&dir, &call)
        };
        assert_eq!(tagged("beta|team1", false), [2]);
        assert_eq!(tagged("beta|team2", false), [1]);
        assert!(tagged("beta|team2", true).is_empty());
        dir.update_rule_document(RuleKind::Tags, "k", Some(&forced))
            .unwrap();
        // Malformed: kept; deleted: back to the providers' own tags.
        assert!(dir
            .update_rule_document(RuleKind::Tags, "k", Some("tags: ["))
            .is_err());
        assert!(ports(&dir, &gray).is_empty());
        dir.update_rule_document(RuleKind::Tags, "k", None).unwrap();
        assert_eq!(ports(&dir, &gray), [1, 2]);
        assert_eq!(ports(&dir, &plain), [1, 2]);
    }
}
