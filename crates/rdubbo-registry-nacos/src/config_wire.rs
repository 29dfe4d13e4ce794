//! The Nacos config API v1 on the wire, shared by the client ([`NacosConfig`](crate::NacosConfig))
//! and the embedded server: paths, headers, the `Listening-Configs` probe of a long poll
//! and the list of changed keys it answers, and the MD5 every side compares.
//!
//! ```text
//! GET    /nacos/v1/cs/configs?dataId=&group=&tenant=        → content (404 "config data not exist")
//! POST   /nacos/v1/cs/configs  dataId, group, content, tenant, type  [header casMd5] → true
//! DELETE /nacos/v1/cs/configs?dataId=&group=&tenant=        → true
//! POST   /nacos/v1/cs/configs/listener  Listening-Configs=dataId^2group^2md5[^2tenant]^1…
//!        header Long-Pulling-Timeout: 30000                 → URL-encoded dataId^2group[^2tenant]^1…
//! ```

/// The config resource.
pub const CONFIGS_PATH: &str = "/nacos/v1/cs/configs";
/// The long-polling listener.
pub const LISTENER_PATH: &str = "/nacos/v1/cs/configs/listener";
/// The form field of a long poll.
pub const LISTENING_CONFIGS: &str = "Listening-Configs";
/// The header with the client's poll timeout in ms (Nacos' spelling).
pub const LONG_POLLING_TIMEOUT: &str = "Long-Pulling-Timeout";
/// The header that asks for an immediate answer even when nothing changed.
pub const LONG_POLLING_NO_HANGUP: &str = "Long-Pulling-Timeout-No-Hangup";
/// The header of a compare-and-set publish: the MD5 of the content it replaces.
pub const CAS_MD5: &str = "casMd5";
/// Between the fields of one key.
pub const WORD_SEPARATOR: char = '\u{2}';
/// After each key.
pub const LINE_SEPARATOR: char = '\u{1}';
/// The group of Dubbo 3's interface → application mapping (Java's `DEFAULT_MAPPING_GROUP`).
pub const MAPPING_GROUP: &str = "mapping";
/// The group configs are in when a request names none.
pub const DEFAULT_CONFIG_GROUP: &str = "DEFAULT_GROUP";

/// The MD5 of a config's content as Nacos computes it (lower-case hex of the UTF-8 bytes);
/// `""` for no config.
pub fn content_md5(content: Option<&str>) -> String {
    match content {
        Some(c) => rdubbo_core::metadata::md5_hex(c.as_bytes()),
        None => String::new(),
    }
}

/// The tenant (namespace id) as Nacos stores it: the public namespace is `""`.
pub fn normalize_tenant(tenant: &str) -> &str {
    let t = tenant.trim();
    if t.eq_ignore_ascii_case("public") {
        ""
    } else {
        t
    }
}

/// One key of a long poll: what the client has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenEntry {
    /// The config's `dataId`.
    pub data_id: String,
    /// Its group.
    pub group: String,
    /// The MD5 of the content the client has (`""`: none).
    pub md5: String,
    /// The tenant (`""`: public).
    pub tenant: String,
}

/// The `Listening-Configs` value of a long poll.
pub fn listening_configs(entries: &[ListenEntry]) -> String {
    let mut out = String::new();
    for e in entries {
        out.push_str(&e.data_id);
        out.push(WORD_SEPARATOR);
        out.push_str(&e.group);
        out.push(WORD_SEPARATOR);
        out.push_str(&e.md5);
        if !e.tenant.is_empty() {
            out.push(WORD_SEPARATOR);
            out.push_str(&e.tenant);
        }
        out.push(LINE_SEPARATOR);
    }
    out
}

