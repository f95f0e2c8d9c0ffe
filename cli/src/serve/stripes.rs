//! `ringxfer serve` and striped arrays (`ringxfer send --streams N`, rails): a connection
//! whose first message starts with the stripe prefix magic `RGXS` (docs/PROTOCOL.md, "Striped
//! arrays") is one stream of a striped array.
//!
//! Its prefix is **peeked**, not consumed (the library's
//! [`Engine::recv_any_striped`](ringxfer::Engine::recv_any_striped) reads and checks it
//! again), within `--header-timeout` (10 s when that is 0) of the connection's start, and
//! decoded on its own ([`StripePrefix::decode`]: magic, version, flags, CRC-32, its own
//! geometry; a stream count of 0 or an index past it is refused there). A count above
//! `--max-clients` is refused too. A refused stream gets one error line (kind `bad_stripe`),
//! the client gets the same reason on the connection, one line `ringxfer serve: refused: …`
//! (what the client sent meanwhile is read and dropped until it closes, at most
//! `--header-timeout`, so the close does not reset the line away; `send` prints it as its
//! error, exit 1), and it is closed.
//!
//! **Groups.** Streams are grouped by the prefix's array id. The first stream of an id opens
//! the group and waits (its thread) until the prefix's count of streams have joined, at most
//! `--header-timeout` (10 s when 0) from its own arrival; a group still incomplete then is
//! dropped with one `incomplete_stripes` line, and its streams closed. A stream that joins a
//! group must agree with it (the same stream count and payload length) and bring an index
//! not yet in it; otherwise it alone is refused with a `bad_stripe` line. Nothing is sized
//! by a prefix's count: a group grows one stream at a time, at most `--max-clients` of them,
//! and every stream keeps its connection slot until the group is done.
//!
//! **Admission per group** (so concurrent striped senders cannot starve each other: two
//! groups that each took part of the slots would each wait for streams queued behind the
//! other). The accept loop peeks each waiting client's first bytes without blocking
//! ([`peek_now`]). A group is admitted whole: its first stream seen takes all of its
//! prefix's count of slots at once (one held, the rest reserved for its streams), or waits in
//! the queue until that many are free; a count above `--max-clients` is refused there. A
//! stream of an admitted group takes a reserved seat and passes every client waiting ahead of
//! it; once a client must wait, later ones wait behind it (first come, first served) except
//! those streams and clients that have sent nothing yet. A striped sender sends a stream's
//! prefix only once its earlier streams move, so a stream admitted before its prefix was seen
//! is placed when the prefix comes ([`super::SlotHandle::adopt`], `settle`): a stream of an
//! admitted group takes its seat; the first of a new group admits it when its slots are free,
//! or parks (gives its slot back, keeps its thread; at most twice `--max-clients` park at
//! once) and waits up to 2 s for them, with every other parked stream of its group; a client
//! that had sent nothing when every slot was taken may be lent a reserved seat, kept if it is
//! that group's stream, else given back (a non-striped client then waits up to 2 s for a
//! slot, counted as one meanwhile). A stream for which no room comes is refused (`refused`,
//! with its line to the client). So slots in use (ordinary connections plus every admitted
//! group's whole count) exceed `--max-clients` only by clients waiting after giving back a
//! lent seat (at most the reserved seats, for at most 2 s), and connection threads stay
//! below three times it (parked streams).
//!
//! **The array.** The thread that opened the group receives the array over every stream with
//! the library, then each further array the sender sends on the same streams (`--arrays K`),
//! until stream 0 closes between two arrays; each array is one line with `"streams": N` and
//! `"peers"`, named after stream 0's peer. With `--out-dir` each array is one `.npy` file,
//! created at the array's size once the stripe prefixes and stream 0's header are read, each
//! stripe received straight into its part of the file's mapping (no copy; [`to_file`]). When
//! stream 0 closes cleanly between arrays, the group's lines are written back on stream 0
//! (as on one connection: `send --get-server-output`), then every stream is closed.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use ringxfer::{Engine, STRIPE_MAGIC, STRIPE_PREFIX_LEN, StripePrefix};

use super::{Limits, SentBack, SlotHandle, tell_and_close, tell_failed, write_back};
use crate::measure::{SockBufs, say_notices};
use crate::net::Conn;
use crate::xfer::framed::{ArrayLine, ErrorLine, Outcome, emit, recv_one_with};

/// How long a group waits for its streams when `--header-timeout` is 0.
pub(super) const GROUP_WAIT: Duration = Duration::from_secs(10);

/// One stream of a group: its connection, its peer, its index, and its slot.
struct Member {
    sock: Conn,
    peer: String,
    stream: u32,
    slot: SlotHandle,
}

