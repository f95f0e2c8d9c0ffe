//! What every command's report shares: the one JSON printer (`--json`), the statistics of the
//! summaries, and the line that says a command fell back to the blocking backend.

use ringxfer::{Engine, Options};
use serde::Serialize;

use crate::failure::Failure;

/// The `--json` report as one line of JSON.
pub fn json(report: &impl Serialize) -> Result<String, Failure> {
    serde_json::to_string(report)
        .map_err(|e| Failure::runtime(format!("cannot encode the report: {e}")))
}

/// Prints the `--json` report on one line of stdout.
pub fn print_json(report: &impl Serialize) -> Result<(), Failure> {
    println!("{}", json(report)?);
    Ok(())
}

/// Median of sorted values (mean of the middle two for an even count; 0 when empty).
pub fn median(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// A new engine for `command`; when `--backend auto` fell back to the blocking backend, says
/// so and why on stderr: `ringxfer COMMAND: using the blocking backend: REASON`.
pub fn engine(command: &str, opts: Options) -> Result<Engine, Failure> {
    let engine = Engine::with_options(opts)?;
    if let Some(reason) = engine.fallback_reason() {
        eprintln!("ringxfer {command}: using the blocking backend: {reason}");
    }
    Ok(engine)
}

/// The kernel's reason for refusing a registration on the uring backend (on the blocking
/// backend there is nothing to register, which is not a refusal).
pub fn refusal(uring: bool, registered: bool, reason: Option<&str>) -> Option<String> {
    (uring && !registered).then(|| reason.unwrap_or("unknown reason").to_owned())
}

/// CRC-32 with the zlib polynomial, as Python's `'%08x' % zlib.crc32(b)` prints it.
pub fn crc32_hex(bytes: &[u8]) -> String {
    format!("{:08x}", crc32fast::hash(bytes))
}

/// Throughput in GB/s (10^9 bytes per second).
pub fn gbytes_per_s(bytes: usize, seconds: f64) -> f64 {
    if seconds > 0.0 {
        bytes as f64 / seconds / 1e9
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_zlib() {
        // zlib.crc32(b"123456789") == 0xcbf43926, the standard check value.
        assert_eq!(crc32_hex(b"123456789"), "cbf43926");
        assert_eq!(crc32_hex(b""), "00000000");
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[]), 0.0);
        assert_eq!(median(&[2.0]), 2.0);
        assert_eq!(median(&[1.0, 2.0, 9.0]), 2.0);
        assert_eq!(median(&[1.0, 2.0, 4.0, 9.0]), 3.0);
    }
}
