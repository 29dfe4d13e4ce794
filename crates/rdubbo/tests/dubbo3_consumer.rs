//! Dubbo 3 application-level discovery, consumer side, through a real ZooKeeper: an rdubbo
//! reference follows interface → mapping → applications → instances → MetadataService →
//! provider URLs, picks interface- or application-level addresses by its migration step,
//! and switches at runtime when the migration rule written with `zkCli.sh` says so,
//! without a failed call. Java 3.3.1 providers registered by instance only are found and
//! called over dubbo and tri.
//!
//! Java peers are skipped LOUDLY when their jars are missing (`RDUBBO_REQUIRE_JAVA=1` fails
//! instead).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdubbo::consumer::Reference;
use rdubbo::discovery::{keys, AddressSource, MigrationStep};
use rdubbo::generic::GenericService;
use rdubbo::metadata::{MetadataInfo, ServiceMetadata, METADATA_SERVICE, METADATA_SERVICE_VERSION};
use rdubbo::provider::Provider;
use rdubbo::{
    Invoker, RegisterMode, Registry, ServiceInfo, ServiceInstance, SetupError, Url, Value,
};
use rdubbo_testkit::java::{DubboVersion, JavaDubbo};
use rdubbo_testkit::{free_port, ZkServer};

mod dubbo3_common;
use dubbo3_common::user_service::{RustUsers, UserServiceClient, UserServiceServer};
use dubbo3_common::{
    compile, connect, eventually, java_instance_provider, provider, versioned, APP, INTERFACE,
};

const CONSUMER_APP: &str = "shop-web";
const MIGRATION_DIR: &str = "/dubbo/config/DUBBO_SERVICEDISCOVERY_MIGRATION";

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A reference to UserService 1.0.0 of consumer application `shop-web`, with the
/// migration step `step` (reference parameter) when given.
async fn reference(
    registry: &Arc<dyn Registry>,
    step: Option<&str>,
    check: bool,
) -> Result<Arc<Reference>, SetupError> {
    let mut b = Reference::builder(INTERFACE)
        .version("1.0.0")
        .application(CONSUMER_APP)
        .registry(registry.clone())
        .check(check)
        .wait(Duration::from_secs(10));
    if let Some(step) = step {
        b = b.param("migration.step", step);
    }
    b.build().await.map(Arc::new)
}

fn users(reference: &Arc<Reference>) -> UserServiceClient {
    UserServiceClient::new(reference.clone() as Arc<dyn Invoker>)
}

fn source(reference: &Reference) -> Option<AddressSource> {
    reference.migration().and_then(|m| m.source)
}

/// The provider URLs the reference calls now.
fn called(reference: &Reference) -> Vec<String> {
    reference
        .directory()
        .providers()
        .iter()
        .map(|p| p.url.to_string())
        .collect()
}

/// An rdubbo provider registered by instance only is found through the mapping, its
/// instance and its MetadataService, over dubbo and over tri, with the default step
/// (APPLICATION_FIRST) and with FORCE_APPLICATION.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdubbo_provider_registered_by_instance_only_is_called_through_its_application() {
    init_tracing();
    let zk = ZkServer::start();
    let registry = connect(&zk, "file.cache=false").await;
    for protocol in ["dubbo", "tri"] {
        let p = provider(protocol, &registry, APP, RegisterMode::Instance).await;
        for step in [None, Some("FORCE_APPLICATION")] {
            let r = reference(&registry, step, true).await.unwrap();
            let status = r.migration().unwrap();
            assert_eq!(
                status.source,
                Some(AddressSource::Application),
                "{status:?}"
            );
            assert_eq!(status.interface_providers, Some(0));
            assert_eq!(status.application_providers, Some(1));
            assert_eq!(status.applications, [APP]);
            let urls = called(&r);
            assert_eq!(urls.len(), 1, "{urls:?}");
            let expected = format!(
                "{protocol}://127.0.0.1:{}/{INTERFACE}?",
                p.local_addr().port()
            );
            assert!(urls[0].starts_with(&expected), "{urls:?}");
            assert_eq!(users(&r).inc(41).await.unwrap(), 42, "{protocol} {step:?}");
            r.close().await;
        }
        p.stop().await;
    }
    registry.destroy().await;
}

