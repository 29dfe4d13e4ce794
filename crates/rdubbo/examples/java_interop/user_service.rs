//! `com.example.UserService` of the Java interop peers (crates/rdubbo/tests/java), as a
//! typed Rust service: the same POJOs, enum, exception and overloads, so a Java consumer
//! calls it, and a Rust consumer calls the Java provider, with the types each side uses.

use std::collections::HashMap;

use rdubbo::hessian::{BigDecimal, Date};
use rdubbo::{RpcError, RpcResult, Value};
use serde::{Deserialize, Serialize};

/// `com.example.Level`, a Java enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, rdubbo::JavaType)]
#[serde(rename = "com.example.Level")]
pub enum Level {
    /// `BRONZE`
    #[serde(rename = "BRONZE")]
    Bronze,
    /// `SILVER`
    #[serde(rename = "SILVER")]
    Silver,
    /// `GOLD`
    #[serde(rename = "GOLD")]
    Gold,
}

/// `com.example.Address`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, rdubbo::JavaType)]
#[serde(rename = "com.example.Address")]
pub struct Address {
    /// City.
    pub city: Option<String>,
    /// Street.
    pub street: Option<String>,
}

/// `com.example.User`: fields as Java declares them (names and order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, rdubbo::JavaType)]
#[serde(rename = "com.example.User")]
pub struct User {
    /// `String name`
    pub name: Option<String>,
    /// `int age`
    pub age: i32,
    /// `java.util.Date born`
    pub born: Option<Date>,
    /// `java.math.BigDecimal balance`
    pub balance: Option<BigDecimal>,
    /// `List<String> tags`
    pub tags: Option<Vec<String>>,
    /// `Address address`
    pub address: Option<Address>,
    /// `Level level`
    pub level: Option<Level>,
    /// `Map<String, Integer> scores`
    pub scores: Option<HashMap<String, i32>>,
}

/// The Java class of the exception `getUser` throws for an unknown id.
pub const USER_NOT_FOUND: &str = "com.example.UserNotFoundException";

/// `com.example.UserService`, method for method (Java overloads `inc(long)` and
/// `inc(Long)` are two Rust methods with the wire name `inc`).
#[rdubbo::service(interface = "com.example.UserService")]
pub trait UserService {
    /// `User getUser(Long id) throws UserNotFoundException`
    async fn get_user(&self, id: Option<i64>) -> RpcResult<User>;
    /// `Long createUser(User u)`
    async fn create_user(&self, u: User) -> RpcResult<Option<i64>>;
    /// `User echoUser(User u)`
    async fn echo_user(&self, u: User) -> RpcResult<User>;
    /// `List<User> listUsers(int n)`
    async fn list_users(&self, n: i32) -> RpcResult<Vec<User>>;
    /// `long inc(long x)`
    async fn inc(&self, x: i64) -> RpcResult<i64>;
    /// `Long inc(Long x)`
    #[rdubbo(name = "inc")]
    async fn inc_boxed(&self, x: Option<i64>) -> RpcResult<Option<i64>>;
    /// `Object echo(Object o)`
    async fn echo(&self, o: Value) -> RpcResult<Value>;
    /// `String whoami()`: the `caller` attachment; answers with `served-by`.
    async fn whoami(&self) -> RpcResult<Option<String>>;
    /// `Map<String, User> byName(List<User> users)`
    async fn by_name(&self, users: Vec<User>) -> RpcResult<HashMap<String, User>>;
    /// `Level levelOf(User u)`
    async fn level_of(&self, u: User) -> RpcResult<Option<Level>>;
}

/// The user `getUser(age)` answers, as the Java peers' `Samples.user`.
pub fn sample(age: i32) -> User {
    User {
        name: Some("ann".into()),
        age,
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

/// A user with only a name and an age, as the Java peers' `Samples.plain`.
pub fn plain(name: &str, age: i32) -> User {
    User {
        name: Some(name.into()),
        age,
        born: None,
        balance: None,
        tags: None,
        address: None,
        level: None,
        scores: None,
    }
}

/// The Rust implementation, answering as the Java provider does.
pub struct RustUsers;

impl UserService for RustUsers {
    async fn get_user(&self, id: Option<i64>) -> RpcResult<User> {
        match id {
            Some(id) if id >= 0 => Ok(sample(id as i32)),
            other => Err(RpcError::java(
                USER_NOT_FOUND,
                format!("no user {}", other.map_or("null".into(), |i| i.to_string())),
            )),
        }
    }
    async fn create_user(&self, u: User) -> RpcResult<Option<i64>> {
        let name = u.name.unwrap_or_default();
        Ok(Some(
            name.encode_utf16().count() as i64 * 1000 + i64::from(u.age),
        ))
    }
    async fn echo_user(&self, u: User) -> RpcResult<User> {
        Ok(u)
    }
    async fn list_users(&self, n: i32) -> RpcResult<Vec<User>> {
        Ok((0..n).map(|i| plain(&format!("user{i}"), i)).collect())
    }
    async fn inc(&self, x: i64) -> RpcResult<i64> {
        Ok(x + 1)
    }
    async fn inc_boxed(&self, x: Option<i64>) -> RpcResult<Option<i64>> {
        Ok(Some(x.map_or(-1, |x| x + 2)))
    }
    async fn echo(&self, o: Value) -> RpcResult<Value> {
        Ok(o)
    }
    async fn whoami(&self) -> RpcResult<Option<String>> {
        rdubbo::context::set_reply_attachment("served-by", "rdubbo");
        Ok(
            rdubbo::context::current()
                .and_then(|c| c.attachments.get("caller").map(str::to_string)),
        )
    }
    async fn by_name(&self, users: Vec<User>) -> RpcResult<HashMap<String, User>> {
        Ok(users
            .into_iter()
            .map(|u| (u.name.clone().unwrap_or_default(), u))
            .collect())
    }
    async fn level_of(&self, u: User) -> RpcResult<Option<Level>> {
        Ok(u.level)
    }
}
