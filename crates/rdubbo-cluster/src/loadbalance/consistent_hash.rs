//! Consistent hashing exactly as Java Dubbo's `ConsistentHashLoadBalance` (2.7 and 3.x):
//! the same ring of MD5 points and the same key text, so that rdubbo and Java consumers
//! sharing providers send a key to the same provider.

use std::fmt::{self, Write as _};

use md5::{Digest, Md5};
use rdubbo_core::{Args, Value};

use super::*;

/// Consistent hashing, as Java Dubbo's `ConsistentHashLoadBalance`: a call goes to the
/// same provider as from a Java consumer of the same providers.
///
/// - **Ring**: for each provider and each `i` in `0..hash.nodes / 4` (`hash.nodes`
///   default 160, read per method from the first provider's URL), the MD5 digest of the
///   provider's address (`host:port`) followed by `i` in decimal gives four points, its
///   bytes read as four little-endian `u32`s. Where two providers share a point, the later
///   one in the list owns it (as in Java's `TreeMap`).
/// - **Key**: the Java `toString()` texts of the arguments at `hash.arguments` (default
///   `0`, comma-separated indices; indices past the last argument are skipped),
///   concatenated, in UTF-8; its position is the first four bytes of its MD5 digest
///   (little-endian). Texts as Java writes them: a string as it is, `null`, `true`/`false`,
///   integers in decimal, doubles as `Double.toString` (`1.0`, `1.0E-4`, `1.0E21`, `NaN`),
///   a `char` as itself, a date as `Date.toString()` in UTC (`Thu Jan 01 00:00:00 UTC
///   1970`), a list as `[a, b]`, a map as `{k=v, k2=v2}` (in the order received),
///   a `BigDecimal`/`BigInteger` as its digits, an enum constant as its name.
/// - **Pick**: the provider of the first point at or after the key's position, wrapping
///   to the first point of the ring.
///
/// The ring is built once per routed list (provider-list version) and method; a pick is
/// one MD5 of the key and a binary search (no allocation for scalar arguments of a
/// dynamic or JSON call; typed arguments of a `#[service]` stub are converted to values
/// first). An excluded provider's points are skipped: the next point on the ring wins,
/// as on a ring without it (Java's retry also builds a ring without it).
///
/// Where Java's key is not reproducible it is not matched: Java writes arrays and
/// classes without their own `toString()` with an identity hash (`[B@1b6d3586`), which
/// changes with every call even between Java consumers; rdubbo writes arrays as
/// `Arrays.toString` does (`[1, 2]`) and other objects as Lombok's `@ToString`
/// (`User(id=3, name=ann)`). A Java `HashMap` argument is written in Java's iteration
/// order, which rdubbo does not know (it uses the order received). A Java `float`
/// argument reaches rdubbo as a double (`0.1f` is written `0.10000000149011612`, Java
/// writes `0.1`). Java writes dates in its own default time zone (rdubbo: UTC) and
/// encodes the key in its default charset (UTF-8 from Java 18 on, and wherever the locale
/// is UTF-8). Doubles follow `Double.toString` of Java 19 and later (shortest digits);
/// Java 17 and older write a few rare values with more digits.
///
/// Java Dubbo 2.7.x (from 2.7.10 to 2.7.23) also moves a call off a provider that has
/// received more than 1.5 times the mean number of calls since the ring was built (by
/// counting picks): a Java 2.7 consumer then strays from the ring for its hottest keys.
/// Dubbo 3 dropped that; rdubbo follows the ring alone, as Dubbo 3 does.
#[derive(Debug, Default)]
pub struct ConsistentHash {
    plain: PlainLists,
}

/// Points of a hash ring: (position, provider index), sorted by position with one
/// provider per position; and the argument indices of the key.
pub(crate) struct Ring {
    points: Vec<(u32, u32)>,
    arguments: Vec<usize>,
}

/// Point groups (of four points) per provider at most: `hash.nodes` up to 10,000.
const MAX_GROUPS: usize = 2_500;