/// APPLICATION_FIRST uses interface-level URLs while no application-level provider
/// exists, and moves to the application level as soon as one appears; FORCE_APPLICATION
/// finds nothing without instances; FORCE_INTERFACE ignores instances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn application_first_falls_back_and_force_steps_keep_to_their_side() {
    init_tracing();
    let zk = ZkServer::start();
    let registry = connect(&zk, "file.cache=false").await;
    let by_interface = provider("dubbo", &registry, APP, RegisterMode::Interface).await;

    let first = reference(&registry, None, true).await.unwrap();
    let status = first.migration().unwrap();
    assert_eq!(status.step, MigrationStep::ApplicationFirst);
    assert_eq!(status.source, Some(AddressSource::Interface), "{status:?}");
    assert_eq!(status.application_providers, Some(0));
    assert_eq!(users(&first).inc(1).await.unwrap(), 2);

    match reference(&registry, Some("FORCE_APPLICATION"), true).await {
        Err(SetupError::NoProvider(key)) => assert_eq!(key, format!("{INTERFACE}:1.0.0")),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("FORCE_APPLICATION found interface-level providers"),
    }
    let forced_app = reference(&registry, Some("FORCE_APPLICATION"), false)
        .await
        .unwrap();
    assert!(called(&forced_app).is_empty());
    let forced_interface = reference(&registry, Some("FORCE_INTERFACE"), true)
        .await
        .unwrap();
    assert_eq!(source(&forced_interface), Some(AddressSource::Interface));

    // An application-level provider appears: APPLICATION_FIRST and FORCE_APPLICATION take
    // it, FORCE_INTERFACE does not even look.
    let by_instance = provider(
        "dubbo",
        &registry,
        "rdubbo-users-v3",
        RegisterMode::Instance,
    )
    .await;
    let port = by_instance.local_addr().port();
    eventually(
        "APPLICATION_FIRST moves to the application level",
        async || source(&first) == Some(AddressSource::Application),
    )
    .await;
    assert_eq!(called(&first).len(), 1);
    assert!(called(&first)[0].contains(&format!(":{port}/")));
    eventually("FORCE_APPLICATION finds the instance", async || {
        called(&forced_app).len() == 1
    })
    .await;
    assert_eq!(users(&forced_app).inc(5).await.unwrap(), 6);
    let status = forced_interface.migration().unwrap();
    assert_eq!(status.application_providers, None, "{status:?}");
    assert_eq!(called(&forced_interface).len(), 1);
    assert!(
        called(&forced_interface)[0].contains(&format!(":{}/", by_interface.local_addr().port()))
    );

    // The instance goes away: APPLICATION_FIRST falls back to the interface level.
    by_instance.stop().await;
    eventually("APPLICATION_FIRST falls back", async || {
        source(&first) == Some(AddressSource::Interface)
    })
    .await;
    assert_eq!(users(&first).inc(2).await.unwrap(), 3);
    for r in [first, forced_app, forced_interface] {
        r.close().await;
    }
    by_interface.stop().await;
    registry.destroy().await;
}

/// The migration rule `shop-web.migration`, written with `zkCli.sh` as a user would, moves
/// a loaded reference from FORCE_INTERFACE to FORCE_APPLICATION and back; not one call
/// fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_rule_switches_steps_under_load_without_a_failed_call() {
    init_tracing();
    let zk = ZkServer::start();
    let registry = connect(&zk, "file.cache=false").await;
    let p = provider("dubbo", &registry, APP, RegisterMode::All).await;
    let r = reference(&registry, Some("FORCE_INTERFACE"), true)
        .await
        .unwrap();
    assert_eq!(source(&r), Some(AddressSource::Interface));
    let interface_urls = called(&r);

    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for worker in 0..8i64 {
        let (client, ok, failed, stop) = (users(&r), ok.clone(), failed.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let mut i = worker * 1_000_000;
            while !stop.load(Ordering::Relaxed) {
                match client.inc(i).await {
                    Ok(v) if v == i + 1 => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    other => failed.lock().unwrap().push(format!("{other:?}")),
                }
                i += 1;
            }
        }));
    }
    let calls_at = |ok: &AtomicU64| ok.load(Ordering::Relaxed);
    eventually("load running", async || calls_at(&ok) > 200).await;

    let rule = format!("{MIGRATION_DIR}/{CONSUMER_APP}.migration");
    for dir in ["/dubbo", "/dubbo/config", MIGRATION_DIR] {
        zk.cli(&["create", dir]);
    }
    let out = zk.cli(&["create", &rule, "key: shop-web\nstep: FORCE_APPLICATION\n"]);
    assert!(out.contains("Created"), "{out}");
    eventually("switched to the application level", async || {
        source(&r) == Some(AddressSource::Application)
    })
    .await;
    assert_eq!(r.migration().unwrap().step, MigrationStep::ForceApplication);
    let app_urls = called(&r);
    assert_eq!(app_urls.len(), 1);
    assert_ne!(
        app_urls, interface_urls,
        "the directory calls other URLs now"
    );
    let before = calls_at(&ok);
    eventually("calls on the application level", async || {
        calls_at(&ok) > before + 200
    })
    .await;

    zk.cli(&["set", &rule, "key: shop-web\nstep: FORCE_INTERFACE\n"]);
    eventually("back to the interface level", async || {
        source(&r) == Some(AddressSource::Interface)
    })
    .await;
    assert_eq!(called(&r), interface_urls);
    let before = calls_at(&ok);
    eventually("calls on the interface level", async || {
        calls_at(&ok) > before + 200
    })
    .await;

    // A malformed rule is ignored; deleting the rule restores the reference's own step.
    zk.cli(&["set", &rule, "step: [not, a, step"]);
    zk.cli(&["delete", &rule]);
    eventually("rule gone", async || {
        r.migration().unwrap().step == MigrationStep::ForceInterface
    })
    .await;

    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let failed = failed.lock().unwrap().clone();
    eprintln!("{} calls during the switches", calls_at(&ok));
    assert!(
        failed.is_empty(),
        "{} failed calls: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    r.close().await;
    p.stop().await;
    registry.destroy().await;
}

