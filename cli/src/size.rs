//! Parsing of human sizes (`400MB`, `1GiB`, `4096`) and counts (`50_000_000`, `5e7`).

/// Parses a byte size: a number (digits, `_` separators, at most one `.`) and an optional
/// unit. Decimal units are powers of 1000 (`k`/`kB`, `M`/`MB`, `G`/`GB`, `T`/`TB`), binary
/// units powers of 1024 (`Ki`/`KiB`, `Mi`/`MiB`, `Gi`/`GiB`, `Ti`/`TiB`); `B` alone is bytes.
/// Units are case-insensitive and may follow a space. The result must be a whole number of
/// bytes: `1.5GiB` is fine, `1.5B` is not.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "ki" | "kib" => 1 << 10,
        "mi" | "mib" => 1 << 20,
        "gi" | "gib" => 1 << 30,
        "ti" | "tib" => 1 << 40,
        _ => {
            return Err(format!(
                "bad size {s:?}: unknown unit {unit:?} (use B, kB, MB, GB, TB, KiB, MiB, GiB, TiB)"
            ));
        }
    };
    let value = scaled(num, mult).ok_or_else(|| {
        format!("bad size {s:?}: expected a whole number of bytes such as 4096, 400MB or 1.5GiB")
    })?;
    Ok(value)
}

/// Parses an element count: digits with optional `_` separators (`50_000_000`), or a
/// decimal exponent form that is a whole number (`5e7`, `1.5e6`).
pub fn parse_count(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let bad =
        || format!("bad count {s:?}: expected a whole number such as 50000000, 50_000_000 or 5e7");
    match t.split_once(['e', 'E']) {
        None => scaled(t, 1).ok_or_else(bad),
        Some((mant, exp)) => {
            let exp: u32 = exp.parse().map_err(|_| bad())?;
            let mult = 10u64.checked_pow(exp).ok_or_else(bad)?;
            scaled(mant, mult).ok_or_else(bad)
        }
    }
}

/// `num * mult` for a decimal `num` (digits, `_`, at most one `.`) when the product is a whole
/// number that fits in a `u64`.
fn scaled(num: &str, mult: u64) -> Option<u64> {
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    let digits = |p: &str| -> Option<String> {
        let d: String = p.chars().filter(|&c| c != '_').collect();
        d.chars().all(|c| c.is_ascii_digit()).then_some(d)
    };
    let (int, frac) = (digits(int)?, digits(frac)?);
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let mut value: u128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    value = value.checked_mul(u128::from(mult))?;
    if !frac.is_empty() {
        let frac = frac.trim_end_matches('0');
        if !frac.is_empty() {
            let den = 10u128.checked_pow(u32::try_from(frac.len()).ok()?)?;
            let part = frac.parse::<u128>().ok()?.checked_mul(u128::from(mult))?;
            if part % den != 0 {
                return None;
            }
            value = value.checked_add(part / den)?;
        }
    }
    u64::try_from(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        for (s, want) in [
            ("4096", 4096),
            ("0", 0),
            ("400MB", 400_000_000),
            ("400mb", 400_000_000),
            ("400 MB", 400_000_000),
            ("400M", 400_000_000),
            ("64MiB", 64 << 20),
            ("64Mi", 64 << 20),
            ("1GiB", 1 << 30),
            ("1gib", 1 << 30),
            ("1.5GiB", 3 << 29),
            ("1GB", 1_000_000_000),
            ("4kB", 4000),
            ("4k", 4000),
            ("4KiB", 4096),
            ("2TB", 2_000_000_000_000),
            ("1TiB", 1 << 40),
            ("12B", 12),
            ("1_000_000", 1_000_000),
            (".5kB", 500),
            ("2.000MB", 2_000_000),
            (" 8 ", 8),
        ] {
            assert_eq!(parse_size(s), Ok(want), "{s:?}");
        }
    }

    #[test]
    fn bad_sizes() {
        for s in [
            "",
            "MB",
            "-1",
            "1.5",
            "1.5B",
            "1.0000001kB",
            "1.2.3MB",
            "10 parsecs",
            "1e6",
            "0x10",
            "99999999999TB",
            "1 G B",
        ] {
            assert!(
                parse_size(s).is_err(),
                "{s:?} parsed as {:?}",
                parse_size(s)
            );
        }
    }

    #[test]
    fn counts() {
        for (s, want) in [
            ("50000000", 50_000_000),
            ("50_000_000", 50_000_000),
            ("5e7", 50_000_000),
            ("1.5E6", 1_500_000),
            ("0", 0),
        ] {
            assert_eq!(parse_count(s), Ok(want), "{s:?}");
        }
        for s in ["", "-5", "1.5", "5e", "e5", "1e30", "ten", "5MB"] {
            assert!(parse_count(s).is_err(), "{s:?} parsed");
        }
    }
}
