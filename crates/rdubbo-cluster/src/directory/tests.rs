//! Tests of the directory: provider lists, configurators, rules and health.
use super::*;
use rdubbo_core::{BoxFuture, Invocation, Reply, RpcResult, Value};

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

fn url(s: &str) -> Url {
    s.parse().unwrap()
}

#[test]
fn filters_protocols_versions_and_disabled_and_reuses_invokers() {
    let consumer = url("consumer://127.0.0.1/demo.Api?interface=demo.Api&version=1.0.0");
    let dir = Directory::new(consumer.clone(), vec![Arc::new(Jsonrpc)]);
    let a = url("jsonrpc://127.0.0.1:1/demo.Api?interface=demo.Api&version=1.0.0");
    let dubbo = url("dubbo://127.0.0.1:2/demo.Api?interface=demo.Api&version=1.0.0");
    let v2 = url("jsonrpc://127.0.0.1:3/demo.Api?interface=demo.Api&version=2.0.0");
    let off = url("jsonrpc://127.0.0.1:4/demo.Api?interface=demo.Api&version=1.0.0&enabled=false");
    dir.notify(vec![a.clone(), dubbo, v2, off]);
    let first = dir.providers();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].url, a);
    first[0].health.failure();
    let b = url("jsonrpc://127.0.0.1:5/demo.Api?interface=demo.Api&version=1.0.0");
    dir.notify(vec![a.clone(), b]);
    let second = dir.providers();
    assert_eq!(second.len(), 2);
    assert!(
        Arc::ptr_eq(&first[0], &second[0]),
        "kept providers are reused"
    );
    // Rules never empty the list; an empty providers category does.
    dir.notify(vec![rdubbo_core::registry::empty_url(&consumer, "routers")]);
    assert_eq!(dir.providers().len(), 2);
    dir.notify(vec![rdubbo_core::registry::empty_url(
        &consumer,
        "providers",
    )]);
    assert!(dir.providers().is_empty());
    assert_eq!(dir.updates(), 3);
}

#[test]
fn configurators_change_and_disable_providers_and_removal_restores() {
    let consumer = url("consumer://127.0.0.1/demo.Api?interface=demo.Api&application=web");
    let dir = Directory::new(consumer, vec![Arc::new(Jsonrpc)]);
    let a = url("jsonrpc://10.0.0.1:1/demo.Api?interface=demo.Api&weight=100");
    let b = url("jsonrpc://10.0.0.2:2/demo.Api?interface=demo.Api&weight=100");
    dir.notify(vec![a.clone(), b.clone()]);
    let before = dir.providers();
    before[0]
        .stats
        .begin()
        .finish(std::time::Duration::from_millis(1), true);
    dir.notify(vec![
        url("override://10.0.0.1:1/demo.Api?category=configurators&weight=900&timeout=50"),
        url("override://10.0.0.2:2/demo.Api?category=configurators&disabled=true"),
    ]);
    let after = dir.providers();
    assert_eq!(after.len(), 1, "the disabled provider is out");
    assert_eq!(after[0].url.param("weight"), Some("900"));
    assert_eq!(
        after[0].overrides,
        vec![
            ("weight".into(), "900".into()),
            ("timeout".into(), "50".into())
        ]
    );
    assert_eq!(
        after[0].stats.succeeded(),
        1,
        "stats survive a configuration change"
    );
    // The rules go away: back to what the providers registered.
    dir.notify(vec![rdubbo_core::registry::empty_url(
        dir.consumer(),
        "configurators",
    )]);
    let restored = dir.providers();
    assert_eq!(restored.len(), 2);
    assert_eq!(restored[0].url, a);
    assert!(restored[0].overrides.is_empty());
    // A provider list arriving later is configured too.
    dir.notify(vec![url(
        "override://0.0.0.0/demo.Api?category=configurators&weight=5",
    )]);
    dir.notify(vec![a, b]);
    assert!(dir
        .providers()
        .iter()
        .all(|p| p.url.param("weight") == Some("5")));
}