/// APPLICATION_FIRST's threshold (Java's `DefaultMigrationAddressComparator`): with two
/// interface-level providers and one application-level one, the application level wins
/// only when 1/2 reaches the threshold; a rule's `interfaces` entry beats its own step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn application_first_threshold_and_per_interface_rules() {
    init_tracing();
    let zk = ZkServer::start();
    let registry = connect(&zk, "file.cache=false").await;
    let config = registry.dynamic_configuration().unwrap();
    let both = provider("dubbo", &registry, APP, RegisterMode::All).await;
    let urls_only = provider(
        "dubbo",
        &registry,
        "rdubbo-users-2",
        RegisterMode::Interface,
    )
    .await;
    let r = reference(&registry, None, true).await.unwrap();
    let status = r.migration().unwrap();
    assert_eq!(
        (status.interface_providers, status.application_providers),
        (Some(2), Some(1))
    );
    // Java's default threshold (0): any application-level provider wins.
    assert_eq!(source(&r), Some(AddressSource::Application));
    let key = format!("{CONSUMER_APP}.migration");
    let group = rdubbo::config_center::MIGRATION_GROUP;
    config
        .publish(&key, group, "step: APPLICATION_FIRST\nthreshold: 1.0\n")
        .await
        .unwrap();
    eventually("1 of 2 is below the threshold", async || {
        source(&r) == Some(AddressSource::Interface)
    })
    .await;
    assert_eq!(called(&r).len(), 2);
    config
        .publish(&key, group, "step: APPLICATION_FIRST\nthreshold: 0.5\n")
        .await
        .unwrap();
    eventually("1 of 2 reaches 0.5", async || {
        source(&r) == Some(AddressSource::Application)
    })
    .await;
    config
        .publish(
            &key,
            group,
            "step: FORCE_APPLICATION\ninterfaces:\n  - serviceKey: com.example.UserService:1.0.0\n    step: FORCE_INTERFACE\n",
        )
        .await
        .unwrap();
    eventually("the interface's own step", async || {
        source(&r) == Some(AddressSource::Interface)
    })
    .await;
    assert_eq!(r.migration().unwrap().step, MigrationStep::ForceInterface);
    assert_eq!(users(&r).inc(1).await.unwrap(), 2);
    r.close().await;
    both.stop().await;
    urls_only.stop().await;
    registry.destroy().await;
}

