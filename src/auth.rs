//! Shared-key authentication: a mutual challenge–response handshake run on a freshly
//! connected stream socket before any framed (or raw) array moves.
//!
//! Both ends hold the same secret ([`AuthKey`], loaded from a file). The side that connected
//! is the **client**, the side that accepted is the **server**; each sends a fresh 32-byte
//! nonce from the OS random number generator (`getrandom`), then each proves the key with
//! HMAC-SHA-256 over a role label and both nonces:
//!
//! ```text
//! client → server  ClientHello  "RGXA" version=1 flags=0   client_nonce[32]
//! server → client  ServerHello  "RGXA" version=1 status=0  server_nonce[32]
//! client → server  ClientProof  "RGXA" version=1 flags=0   HMAC(key, CLIENT_LABEL ‖ client_nonce ‖ server_nonce)
//! server → client  ServerProof  "RGXA" version=1 status    HMAC(key, SERVER_LABEL ‖ client_nonce ‖ server_nonce)
//! ```
//!
//! Every message is [`MESSAGE_LEN`] (40) bytes, integers little-endian; the layout, the
//! status codes and the failure behaviour are specified in `docs/PROTOCOL.md`
//! ("Authentication handshake"). What it gives:
//!
//! * a client without the key (or with another one) is rejected by the server
//!   ([`AuthError::WrongKey`] on the server, [`AuthError::KeyRejected`] on the client) before
//!   the server has read a single array byte or allocated anything sized by the peer;
//! * a client that reached a server with another key, or an impostor, finds out: the server
//!   either rejects its proof or cannot produce its own ([`AuthError::WrongKey`] on the
//!   client);
//! * a recorded proof replayed on a new connection fails (the server's nonce is fresh), and a
//!   proof reflected from one role to the other fails (the role label is in the MAC input);
//!   MACs are compared in constant time (`hmac`'s `verify_slice`);
//! * a client that skips the handshake (an old client sending `RGXF` at once, or garbage) is
//!   rejected at its first 4 bytes ([`AuthError::Unauthenticated`],
//!   [`AuthError::NotRingxfer`]);
//! * every read and write is bounded by one deadline for the whole handshake
//!   ([`AuthError::TimedOut`]); an interrupted call (`EINTR`) resumes with the time left.
//!
//! It authenticates the peer only: the arrays that follow are neither encrypted nor
//! integrity-protected, so an active man-in-the-middle can relay the handshake and then
//! tamper with the stream. Use a VPN, an SSH tunnel or TLS where that matters.
//!
//! ```
//! use std::net::{TcpListener, TcpStream};
//! use std::time::Duration;
//! use ringxfer::auth::{AuthKey, authenticate_client, authenticate_server};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let key = AuthKey::from_bytes(b"0123456789abcdef0123456789abcdef")?;
//! let listener = TcpListener::bind("127.0.0.1:0")?;
//! let addr = listener.local_addr()?;
//! let k = key.clone();
//! let client = std::thread::spawn(move || {
//!     let sock = TcpStream::connect(addr).unwrap();
//!     authenticate_client(&sock, &k, Duration::from_secs(5))
//! });
//! let (sock, _) = listener.accept()?;
//! authenticate_server(&sock, &key, Duration::from_secs(5))?;
//! client.join().unwrap()?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use socket2::SockRef;

use crate::error::{Error, Result};

/// First 4 bytes of every handshake message: ASCII `RGXA`.
pub const MAGIC: [u8; 4] = *b"RGXA";
/// The handshake version this library speaks.
pub const VERSION: u16 = crate::error::AUTH_VERSION;
/// Bytes of every handshake message: magic (4), version (2), flags or status (2), body (32).
pub const MESSAGE_LEN: usize = 40;
/// Bytes of each nonce.
pub const NONCE_LEN: usize = 32;
/// Bytes of each proof (HMAC-SHA-256).
pub const MAC_LEN: usize = 32;
/// Fewest key bytes accepted (after trailing whitespace is trimmed): 128 bits, so the key
/// cannot be guessed offline from a recorded proof. `head -c 32 /dev/urandom > key` makes a
/// good one.
pub const MIN_KEY_BYTES: usize = 16;
/// Most key bytes accepted: a larger file is not a key (and reading it is bounded).
pub const MAX_KEY_BYTES: usize = 4096;
/// Handshake deadline used by [`crate::Engine::authenticate_client`] /
/// [`crate::Engine::authenticate_server`] when the engine has no idle timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// MAC input prefix of the client's proof.
pub const CLIENT_LABEL: &[u8] = b"ringxfer-auth-v1 client proof";
/// MAC input prefix of the server's proof.
pub const SERVER_LABEL: &[u8] = b"ringxfer-auth-v1 server proof";

