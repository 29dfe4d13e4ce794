//! A value shown with its Java types (`rdubbo call --java`).

use std::fmt::Write;

use rdubbo::Value;

/// `42` (int), `42L` (long), `1.5`, `"text"`, `byte[]{1,2}`, `Date(1700000000000)`,
/// `BigDecimal(1234.50)`, `com.example.Level.GOLD`, `[int]{1,2}`,
/// `java.util.HashSet[…]`, `java.util.TreeMap{k: v}`, `com.example.User{name="ann", …}`,
/// `@ref(n)` for a shared value or cycle.
pub fn java(v: &Value) -> String {
    let mut out = String::new();
    write(&mut out, v);
    out
}

fn write(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => {
            let _ = write!(out, "{b}");
        }
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Long(l) => {
            let _ = write!(out, "{l}L");
        }
        Value::Double(d) if d.is_nan() => out.push_str("NaN"),
        Value::Double(d) if d.is_infinite() => {
            out.push_str(if *d > 0.0 { "Infinity" } else { "-Infinity" })
        }
        Value::Double(d) => {
            let _ = write!(out, "{d:?}");
        }
        Value::String(s) => {
            let _ = write!(out, "{}", serde_json::Value::String(s.clone()));
        }
        Value::Binary(b) => {
            out.push_str("byte[]{");
            for (i, x) in b.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{}", *x as i8);
            }
            out.push('}');
        }
        Value::Date(ms) => {
            let _ = write!(out, "Date({ms})");
        }
        Value::Ref(i) => {
            let _ = write!(out, "@ref({i})");
        }
        Value::List(l) => {
            match l.type_name.as_deref() {
                Some(t) if t.starts_with('[') => {
                    let _ = write!(out, "[{}]{{", &t[1..]);
                }
                Some(t) => {
                    let _ = write!(out, "{t}[");
                }
                None => out.push('['),
            }
            for (i, x) in l.items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write(out, x);
            }
            out.push(match l.type_name.as_deref() {
                Some(t) if t.starts_with('[') => '}',
                _ => ']',
            });
        }
        Value::Map(m) => {
            if let Some(t) = &m.type_name {
                out.push_str(t);
            }
            out.push('{');
            for (i, (k, x)) in m.entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write(out, k);
                out.push_str(": ");
                write(out, x);
            }
            out.push('}');
        }
        Value::Object(o) => {
            if let Some(text) = rdubbo::hessian::decimal_text(o) {
                let short = o.class.rsplit('.').next().unwrap_or(&o.class);
                let _ = write!(out, "{short}({text})");
                return;
            }
            if let Some(name) = rdubbo::hessian::enum_name(o) {
                let _ = write!(out, "{}.{name}", o.class);
                return;
            }
            out.push_str(&o.class);
            out.push('{');
            for (i, (k, x)) in o.fields.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(k);
                out.push('=');
                write(out, x);
            }
            out.push('}');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdubbo::hessian::List;

    #[test]
    fn java_types_are_visible() {
        let user = Value::object(
            "com.example.User",
            vec![
                ("id", Value::Long(7)),
                ("born", Value::Date(1700000000000)),
                (
                    "balance",
                    Value::object("java.math.BigDecimal", vec![("value", "1.50".into())]),
                ),
                (
                    "level",
                    Value::object("com.example.Level", vec![("name", "GOLD".into())]),
                ),
                (
                    "ids",
                    Value::List(List {
                        type_name: Some("[int".into()),
                        items: vec![1.into(), 2.into()],
                    }),
                ),
            ],
        );
        assert_eq!(
            java(&user),
            "com.example.User{id=7L, born=Date(1700000000000), balance=BigDecimal(1.50), level=com.example.Level.GOLD, ids=[int]{1, 2}}"
        );
    }
}