/// Three instances of one application on three loopback addresses serve one revision:
/// two references fetch its metadata once, from a MetadataService that counts the calls;
/// a new revision is fetched once more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_is_fetched_once_per_revision() {
    init_tracing();
    let zk = ZkServer::start();
    let registry = connect(&zk, "file.cache=false").await;
    let discovery = registry.service_discovery().unwrap();
    let app = "counted";

    // The service itself, on every loopback address.
    let service = Provider::builder("0.0.0.0:0".parse().unwrap())
        .application(app)
        .protocol("dubbo")
        .export(versioned(), Arc::new(UserServiceServer::new(RustUsers)))
        .start()
        .await
        .unwrap();
    let port = service.local_addr().port();
    let service_url: Url = format!(
        "dubbo://127.0.0.1:{port}/{INTERFACE}?application={app}&interface={INTERFACE}&methods=inc&side=provider&version=1.0.0"
    )
    .parse()
    .unwrap();
    let info_with = |extra: Option<&str>| {
        let mut s = ServiceMetadata::from_url(&service_url);
        if let Some(extra) = extra {
            s.params.insert("weight".into(), extra.into());
        }
        let mut info = MetadataInfo::new(app);
        info.add_service(s);
        info
    };
    let infos = Arc::new(Mutex::new(Vec::<MetadataInfo>::new()));
    let calls = Arc::new(AtomicUsize::new(0));
    let metadata_service = {
        let (infos, calls) = (infos.clone(), calls.clone());
        GenericService::new(
            ServiceInfo {
                interface: METADATA_SERVICE.into(),
                version: Some(METADATA_SERVICE_VERSION.into()),
                group: Some(app.into()),
                methods: vec!["getMetadataInfo".into()],
                ..Default::default()
            },
            move |inv: rdubbo::Invocation| {
                calls.fetch_add(1, Ordering::SeqCst);
                let wanted = inv.args.to_values().ok().and_then(|v| match v.first() {
                    Some(Value::String(s)) => Some(s.clone()),
                    _ => None,
                });
                let found = infos
                    .lock()
                    .unwrap()
                    .iter()
                    .find(|i| Some(i.revision()) == wanted)
                    .map(MetadataInfo::to_value);
                async move { Ok(found.unwrap_or(Value::Null)) }
            },
        )
    };
    let ms = Provider::builder("0.0.0.0:0".parse().unwrap())
        .application(app)
        .protocol("dubbo")
        .export(metadata_service.info().clone(), Arc::new(metadata_service))
        .start()
        .await
        .unwrap();
    let ms_port = ms.local_addr().port();

    let register = |revision: String| {
        let discovery = discovery.clone();
        async move {
            for host in ["127.0.0.1", "127.0.0.2", "127.0.0.3"] {
                let mut i = ServiceInstance::new(app, host, port);
                i.metadata.insert(keys::REVISION.into(), revision.clone());
                i.metadata.insert(keys::STORAGE_TYPE.into(), "local".into());
                i.metadata.insert(
                    keys::ENDPOINTS.into(),
                    rdubbo::discovery::endpoints_json(&[("dubbo".into(), port)]),
                );
                i.metadata.insert(
                    keys::METADATA_SERVICE_URL_PARAMS.into(),
                    rdubbo::discovery::params_json(&[
                        ("version".into(), "1.0.0".into()),
                        ("port".into(), ms_port.to_string()),
                        ("protocol".into(), "dubbo".into()),
                    ]),
                );
                discovery.register(&i).await.unwrap();
            }
        }
    };
    let r1 = info_with(None);
    let rev1 = r1.revision();
    infos.lock().unwrap().push(r1);
    register(rev1.clone()).await;
    discovery.map(INTERFACE, app).await.unwrap();
    // Another application whose MetadataService does not answer (its "port" is
    // ZooKeeper's): its instance is left out, the others are not held up.
    let mut broken = ServiceInstance::new("broken", "127.0.0.1", 1);
    broken
        .metadata
        .insert(keys::REVISION.into(), "r-broken".into());
    broken.metadata.insert(
        keys::METADATA_SERVICE_URL_PARAMS.into(),
        rdubbo::discovery::params_json(&[
            ("port".into(), zk.port().to_string()),
            ("protocol".into(), "dubbo".into()),
        ]),
    );
    discovery.register(&broken).await.unwrap();
    discovery.map(INTERFACE, "broken").await.unwrap();

    let a = reference(&registry, Some("FORCE_APPLICATION"), true)
        .await
        .unwrap();
    let b = reference(&registry, None, true).await.unwrap();
    for r in [&a, &b] {
        assert_eq!(called(r).len(), 3, "{:?}", called(r));
        assert_eq!(r.migration().unwrap().applications, ["broken", app]);
        assert_eq!(source(r), Some(AddressSource::Application));
        for _ in 0..6 {
            assert_eq!(users(r).inc(1).await.unwrap(), 2);
        }
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "one fetch for revision {rev1}"
    );

    // A new revision (the service got a weight): fetched once, seen by both.
    let r2 = info_with(Some("50"));
    let rev2 = r2.revision();
    assert_ne!(rev1, rev2);
    infos.lock().unwrap().push(r2);
    register(rev2.clone()).await;
    for r in [&a, &b] {
        eventually("the new revision's URLs", async || {
            let urls = called(r);
            urls.len() == 3 && urls.iter().all(|u| u.contains("weight=50"))
        })
        .await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2, "one more fetch for {rev2}");
    a.close().await;
    b.close().await;
    ms.stop().await;
    service.stop().await;
    registry.destroy().await;
}

