//! The interop POJO `com.example.User` (as crates/rdubbo/examples/java_interop/user_service.rs
//! and crates/rdubbo/tests/java/com/example/User.java), shared by the benches.

use std::collections::HashMap;

use rdubbo_hessian::{BigDecimal, Date};
use serde::{Deserialize, Serialize};

/// `com.example.Level` (as crates/rdubbo/examples/java_interop/user_service.rs).
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Debug)]
#[serde(rename = "com.example.Level")]
pub enum Level {
    #[serde(rename = "BRONZE")]
    Bronze,
    #[serde(rename = "SILVER")]
    Silver,
    #[serde(rename = "GOLD")]
    Gold,
}

/// `com.example.Address`.
#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
#[serde(rename = "com.example.Address")]
pub struct Address {
    pub city: Option<String>,
    pub street: Option<String>,
}

/// `com.example.User`, fields as Java declares them.
#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
#[serde(rename = "com.example.User")]
pub struct User {
    pub name: Option<String>,
    pub age: i32,
    pub born: Option<Date>,
    pub balance: Option<BigDecimal>,
    pub tags: Option<Vec<String>>,
    pub address: Option<Address>,
    pub level: Option<Level>,
    pub scores: Option<HashMap<String, i32>>,
}

/// The Java peers' `Samples.user(7)`.
pub fn user() -> User {
    let _ = (Level::Bronze, Level::Silver);
    User {
        name: Some("ann".into()),
        age: 7,
        born: Some(Date(1_700_000_000_000)),
        balance: Some(BigDecimal::new("1234.50")),
        tags: Some(vec!["admin".into(), "ops".into()]),
        address: Some(Address {
            city: Some("Hangzhou".into()),
            street: Some("Wenyi Rd".into()),
        }),
        level: Some(Level::Gold),
        scores: Some(HashMap::from([("math".to_string(), 90)])),
    }
}