/// ServerHello / ServerProof status: go on (hello) or accepted (proof).
pub const STATUS_OK: u16 = 0;
/// ServerHello status: the client's version is not spoken here; the message's version field
/// holds the server's.
pub const STATUS_UNSUPPORTED_VERSION: u16 = 1;
/// ServerProof status: the client's proof does not match the server's key.
pub const STATUS_WRONG_KEY: u16 = 2;

/// Start of the one text line `ringxfer serve` writes to a client it turns away before the
/// handshake (every connection slot taken); see `docs/PROTOCOL.md`.
pub const REFUSAL_PREFIX: &[u8] = b"ringxfer serve: ";

type HmacSha256 = Hmac<Sha256>;

/// Which end of the handshake: the side that connected is the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The side that connected (`connect`).
    Client,
    /// The side that accepted the connection (`accept`).
    Server,
}

impl Role {
    fn label(self) -> &'static [u8] {
        match self {
            Role::Client => CLIENT_LABEL,
            Role::Server => SERVER_LABEL,
        }
    }
}

/// A shared secret key. Its bytes are never printed (`Debug` shows the length only) and are
/// overwritten with zeros when it is dropped.
#[derive(Clone)]
pub struct AuthKey {
    bytes: Vec<u8>,
}

impl fmt::Debug for AuthKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthKey")
            .field("len", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

impl Drop for AuthKey {
    fn drop(&mut self) {
        self.bytes.fill(0);
        std::hint::black_box(&mut self.bytes);
    }
}

impl AuthKey {
    /// The key in the file at `path`: its bytes, with trailing ASCII whitespace (`\n`, `\r`,
    /// space, tab) removed so `echo secret > key` and `printf secret > key` give the same key.
    ///
    /// # Errors
    /// [`AuthError::KeyUnreadable`] (missing, a directory, no permission…), or the errors of
    /// [`AuthKey::from_bytes`] naming the path.
    pub fn from_file(path: impl AsRef<Path>) -> Result<AuthKey, AuthError> {
        let path = path.as_ref();
        let unreadable = |source| AuthError::KeyUnreadable {
            path: path.to_owned(),
            source,
        };
        let f = std::fs::File::open(path).map_err(unreadable)?;
        let mut bytes = Vec::new();
        // One byte over the limit is enough to know the file is too long (and /dev/zero ends).
        f.take(MAX_KEY_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(unreadable)?;
        AuthKey::checked(bytes, Some(path))
    }

    /// A key from its bytes (trailing ASCII whitespace removed, as [`AuthKey::from_file`]).
    ///
    /// # Errors
    /// [`AuthError::KeyEmpty`], [`AuthError::KeyTooShort`] (under [`MIN_KEY_BYTES`]),
    /// [`AuthError::KeyTooLong`] (over [`MAX_KEY_BYTES`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<AuthKey, AuthError> {
        AuthKey::checked(bytes.to_vec(), None)
    }

    fn checked(mut bytes: Vec<u8>, path: Option<&Path>) -> Result<AuthKey, AuthError> {
        let source = path.map(Path::to_owned);
        if bytes.len() > MAX_KEY_BYTES {
            bytes.fill(0);
            return Err(AuthError::KeyTooLong {
                path: source,
                max: MAX_KEY_BYTES,
            });
        }
        while bytes.last().is_some_and(|b| b" \t\r\n".contains(b)) {
            bytes.pop();
        }
        let key = AuthKey { bytes };
        match key.bytes.len() {
            0 => Err(AuthError::KeyEmpty { path: source }),
            n if n < MIN_KEY_BYTES => Err(AuthError::KeyTooShort {
                path: source,
                len: n,
                min: MIN_KEY_BYTES,
            }),
            _ => Ok(key),
        }
    }

    /// Key bytes in use.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Always false: an empty key is refused when it is made.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn mac(&self, role: Role, client_nonce: &[u8], server_nonce: &[u8]) -> HmacSha256 {
        let mut m = <HmacSha256 as KeyInit>::new_from_slice(&self.bytes)
            .expect("HMAC accepts keys of any length");
        m.update(role.label());
        m.update(client_nonce);
        m.update(server_nonce);
        m
    }

    /// The proof `role` sends: HMAC-SHA-256 under this key of the role's label
    /// ([`CLIENT_LABEL`] / [`SERVER_LABEL`]) followed by the client's and the server's nonce.
    /// For peers written in other languages and for tests; the handshake functions use it.
    pub fn proof(
        &self,
        role: Role,
        client_nonce: &[u8; NONCE_LEN],
        server_nonce: &[u8; NONCE_LEN],
    ) -> [u8; MAC_LEN] {
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(
            &self
                .mac(role, client_nonce, server_nonce)
                .finalize()
                .into_bytes(),
        );
        out
    }

    /// Whether `mac` is `role`'s proof for these nonces, compared in constant time.
    pub fn verify(
        &self,
        role: Role,
        client_nonce: &[u8; NONCE_LEN],
        server_nonce: &[u8; NONCE_LEN],
        mac: &[u8],
    ) -> bool {
        self.mac(role, client_nonce, server_nonce)
            .verify_slice(mac)
            .is_ok()
    }
}