impl Ring {
    pub(crate) fn build(providers: &[Arc<Provider>], method: &str) -> Ring {
        let Some(first) = providers.first() else {
            return Ring {
                points: Vec::new(),
                arguments: Vec::new(),
            };
        };
        // Java makes `hash.nodes / 4` groups (none below 4, and then fails); one at least.
        let groups =
            (first.url.method_param_or(method, "hash.nodes", 160usize) / 4).clamp(1, MAX_GROUPS);
        let arguments: String = first
            .url
            .method_param_or(method, "hash.arguments", "0".to_owned());
        let mut points: Vec<(u32, u32)> = Vec::with_capacity(providers.len() * groups * 4);
        let mut text = String::new();
        for (i, p) in providers.iter().enumerate() {
            let address = p.url.address();
            for n in 0..groups {
                text.clear();
                // Writing into a String cannot fail.
                let _ = write!(text, "{address}{n}");
                let digest = Md5::digest(text.as_bytes());
                for k in 0..4 {
                    points.push((word(&digest, k), i as u32));
                }
            }
        }
        // A later provider put at the same position replaces the earlier one (Java's
        // `TreeMap.put`): sort the latest first among equal positions and keep it.
        points.sort_unstable_by_key(|&(position, i)| (position, Reverse(i)));
        points.dedup_by_key(|point| point.0);
        Ring {
            points,
            arguments: arguments
                .split(',')
                .filter_map(|i| i.trim().parse::<usize>().ok())
                .collect(),
        }
    }
}

/// The `k`-th little-endian `u32` of a digest (Java's `hash(digest, k)`).
fn word(digest: &[u8], k: usize) -> u32 {
    let mut bytes = [0u8; 4];
    bytes.copy_from_slice(&digest[4 * k..4 * k + 4]);
    u32::from_le_bytes(bytes)
}

/// The ring position of a call: the MD5 of its key text ([`write_key`]), streamed into
/// the digest as it is written.
pub(crate) fn key_position(args: &Args, selected: &[usize]) -> u32 {
    let mut key = KeyDigest(Md5::new());
    // Writing into a digest cannot fail.
    let _ = write_key(&mut key, args, selected);
    word(&key.0.finalize(), 0)
}

/// The key text of a call: the Java `toString()` texts of the selected arguments,
/// concatenated (Java's `toKey`). For tests and diagnostics.
#[cfg(test)]
pub(crate) fn key_text(args: &Args, selected: &[usize]) -> String {
    let mut text = String::new();
    let _ = write_key(&mut text, args, selected);
    text
}

/// Feeds what is written to an MD5 digest.
struct KeyDigest(Md5);

impl fmt::Write for KeyDigest {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.update(s.as_bytes());
        Ok(())
    }
}

/// Writes the key text of a call into `w`.
fn write_key(w: &mut impl fmt::Write, args: &Args, selected: &[usize]) -> fmt::Result {
    match args {
        Args::Values(values) => {
            for v in selected.iter().filter_map(|&i| values.get(i)) {
                write_value(w, v)?;
            }
        }
        Args::Json(values) => {
            for j in selected.iter().filter_map(|&i| values.get(i)) {
                write_json(w, j)?;
            }
        }
        other => {
            // Typed arguments (and Hessian ones) become values first: one allocation.
            if let Ok(values) = other.to_values() {
                for v in selected.iter().filter_map(|&i| values.get(i)) {
                    write_value(w, v)?;
                }
            }
        }
    }
    Ok(())
}

/// Writes a JSON argument's Java text: as the value it becomes (`json::to_value`).
fn write_json(w: &mut impl fmt::Write, j: &serde_json::Value) -> fmt::Result {
    use serde_json::Value as Json;
    match j {
        Json::Null => w.write_str("null"),
        Json::Bool(b) => write!(w, "{b}"),
        Json::String(s) => w.write_str(s),
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => write!(w, "{i}"),
            // As `json::to_value` makes it: a Java long.
            (None, Some(u)) => write!(w, "{}", u as i64),
            (None, None) => write_java_double(w, n.as_f64().unwrap_or_default()),
        },
        _ => write_value(w, &rdubbo_core::json::to_value(j)),
    }
}

