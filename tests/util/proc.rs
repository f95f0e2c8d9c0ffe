//! Child processes for the tests: killed-on-drop children, their output lines with deadlines,
//! and this test binary re-run as a child that runs one ignored test (for what must not touch
//! the other tests: a seccomp filter, a process to SIGKILL, resource limits). The `ringxfer`
//! binary itself is run by the CLI's tests (cli/tests/util/bin.rs).

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// A child process killed (SIGKILL) and reaped when dropped, so a failing test leaves none
/// behind.
pub struct Killed(pub Child);

impl Killed {
    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The lines a child writes to a pipe, read on a thread, handed out with a deadline.
pub struct Lines(mpsc::Receiver<String>);

impl Lines {
    /// Reads `r` line by line on a thread of its own.
    pub fn new<R: Read + Send + 'static>(r: R) -> Lines {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(r).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Lines(rx)
    }

    /// The next line, or `None` when none came within `wait` (or the pipe closed).
    pub fn next(&self, wait: Duration) -> Option<String> {
        self.0.recv_timeout(wait).ok()
    }

    /// The next `n` lines, panicking with those received when they do not come in `wait`.
    #[track_caller]
    pub fn take(&self, n: usize, wait: Duration) -> Vec<String> {
        let deadline = Instant::now() + wait;
        let mut v = Vec::new();
        while v.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left) {
                Some(l) => v.push(l),
                None => panic!("only {} of {n} lines within {wait:?}: {v:#?}", v.len()),
            }
        }
        v
    }

    /// Every line that arrives within `wait` (waits the whole time unless the pipe closes).
    /// Only for "nothing more is said" checks on a live process: a line that must come is
    /// waited for with [`Lines::take`], and the rest of an exited process with [`Lines::rest`]
    /// (a fixed window loses lines whenever the reader thread is scheduled late).
    pub fn drain_for(&self, wait: Duration) -> Vec<String> {
        let deadline = Instant::now() + wait;
        let mut v = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.0.recv_timeout(left) {
                Ok(l) => v.push(l),
                Err(_) => return v,
            }
        }
    }

    /// Every line left, up to the end of the pipe: for a process that has exited (its end of
    /// the pipe is closed, so the reader thread ends once it has handed out the last line).
    /// Panics with the lines so far when the pipe is still open after `limit` (a process
    /// that has not exited, or one that left the pipe to a child).
    #[track_caller]
    pub fn rest(&self, limit: Duration) -> Vec<String> {
        let deadline = Instant::now() + limit;
        let mut v = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.0.recv_timeout(left) {
                Ok(l) => v.push(l),
                Err(mpsc::RecvTimeoutError::Disconnected) => return v,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("the pipe was still open after {limit:?}; lines so far: {v:#?}")
                }
            }
        }
    }
}

/// A field of `/proc/PID/status` in KiB (`VmRSS`, `VmHWM`, …), `None` when the process or
/// the field is gone.
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find_map(|l| {
        let v = l.strip_prefix(field)?.strip_prefix(':')?;
        v.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

/// A command that re-runs this test binary to run only the (ignored) test `name`, one test
/// thread, output not captured, with `envs` set and the variables that would change the
/// backend choice (`RINGXFER_BACKEND`) removed.
pub fn child_test_command(name: &str, envs: &[(&str, &str)]) -> Command {
    let exe = std::env::current_exe().expect("current_exe");
    let mut c = Command::new(exe);
    c.args([
        "--exact",
        name,
        "--ignored",
        "--nocapture",
        "--test-threads",
        "1",
    ])
    .env_remove("RINGXFER_BACKEND")
    .stdin(Stdio::null());
    for (k, v) in envs {
        c.env(k, v);
    }
    c
}

/// Collects a child's stdout and stderr on threads (so a chatty child never blocks on a
/// full pipe); `finish` returns both, joined.
pub struct Output {
    out: thread::JoinHandle<String>,
    err: thread::JoinHandle<String>,
}

impl Output {
    /// Takes the child's piped stdout and stderr.
    pub fn collect(child: &mut Child) -> Output {
        let read = |mut r: Box<dyn Read + Send>| {
            thread::spawn(move || {
                let mut s = String::new();
                let _ = r.read_to_string(&mut s);
                s
            })
        };
        Output {
            out: read(Box::new(child.stdout.take().expect("piped stdout"))),
            err: read(Box::new(child.stderr.take().expect("piped stderr"))),
        }
    }

    /// `(stdout, stderr)` once both pipes closed.
    pub fn finish(self) -> (String, String) {
        (self.out.join().unwrap(), self.err.join().unwrap())
    }
}

/// Waits for `child` up to `limit`; kills it then (returns `None`: it hung).
pub fn wait_deadline(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let t0 = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return Some(st);
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Runs the ignored test `name` in a child process (see [`child_test_command`]) and asserts
/// it passed within `limit` (and really ran: `1 passed`). Returns its output.
#[track_caller]
pub fn run_child_test(name: &str, envs: &[(&str, &str)], limit: Duration) -> String {
    let mut child = child_test_command(name, envs)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the child test");
    let output = Output::collect(&mut child);
    let status = wait_deadline(&mut child, limit);
    let (out, err) = output.finish();
    let text = format!("{out}{err}");
    eprintln!("--- child {name} ---\n{text}--- end of child {name} ---");
    match status {
        None => panic!("{name}: the child hung (killed after {limit:?}):\n{text}"),
        Some(st) => assert!(st.success(), "{name}: the child failed ({st}):\n{text}"),
    }
    assert!(
        text.contains("1 passed"),
        "{name}: the child did not run the test:\n{text}"
    );
    text
}
