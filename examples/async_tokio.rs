//! Calling ringxfer from async code (tokio): every ringxfer call blocks its thread until the
//! bytes have moved, so run it on a blocking thread — `TcpStream::into_std()` and
//! `tokio::task::spawn_blocking` — never directly in a task (on a `current_thread` runtime a
//! `recv_into` whose sender is another task of the same runtime waits forever: the sender
//! never gets to run).
//!
//! `cargo run --example async_tokio` sends 8 MB of `f64` over TCP loopback between two tasks
//! of one `current_thread` runtime; `tests/async_tokio.rs` runs it on both backends.

use tokio::net::{TcpListener, TcpStream};

/// Elements sent: 1,000,000 `f64` (8 MB).
pub const N: usize = 1_000_000;

/// One transfer between two tasks of a `current_thread` runtime; returns what arrived.
pub fn run(backend: ringxfer::Backend) -> std::io::Result<Vec<f64>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let sender = tokio::spawn(async move {
            let sock = TcpStream::connect(addr).await?.into_std()?;
            tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                let data: Vec<f64> = (0..N).map(|i| i as f64).collect();
                let mut engine = ringxfer::Engine::new(backend)?;
                engine.send_from(&sock, &data)?;
                engine.finish(&sock)?; // shut down, wait for the receiver's close
                Ok(())
            })
            .await?
        });
        let (sock, _) = listener.accept().await?;
        // `into_std` keeps the socket non-blocking; ringxfer copes (see the crate docs), so
        // `sock.set_nonblocking(false)` is not needed.
        let sock = sock.into_std()?;
        let got = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<f64>> {
            let mut data = vec![0f64; N];
            ringxfer::Engine::new(backend)?.recv_into(&sock, &mut data)?;
            Ok(data) // `sock` closes here: the sender's `finish` returns
        })
        .await??;
        sender.await??;
        Ok(got)
    })
}

#[allow(dead_code)] // included as a module by tests/async_tokio.rs
fn main() -> std::io::Result<()> {
    let got = run(ringxfer::Backend::Auto)?;
    assert!(got.iter().enumerate().all(|(i, &x)| x == i as f64));
    println!(
        "received {} f64 ({} bytes) intact",
        got.len(),
        got.len() * 8
    );
    Ok(())
}
