//! `python3` with numpy for the interop tests: whether it is there (a printed skip, or a
//! failure under `RINGXFER_TEST_REQUIRE_NUMPY=1`), and a script run with a deadline.

use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use super::proc::{Output, wait_deadline};

/// Set to `1` to make a missing python3/numpy a test failure instead of a skip
/// (`scripts/test.sh` installs numpy first).
pub const REQUIRE_NUMPY_ENV: &str = "RINGXFER_TEST_REQUIRE_NUMPY";

/// True when `python3` can import numpy; otherwise prints why (once per test) and returns
/// false, or panics under `RINGXFER_TEST_REQUIRE_NUMPY=1`.
pub fn numpy_available() -> bool {
    static PROBE: OnceLock<Result<String, String>> = OnceLock::new();
    let probe = PROBE.get_or_init(|| {
        match Command::new("python3")
            .args([
                "-c",
                "import numpy, sys; print(numpy.__version__, sys.version.split()[0])",
            ])
            .output()
        {
            Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).trim().into()),
            Ok(o) => Err(format!(
                "python3 -c 'import numpy' failed ({}): {}",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => Err(format!("cannot run python3: {e}")),
        }
    });
    match probe {
        Ok(_) => true,
        Err(why) if std::env::var(REQUIRE_NUMPY_ENV).is_ok_and(|v| v == "1") => {
            panic!("numpy unavailable but {REQUIRE_NUMPY_ENV}=1: {why}")
        }
        Err(why) => {
            eprintln!("skipped: numpy unavailable: {why}");
            false
        }
    }
}

/// A running `python3 -c script args…`, stdout and stderr collected; killed if it outlives
/// the deadline given to [`Python::finish`].
pub struct Python {
    child: std::process::Child,
    output: Output,
}

impl Python {
    /// Starts `python3 -c script args…`.
    pub fn start(script: &str, args: &[&str]) -> Python {
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(script)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn python3");
        let output = Output::collect(&mut child);
        Python { child, output }
    }

    /// Waits up to `limit` (kills it then) and returns `(status, stdout, stderr)`; `None` as
    /// status when it had to be killed.
    pub fn finish(mut self, limit: Duration) -> (Option<ExitStatus>, String, String) {
        let status = wait_deadline(&mut self.child, limit);
        let (out, err) = self.output.finish();
        (status, out, err)
    }

    /// [`Python::finish`], asserting a zero exit; returns stdout.
    #[track_caller]
    pub fn success(self, limit: Duration) -> String {
        let (status, out, err) = self.finish(limit);
        assert!(
            status.is_some_and(|s| s.success()),
            "python3 exited with {status:?}\nstdout:\n{out}\nstderr:\n{err}"
        );
        out
    }
}