/// Reads a `Listening-Configs` value: at most `max` keys, each `dataId^2group^2md5` or
/// `dataId^2group^2md5^2tenant`.
pub fn parse_listening_configs(text: &str, max: usize) -> Result<Vec<ListenEntry>, String> {
    let mut out = Vec::new();
    for line in text.split(LINE_SEPARATOR).filter(|l| !l.is_empty()) {
        if out.len() >= max {
            return Err(format!("too many listened configs (limit {max})"));
        }
        let parts: Vec<&str> = line.split(WORD_SEPARATOR).collect();
        let (data_id, group, md5, tenant) = match parts.as_slice() {
            [d, g, m] => (*d, *g, *m, ""),
            [d, g, m, t] => (*d, *g, *m, *t),
            _ => return Err(format!("invalid probe: {line:?}")),
        };
        if data_id.is_empty() || group.is_empty() {
            return Err(format!("invalid probe: {line:?}"));
        }
        out.push(ListenEntry {
            data_id: data_id.to_owned(),
            group: group.to_owned(),
            md5: md5.to_owned(),
            tenant: normalize_tenant(tenant).to_owned(),
        });
    }
    Ok(out)
}

/// The answer of a long poll: the changed keys as `dataId^2group[^2tenant]^1…`,
/// URL-encoded as Java's `URLEncoder` does.
pub fn changed_keys_body<'a>(
    keys: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>,
) -> String {
    let mut plain = String::new();
    for (data_id, group, tenant) in keys {
        plain.push_str(data_id);
        plain.push(WORD_SEPARATOR);
        plain.push_str(group);
        if !tenant.is_empty() {
            plain.push(WORD_SEPARATOR);
            plain.push_str(tenant);
        }
        plain.push(LINE_SEPARATOR);
    }
    form_urlencoded::byte_serialize(plain.as_bytes()).collect()
}

/// Reads the answer of a long poll: `(dataId, group, tenant)` of each changed key.
pub fn parse_changed_keys(body: &str) -> Vec<(String, String, String)> {
    let decoded: String = form_urlencoded::parse(format!("k={}", body.trim()).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    decoded
        .split(LINE_SEPARATOR)
        .filter(|l| !l.is_empty())
        .filter_map(|l| {
            let mut parts = l.split(WORD_SEPARATOR);
            let data_id = parts.next()?.to_owned();
            let group = parts.next()?.to_owned();
            let tenant = parts.next().unwrap_or("").to_owned();
            Some((data_id, group, tenant))
        })
        .collect()
}

/// The applications of a mapping's content: comma separated, trimmed, sorted, unique.
pub fn parse_mapping(content: &str) -> Vec<String> {
    let apps: std::collections::BTreeSet<&str> = content
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .collect();
    apps.into_iter().map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_and_answers_round_trip() {
        let entries = vec![
            ListenEntry {
                data_id: "demo.configurators".into(),
                group: "dubbo".into(),
                md5: content_md5(Some("x")),
                tenant: String::new(),
            },
            ListenEntry {
                data_id: "com.foo.Bar".into(),
                group: "mapping".into(),
                md5: String::new(),
                tenant: "dev".into(),
            },
        ];
        let probe = listening_configs(&entries);
        assert_eq!(
            probe,
            "demo.configurators\u{2}dubbo\u{2}9dd4e461268c8034f5c8564e155c67a6\u{1}com.foo.Bar\u{2}mapping\u{2}\u{2}dev\u{1}"
        );
        assert_eq!(parse_listening_configs(&probe, 10).unwrap(), entries);
        assert!(parse_listening_configs(&probe, 1).is_err());
        assert!(parse_listening_configs("a\u{2}b\u{1}", 10).is_err());
        let body = changed_keys_body([("a b", "dubbo", ""), ("c:1.0", "mapping", "dev")]);
        assert_eq!(body, "a+b%02dubbo%01c%3A1.0%02mapping%02dev%01");
        assert_eq!(
            parse_changed_keys(&body),
            vec![
                ("a b".into(), "dubbo".into(), String::new()),
                ("c:1.0".into(), "mapping".into(), "dev".into())
            ]
        );
        assert!(parse_changed_keys("").is_empty());
        assert_eq!(normalize_tenant("public"), "");
        assert_eq!(parse_mapping(" b,a,,b "), vec!["a", "b"]);
    }
}
