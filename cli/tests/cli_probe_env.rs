//! An invalid `RINGXFER_BACKEND` is a usage error for every command that builds an `auto`
//! engine, `probe` included: `probe` still prints its whole report (the variable's value is
//! named in its `backend auto` line), then exits 2 with the reason on stderr, as `send`
//! does. A valid value keeps exit status 0.

mod util;

use std::process::{Command, Stdio};

use util::bin::BIN;

/// `ringxfer ARGS` with `RINGXFER_BACKEND=value`: `(exit code, stdout, stderr)`.
fn with_env(value: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("RINGXFER_BACKEND", value)
        .stdin(Stdio::null())
        .output()
        .expect("run ringxfer");
    (
        out.status.code().expect("exit code"),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

const WHY: &str = "invalid argument: RINGXFER_BACKEND=\"bogus\": unknown backend \"bogus\" \
                   (expected auto, blocking or uring)";

#[test]
fn probe_with_an_invalid_backend_variable_is_a_usage_error() {
    let (code, out, err) = with_env("bogus", &["probe"]);
    assert_eq!(code, 2, "{out}{err}");
    assert_eq!(err, format!("ringxfer probe: {WHY}\n"));
    assert!(out.starts_with("kernel:        "), "{out}");
    assert_eq!(
        out.lines().last(),
        Some(format!("backend auto:  none ({WHY})").as_str())
    );

    let (code, out, err) = with_env("bogus", &["probe", "--json"]);
    assert_eq!(code, 2, "{out}{err}");
    assert_eq!(err, format!("ringxfer probe: {WHY}\n"));
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["auto_backend"], serde_json::Value::Null, "{v}");
    assert_eq!(v["auto_reason"], WHY, "{v}");
}

#[test]
fn send_with_an_invalid_backend_variable_is_the_same_usage_error() {
    let (code, out, err) = with_env(
        "bogus",
        &["send", "--connect", "127.0.0.1:1", "--count", "1"],
    );
    assert_eq!((code, out.as_str()), (2, ""), "{err}");
    assert_eq!(err, format!("ringxfer send: {WHY}\n"));
}

#[test]
fn probe_with_a_valid_backend_variable_exits_0() {
    let (code, out, err) = with_env("blocking", &["probe"]);
    assert_eq!((code, err.as_str()), (0, ""), "{out}");
    assert_eq!(
        out.lines().last(),
        Some("backend auto:  blocking (RINGXFER_BACKEND=blocking)")
    );
}
