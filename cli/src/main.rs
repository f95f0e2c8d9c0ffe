//! `ringxfer`: move large arrays through a stream socket (TCP or Unix) without a user-space
//! copy, with io_uring or a blocking loop, and measure it.
//!
//! ```text
//! ringxfer bench                                    # the main job: 400 MB f64, both backends
//! ringxfer serve --listen 127.0.0.1:5000 --json     # framed arrays from any number of clients
//! ringxfer send --connect 127.0.0.1:5000 --dtype '>i4' --shape 20,10,5 --order F --arrays 3
//! ringxfer recv --listen 127.0.0.1:5000            # framed: every array until the sender closes
//! ringxfer recv --listen 127.0.0.1:5000 --out b.npy      # a .npy file numpy.load reads
//! ringxfer send --connect 127.0.0.1:5000 --file a.npy    # a .npy file numpy.save wrote
//! ringxfer recv --listen 127.0.0.1:5000 --raw --dtype f8 --count 20000000
//! ringxfer send --connect 127.0.0.1:5000 --raw --dtype f8 --count 20000000
//! ringxfer probe                                    # what io_uring offers here
//! ```
//!
//! See `ringxfer help <command>`.
//!
//! Modules, arrows pointing down only (no module uses one above it):
//!
//! * this file — the command line (clap derive) and the dispatcher;
//! * [`bench`](mod@bench) — the main job and its modes (`--fresh`, `--count-arrays`, `--pingpong`,
//!   `--streams` / `--bidir`), one runner for all of them;
//! * [`xfer`] — `send` / `recv`: framed (the default), raw, raw over several streams;
//! * [`serve`] — framed arrays from any number of clients, one line per array;
//! * [`files`] — real files in and out (`send --file`, `recv --out`, `serve --out-dir`),
//!   mapped;
//! * [`probe`] — what io_uring offers on this machine;
//! * [`net`] — listen / connect (TCP, or a Unix socket with `unix:PATH`), the handshake, the
//!   end of a connection;
//! * [`measure`] — per-thread CPU cost, progress lines (`-i`), socket buffer sizes and the
//!   engine's notices; [`report`] — the one JSON printer, statistics, the fallback line;
//! * [`args`] — the flags several commands share, parsed onto the library's own types;
//!   [`buffer`], [`failure`], [`size`] — the array memory, exit status, size parsing.
//!
//! Units: sizes are bytes, counts are elements; throughput is GB/s = 10^9 bytes/s and
//! Gbit/s = 10^9 bits/s. Exit status: 0 on success, 1 on a failed or unverified transfer,
//! 2 on a usage error.

mod args;
mod bench;
mod buffer;
mod failure;
mod files;
mod measure;
mod net;
mod probe;
mod report;
mod serve;
mod size;
mod xfer;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Bulk transfer of large arrays over stream sockets (TCP or Unix) without a user-space copy:
/// io_uring link chains, or a blocking loop.
#[derive(Debug, Parser)]
#[command(name = "ringxfer", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Send an arange array over loopback TCP between two threads and measure each backend.
    ///
    /// Each repeat runs every selected backend once (the order alternates between repeats);
    /// the clock runs from a barrier both threads pass once connected until the last byte is
    /// received and the sender has returned. Every run is verified by CRC-32.
    ///
    /// Arrays below 256 MiB are sent K times back to back per run on one connection, K grown
    /// until a run lasts at least 0.25 s (shorter runs are done again, not reported), each
    /// transfer checked; each run reports K and the SQEs and CQEs both ends' engines used
    /// (0 on the blocking backend; every uring transfer goes through the ring).
    ///
    /// `--fresh` measures fresh-array receives (framed) against pre-touched memory and the
    /// naive `vec![0u8; n]` + blocking receive; `--count-arrays N` measures N small framed
    /// arrays per connection, batched and one at a time. Both print medians per backend and
    /// mode and their ratios. `--pingpong [N]` measures latency instead: N echo round trips
    /// of one message per run, raw and framed, median / p90 / p99 in µs.
    ///
    /// Every run reports the CPU (user and system seconds) of the sending and the receiving
    /// thread, and the summary the median CPU seconds per 10^9 bytes of each end. The split
    /// between user and system comes from the kernel's 10 ms tick samples; the sum has
    /// nanosecond resolution (/proc/thread-self/schedstat).
    Bench(bench::BenchArgs),
    /// Send the arange pattern of a dtype to a peer, or a file (--file: a .npy file, or any
    /// file with --raw): framed arrays (the default), or just the bytes with --raw.
    Send(xfer::XferArgs),
    /// Receive arrays from a peer and check that they hold the arange pattern, or write the
    /// array to a file (--out: a .npy file, or the raw bytes with --raw): framed (the default;
    /// dtype and shape come from the header), or raw bytes with --raw.
    Recv(xfer::XferArgs),
    /// Receive framed arrays from any number of clients, one line per array or error
    /// (--out-dir DIR: each array written to a .npy file there).
    ///
    /// Prints `listening ADDR` first (the bound address, so port 0 works), then one line per
    /// received array and one per broken client, whose connection is closed while the others
    /// are served on. Each connection holds at most one array at a time, so arrays take at
    /// most max-clients x max-payload bytes (plus the --recycle pool). Runs until killed.
    ///
    /// Each array line carries the receiving thread's CPU (user and system seconds) and the
    /// socket's effective buffer sizes.
    ///
    /// Server output to the client (iperf3's --get-server-output): when a client closes its
    /// write side cleanly between arrays, serve writes back on that connection the lines it
    /// printed for it, as JSON (one object per line, whatever --json says), then closes.
    /// `ringxfer send --get-server-output` half-closes after its last array and prints them,
    /// so one command shows both ends' figures. A client that did not ask has closed its
    /// socket; the failed write (EPIPE/ECONNRESET) is ignored. Nothing is written back after a
    /// broken message.
    ///
    /// Defaults for a network: --timeout 30, --header-timeout 5, --max-clients 128; when every
    /// slot is taken a newcomer evicts the connection idle longest (--evict-idle) or is
    /// refused with a one-line reason. --auth-key FILE requires each client to prove a shared
    /// key first (docs/PROTOCOL.md).
    Serve(serve::ServeArgs),
    /// Report what io_uring offers on this machine.
    Probe(probe::ProbeArgs),
}