/// Writes a value as Java's `String.valueOf` of the Java object it is.
fn write_value(w: &mut impl fmt::Write, v: &Value) -> fmt::Result {
    match v {
        Value::Null => w.write_str("null"),
        Value::Bool(b) => write!(w, "{b}"),
        Value::Int(i) => write!(w, "{i}"),
        Value::Long(l) => write!(w, "{l}"),
        Value::Double(d) => write_java_double(w, *d),
        Value::String(s) => w.write_str(s),
        Value::Date(ms) => write_java_date(w, *ms),
        // `Arrays.toString(byte[])` (Java's own `toString` is an identity hash).
        Value::Binary(bytes) => write_seq(w, '[', ']', bytes, |w, b| write!(w, "{}", *b as i8)),
        // `AbstractCollection.toString` (arrays as `Arrays.toString`).
        Value::List(list) => write_seq(w, '[', ']', &list.items, write_value),
        // `AbstractMap.toString`, in the order received.
        Value::Map(map) => write_seq(w, '{', '}', &map.entries, |w, (k, v)| {
            write_value(w, k)?;
            w.write_char('=')?;
            write_value(w, v)
        }),
        Value::Object(o) => write_object(w, o),
        Value::Ref(n) => write!(w, "#ref{n}"),
    }
}

/// Writes `items` between `open` and `close`, separated by `, `.
fn write_seq<W: fmt::Write, T>(
    w: &mut W,
    open: char,
    close: char,
    items: &[T],
    mut item: impl FnMut(&mut W, &T) -> fmt::Result,
) -> fmt::Result {
    w.write_char(open)?;
    for (n, t) in items.iter().enumerate() {
        if n > 0 {
            w.write_str(", ")?;
        }
        item(w, t)?;
    }
    w.write_char(close)
}

/// An object: a number class as its digits, an enum constant as its name, any other as
/// Lombok's `@ToString` writes it (`User(id=3, name=ann)`).
fn write_object(w: &mut impl fmt::Write, o: &rdubbo_core::value::Object) -> fmt::Result {
    let field = |name: &str| o.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    match (o.class.as_str(), o.fields.as_slice()) {
        ("java.math.BigDecimal" | "java.math.BigInteger", _) if field("value").is_some() => {
            write_value(w, field("value").unwrap_or(&Value::Null))
        }
        // Hessian sends an enum constant as an object with its `name` alone.
        (_, [(name, Value::String(constant))]) if name == "name" => w.write_str(constant),
        (class, fields) => {
            w.write_str(class.rsplit(['.', '$']).next().unwrap_or(class))?;
            write_seq(w, '(', ')', fields, |w, (name, v)| {
                w.write_str(name)?;
                w.write_char('=')?;
                write_value(w, v)
            })
        }
    }
}

/// A small stack buffer to format a number into.
struct Digits {
    buf: [u8; 40],
    len: usize,
}

impl Digits {
    fn of(args: fmt::Arguments<'_>) -> Digits {
        let mut d = Digits {
            buf: [0; 40],
            len: 0,
        };
        // Formatting a finite f64 in exponent form fits in 40 bytes.
        let _ = d.write_fmt(args);
        d
    }

