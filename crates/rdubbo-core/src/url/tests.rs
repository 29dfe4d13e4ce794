//! Tests of the URL model: round trips of real registry nodes, matching, Java compatibility.

use super::*;
use proptest::prelude::*;

const PROVIDER_NODE: &str = "jsonrpc%3A%2F%2F116.211.15.192%3A30880%2Fim.youni.iccs.status.api.StatusUpdateService2%3Fanyhost%3Dtrue%26application%3Dstatus-dubbo-p%26default.threads%3D100%26dubbo%3D2.5.3%26interface%3Dim.youni.iccs.status.api.StatusUpdateService%26methods%3Dlogout%2CupdateLocale%2Cheartbeat%2CclearStatus%2Clogin0%2Clogin%26pid%3D10324%26revision%3D0.0.5%26server%3Djetty%26side%3Dprovider%26timestamp%3D1470730434200";
const CONSUMER_NODE: &str = "jsonrpc%3A%2F%2F10.45.2.39%2Fim.youni.iccs.status.api.StatusUpdateService%3Fapplication%3DPalmChat%26category%3Dconsumer%26dubbo%3Ddubbo-consumer-golang-0.0.1%26group%3D%26interface%3Dim.youni.iccs.status.api.StatusUpdateService%26ip%3D10.45.2.39%26module%3Ddubbogo%2Bclient%26org%3Dzenmen.com%26owner%3DZX%26pid%3D6560%26revision%3D%26side%3Dconsumer%26timeout%3D120%26timestamp%3D1470723624%26";

#[test]
fn java_provider_node_decodes_and_reencodes() {
    let url = Url::from_encoded(PROVIDER_NODE).unwrap();
    assert_eq!(url.protocol(), "jsonrpc");
    assert_eq!(url.host(), "116.211.15.192");
    assert_eq!(url.port(), Some(30880));
    assert_eq!(url.path(), "im.youni.iccs.status.api.StatusUpdateService2");
    assert_eq!(
        url.interface(),
        "im.youni.iccs.status.api.StatusUpdateService"
    );
    assert_eq!(url.param("side"), Some("provider"));
    assert_eq!(
        url.param("methods"),
        Some("logout,updateLocale,heartbeat,clearStatus,login0,login")
    );
    assert_eq!(url.param_or("default.threads", 0u32), 100);
    assert_eq!(url.param_or("timestamp", 0u64), 1_470_730_434_200);
    assert_eq!(url.category(), "providers");
    assert_eq!(
        url.service_key(),
        "im.youni.iccs.status.api.StatusUpdateService"
    );
    assert_eq!(url.to_encoded(), PROVIDER_NODE);
}

#[test]
fn go_consumer_node_decodes_and_reencodes() {
    let url = Url::from_encoded(CONSUMER_NODE).unwrap();
    assert_eq!(url.protocol(), "jsonrpc");
    assert_eq!(url.host(), "10.45.2.39");
    assert_eq!(url.port(), None);
    assert_eq!(url.param("category"), Some("consumer"));
    assert_eq!(url.param("group"), Some(""));
    assert_eq!(url.group(), None);
    assert_eq!(url.param("module"), Some("dubbogo+client"));
    assert_eq!(url.param_or("timeout", 0u32), 120);
    assert_eq!(url.param("revision"), Some(""));
    assert!(url.to_string().ends_with("timestamp=1470723624&"));
    assert_eq!(url.to_encoded(), CONSUMER_NODE);
}

#[test]
fn consumer_matches_provider_of_seed() {
    let provider = Url::from_encoded(PROVIDER_NODE).unwrap();
    let consumer: Url = "consumer://10.45.2.39/im.youni.iccs.status.api.StatusUpdateService?interface=im.youni.iccs.status.api.StatusUpdateService&group=".parse().unwrap();
    assert!(consumer.matches_provider(&provider));
    let versioned = consumer.clone().with_param("version", "1.0.0");
    assert!(!versioned.matches_provider(&provider));
    let any = consumer.clone().with_param("version", "*");
    assert!(any.matches_provider(&provider));
}

#[test]
fn matching_rules() {
    let p = |q: &str| {
        Url::parse(&format!(
            "dubbo://1.2.3.4:20880/com.Foo?interface=com.Foo&{q}"
        ))
        .unwrap()
    };
    let c =
        |q: &str| Url::parse(&format!("consumer://1.2.3.4/com.Foo?interface=com.Foo&{q}")).unwrap();
    assert!(c("group=a,b").matches_provider(&p("group=b")));
    assert!(!c("group=a,b").matches_provider(&p("group=c")));
    assert!(c("group=*").matches_provider(&p("group=c")));
    assert!(!c("").matches_provider(&p("group=c")));
    assert!(!c("").matches_provider(&p("enabled=false")));
    assert!(c("enabled=*").matches_provider(&p("enabled=false")));
    assert!(!c("").matches_provider(&p("category=routers")));
    assert!(c("category=providers,routers").matches_provider(&p("category=routers")));
    assert!(c("category=*,-routers").matches_provider(&p("category=configurators")));
    assert!(c("category=*").matches_provider(&p("category=configurators")));
    assert!(!c("category=providers,-routers").matches_provider(&p("category=routers")));
    assert!(!c("classifier=x").matches_provider(&p("classifier=y")));
    assert!(c("classifier=*").matches_provider(&p("classifier=y")));
    let other = Url::parse("dubbo://1.2.3.4:20880/com.Bar?interface=com.Bar").unwrap();
    assert!(!c("").matches_provider(&other));
    let star = Url::parse("consumer://1.2.3.4/*?interface=*").unwrap();
    assert!(star.matches_provider(&other));
}

