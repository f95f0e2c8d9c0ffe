//! Shared-key authentication (issue 8 item 7): the library handshake
//! (`ringxfer::auth`, `Engine::authenticate_client` / `authenticate_server`) on both backends'
//! engines (`--auth-key` on `serve`, `send` and `recv`: cli/tests/cli_auth.rs):
//!
//! * right key → arrays served and verified;
//! * wrong key, both ways: a client with another key (the server says `auth_wrong_key`, the
//!   client `auth_key_rejected`), and a client reaching a server with another key or an
//!   impostor that cannot prove the key (`auth_wrong_key` on the client);
//! * no key: a client that sends a framed array at once, or garbage, is rejected at its first
//!   4 bytes;
//! * a recorded valid client exchange replayed on a new connection, and a server proof
//!   reflected as a client proof, are rejected;
//! * a silent peer is cut off at the handshake deadline;
//! * key files: empty, too short or unreadable ones are refused.

mod util;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;

use std::thread;
use std::time::{Duration, Instant};

use ringxfer::auth::{
    self, AuthError, AuthKey, MESSAGE_LEN, Message, Role, STATUS_OK, STATUS_WRONG_KEY, VERSION,
};
use ringxfer::dtype::DType;
use ringxfer::frame::Header;
use ringxfer::{Backend, Error, Order};
use util::*;

const KEY_A: &[u8; 32] = b"an example key of 32 bytes: AAAA";
const KEY_B: &[u8; 32] = b"an example key of 32 bytes: BBBB";
const T: Duration = Duration::from_secs(5);

fn key(b: &[u8]) -> AuthKey {
    AuthKey::from_bytes(b).unwrap()
}

fn auth_kind(r: &ringxfer::Result<()>) -> &'static str {
    match r {
        Ok(()) => "ok",
        Err(Error::Auth(a)) => a.kind(),
        Err(e) => panic!("not an auth error: {e:?}"),
    }
}

/// Runs `server` on the accepted end and `client` on the connected end of a loopback pair,
/// each on its own thread; returns both results.
fn pair<A, B>(
    server: impl FnOnce(TcpStream) -> A + Send + 'static,
    client: impl FnOnce(TcpStream) -> B + Send + 'static,
) -> (A, B)
where
    A: Send + 'static,
    B: Send + 'static,
{
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let c = thread::spawn(move || client(TcpStream::connect(addr).unwrap()));
    let (s, _) = l.accept().unwrap();
    let a = server(s);
    (a, c.join().unwrap())
}

fn handshake_then_arrays(backend: Backend) {
    within(Duration::from_secs(30), "right key", move || {
        let data: Vec<f64> = pattern_vec(100_000, 7);
        let want = data.clone();
        let (got, sent) = pair(
            move |s| {
                let mut e = engine(&opts(backend));
                e.authenticate_server(&s, &key(KEY_A)).unwrap();
                e.recv_array::<f64>(&s).unwrap()
            },
            move |s| {
                let mut e = engine(&opts(backend));
                e.authenticate_client(&s, &key(KEY_A)).unwrap();
                e.send_array(&s, &data, &[1000, 100], Order::F)
            },
        );
        sent.unwrap();
        assert_eq!(got.shape(), &[1000, 100]);
        assert_eq!(got.order(), Order::F);
        assert_same(got.as_slice(), &want, "the array after the handshake");
    });
}

fn wrong_key_both_ways(backend: Backend) {
    within(Duration::from_secs(30), "wrong key", move || {
        // The client holds another key than the server.
        let (server, client) = pair(
            move |s| engine(&opts(backend)).authenticate_server(&s, &key(KEY_A)),
            move |s| engine(&opts(backend)).authenticate_client(&s, &key(KEY_B)),
        );
        assert_eq!(
            (auth_kind(&server), auth_kind(&client)),
            ("auth_wrong_key", "auth_key_rejected")
        );
        // An impostor server: answers the hello, takes any proof, but cannot prove the key.
        let (_, client) = pair(
            |mut s| {
                let mut hello = [0u8; MESSAGE_LEN];
                s.read_exact(&mut hello).unwrap();
                let sh = Message {
                    version: VERSION,
                    code: STATUS_OK,
                    body: [0x5a; 32],
                };
                s.write_all(&sh.encode()).unwrap();
                s.read_exact(&mut hello).unwrap();
                let sp = Message {
                    version: VERSION,
                    code: STATUS_OK,
                    body: [0xee; 32],
                };
                s.write_all(&sp.encode()).unwrap();
            },
            move |s| engine(&opts(backend)).authenticate_client(&s, &key(KEY_A)),
        );
        assert_eq!(auth_kind(&client), "auth_wrong_key");
    });
}

