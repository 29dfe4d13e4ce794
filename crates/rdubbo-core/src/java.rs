//! The Java type a Rust type is sent as.
//!
//! Java Dubbo finds a method by its name and the exact JVM descriptors of its parameters
//! (`getUser(Ljava/lang/Long;)` is not `getUser(J)`), so a typed stub must name the Java
//! types of its parameters. `#[rdubbo::service]` asks [`JavaType`] for each parameter's
//! descriptor at compile time; `#[derive(rdubbo::JavaType)]` gives a struct or enum the
//! class named by its `#[serde(rename = "...")]` (or `#[java(class = "...")]`).
//!
//! | Rust | descriptor | inside `Option` |
//! |---|---|---|
//! | `bool` | `Z` | `Ljava/lang/Boolean;` |
//! | `i8` | `B` | `Ljava/lang/Byte;` |
//! | `i16` | `S` | `Ljava/lang/Short;` |
//! | `i32` | `I` | `Ljava/lang/Integer;` |
//! | `i64` | `J` | `Ljava/lang/Long;` |
//! | `u8` / `u16` / `u32`, `u64`, `usize`, `isize` | `S` / `I` / `J` (the smallest Java type holding every value) | boxed alike |
//! | `f32` | `F` | `Ljava/lang/Float;` |
//! | `f64` | `D` | `Ljava/lang/Double;` |
//! | `char` | `C` | `Ljava/lang/Character;` |
//! | `String`, `&str`, `Box<str>`, `Arc<str>` | `Ljava/lang/String;` | same |
//! | `Vec<T>`, `[T]`, `VecDeque<T>` | `Ljava/util/List;` | same |
//! | `HashSet<T>`, `BTreeSet<T>` | `Ljava/util/Set;` | same |
//! | `HashMap<K, V>`, `BTreeMap<K, V>` | `Ljava/util/Map;` | same |
//! | [`Bytes`] | `[B` | same |
//! | [`Date`] | `Ljava/util/Date;` | same |
//! | [`BigDecimal`] | `Ljava/math/BigDecimal;` | same |
//! | [`Value`], `serde_json::Value` | `Ljava/lang/Object;` | same |
//! | `Box<T>`, `Arc<T>`, `&T` | as `T` | as `T` |
//!
//! ```
//! use rdubbo_core::JavaType;
//! assert_eq!(<i64 as JavaType>::DESCRIPTOR, "J");
//! assert_eq!(<Option<i64> as JavaType>::DESCRIPTOR, "Ljava/lang/Long;");
//! assert_eq!(<Vec<String> as JavaType>::DESCRIPTOR, "Ljava/util/List;");
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use crate::value::{BigDecimal, Bytes, Date, Value};

/// A Rust type's Java type, as a JVM descriptor.
pub trait JavaType {
    /// The descriptor of a parameter of this type (`J` for `i64`).
    const DESCRIPTOR: &'static str;
    /// The descriptor of its boxed form, used inside `Option` (`Ljava/lang/Long;`).
    const BOXED: &'static str = Self::DESCRIPTOR;
}

macro_rules! java_types {
    ($($t:ty => $d:literal, $b:literal;)*) => {$(
        impl JavaType for $t {
            const DESCRIPTOR: &'static str = $d;
            const BOXED: &'static str = $b;
        }
    )*};
}

java_types! {
    bool => "Z", "Ljava/lang/Boolean;";
    i8 => "B", "Ljava/lang/Byte;";
    i16 => "S", "Ljava/lang/Short;";
    i32 => "I", "Ljava/lang/Integer;";
    i64 => "J", "Ljava/lang/Long;";
    f32 => "F", "Ljava/lang/Float;";
    u8 => "S", "Ljava/lang/Short;";
    u16 => "I", "Ljava/lang/Integer;";
    u32 => "J", "Ljava/lang/Long;";
    u64 => "J", "Ljava/lang/Long;";
    usize => "J", "Ljava/lang/Long;";
    isize => "J", "Ljava/lang/Long;";
    f64 => "D", "Ljava/lang/Double;";
    char => "C", "Ljava/lang/Character;";
    String => "Ljava/lang/String;", "Ljava/lang/String;";
    str => "Ljava/lang/String;", "Ljava/lang/String;";
    Bytes => "[B", "[B";
    Date => "Ljava/util/Date;", "Ljava/util/Date;";
    BigDecimal => "Ljava/math/BigDecimal;", "Ljava/math/BigDecimal;";
    Value => "Ljava/lang/Object;", "Ljava/lang/Object;";
    serde_json::Value => "Ljava/lang/Object;", "Ljava/lang/Object;";
}

impl<T: JavaType> JavaType for Option<T> {
    const DESCRIPTOR: &'static str = T::BOXED;
}
impl<T: JavaType + ?Sized> JavaType for Box<T> {
    const DESCRIPTOR: &'static str = T::DESCRIPTOR;
    const BOXED: &'static str = T::BOXED;
}
impl<T: JavaType + ?Sized> JavaType for Arc<T> {
    const DESCRIPTOR: &'static str = T::DESCRIPTOR;
    const BOXED: &'static str = T::BOXED;
}
impl<T: JavaType + ?Sized> JavaType for &T {
    const DESCRIPTOR: &'static str = T::DESCRIPTOR;
    const BOXED: &'static str = T::BOXED;
}
impl<T> JavaType for Vec<T> {
    const DESCRIPTOR: &'static str = "Ljava/util/List;";
}
impl<T> JavaType for [T] {
    const DESCRIPTOR: &'static str = "Ljava/util/List;";
}
impl<T> JavaType for VecDeque<T> {
    const DESCRIPTOR: &'static str = "Ljava/util/List;";
}
impl<T, S> JavaType for HashSet<T, S> {
    const DESCRIPTOR: &'static str = "Ljava/util/Set;";
}
impl<T> JavaType for BTreeSet<T> {
    const DESCRIPTOR: &'static str = "Ljava/util/Set;";
}
impl<K, V, S> JavaType for HashMap<K, V, S> {
    const DESCRIPTOR: &'static str = "Ljava/util/Map;";
}
impl<K, V> JavaType for BTreeMap<K, V> {
    const DESCRIPTOR: &'static str = "Ljava/util/Map;";
}