// ------------------------------------------------------------------------- Java peers

/// A Java 3.3.1 provider registered by instance only (no `/dubbo/<interface>/providers`)
/// is called by an rdubbo reference with FORCE_APPLICATION, over dubbo and over tri: the
/// metadata comes from Java's own MetadataService.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_3_3_provider_registered_by_instance_is_called_with_force_application() {
    let Some(java) = JavaDubbo::find(DubboVersion::V3_3) else {
        return;
    };
    init_tracing();
    let classes = compile(&java).await;
    for protocol in ["dubbo", "tri"] {
        // A ZooKeeper each: a killed JVM's instance lives on until its session expires.
        let zk = ZkServer::start();
        let url = zk.registry_url("");
        let port = free_port();
        let java_provider = java_instance_provider(&java, &classes, port, &url, protocol).await;
        let registry = connect(&zk, "file.cache=false").await;
        assert!(
            !zk.cli(&["ls", &format!("/dubbo/{INTERFACE}/providers")])
                .contains("%3A%2F%2F"),
            "the Java provider registered interface-level URLs"
        );
        let r = reference(&registry, Some("FORCE_APPLICATION"), true)
            .await
            .unwrap_or_else(|e| panic!("{protocol}: {e}; provider log:\n{}", java_provider.log()));
        let status = r.migration().unwrap();
        assert_eq!(status.applications, ["java-provider"], "{status:?}");
        let urls = called(&r);
        assert_eq!(urls.len(), 1, "{urls:?}");
        assert!(
            urls[0].starts_with(&format!("{protocol}://127.0.0.1:{port}/{INTERFACE}?")),
            "{urls:?}"
        );
        let client = users(&r);
        assert_eq!(client.inc(41).await.unwrap(), 42, "{protocol}");
        assert_eq!(client.inc_boxed(Some(1)).await.unwrap(), Some(3));
        assert_eq!(client.list_users(3).await.unwrap().len(), 3);
        r.close().await;
        registry.destroy().await;
        drop(java_provider);
    }
}

// ------------------------------------------------------------------------- benchmark

/// Consumer start → first answer, by migration step: a fresh registry client, the
/// reference and its first call, against one provider registered both ways (`all`). The
/// provider restarts before each run (a new port, so a new revision: the metadata is
/// fetched every time, as by a fresh consumer process).
///
/// `cargo test --release -p rdubbo --test dubbo3_consumer -- --ignored --nocapture start_to_first_call`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn start_to_first_call() {
    const RUNS: usize = 30;
    let zk = ZkServer::start();
    let provider_registry = connect(&zk, "file.cache=false").await;
    let mut table = Vec::new();
    for step in ["FORCE_INTERFACE", "APPLICATION_FIRST", "FORCE_APPLICATION"] {
        let mut times = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            let p = provider("dubbo", &provider_registry, APP, RegisterMode::All).await;
            let t0 = Instant::now();
            let registry = connect(&zk, "file.cache=false").await;
            let r = reference(&registry, Some(step), true).await.unwrap();
            assert_eq!(users(&r).inc(1).await.unwrap(), 2);
            times.push(t0.elapsed());
            let expected = if step == "FORCE_INTERFACE" {
                AddressSource::Interface
            } else {
                AddressSource::Application
            };
            assert_eq!(source(&r), Some(expected));
            r.close().await;
            registry.destroy().await;
            p.stop().await;
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        table.push(format!(
            "| {step} | {:.1} | {:.1} | {:.1} |",
            ms(times[RUNS / 2]),
            ms(times[RUNS * 9 / 10]),
            ms(times[RUNS - 1])
        ));
    }
    println!("| step | median ms | p90 ms | max ms |\n|---|---:|---:|---:|");
    for row in table {
        println!("{row}");
    }
    provider_registry.destroy().await;
}
