use super::*;

fn inst(ip: &str, port: u16, ephemeral: bool) -> Instance {
    Instance {
        ip: ip.into(),
        port,
        weight: 1.0,
        healthy: true,
        enabled: true,
        ephemeral,
        cluster: "DEFAULT".into(),
        metadata: Arc::new(BTreeMap::new()),
        last_beat: None,
        last_beat_ms: 0,
    }
}

fn key(name: &str) -> ServiceKey {
    ServiceKey {
        namespace: "public".into(),
        grouped: format!("DEFAULT_GROUP@@{name}"),
    }
}

#[test]
fn silent_instances_turn_unhealthy_then_disappear() {
    let mut s = Store::open(None).unwrap();
    let k = key("a");
    assert!(s.register(&k, inst("127.0.0.1", 1, true)).unwrap().changed);
    let timing = Timing {
        beat_timeout: Duration::from_secs(15),
        delete_timeout: Duration::from_secs(30),
    };
    let t0 = Instant::now();
    assert!(s
        .expire(timing, t0 + Duration::from_secs(14), None)
        .is_empty());
    assert_eq!(
        s.expire(timing, t0 + Duration::from_secs(16), None),
        vec![k.clone()]
    );
    let info = s.service_info(&k, "DEFAULT_GROUP", "", false, 3000);
    assert!(!info.hosts[0].healthy);
    assert!(s
        .service_info(&k, "DEFAULT_GROUP", "", true, 3000)
        .hosts
        .is_empty());
    // A beat brings it back.
    assert!(s.beat(&k, "DEFAULT", "127.0.0.1", 1).1);
    assert!(s.service_info(&k, "DEFAULT_GROUP", "", true, 3000).hosts[0].healthy);
    let t1 = Instant::now();
    assert_eq!(
        s.expire(timing, t1 + Duration::from_secs(31), None),
        vec![k.clone()]
    );
    assert!(s.services.is_empty());
    assert_eq!(s.beat(&k, "DEFAULT", "127.0.0.1", 1).0, Beat::Unknown);
}

#[test]
fn nothing_expires_while_the_server_refuses_requests() {
    let mut s = Store::open(None).unwrap();
    let k = key("a");
    let _ = s.register(&k, inst("127.0.0.1", 1, true)).unwrap();
    let _ = s.register(&k, inst("127.0.0.1", 2, true)).unwrap();
    assert_eq!(s.counts(), (1, 2));
    let timing = Timing {
        beat_timeout: Duration::from_secs(15),
        delete_timeout: Duration::from_secs(30),
    };
    let t0 = Instant::now();
    // Refusing requests until t0 + 50 s: silence counts from the last refusal.
    let refused = Some(t0 + Duration::from_secs(50));
    assert!(s
        .expire(timing, t0 + Duration::from_secs(60), refused)
        .is_empty());
    assert_eq!(s.counts(), (1, 2));
    // 16 s after the last refusal: unhealthy; 31 s after: removed.
    assert_eq!(
        s.expire(timing, t0 + Duration::from_secs(66), refused),
        vec![k.clone()]
    );
    assert!(!s.services[&k].clusters["DEFAULT"][&("127.0.0.1".into(), 1)].healthy);
    assert_eq!(
        s.expire(timing, t0 + Duration::from_secs(81), refused),
        vec![k.clone()]
    );
    assert_eq!(s.counts(), (0, 0));
}

#[test]
fn counts_follow_every_change() {
    let mut s = Store::open(None).unwrap();
    for n in 0..50u16 {
        let _ = s.register(&key(&format!("s{}", n % 5)), inst("127.0.0.1", n, true));
    }
    // Registering again is no new instance.
    let _ = s.register(&key("s0"), inst("127.0.0.1", 0, true));
    assert_eq!(s.counts(), (5, 50));
    assert_eq!(s.service_instance_count(&key("s1")), 10);
    let _ = s.deregister(&key("s1"), "DEFAULT", "127.0.0.1", 1).unwrap();
    let _ = s.deregister(&key("s1"), "DEFAULT", "127.0.0.1", 1).unwrap();
    assert_eq!(s.counts(), (5, 49));
    let timing = Timing {
        beat_timeout: Duration::from_secs(1),
        delete_timeout: Duration::from_secs(2),
    };
    s.expire(timing, Instant::now() + Duration::from_secs(3), None);
    assert_eq!(s.counts(), (0, 0));
    let names: Vec<_> = s.service_names("public", "DEFAULT_GROUP@@").collect();
    assert!(names.is_empty());
}

