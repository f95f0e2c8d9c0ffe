//! `ringxfer probe`: what io_uring offers here, and so which backend `auto` picks.

use clap::Args;
use ringxfer::{Backend, Engine, Probe};
use serde::Serialize;

use crate::failure::Failure;

/// Arguments of `ringxfer probe`.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// Print the probe report as one JSON object.
    #[arg(long)]
    json: bool,
}

/// The `--json` report: the library's probe plus what an `auto` engine really chose (creating
/// the full-size ring can fail where the probe's small one passed).
#[derive(Debug, Serialize)]
struct Report {
    #[serde(flatten)]
    probe: &'static Probe,
    /// `"uring"` or `"blocking"`, or `null` when no engine could be created.
    auto_backend: Option<&'static str>,
    /// Why `auto` is on the blocking backend, or why no engine could be created.
    auto_reason: Option<String>,
}

/// Runs `ringxfer probe`. Exits 0 whether or not io_uring is available: the report is the
/// result. When no `auto` engine can be created — an invalid `RINGXFER_BACKEND` — the report
/// is printed all the same (`backend auto:  none (…)`), then the command fails: exit status 2
/// for the invalid setting (a usage error, as `send`/`recv`/`serve` give for it), 1 for
/// another reason; every other command would fail the same way with that environment.
pub fn run(a: &ProbeArgs) -> Result<(), Failure> {
    let p = ringxfer::probe();
    let (auto_backend, auto_reason, failed) = match Engine::new(Backend::Auto) {
        Ok(e) => (
            Some(e.backend().name()),
            e.fallback_reason().map(str::to_owned),
            None,
        ),
        Err(e) => (None, Some(e.to_string()), Some(Failure::from(e))),
    };
    report(a, p, auto_backend, auto_reason)?;
    failed.map_or(Ok(()), Err)
}

/// Prints the report of [`run`].
fn report(
    a: &ProbeArgs,
    p: &'static Probe,
    auto_backend: Option<&'static str>,
    auto_reason: Option<String>,
) -> Result<(), Failure> {
    if a.json {
        let report = Report {
            probe: p,
            auto_backend,
            auto_reason,
        };
        return crate::report::print_json(&report);
    }
    let yes = |b: bool| if b { "yes" } else { "no" };
    println!("kernel:        {}", p.kernel_release);
    match &p.reason {
        None if p.available => println!("io_uring:      available"),
        reason => println!(
            "io_uring:      unavailable: {}",
            reason.as_deref().unwrap_or("unknown reason")
        ),
    }
    println!("opcodes:       {}", p.opcodes.join(" "));
    println!("SEND_ZC:       {}", yes(p.send_zc));
    println!("EXT_ARG waits: {}", yes(p.ext_arg));
    if let Some(f) = p.ring_flags {
        let names = f.setup.flag_names();
        println!(
            "ring setup:    {} ({}){}{}",
            f.setup.name(),
            if names.is_empty() {
                "no flags".to_owned()
            } else {
                names.join(" | ")
            },
            if f.registered_ring_fd {
                ", registered ring fd"
            } else {
                ""
            },
            if f.forced {
                ", forced by RINGXFER_RING_FLAGS"
            } else {
                ""
            },
        );
    }
    match (auto_backend, auto_reason) {
        (Some(b), None) => println!("backend auto:  {b}"),
        (Some(b), Some(r)) => println!("backend auto:  {b} ({r})"),
        (None, r) => println!("backend auto:  none ({})", r.unwrap_or_default()),
    }
    Ok(())
}