pub use crate::error::AuthError;

/// One 40-byte handshake message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message {
    /// The sender's handshake version.
    pub version: u16,
    /// Flags (client messages, must be 0) or status (server messages).
    pub code: u16,
    /// A nonce (hellos) or a proof (proofs).
    pub body: [u8; 32],
}

impl Message {
    /// The wire bytes: `RGXA`, version and code little-endian, body.
    pub fn encode(&self) -> [u8; MESSAGE_LEN] {
        let mut b = [0u8; MESSAGE_LEN];
        b[..4].copy_from_slice(&MAGIC);
        b[4..6].copy_from_slice(&self.version.to_le_bytes());
        b[6..8].copy_from_slice(&self.code.to_le_bytes());
        b[8..].copy_from_slice(&self.body);
        b
    }

    /// Parses the bytes after the magic (36 of them).
    fn decode_rest(rest: &[u8; MESSAGE_LEN - 4]) -> Message {
        let mut body = [0u8; 32];
        body.copy_from_slice(&rest[4..]);
        Message {
            version: u16::from_le_bytes([rest[0], rest[1]]),
            code: u16::from_le_bytes([rest[2], rest[3]]),
            body,
        }
    }
}

/// A fresh nonce from the OS random number generator.
fn nonce() -> Result<[u8; NONCE_LEN], AuthError> {
    let mut n = [0u8; NONCE_LEN];
    getrandom::fill(&mut n).map_err(|e| AuthError::Io {
        during: "getrandom",
        source: io::Error::other(e.to_string()),
    })?;
    Ok(n)
}

/// The socket under one deadline for the whole handshake. Sets `SO_RCVTIMEO` /
/// `SO_SNDTIMEO` to the time left before each call (a non-blocking socket is made blocking
/// for the handshake), and restores the socket's mode and timeouts when dropped.
struct Wire<'a> {
    sock: SockRef<'a>,
    start: Instant,
    timeout: Duration,
    old: (Option<Duration>, Option<Duration>),
    was_nonblocking: bool,
}