#[test]
fn metadata_overrides_the_timeouts() {
    let mut s = Store::open(None).unwrap();
    let k = key("a");
    let mut i = inst("127.0.0.1", 1, true);
    Arc::make_mut(&mut i.metadata).insert(META_BEAT_TIMEOUT.into(), "1000".into());
    Arc::make_mut(&mut i.metadata).insert(META_DELETE_TIMEOUT.into(), "2000".into());
    Arc::make_mut(&mut i.metadata).insert(META_BEAT_INTERVAL.into(), "500".into());
    let _ = s.register(&k, i).unwrap();
    let timing = Timing {
        beat_timeout: Duration::from_secs(15),
        delete_timeout: Duration::from_secs(30),
    };
    let t0 = Instant::now();
    assert_eq!(
        s.expire(timing, t0 + Duration::from_millis(1500), None)
            .len(),
        1
    );
    assert_eq!(
        s.expire(timing, t0 + Duration::from_millis(2500), None)
            .len(),
        1
    );
    assert!(s.services.is_empty());
    let mut i = inst("127.0.0.1", 2, true);
    Arc::make_mut(&mut i.metadata).insert(META_BEAT_INTERVAL.into(), "500".into());
    let _ = s.register(&k, i).unwrap();
    assert_eq!(
        s.beat(&k, "DEFAULT", "127.0.0.1", 2).0,
        Beat::Ok(Duration::from_millis(500))
    );
}

#[test]
fn persistent_instances_survive_a_reopen_and_never_expire() {
    let dir = std::env::temp_dir().join(format!("rdubbo-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let k = key("p");
    {
        let mut s = Store::open(Some(&dir)).unwrap();
        let mut i = inst("127.0.0.1", 7, false);
        Arc::make_mut(&mut i.metadata).insert("k".into(), "v".into());
        i.weight = 3.0;
        // Each write is committed by the storage thread; the flush says when.
        assert!(s.register(&k, i).unwrap().flushed_blocking().unwrap());
        let _ = s.register(&k, inst("127.0.0.1", 8, false)).unwrap();
        let plain = s.register(&k, inst("127.0.0.1", 9, true)).unwrap();
        assert!(plain.flush.is_none(), "ephemeral instances are not written");
        assert!(s.deregister(&k, "DEFAULT", "127.0.0.1", 8).unwrap().changed);
        let later = Instant::now() + Duration::from_secs(3600);
        let timing = Timing {
            beat_timeout: Duration::from_secs(15),
            delete_timeout: Duration::from_secs(30),
        };
        s.expire(timing, later, None);
        assert_eq!(s.counts(), (1, 1));
    }
    let s = Store::open(Some(&dir)).unwrap();
    let info = s.service_info(&k, "DEFAULT_GROUP", "", false, 3000);
    assert_eq!(info.hosts.len(), 1);
    assert_eq!(info.hosts[0].port, 7);
    assert_eq!(info.hosts[0].weight, 3.0);
    assert_eq!(info.hosts[0].metadata["k"], "v");
    assert!(!info.hosts[0].ephemeral);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_removed_service_never_looks_older_than_its_last_list() {
    // Many changes within one millisecond push the change stamps ahead of the clock;
    // the empty list of a removed service must still be newer than its last list.
    let mut s = Store::open(None).unwrap();
    let k = key("fast");
    let mut last = 0;
    for port in 1..200 {
        let _ = s.register(&k, inst("127.0.0.1", port, true)).unwrap();
        let info = s.service_info(&k, "DEFAULT_GROUP", "", false, 3000);
        assert!(info.last_ref_time > last);
        last = info.last_ref_time;
        let _ = s.deregister(&k, "DEFAULT", "127.0.0.1", port).unwrap();
        let gone = s.service_info(&k, "DEFAULT_GROUP", "", false, 3000);
        assert!(gone.hosts.is_empty());
        assert!(
            gone.last_ref_time >= last,
            "{} < {last}",
            gone.last_ref_time
        );
    }
}

#[test]
fn list_filters_clusters_and_disabled_instances() {
    let mut s = Store::open(None).unwrap();
    let k = key("c");
    let mut a = inst("127.0.0.1", 1, true);
    a.cluster = "A".into();
    let mut b = inst("127.0.0.1", 2, true);
    b.cluster = "B".into();
    let mut d = inst("127.0.0.1", 3, true);
    d.enabled = false;
    let _ = s.register(&k, a).unwrap();
    let _ = s.register(&k, b).unwrap();
    let _ = s.register(&k, d).unwrap();
    let all = s.service_info(&k, "DEFAULT_GROUP", "", false, 3000);
    assert_eq!(all.hosts.len(), 2);
    let only_a = s.service_info(&k, "DEFAULT_GROUP", "A", false, 3000);
    assert_eq!(only_a.hosts.len(), 1);
    assert_eq!(only_a.hosts[0].cluster_name, "A");
    assert_ne!(all.checksum, only_a.checksum);
    // Re-registering the same data is not a change.
    let mut a2 = inst("127.0.0.1", 1, true);
    a2.cluster = "A".into();
    assert!(!s.register(&k, a2).unwrap().changed);
}