#[test]
fn service_keys_and_typed_params() {
    let u: Url = "dubbo://h:1/com.Foo?group=g&version=1.0&timeout=250&sayHello.timeout=90&methods.echo.retries=5"
        .parse()
        .unwrap();
    assert_eq!(u.service_key(), "g/com.Foo:1.0");
    assert_eq!(u.method_param_or("sayHello", "timeout", 1000u64), 90);
    assert_eq!(u.method_param_or("echo", "timeout", 1000u64), 250);
    assert_eq!(u.method_param_or("echo", "retries", 2u32), 5);
    assert_eq!(u.param_or("weight", 100u32), 100);
    assert_eq!(u.param_or("timeout", 0u32), 250);
    assert!(!u.param_bool("anyhost", false));
}

#[test]
fn credentials_ipv6_and_setters() {
    let u: Url = "zookeeper://user:pa%ss@[::1]:2181?backup=127.0.0.1:2182,127.0.0.1:2183"
        .parse()
        .unwrap();
    assert_eq!(u.username(), Some("user"));
    assert_eq!(u.password(), Some("pa%ss"));
    assert_eq!(u.host(), "[::1]");
    assert_eq!(u.port(), Some(2181));
    assert_eq!(u.param("backup"), Some("127.0.0.1:2182,127.0.0.1:2183"));
    let mut v = u.clone();
    v.set_param("backup", "x");
    v.set_param("group", "dubbo");
    assert_eq!(
        v.to_string(),
        "zookeeper://user:pa%ss@[::1]:2181?backup=x&group=dubbo"
    );
    v.remove_param("backup");
    assert_eq!(v.param("backup"), None);
    let bare: Url = "127.0.0.1:2181".parse().unwrap();
    assert_eq!(bare.protocol(), "");
    assert_eq!(bare.address(), "127.0.0.1:2181");
    assert_eq!(bare.to_string(), "127.0.0.1:2181");
}

#[test]
fn malformed_input_names_the_problem() {
    assert_eq!(Url::parse("  "), Err(UrlError::Empty));
    let e = Url::parse("dubbo://h:99999/x").unwrap_err();
    assert!(e.to_string().contains("invalid port \"99999\""), "{e}");
    let e = Url::parse("dubbo://h:abc/x").unwrap_err();
    assert!(matches!(e, UrlError::InvalidPort { .. }));
    let e = Url::parse("du bbo://h/x").unwrap_err();
    assert!(e.to_string().contains("invalid protocol"), "{e}");
    assert!(matches!(
        Url::parse("dubbo://[::1/x"),
        Err(UrlError::UnterminatedIpv6(_))
    ));
    let e = decode("abc%4").unwrap_err();
    assert!(e.to_string().contains("byte 3"), "{e}");
    assert!(matches!(decode("%zz"), Err(UrlError::InvalidEscape { .. })));
    assert_eq!(decode("%ff%fe"), Err(UrlError::InvalidUtf8));
}

#[test]
fn java_urlencoder_compatibility() {
    assert_eq!(encode("a b+c*d~e/f:g"), "a+b%2Bc*d%7Ee%2Ff%3Ag");
    assert_eq!(encode("中"), "%E4%B8%AD");
    assert_eq!(decode("a+b%2Bc*d%7Ee%2ff").unwrap(), "a b+c*d~e/f");
}

#[test]
fn white_space_around_a_host_is_not_part_of_it() {
    // Kept, "A " would format as "A " and parse back as "A" (the input is trimmed).
    let u = Url::parse("A /").unwrap();
    assert_eq!(u.host(), "A");
    assert_eq!(Url::parse(&u.to_string()).unwrap(), u);
    assert_eq!(Url::parse("dubbo:// h :20880/x").unwrap().host(), "h");
}

proptest! {
    #[test]
    fn encode_decode_round_trip(s in "\\PC*") {
        prop_assert_eq!(decode(&encode(&s)).unwrap(), s);
    }

    #[test]
    fn decode_never_panics(s in "\\PC*") {
        let _ = decode(&s);
    }

    #[test]
    fn parse_never_panics_and_formats_back(s in "\\PC*") {
        if let Ok(u) = Url::parse(&s) {
            // What parses formats to something that parses to the same URL.
            let again = Url::parse(&u.to_string()).unwrap();
            prop_assert_eq!(again, u);
        }
    }

    #[test]
    fn structured_urls_round_trip_byte_identical(
        proto in "[a-z][a-z0-9]{0,8}",
        host in "[a-z0-9.-]{1,20}",
        port in proptest::option::of(any::<u16>()),
        path in "[A-Za-z0-9._/-]{0,30}",
        params in proptest::collection::vec(("[A-Za-z0-9._-]{0,10}", proptest::option::of("[^&?#\\s]{0,12}")), 0..8),
    ) {
        let mut s = format!("{proto}://{host}");
        if let Some(p) = port { s.push_str(&format!(":{p}")); }
        let path = path.trim_start_matches('/');
        if !path.is_empty() { s.push('/'); s.push_str(path); }
        if !params.is_empty() {
            s.push('?');
            let segs: Vec<String> = params.iter().map(|(k, v)| match v {
                Some(v) => format!("{k}={v}"),
                None => k.clone(),
            }).collect();
            s.push_str(&segs.join("&"));
        }
        let u = Url::parse(&s).unwrap();
        prop_assert_eq!(u.to_string(), s.clone());
        prop_assert_eq!(Url::from_encoded(&u.to_encoded()).unwrap(), u);
    }
}
