//! Async callers: `examples/async_tokio.rs` (spawn_blocking + into_std on a current_thread
//! runtime) moves the array intact on both backends; and what happens without
//! `spawn_blocking` — the receive starves the sender task (shown with an idle timeout, so the
//! test ends instead of hanging as a caller without one would).

mod util;

#[path = "../examples/async_tokio.rs"]
mod example;

use std::time::Duration;

use ringxfer::{Error, Options};
use tokio::io::AsyncWriteExt;
use util::*;

both_backends! {
    /// The example's transfer arrives byte-exact.
    fn spawn_blocking_example_moves_the_array(backend) {
        let got = example::run(backend).expect("example");
        let want: Vec<f64> = (0..example::N).map(|i| i as f64).collect();
        assert_same(&got, &want, "async example");
    }

    /// `recv_into` called directly in a task of a `current_thread` runtime, the sender being
    /// another task of it: the sender never runs, no byte arrives, and with an idle timeout
    /// of 300 ms the receive ends `TimedOut` with 0 bytes (without one it would wait forever).
    fn direct_call_in_a_task_starves_the_sender(backend) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().expect("rt");
        let r = rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("addr");
            // The sender writes once the receiver is about to receive (the order a real
            // program has no control over): ready to run, it needs the runtime's only thread.
            let (go, ready) = tokio::sync::oneshot::channel::<()>();
            let sender = tokio::spawn(async move {
                let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
                let _ = ready.await;
                s.write_all(&[1u8; 64]).await.expect("write");
            });
            let (sock, _) = listener.accept().await.expect("accept");
            let sock = sock.into_std().expect("into_std");
            let o = Options { idle_timeout: Some(Duration::from_millis(300)), ..opts(backend) };
            let _ = go.send(());
            let r = engine(&o).recv_into(&sock, &mut [0u8; 64]); // blocks the only thread
            sender.abort();
            r
        });
        assert!(
            matches!(r, Err(Error::TimedOut { transferred: 0, expected: 64, timeout_ms: 300 })),
            "{r:?}"
        );
    }
}
