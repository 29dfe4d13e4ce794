//! Generates the messages, traits, servers and clients of `proto/*.proto`.

fn main() -> std::io::Result<()> {
    rdubbo_build::compile_protos(&["proto/echo.proto", "proto/greeter.proto"], &["proto"])
}
