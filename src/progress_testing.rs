//! For this crate's tests only (`testing` feature, not part of the API): a transfer with a
//! recording progress hook, so the backends' hook contract (`src/driver.rs`, "Progress
//! hooks") can be checked from the integration tests (`tests/progress.rs`).

use std::os::fd::AsFd;

use crate::driver::Transfer;
use crate::progress::Progress;
use crate::{Engine, Result};

/// Every call a backend made to the hook: `(offset, bytes)`, in call order.
#[derive(Debug, Default)]
pub struct Recorder {
    /// The calls.
    pub calls: Vec<(u64, Vec<u8>)>,
}

impl Progress for Recorder {
    fn bytes(&mut self, offset: u64, bytes: &[u8]) {
        self.calls.push((offset, bytes.to_vec()));
    }
}

/// Sends `parts` back to back on `sock` as one transfer with a [`Recorder`] hook.
pub fn send_recorded<S: AsFd>(
    engine: &mut Engine,
    sock: &S,
    parts: Vec<&[u8]>,
) -> (Result<u64>, Recorder) {
    let mut rec = Recorder::default();
    let t = Transfer::send(sock.as_fd(), parts).with_progress(&mut rec);
    let r = engine.run(t, false);
    (r, rec)
}

/// Fills `parts` back to back from `sock` (done after `at_least` bytes, if given) as one
/// transfer with a [`Recorder`] hook.
pub fn recv_recorded<S: AsFd>(
    engine: &mut Engine,
    sock: &S,
    parts: Vec<&mut [u8]>,
    at_least: Option<u64>,
) -> (Result<u64>, Recorder) {
    let mut rec = Recorder::default();
    let t = Transfer {
        at_least,
        ..Transfer::recv(sock.as_fd(), parts).with_progress(&mut rec)
    };
    let r = engine.run(t, false);
    (r, rec)
}
