//! Hessian2 against serde_json on the same realistic structs: an order with a customer,
//! lines, tags, attributes; and the interop POJO `com.example.User` (the one Java's
//! `UserService.echoUser` sends: name, age, Date, BigDecimal, List<String>, nested Address,
//! enum Level, Map<String, Integer>). Encode and decode throughput, and encoded size.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde::{Deserialize, Serialize};

#[path = "common/user.rs"]
mod user;
use user::{user, User};

#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
#[serde(rename = "com.example.Customer")]
struct Customer {
    id: i64,
    name: String,
    email: String,
    vip: bool,
}

#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
#[serde(rename = "com.example.OrderLine")]
struct OrderLine {
    sku: String,
    quantity: i32,
    price: f64,
}

#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
#[serde(rename = "com.example.Order")]
struct Order {
    id: i64,
    created: i64,
    status: String,
    customer: Customer,
    lines: Vec<OrderLine>,
    tags: Vec<String>,
    attributes: BTreeMap<String, String>,
    total: f64,
}

fn order() -> Order {
    Order {
        id: 9_000_000_123,
        created: 1_795_000_000_000,
        status: "PAID".into(),
        customer: Customer {
            id: 42,
            name: "Ann Example".into(),
            email: "ann@example.com".into(),
            vip: true,
        },
        lines: (0..8)
            .map(|i| OrderLine {
                sku: format!("SKU-{i:05}"),
                quantity: i + 1,
                price: 19.99 + f64::from(i),
            })
            .collect(),
        tags: vec!["express".into(), "gift".into(), "repeat".into()],
        attributes: [
            ("channel", "app"),
            ("coupon", "WINTER24"),
            ("region", "cn-hangzhou"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        total: 251.92,
    }
}

fn bench_user(c: &mut Criterion) {
    let u = user();
    let hessian = rdubbo_hessian::to_bytes(&u).unwrap();
    let json = serde_json::to_vec(&u).unwrap();
    assert_eq!(rdubbo_hessian::from_slice::<User>(&hessian).unwrap(), u);
    println!(
        "user: encoded size: hessian2 {} bytes, serde_json {} bytes",
        hessian.len(),
        json.len()
    );
    let mut g = c.benchmark_group("user");
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode/hessian2", |b| {
        b.iter(|| rdubbo_hessian::to_bytes(black_box(&u)).unwrap())
    });
    g.bench_function("encode/serde_json", |b| {
        b.iter(|| serde_json::to_vec(black_box(&u)).unwrap())
    });
    g.bench_function("decode/hessian2", |b| {
        b.iter(|| rdubbo_hessian::from_slice::<User>(black_box(&hessian)).unwrap())
    });
    g.bench_function("decode/serde_json", |b| {
        b.iter(|| serde_json::from_slice::<User>(black_box(&json)).unwrap())
    });
    g.bench_function("decode/hessian2-value", |b| {
        b.iter(|| rdubbo_hessian::decode_value(black_box(&hessian)).unwrap())
    });
    g.finish();
}

fn bench(c: &mut Criterion) {
    let o = order();
    let hessian = rdubbo_hessian::to_bytes(&o).unwrap();
    let json = serde_json::to_vec(&o).unwrap();
    assert_eq!(rdubbo_hessian::from_slice::<Order>(&hessian).unwrap(), o);
    println!(
        "encoded size: hessian2 {} bytes, serde_json {} bytes",
        hessian.len(),
        json.len()
    );
    let mut g = c.benchmark_group("order");
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode/hessian2", |b| {
        b.iter(|| rdubbo_hessian::to_bytes(black_box(&o)).unwrap())
    });
    g.bench_function("encode/serde_json", |b| {
        b.iter(|| serde_json::to_vec(black_box(&o)).unwrap())
    });
    g.bench_function("decode/hessian2", |b| {
        b.iter(|| rdubbo_hessian::from_slice::<Order>(black_box(&hessian)).unwrap())
    });
    g.bench_function("decode/serde_json", |b| {
        b.iter(|| serde_json::from_slice::<Order>(black_box(&json)).unwrap())
    });
    g.bench_function("decode/hessian2-value", |b| {
        b.iter(|| rdubbo_hessian::decode_value(black_box(&hessian)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench_user, bench);
criterion_main!(benches);