#[test]
fn condition_rules_and_tags_route_calls() {
    let consumer = url("consumer://10.20.1.1/demo.Api?interface=demo.Api&application=web");
    let dir = Directory::new(consumer.clone(), vec![Arc::new(Jsonrpc)]);
    dir.notify(vec![
        url("jsonrpc://10.30.0.1:1/demo.Api?interface=demo.Api"),
        url("jsonrpc://10.40.0.1:2/demo.Api?interface=demo.Api"),
        url("jsonrpc://10.40.0.2:3/demo.Api?interface=demo.Api&dubbo.tag=gray"),
    ]);
    let call = Invocation::new("demo.Api", "echo", vec![]);
    let hosts = |ps: Routed| {
        ps.iter()
            .map(|p| p.url.host().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        hosts(dir.list(&call)),
        ["10.30.0.1", "10.40.0.1"],
        "untagged calls avoid tagged providers"
    );
    let mut gray = call.clone();
    gray.attachments.insert("dubbo.tag", "gray");
    assert_eq!(hosts(dir.list(&gray)), ["10.40.0.2"]);
    let mut blue = call.clone();
    blue.attachments.insert("dubbo.tag", "blue");
    assert_eq!(
        hosts(dir.list(&blue)),
        ["10.30.0.1", "10.40.0.1"],
        "unknown tag falls back"
    );
    blue.attachments.insert("dubbo.force.tag", "true");
    assert!(dir.list(&blue).is_empty());

    let rule = |text: &str, extra: &str| {
        url(&format!(
            "condition://0.0.0.0/demo.Api?category=routers&rule={}{extra}",
            rdubbo_core::url::encode(text)
        ))
    };
    dir.notify(vec![rule("host = 10.20.* => host = 10.30.*", "")]);
    assert_eq!(hosts(dir.list(&call)), ["10.30.0.1"]);
    // Method conditions.
    dir.notify(vec![rule("method = sayHello => host = 10.40.*", "")]);
    assert_eq!(hosts(dir.list(&call)), ["10.30.0.1", "10.40.0.1"]);
    let hello = Invocation::new("demo.Api", "sayHello", vec![]);
    assert_eq!(hosts(dir.list(&hello)), ["10.40.0.1"]);
    // An empty result is not applied unless forced.
    dir.notify(vec![rule("=> host = 10.99.*", "")]);
    assert_eq!(dir.list(&call).len(), 2);
    dir.notify(vec![rule("=> host = 10.99.*", "&force=true")]);
    assert!(dir.list(&call).is_empty());
    // Blacklist: consumers of application web get nothing.
    dir.notify(vec![rule("application = web =>", "")]);
    assert!(dir.list(&call).is_empty());
    // A malformed rule is ignored, the good one beside it applies.
    dir.notify(vec![
        rule("host = => port", ""),
        rule("=> host != 10.30.0.1", "&priority=1"),
    ]);
    assert_eq!(hosts(dir.list(&call)), ["10.40.0.1"]);
    // $-references: providers on the consumer's own host only.
    dir.notify(vec![rule("=> host = $host", "&force=true")]);
    assert!(dir.list(&call).is_empty());
    dir.notify(vec![rdubbo_core::registry::empty_url(&consumer, "routers")]);
    assert_eq!(dir.list(&call).len(), 2);
}

/// Routing as every call did it before the snapshot: tag routing on a copy of the
/// list, then each rule in priority order.
fn reference(dir: &Directory, rules: &[Url], call: &Invocation) -> Vec<String> {
    let mut ps = router::route_by_tag(dir.providers().to_vec(), call);
    for rule in router::parse_routers(rules) {
        ps = rule.route(ps, dir.consumer(), call);
    }
    ps.iter().map(|p| p.key.clone()).collect()
}

const RULES: &[&str] = &[
    "host = 10.20.* => host = 10.30.*",
    "method = sayHello => host = 10.40.*",
    "method != sayHello => host != 10.40.0.1",
    "=> host = 10.99.*",
    "application = web => port != 2",
    "application = other =>",
    "method = echo =>",
    "=> host = $host",
    "=> dubbo.tag = gray",
    "method = say* & application = web => host = 10.30.*,10.40.0.2",
    "attachments[dubbo.tag] = gray => host = 10.30.*",
];

proptest::proptest! {
    #[test]
    fn precomputed_routes_match_routing_every_call(
        providers in proptest::collection::vec((0usize..4, 0usize..3), 0..8),
        rules in proptest::collection::vec((0usize..RULES.len(), 0i64..3, proptest::bool::ANY), 0..4),
        method in 0usize..3,
        tag in 0usize..4,
        force in proptest::bool::ANY,
    ) {
        let consumer = url("consumer://10.20.1.1/demo.Api?interface=demo.Api&application=web");
        let dir = Directory::new(consumer, vec![Arc::new(Jsonrpc)]);
        let hosts = ["10.30.0.1", "10.40.0.1", "10.40.0.2", "10.20.1.1"];
        let tags = ["", "&dubbo.tag=gray", "&dubbo.tag=blue"];
        dir.notify(
            providers
                .iter()
                .enumerate()
                .map(|(i, (h, t))| {
                    url(&format!(
                        "jsonrpc://{}:{}/demo.Api?interface=demo.Api{}",
                        hosts[*h],
                        i + 1,
                        tags[*t]
                    ))
                })
                .collect(),
        );
        let rule_urls: Vec<Url> = rules
            .iter()
            .map(|(r, priority, force)| {
                url(&format!(
                    "condition://0.0.0.0/demo.Api?category=routers&rule={}&priority={priority}&force={force}",
                    rdubbo_core::url::encode(RULES[*r])
                ))
            })
            .collect();
        if !rule_urls.is_empty() {
            dir.notify(rule_urls.clone());
        }
        let mut call = Invocation::new("demo.Api", ["echo", "sayHello", "other"][method], vec![]);
        if tag > 0 {
            call.attachments.insert("dubbo.tag", ["", "gray", "blue", "red"][tag]);
        }
        if force {
            call.attachments.insert("dubbo.force.tag", "true");
        }
        let routed: Vec<String> = dir.list(&call).iter().map(|p| p.key.clone()).collect();
        proptest::prop_assert_eq!(routed, reference(&dir, &rule_urls, &call));
    }
}

#[test]
fn failed_providers_are_counted_until_they_answer_or_leave() {
    let consumer = url("consumer://127.0.0.1/demo.Api?interface=demo.Api");
    let dir = Directory::new(consumer, vec![Arc::new(Jsonrpc)]);
    let a = url("jsonrpc://127.0.0.1:1/demo.Api?interface=demo.Api");
    let b = url("jsonrpc://127.0.0.1:2/demo.Api?interface=demo.Api");
    dir.notify(vec![a.clone(), b]);
    let providers = dir.providers();
    assert_eq!(dir.marked(), 0);
    providers[0].health.failure();
    providers[0].health.failure();
    providers[1].health.failure();
    assert_eq!(dir.marked(), 2, "counted once per provider");
    providers[0].health.success();
    assert_eq!(dir.marked(), 1);
    // The failed provider leaves: no longer counted once nothing holds it.
    dir.notify(vec![a]);
    assert_eq!(dir.marked(), 1, "still held here");
    drop(providers);
    assert_eq!(dir.marked(), 0);
}