    fn as_str(&self) -> &str {
        // Only `str`s are written, whole, so this holds UTF-8.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }

    /// Splits `d.ddde±x` into its digits (no point) and its decimal exponent.
    fn mantissa_exponent(&self) -> (&str, i32) {
        let text = self.as_str();
        let (mantissa, exponent) = text.split_once('e').unwrap_or((text, "0"));
        (mantissa, exponent.parse().unwrap_or(0))
    }
}

impl fmt::Write for Digits {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        if end > self.buf.len() {
            return Err(fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Writes a double as Java's `Double.toString` (Java 19 and later): of the decimals with
/// the fewest digits that read back as the same double (one or two digits when one is
/// enough), the closest to it (the even one on a tie), in plain
/// notation from 10⁻³ to below 10⁷ (`0.001`, `1234567.0`), else as `d.dddE±n`
/// (`1.0E7`, `1.0E-4`), with one fractional digit at least.
pub(crate) fn write_java_double(w: &mut impl fmt::Write, x: f64) -> fmt::Result {
    if x.is_nan() {
        return w.write_str("NaN");
    }
    if x.is_sign_negative() {
        w.write_char('-')?;
    }
    let a = x.abs();
    if a.is_infinite() {
        return w.write_str("Infinity");
    }
    if a == 0.0 {
        return w.write_str("0.0");
    }
    // Rust's `{:e}` writes the fewest digits that read back as `a`: how many Java writes
    // (one or two when one is enough). Of those, Java takes the closest to `a` (the even
    // one on a tie, where Rust rounds up): the correctly rounded decimal of that length,
    // when it still reads back as `a`.
    let shortest = Digits::of(format_args!("{a:e}"));
    let (mantissa, exponent) = shortest.mantissa_exponent();
    let len = mantissa.bytes().filter(u8::is_ascii_digit).count();
    let precision = len.max(2) - 1;
    let closest = Digits::of(format_args!("{a:.precision$e}"));
    let (mantissa, exponent) = if closest.as_str().parse::<f64>() == Ok(a) {
        closest.mantissa_exponent()
    } else {
        (mantissa, exponent)
    };
    let digits = mantissa.as_bytes().iter().filter(|b| b.is_ascii_digit());
    let mut buf = [b'0'; 20];
    let mut n = 0;
    for &b in digits.take(buf.len()) {
        buf[n] = b;
        n += 1;
    }
    // No trailing zeros (Java writes `1.0`, never `1.00`).
    while n > 1 && buf[n - 1] == b'0' {
        n -= 1;
    }
    let digits = std::str::from_utf8(&buf[..n]).unwrap_or("0");
    if (-3..7).contains(&exponent) {
        if exponent < 0 {
            w.write_str("0.")?;
            for _ in 0..(-exponent - 1) {
                w.write_char('0')?;
            }
            w.write_str(digits)
        } else {
            let int_len = exponent as usize + 1;
            if digits.len() <= int_len {
                w.write_str(digits)?;
                for _ in digits.len()..int_len {
                    w.write_char('0')?;
                }
                w.write_str(".0")
            } else {
                w.write_str(&digits[..int_len])?;
                w.write_char('.')?;
                w.write_str(&digits[int_len..])
            }
        }
    } else {
        w.write_str(&digits[..1])?;
        w.write_char('.')?;
        w.write_str(if digits.len() > 1 { &digits[1..] } else { "0" })?;
        write!(w, "E{exponent}")
    }
}

/// Writes a date as Java's `Date.toString()` in UTC: `EEE MMM dd HH:mm:ss zzz yyyy`
/// (the proleptic Gregorian calendar; Java counts dates before 1582 in the Julian one).
pub(crate) fn write_java_date(w: &mut impl fmt::Write, ms: i64) -> fmt::Result {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000) / 1000;
    let (year, month, day) = civil_from_days(days);
    write!(
        w,
        "{} {} {day:02} {:02}:{:02}:{:02} UTC {year}",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        in_day / 3600,
        in_day / 60 % 60,
        in_day % 60
    )
}

/// (year, month 1..=12, day 1..=31) of a day counted from 1970-01-01 (H. Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

impl LoadBalance for ConsistentHash {
    fn select(&self, providers: &[Arc<Provider>], inv: &Invocation) -> Arc<Provider> {
        self.pick(&Candidates::new(&self.plain.routed(providers)), inv)
    }

    fn pick(&self, candidates: &Candidates<'_>, inv: &Invocation) -> Arc<Provider> {
        let i = candidates.table(&inv.method, |t| {
            let ring = t
                .ring
                .get_or_init(|| Ring::build(candidates.providers(), &inv.method));
            let position = key_position(&inv.args, &ring.arguments);
            let start = ring.points.partition_point(|(point, _)| *point < position);
            let len = ring.points.len();
            (0..len)
                .map(|k| ring.points[(start + k) % len].1 as usize)
                .find(|&i| candidates.is_allowed(i))
                .unwrap_or(0)
        });
        candidates.at(i)
    }
}