both_backends! {
    /// The right key: the handshake, then a framed array through the engine.
    fn auth_right_key_then_arrays(backend) { handshake_then_arrays(backend) }
    /// Another key on either side: each side gets its own typed error.
    fn auth_wrong_key_both_ways(backend) { wrong_key_both_ways(backend) }
}

/// A client that skips the handshake: a framed array at once, garbage, or a close.
#[test]
fn auth_no_handshake_is_rejected() {
    let d: DType = "<f8".parse().unwrap();
    let head = Header::new(d, &[4], Order::C).unwrap().encode();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (head, "auth_unauthenticated"),
        (b"GET / HTTP/1.1\r\n\r\n".to_vec(), "auth_not_ringxfer"),
        (Vec::new(), "auth_peer_closed"),
    ];
    for (bytes, want) in cases {
        let t0 = Instant::now();
        let (server, _) = pair(
            |s| auth::authenticate_server(&s, &key(KEY_A), T),
            move |mut s| {
                // The server may close first (it rejects at the first 4 bytes).
                let _ = s.write_all(&bytes);
                let _ = s.shutdown(Shutdown::Write);
                let mut sink = Vec::new();
                let _ = s.read_to_end(&mut sink);
                sink
            },
        );
        assert_eq!(auth_kind(&server), want, "{server:?}");
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "at once, not at the deadline"
        );
        if want == "auth_not_ringxfer" {
            assert!(
                matches!(
                    server,
                    Err(Error::Auth(AuthError::NotRingxfer { got })) if &got == b"GET "
                ),
                "{server:?}"
            );
        }
    }
}

/// Relays one connection between a client and `server`, recording what the client sent.
fn recording_relay(
    server: std::net::SocketAddr,
) -> (std::net::SocketAddr, thread::JoinHandle<Vec<u8>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let h = thread::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        let mut s = TcpStream::connect(server).unwrap();
        let (mut c2, mut s2) = (c.try_clone().unwrap(), s.try_clone().unwrap());
        let back = thread::spawn(move || {
            let _ = std::io::copy(&mut s2, &mut c2);
            let _ = c2.shutdown(Shutdown::Write);
        });
        let mut recorded = Vec::new();
        let mut b = [0u8; 4096];
        loop {
            match c.read(&mut b) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    recorded.extend_from_slice(&b[..n]);
                    s.write_all(&b[..n]).unwrap();
                }
            }
        }
        let _ = s.shutdown(Shutdown::Write);
        back.join().unwrap();
        recorded
    });
    (addr, h)
}

/// A valid client exchange, recorded through a relay, replayed verbatim on a new connection:
/// the server's fresh nonce makes the recorded proof wrong.
#[test]
fn auth_replayed_response_is_rejected() {
    within(Duration::from_secs(30), "replay", || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let server_addr = l.local_addr().unwrap();
        let server = thread::spawn(move || {
            let mut results = Vec::new();
            for _ in 0..2 {
                let (s, _) = l.accept().unwrap();
                results.push(auth::authenticate_server(&s, &key(KEY_A), T));
            }
            results
        });
        let (relay, recorded) = recording_relay(server_addr);
        let c = TcpStream::connect(relay).unwrap();
        auth::authenticate_client(&c, &key(KEY_A), T).expect("the recorded exchange is valid");
        c.shutdown(Shutdown::Write).unwrap();
        let recorded = recorded.join().unwrap();
        assert_eq!(recorded.len(), 2 * MESSAGE_LEN, "hello + proof");

        let mut again = TcpStream::connect(server_addr).unwrap();
        again.write_all(&recorded).unwrap();
        let mut reply = [0u8; 2 * MESSAGE_LEN];
        again.read_exact(&mut reply).unwrap();
        let status = u16::from_le_bytes([reply[MESSAGE_LEN + 6], reply[MESSAGE_LEN + 7]]);
        assert_eq!(
            status, STATUS_WRONG_KEY,
            "the server says the replayed proof is wrong"
        );
        assert_eq!(&reply[MESSAGE_LEN + 8..], &[0u8; 32], "and proves nothing");
        let results = server.join().unwrap();
        assert_eq!(auth_kind(&results[0]), "ok");
        assert_eq!(auth_kind(&results[1]), "auth_wrong_key");
    });
}