/// Parses the command line and runs the subcommand; the process's exit status.
fn main() -> ExitCode {
    let cli = Cli::parse();
    let (name, result) = match cli.command {
        Command::Bench(a) => ("bench", bench::run(&a)),
        Command::Send(a) => ("send", xfer::run(xfer::Role::Send, &a)),
        Command::Recv(a) => ("recv", xfer::run(xfer::Role::Recv, &a)),
        Command::Serve(a) => ("serve", serve::run(&a)),
        Command::Probe(a) => ("probe", probe::run(&a)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("ringxfer {name}: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn array_resolution() {
        let parse = |args: &[&str]| {
            let mut v = vec!["ringxfer", "bench"];
            v.extend_from_slice(args);
            match Cli::try_parse_from(v).map(|c| c.command) {
                Ok(Command::Bench(b)) => b.array.resolve().map(|s| (s.count, s.bytes)),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(parse(&[]).unwrap(), (50_000_000, 400_000_000));
        assert_eq!(parse(&["--size", "1GiB"]).unwrap(), (1 << 27, 1 << 30));
        assert_eq!(
            parse(&["--dtype", "u1", "--size", "400MB"]).unwrap(),
            (400_000_000, 400_000_000)
        );
        assert_eq!(
            parse(&["--dtype", "f4", "--count", "5e6"]).unwrap(),
            (5_000_000, 20_000_000)
        );
        assert_eq!(parse(&["--size", "1001"]).unwrap_err().code, 2);
        assert!(Cli::try_parse_from(["ringxfer", "bench", "--count", "5", "--size", "8"]).is_err());
    }

    /// The library enums as flags: each value spelled as the library spells it, parsed into
    /// the library's own value; a bad value is clap's usage error listing them.
    #[test]
    fn library_enums_as_flags() {
        use ringxfer::{Backend, Prefault, RecvOp, SendOp};
        let bench = |args: &[&str]| {
            let mut v = vec!["ringxfer", "bench"];
            v.extend_from_slice(args);
            match Cli::try_parse_from(v).map(|c| c.command) {
                Ok(Command::Bench(b)) => b,
                other => panic!("{other:?}"),
            }
        };
        let t = bench(&["--send-op", "send-zc", "--recv-op", "read-fixed"])
            .tuning
            .tuning()
            .unwrap();
        assert_eq!((t.send_op, t.recv_op), (SendOp::SendZc, RecvOp::ReadFixed));
        let t = bench(&["--send-op", "write-fixed"])
            .tuning
            .tuning()
            .unwrap();
        assert_eq!(t.send_op, SendOp::WriteFixed);
        assert_eq!(
            bench(&["--fresh", "--prefault", "huge-populate"]).prefault,
            Some(Prefault::HugePopulate)
        );
        match Cli::try_parse_from(["ringxfer", "recv", "--listen", "x:1", "--backend", "uring"])
            .map(|c| c.command)
        {
            Ok(Command::Recv(a)) => assert_eq!(a.backend, Backend::Uring),
            other => panic!("{other:?}"),
        }
        let e = Cli::try_parse_from(["ringxfer", "bench", "--send-op", "zc"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::InvalidValue);
        assert_eq!(e.exit_code(), 2);
        let msg = e.to_string();
        assert!(
            msg.contains("invalid value 'zc' for '--send-op <SEND_OP>'")
                && msg.contains("[possible values: auto, send, send-zc, write-fixed]"),
            "{msg}"
        );
        let e = Cli::try_parse_from(["ringxfer", "serve", "--listen", "x:1", "--backend", "x"])
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("[possible values: auto, uring, blocking]"),
            "{e}"
        );
    }
}
