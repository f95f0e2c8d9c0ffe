//! The built `ringxfer` binary for the CLI's integration tests (`env!("CARGO_BIN_EXE_…")`
//! exists only inside the binary's package, so this part of the helpers lives here).

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::Duration;

use super::proc::{Killed, Lines};

/// The `ringxfer` binary built for the integration tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_ringxfer");

/// Starts `ringxfer serve --listen 127.0.0.1:0 ARGS...` (stderr inherited) and returns it,
/// its stdout lines and the address from its first line (`listening ADDR`).
pub fn spawn_serve(args: &[&str]) -> (Killed, Lines, SocketAddr) {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .env_remove("RINGXFER_BACKEND")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn ringxfer serve");
    let out = child.stdout.take().unwrap();
    let child = Killed(child);
    let lines = Lines::new(out);
    let first = lines
        .next(Duration::from_secs(20))
        .expect("serve printed no first line");
    let addr = first
        .strip_prefix("listening ")
        .unwrap_or_else(|| panic!("first line {first:?} is not `listening ADDR`"));
    let addr = SocketAddr::from_str(addr).expect("an address");
    assert_ne!(addr.port(), 0, "the bound port, not 0");
    (child, lines, addr)
}