impl<'a> Wire<'a> {
    fn new<S: AsFd>(sock: &'a S, timeout: Duration) -> Result<Wire<'a>, AuthError> {
        let sock = SockRef::from(sock);
        let setup = |source| AuthError::Io {
            during: "preparing the socket",
            source,
        };
        let old = (
            sock.read_timeout().map_err(setup)?,
            sock.write_timeout().map_err(setup)?,
        );
        let was_nonblocking = sock.nonblocking().map_err(setup)?;
        if was_nonblocking {
            sock.set_nonblocking(false).map_err(setup)?;
        }
        Ok(Wire {
            sock,
            start: Instant::now(),
            timeout,
            old,
            was_nonblocking,
        })
    }

    fn timed_out(&self, during: &'static str) -> AuthError {
        AuthError::TimedOut {
            during,
            timeout_ms: self.timeout.as_millis() as u64,
        }
    }

    /// Time left, at least 1 ms (0 would mean "forever" to `SO_*TIMEO`), or `None` when the
    /// deadline passed.
    fn left(&self) -> Option<Duration> {
        let left = self.timeout.checked_sub(self.start.elapsed())?;
        (!left.is_zero()).then(|| left.max(Duration::from_millis(1)))
    }

    /// Reads exactly `buf.len()` bytes before the handshake's deadline.
    fn read_exact(&mut self, buf: &mut [u8], during: &'static str) -> Result<(), AuthError> {
        let len = buf.len();
        self.exact(len, during, |sock, left, got| {
            sock.set_read_timeout(Some(left))?;
            (&**sock).read(&mut buf[got..])
        })
    }

    /// Writes all of `buf` before the handshake's deadline.
    fn write_all(&mut self, buf: &[u8], during: &'static str) -> Result<(), AuthError> {
        self.exact(buf.len(), during, |sock, left, put| {
            sock.set_write_timeout(Some(left))?;
            (&**sock).write(&buf[put..])
        })
    }

    /// Moves `len` bytes with `step(sock, time left, bytes so far)` (one read or write, its
    /// socket timeout set to the time left), retrying `EINTR`; a 0-byte step is the peer's
    /// close, a socket timeout the deadline.
    fn exact(
        &mut self,
        len: usize,
        during: &'static str,
        mut step: impl FnMut(&SockRef<'a>, Duration, usize) -> io::Result<usize>,
    ) -> Result<(), AuthError> {
        let mut done = 0;
        while done < len {
            let left = self.left().ok_or_else(|| self.timed_out(during))?;
            match step(&self.sock, left, done) {
                Ok(0) => {
                    return Err(AuthError::PeerClosed {
                        during,
                        received: done,
                        expected: len,
                    });
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(self.timed_out(during));
                }
                Err(source) => return Err(AuthError::Io { during, source }),
            }
        }
        Ok(())
    }

    /// Reads a message's magic; `Err(first 4 bytes)` when it is not `RGXA`.
    fn read_magic(&mut self, during: &'static str) -> Result<Result<(), [u8; 4]>, AuthError> {
        let mut m = [0u8; 4];
        self.read_exact(&mut m, during)?;
        Ok(if m == MAGIC { Ok(()) } else { Err(m) })
    }

    fn read_rest(&mut self, during: &'static str) -> Result<Message, AuthError> {
        let mut rest = [0u8; MESSAGE_LEN - 4];
        self.read_exact(&mut rest, during)?;
        Ok(Message::decode_rest(&rest))
    }

    /// After a first 4 bytes that began a refusal line: the rest of the line (at most 256
    /// bytes, best effort within the deadline).
    fn refusal(&mut self, first: [u8; 4]) -> AuthError {
        let mut line = first.to_vec();
        let mut b = [0u8; 1];
        while line.len() < 256 && !line.ends_with(b"\n") {
            if self.read_exact(&mut b, "the refusal line").is_err() {
                break;
            }
            line.push(b[0]);
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end();
        AuthError::Refused {
            reason: text
                .strip_prefix(std::str::from_utf8(REFUSAL_PREFIX).unwrap_or_default())
                .unwrap_or(text)
                .to_owned(),
        }
    }
}

impl Drop for Wire<'_> {
    fn drop(&mut self) {
        // Best effort: the handshake's own result is what the caller needs.
        let _ = self.sock.set_read_timeout(self.old.0);
        let _ = self.sock.set_write_timeout(self.old.1);
        if self.was_nonblocking {
            let _ = self.sock.set_nonblocking(true);
        }
    }
}

/// Runs the client's side of the handshake on the connected `sock` (the side that
/// connected), all within `timeout`. On `Ok` the server has proven the key and accepted
/// ours; arrays may follow on the same socket.
///
/// # Errors
/// [`Error::Auth`] with [`AuthError::KeyRejected`] (the server has another key),
/// [`AuthError::WrongKey`] (the server could not prove the key: another key, or not the
/// server meant), [`AuthError::Refused`], [`AuthError::NotRingxfer`],
/// [`AuthError::UnsupportedVersion`], [`AuthError::PeerClosed`] (e.g. a server that does
/// not authenticate closed the connection at the unexpected `RGXA`),
/// [`AuthError::TimedOut`], [`AuthError::Io`].
pub fn authenticate_client<S: AsFd>(sock: &S, key: &AuthKey, timeout: Duration) -> Result<()> {
    client(sock, key, timeout).map_err(Error::Auth)
}

fn client<S: AsFd>(sock: &S, key: &AuthKey, timeout: Duration) -> Result<(), AuthError> {
    let mut w = Wire::new(sock, timeout)?;
    let cn = nonce()?;
    let hello = Message {
        version: VERSION,
        code: 0,
        body: cn,
    };
    w.write_all(&hello.encode(), "sending the client hello")?;

    const HELLO: &str = "the server hello";
    if let Err(got) = w.read_magic(HELLO)? {
        return Err(if REFUSAL_PREFIX.starts_with(&got) {
            w.refusal(got)
        } else {
            AuthError::NotRingxfer { got }
        });
    }
    let sh = w.read_rest(HELLO)?;
    match sh.code {
        STATUS_OK if sh.version == VERSION => {}
        STATUS_OK => {
            return Err(AuthError::Malformed {
                what: "server hello of another version with status ok",
            });
        }
        STATUS_UNSUPPORTED_VERSION => {
            return Err(AuthError::UnsupportedVersion {
                peer_version: sh.version,
            });
        }
        _ => {
            return Err(AuthError::Malformed {
                what: "unknown server hello status",
            });
        }
    }
    let sn = sh.body;
    let proof = Message {
        version: VERSION,
        code: 0,
        body: key.proof(Role::Client, &cn, &sn),
    };
    w.write_all(&proof.encode(), "sending the client proof")?;

    const PROOF: &str = "the server proof";
    if let Err(got) = w.read_magic(PROOF)? {
        return Err(AuthError::NotRingxfer { got });
    }
    let sp = w.read_rest(PROOF)?;
    if sp.version != VERSION {
        return Err(AuthError::Malformed {
            what: "version changed within the handshake",
        });
    }
    match sp.code {
        STATUS_OK if key.verify(Role::Server, &cn, &sn, &sp.body) => Ok(()),
        STATUS_OK => Err(AuthError::WrongKey),
        STATUS_WRONG_KEY => Err(AuthError::KeyRejected),
        _ => Err(AuthError::Malformed {
            what: "unknown server proof status",
        }),
    }
}

/// Runs the server's side of the handshake on the accepted `sock`, all within `timeout`.
/// Reads only the four fixed-size messages (nothing is allocated from what the peer sends).
/// On `Ok` the client has proven the key; arrays may follow on the same socket. On a wrong
/// proof the client is told (status [`STATUS_WRONG_KEY`]) before the error returns; the
/// caller should then close the connection.
///
/// # Errors
/// [`Error::Auth`] with [`AuthError::WrongKey`] (another key, or a replayed or reflected
/// proof), [`AuthError::Unauthenticated`] (a framed array without the handshake),
/// [`AuthError::NotRingxfer`], [`AuthError::UnsupportedVersion`], [`AuthError::Malformed`],
/// [`AuthError::PeerClosed`], [`AuthError::TimedOut`], [`AuthError::Io`].
pub fn authenticate_server<S: AsFd>(sock: &S, key: &AuthKey, timeout: Duration) -> Result<()> {
    server(sock, key, timeout).map_err(Error::Auth)
}

fn server<S: AsFd>(sock: &S, key: &AuthKey, timeout: Duration) -> Result<(), AuthError> {
    let mut w = Wire::new(sock, timeout)?;
    const HELLO: &str = "the client hello";
    if let Err(got) = w.read_magic(HELLO)? {
        return Err(if got == crate::frame::MAGIC {
            AuthError::Unauthenticated
        } else {
            AuthError::NotRingxfer { got }
        });
    }
    let ch = w.read_rest(HELLO)?;
    let mut reply = Message {
        version: VERSION,
        code: STATUS_OK,
        body: [0; 32],
    };
    if ch.version != VERSION {
        reply.code = STATUS_UNSUPPORTED_VERSION;
        // Best effort: the client learns which version we speak.
        let _ = w.write_all(&reply.encode(), "sending the server hello");
        return Err(AuthError::UnsupportedVersion {
            peer_version: ch.version,
        });
    }
    if ch.code != 0 {
        return Err(AuthError::Malformed {
            what: "non-zero flags in the client hello",
        });
    }
    let cn = ch.body;
    let sn = nonce()?;
    reply.body = sn;
    w.write_all(&reply.encode(), "sending the server hello")?;

    const PROOF: &str = "the client proof";
    if let Err(got) = w.read_magic(PROOF)? {
        return Err(AuthError::NotRingxfer { got });
    }
    let cp = w.read_rest(PROOF)?;
    if cp.version != VERSION || cp.code != 0 {
        return Err(AuthError::Malformed {
            what: "the client proof changed the version or set flags",
        });
    }
    if !key.verify(Role::Client, &cn, &sn, &cp.body) {
        let no = Message {
            version: VERSION,
            code: STATUS_WRONG_KEY,
            body: [0; 32],
        };
        // Best effort: the client learns that its key was refused.
        let _ = w.write_all(&no.encode(), "sending the server proof");
        return Err(AuthError::WrongKey);
    }
    let yes = Message {
        version: VERSION,
        code: STATUS_OK,
        body: key.proof(Role::Server, &cn, &sn),
    };
    w.write_all(&yes.encode(), "sending the server proof")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_separated_and_nonces_bound() {
        let k = AuthKey::from_bytes(&[7u8; 32]).unwrap();
        let (cn, sn) = ([1u8; 32], [2u8; 32]);
        let c = k.proof(Role::Client, &cn, &sn);
        let s = k.proof(Role::Server, &cn, &sn);
        assert_ne!(c, s);
        assert!(k.verify(Role::Client, &cn, &sn, &c));
        assert!(!k.verify(Role::Server, &cn, &sn, &c), "a reflected proof");
        assert!(!k.verify(Role::Client, &sn, &cn, &c), "nonces swapped");
        assert!(
            !k.verify(Role::Client, &cn, &[3u8; 32], &c),
            "another nonce"
        );
        let other = AuthKey::from_bytes(&[8u8; 32]).unwrap();
        assert!(!other.verify(Role::Client, &cn, &sn, &c));
        // HMAC-SHA-256 itself, against RFC 4231 test case 2 through the same crate path.
        let mut m = <HmacSha256 as KeyInit>::new_from_slice(b"Jefe").unwrap();
        m.update(b"what do ya want for nothing?");
        let want = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        let got: String = m
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn key_rules_and_debug() {
        assert!(matches!(
            AuthKey::from_bytes(b""),
            Err(AuthError::KeyEmpty { path: None })
        ));
        assert!(matches!(
            AuthKey::from_bytes(b" \n\r\t\n"),
            Err(AuthError::KeyEmpty { .. })
        ));
        assert!(matches!(
            AuthKey::from_bytes(b"0123456789abcde\n"),
            Err(AuthError::KeyTooShort {
                len: 15,
                min: 16,
                ..
            })
        ));
        assert!(matches!(
            AuthKey::from_bytes(&vec![b'k'; MAX_KEY_BYTES + 1]),
            Err(AuthError::KeyTooLong { max: 4096, .. })
        ));
        let a = AuthKey::from_bytes(b"0123456789abcdef\n").unwrap();
        let b = AuthKey::from_bytes(b"0123456789abcdef").unwrap();
        assert_eq!(a.len(), 16);
        let (cn, sn) = ([0u8; 32], [9u8; 32]);
        assert_eq!(
            a.proof(Role::Client, &cn, &sn),
            b.proof(Role::Client, &cn, &sn),
            "a trailing newline is not part of the key"
        );
        let d = format!("{a:?}");
        assert_eq!(d, "AuthKey { len: 16, .. }");
        assert!(!d.contains("0123"), "{d}");
    }

    #[test]
    fn message_layout() {
        let m = Message {
            version: 1,
            code: 0x0203,
            body: [0xab; 32],
        };
        let b = m.encode();
        assert_eq!(&b[..8], b"RGXA\x01\x00\x03\x02");
        let mut rest = [0u8; 36];
        rest.copy_from_slice(&b[4..]);
        assert_eq!(Message::decode_rest(&rest), m);
    }
}
