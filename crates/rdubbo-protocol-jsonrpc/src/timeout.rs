//! The `Timeout` header: nanoseconds from the 2016 Go client, a Go duration from dubbo-go.

use std::time::Duration;

/// Parses a `Timeout` header value: a bare integer is nanoseconds; otherwise a Go duration
/// such as `3s`, `500ms`, `1m30s`, `250us`, `1.5h`. `None` if it is neither.
pub fn parse_timeout_header(value: &str) -> Option<Duration> {
    let v = value.trim();
    if v.is_empty() {
        return None;
    }
    if let Ok(ns) = v.parse::<u64>() {
        return Some(Duration::from_nanos(ns));
    }
    parse_go_duration(v)
}

/// Go's `time.ParseDuration` for non-negative values.
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut any = false;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_end == 0 {
            return None;
        }
        let number: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos_per = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += number * nanos_per;
        any = true;
    }
    if !any || !total.is_finite() || total > u64::MAX as f64 {
        return None;
    }
    Some(Duration::from_nanos(total as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nanoseconds_and_go_durations() {
        assert_eq!(
            parse_timeout_header("350000000"),
            Some(Duration::from_millis(350))
        );
        assert_eq!(parse_timeout_header("3s"), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_timeout_header("500ms"),
            Some(Duration::from_millis(500))
        );
        assert_eq!(parse_timeout_header("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(
            parse_timeout_header("250us"),
            Some(Duration::from_micros(250))
        );
        assert_eq!(
            parse_timeout_header("1.5h"),
            Some(Duration::from_secs(5400))
        );
        assert_eq!(parse_timeout_header("0"), Some(Duration::ZERO));
        for bad in ["", "abc", "5", "-1s", "1x", "s", "1e9s"] {
            if bad == "5" {
                continue; // a bare integer is nanoseconds
            }
            assert_eq!(parse_timeout_header(bad), None, "{bad}");
        }
    }
}
