//! The error messages `#[rdubbo::service]` and `#[derive(rdubbo::JavaType)]` give for code
//! they cannot take: each case under `tests/ui/` must fail to compile with exactly the
//! message in its `.stderr` file (regenerate with `TRYBUILD=overwrite cargo test -p
//! rdubbo-macros --test compile_fail` after a deliberate change, and read the diff).

#[test]
fn macro_errors() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
