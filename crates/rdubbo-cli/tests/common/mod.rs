//! What every test of the `rdubbo` command needs.
#![allow(dead_code)] // each test file compiles this module and uses part of it

use std::process::{Child, Command, Output};

/// The `rdubbo` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_rdubbo");

/// A child process killed (by its PID) on drop, so a failing test leaves nothing behind.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `rdubbo <args>` to completion.
pub fn rdubbo(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run rdubbo")
}

/// Output bytes as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