/// Streams of one striped array gathering.
struct Group {
    streams: u32,
    payload_len: u64,
    members: Vec<Member>,
}

/// The groups being gathered, by array id, and the signal that one grew.
#[derive(Default)]
pub(super) struct Groups {
    open: Mutex<HashMap<u64, Group>>,
    grew: Condvar,
}

/// What the first bytes of a connection are.
pub(super) enum First {
    /// Not a stripe prefix (or nothing whole by the deadline): the ordinary path reads it.
    NotStriped,
    /// A stripe prefix that decodes.
    Prefix(StripePrefix),
    /// A stripe prefix that does not: the line to print.
    Bad(ErrorLine),
}

/// Peeks the connection's first bytes by `deadline`: a stripe prefix, or not one. Any sender
/// sends at least the 4 bytes of a magic before it waits for anything, a striped sender its
/// whole 56-byte prefix, so the waits are for bytes on their way ([`crate::net::peek_full`]:
/// in the kernel, woken by the bytes, the peer's close, an eviction's shutdown or the
/// deadline). Not a stripe prefix, or nothing by the deadline: [`First::NotStriped`], and the
/// ordinary header read reports what came.
pub(super) fn peek_prefix(sock: &Conn, peer: &str, deadline: Option<Instant>) -> First {
    let mut b = [0u8; STRIPE_PREFIX_LEN];
    let magic = STRIPE_MAGIC.len();
    match crate::net::peek_full(sock, &mut b[..magic], deadline) {
        Ok(n) if n == magic && b[..magic] == STRIPE_MAGIC => {}
        _ => return First::NotStriped,
    }
    match crate::net::peek_full(sock, &mut b, deadline) {
        Ok(STRIPE_PREFIX_LEN) => match StripePrefix::decode(&b) {
            Ok(p) => First::Prefix(p),
            Err(e) => First::Bad(bad(peer, e.to_string())),
        },
        got => First::Bad(bad(
            peer,
            format!(
                "{} of the {STRIPE_PREFIX_LEN} bytes of a stripe prefix by the first header's \
                 deadline (--header-timeout, --timeout) or the end of the stream",
                got.unwrap_or(magic)
            ),
        )),
    }
}

/// The stripe prefix `sock`'s client has sent whole, if any, without waiting (a non-blocking
/// peek; `None` also when the bytes are not one or do not decode: the connection's thread
/// then reads what came, under its deadlines).
pub(super) fn peek_now(sock: &Conn) -> Option<StripePrefix> {
    use rustix::net::RecvFlags;
    let mut b = [0u8; STRIPE_PREFIX_LEN];
    match rustix::net::recv(sock, &mut b, RecvFlags::PEEK | RecvFlags::DONTWAIT) {
        Ok((STRIPE_PREFIX_LEN, _)) if b[..STRIPE_MAGIC.len()] == STRIPE_MAGIC => {
            StripePrefix::decode(&b).ok()
        }
        _ => None,
    }
}

/// The `bad_stripe` line of a stream whose group can never fit: `streams` > `--max-clients`.
pub(super) fn too_many(peer: &str, streams: u32, max_clients: u32) -> ErrorLine {
    bad(
        peer,
        format!("a stripe prefix of {streams} streams: more than --max-clients {max_clients}"),
    )
}

/// A `bad_stripe` line.
fn bad(peer: &str, error: String) -> ErrorLine {
    ErrorLine {
        peer: peer.to_owned(),
        array: 1,
        error,
        kind: "bad_stripe",
        transferred: None,
        expected: None,
    }
}