/// A key holder's *server* proof for the connection's own nonces, sent as the client proof,
/// is rejected: the role label is part of the MAC input.
#[test]
fn auth_reflected_proof_is_rejected() {
    let (server, _) = pair(
        |s| auth::authenticate_server(&s, &key(KEY_A), T),
        |mut s| {
            let cn = [0x11u8; 32];
            let hello = Message {
                version: VERSION,
                code: 0,
                body: cn,
            };
            s.write_all(&hello.encode()).unwrap();
            let mut sh = [0u8; MESSAGE_LEN];
            s.read_exact(&mut sh).unwrap();
            let sn: [u8; 32] = sh[8..].try_into().unwrap();
            let k = key(KEY_A);
            let reflected = Message {
                version: VERSION,
                code: 0,
                body: k.proof(Role::Server, &cn, &sn),
            };
            s.write_all(&reflected.encode()).unwrap();
            let mut sp = [0u8; MESSAGE_LEN];
            s.read_exact(&mut sp).unwrap();
            assert_eq!(u16::from_le_bytes([sp[6], sp[7]]), STATUS_WRONG_KEY);
            // The right client proof for the same nonces would have been accepted.
            assert!(k.verify(Role::Client, &cn, &sn, &k.proof(Role::Client, &cn, &sn)));
        },
    );
    assert_eq!(auth_kind(&server), "auth_wrong_key");
}

/// A silent peer: each side gives up at the handshake deadline, not later.
#[test]
fn auth_silent_peer_times_out() {
    let deadline = Duration::from_millis(400);
    // Timed inside the server's side: `pair` also waits for the peer, which holds the
    // connection for 1 s (timed around `pair`, the bound had 0.5 s of margin over that).
    let ((server, took), _) = pair(
        move |s| {
            let t0 = Instant::now();
            let r = auth::authenticate_server(&s, &key(KEY_A), deadline);
            (r, t0.elapsed())
        },
        |s| {
            thread::sleep(Duration::from_secs(1));
            drop(s);
        },
    );
    assert!(
        matches!(
            server,
            Err(Error::Auth(AuthError::TimedOut {
                timeout_ms: 400,
                ..
            }))
        ),
        "{server:?}"
    );
    assert!(
        took >= deadline && took < Duration::from_millis(1500),
        "{took:?}"
    );
    let (_, client) = pair(
        |s| {
            thread::sleep(Duration::from_secs(1));
            drop(s);
        },
        move |s| auth::authenticate_client(&s, &key(KEY_A), deadline),
    );
    assert_eq!(auth_kind(&client), "auth_timed_out");
}

/// Key files: empty, whitespace only, too short, a directory, missing.
#[test]
fn auth_key_files() {
    let dir = tmpdir("auth", "files");
    let empty = write_file(&dir, "empty", b"");
    let blank = write_file(&dir, "blank", b" \n\n");
    let short = write_file(&dir, "short", b"0123456789\n");
    let good = write_file(&dir, "good", b"0123456789abcdef0123\n");
    assert!(
        matches!(AuthKey::from_file(&empty), Err(AuthError::KeyEmpty { path: Some(p) }) if p == Path::new(&empty))
    );
    assert!(matches!(
        AuthKey::from_file(&blank),
        Err(AuthError::KeyEmpty { .. })
    ));
    assert!(matches!(
        AuthKey::from_file(&short),
        Err(AuthError::KeyTooShort {
            len: 10,
            min: 16,
            ..
        })
    ));
    assert!(matches!(
        AuthKey::from_file(&dir),
        Err(AuthError::KeyUnreadable { .. })
    ));
    let missing = dir.join("missing");
    match AuthKey::from_file(&missing) {
        Err(AuthError::KeyUnreadable { path, source }) => {
            assert_eq!(path, missing);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("{other:?}"),
    }
    let k = AuthKey::from_file(&good).unwrap();
    assert_eq!(k.len(), 20);
    assert_eq!(format!("{k:?}"), "AuthKey { len: 20, .. }");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A server that turns the client away before the handshake (serve with every slot busy):
/// the client reports the server's reason.
#[test]
fn auth_refusal_line_is_reported() {
    let (_, client) = pair(
        |mut s| {
            let mut hello = [0u8; MESSAGE_LEN];
            s.read_exact(&mut hello).unwrap();
            s.write_all(b"ringxfer serve: refused: every slot is busy (1 connections)\n")
                .unwrap();
        },
        |s| auth::authenticate_client(&s, &key(KEY_A), T),
    );
    match client {
        Err(Error::Auth(AuthError::Refused { reason })) => {
            assert_eq!(reason, "refused: every slot is busy (1 connections)")
        }
        other => panic!("{other:?}"),
    }
}
