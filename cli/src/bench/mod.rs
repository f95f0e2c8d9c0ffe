//! `ringxfer bench`: the main job ([`bulk`]: the arange array over loopback TCP between two
//! threads, both backends alternating, every run verified) and its variants: `--fresh`
//! ([`fresh`]), `--count-arrays` ([`many`]) and `--pingpong` ([`pingpong`]). The flags are in
//! [`args`]. Every mode runs through the one [`runner`] (repeats, backend alternation,
//! calibration, records, summary, ratios, report), with the one run record and summary of
//! [`record`]; what else the modes share (backend selection, the clock of one run, loopback
//! connections, table cells) is in [`common`]. Arrows point one way: this module → the modes
//! → `runner` → `common` → `record` → `batch`, `crate::measure`, `crate::report`.

pub mod args;
mod batch;
mod bulk;
mod common;
mod fresh;
mod many;
mod pingpong;
mod record;
mod runner;

pub use args::BenchArgs;

use crate::failure::Failure;

/// Runs `ringxfer bench` in the mode its flags select.
pub fn run(a: &BenchArgs) -> Result<(), Failure> {
    if (a.streams > 1 || a.bidir) && (a.fresh || a.count_arrays.is_some() || a.pingpong.is_some()) {
        return Err(Failure::usage(
            "--streams and --bidir are for the main job, not --fresh, --count-arrays or --pingpong",
        ));
    }
    if a.streams > 1 && a.registered {
        return Err(Failure::usage(
            "--registered is for one stream (the striped calls are one-shot)",
        ));
    }
    if a.fresh {
        return fresh::run(a);
    }
    if a.count_arrays.is_some() {
        return many::run(a);
    }
    if a.pingpong.is_some() {
        return pingpong::run(a);
    }
    bulk::run(a)
}