/// Adds the stream of `sock` (prefix `p`) to its group; the thread that opens a group waits
/// for it and serves it (module docs). Returns when this stream's part is done.
pub(super) fn join(
    groups: &Groups,
    (sock, peer, slot): (Conn, &str, SlotHandle),
    p: StripePrefix,
    mut engine: Engine,
    limits: &Limits,
) {
    let (json, max_clients) = (limits.json, limits.max_clients);
    let wait = limits.header_timeout.unwrap_or(GROUP_WAIT);
    if p.streams > max_clients {
        let line = too_many(peer, p.streams, max_clients);
        return tell_and_close(&sock, &line, Some(wait), json);
    }
    let deadline = Instant::now() + wait;
    let member = Member {
        sock,
        peer: peer.to_owned(),
        stream: p.stream,
        slot,
    };
    let mut open = groups.open.lock().unwrap_or_else(|e| e.into_inner());
    match open.get_mut(&p.array_id) {
        Some(g) => {
            let clash = if g.streams != p.streams || g.payload_len != p.payload_len {
                Some(format!(
                    "stream {} of array id {:#x} says {} streams / {} bytes, the group's first \
                     stream {} / {}",
                    p.stream, p.array_id, p.streams, p.payload_len, g.streams, g.payload_len
                ))
            } else if g.members.iter().any(|m| m.stream == p.stream) {
                Some(format!(
                    "stream index {} of array id {:#x} twice",
                    p.stream, p.array_id
                ))
            } else {
                None
            };
            match clash {
                Some(why) => {
                    drop(open);
                    tell_and_close(&member.sock, &bad(peer, why), Some(wait), json);
                }
                None => {
                    g.members.push(member);
                    groups.grew.notify_all();
                }
            }
            return;
        }
        None => {
            open.insert(
                p.array_id,
                Group {
                    streams: p.streams,
                    payload_len: p.payload_len,
                    members: vec![member],
                },
            );
        }
    }
    // This thread opened the group: wait for it to fill, or drop it.
    loop {
        let full = open
            .get(&p.array_id)
            .is_some_and(|g| g.members.len() == g.streams as usize);
        let now = Instant::now();
        if full || now >= deadline {
            break;
        }
        open = groups
            .grew
            .wait_timeout(open, deadline - now)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    let group = open
        .remove(&p.array_id)
        .expect("only its opener removes a group");
    drop(open);
    if group.members.len() < group.streams as usize {
        let line = ErrorLine {
            peer: peer.to_owned(),
            array: 1,
            error: format!(
                "striped array id {:#x}: {} of its {} streams connected within {:.1} s \
                 (--header-timeout); dropped",
                p.array_id,
                group.members.len(),
                group.streams,
                wait.as_secs_f64()
            ),
            kind: "incomplete_stripes",
            transferred: None,
            expected: None,
        };
        emit(&line.render(json));
        // The sender's stream 0 may be among those that came: it says why.
        group
            .members
            .iter()
            .for_each(|m| tell_failed(&m.sock, &line));
        return;
    }
    serve_group(group, &mut engine, limits);
    say_notices("serve", &engine);
}

/// Receives arrays over the full group's streams until stream 0 closes between arrays or a
/// receive fails.
fn serve_group(mut group: Group, engine: &mut Engine, limits: &Limits) {
    group.members.sort_by_key(|m| m.stream);
    let socks: Vec<&Conn> = group.members.iter().map(|m| &m.sock).collect();
    let peers: Vec<String> = group.members.iter().map(|m| m.peer.clone()).collect();
    let (first, peer) = (socks[0], peers[0].as_str());
    let mut sent_back = SentBack::default();
    for array in 1.. {
        let outcome = match &limits.out_dir {
            Some(dir) => {
                let name = crate::files::serve_name(peer, group.members[0].slot.id, array);
                to_file(engine, &socks, (peer, array), &dir.join(name))
            }
            None => recv_one_with(engine, first, peer, array, |e| e.recv_any_striped(&socks)),
        };
        match outcome {
            Outcome::Array(line) => {
                let line = ArrayLine {
                    streams: Some(socks.len()),
                    peers: Some(peers.clone()),
                    ..line
                };
                emit(&line.render(limits.json));
                sent_back.push(line.render(true));
            }
            Outcome::Closed => {
                return write_back(first, &sent_back.finish(), engine.options().idle_timeout);
            }
            Outcome::Failed(line) => {
                emit(&line.render(limits.json));
                // Every stream resets (none closes as if its part was taken); stream 0, whose
                // line the sender reads, says why.
                tell_failed(first, &line);
                socks[1..].iter().for_each(|s| crate::net::abort(*s));
                return;
            }
        }
    }
}

/// `--out-dir`: waits for the array's first byte on stream 0, reads the stripe prefixes and
/// stream 0's header, creates the `.npy` file at `path` at the array's size and receives every
/// stripe straight into its part of the file's mapping ([`crate::files::recv_npy`]),
/// committed at once ([`crate::files::committed`]; a failed receive deletes the file).
fn to_file(
    engine: &mut Engine,
    socks: &[&Conn],
    (peer, array): (&str, u64),
    path: &std::path::Path,
) -> Outcome {
    let first = socks[0];
    match crate::xfer::framed::wait_readable(first, engine.options().idle_timeout) {
        Ok(true) => {}
        Ok(false) => return Outcome::Closed,
        Err(e) => return Outcome::Failed(ErrorLine::new(peer, array, &e)),
    }
    let started = Instant::now();
    let head = match engine.recv_striped_header(socks) {
        Ok(h) => h,
        Err(e) => return Outcome::Failed(ErrorLine::new(peer, array, &e)),
    };
    let got = crate::files::recv_npy(
        engine,
        SockBufs::of(first),
        (peer, array),
        started,
        (head.header(), ringxfer::WireFormat::Rgxf),
        path,
        |e, out| e.recv_striped_payload_into(socks, &head, out),
    );
    crate::files::committed(got, (peer, array))
}
