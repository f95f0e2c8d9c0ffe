//! Transparent huge pages for receive memory: `Prefault::Huge` (the default) on the engine's
//! own mappings and, through `Engine::run_set`, on the caller's buffer of `Engine::recv_into`.
//! Each test reads `AnonHugePages` from `/proc/self/smaps` and asserts against whichever THP
//! mode this system is in (`/sys/kernel/mm/transparent_hugepage/enabled`). Moved here from the
//! unit tests of `src/buffer.rs`, which must not name the engine (arrows point down:
//! `python3 scripts/import_cycles.py`).

use ringxfer::buffer::AlignedBuf;
use ringxfer::{Backend, Engine, Options, Prefault};

/// Bytes of `AnonHugePages` in the mapping that contains `addr` (`/proc/self/smaps`).
fn anon_huge_bytes(addr: usize) -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut inside = false;
    for line in smaps.lines() {
        let range = line.split_whitespace().next().unwrap_or("");
        if let Some((a, b)) = range.split_once('-')
            && let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
        {
            inside = (a..b).contains(&addr);
        } else if inside && let Some(v) = line.strip_prefix("AnonHugePages:") {
            return v
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .unwrap()
                * 1024;
        }
    }
    panic!("no mapping holds {addr:#x}");
}

/// `Prefault::Huge` (the default) gets 2 MiB pages when the receive touches them, where
/// the system's THP mode allows it (`madvise` or `always`); `Prefault::None` gets them
/// only with `always`. Asserted for whichever mode this system is in.
#[test]
fn huge_faults_in_huge_pages() {
    let mode =
        std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
    let selected = mode
        .split_whitespace()
        .find(|w| w.starts_with('['))
        .unwrap_or("[never]")
        .to_owned();
    assert_eq!(Prefault::default(), Prefault::Huge);
    for p in [Prefault::Huge, Prefault::None] {
        let mut b = AlignedBuf::new(64 << 20, p).unwrap();
        assert_eq!(
            anon_huge_bytes(b.as_bytes().as_ptr() as usize),
            0,
            "{p:?}: untouched"
        );
        b.as_bytes_mut()
            .iter_mut()
            .step_by(4096)
            .for_each(|x| *x = 1);
        let huge = anon_huge_bytes(b.as_bytes().as_ptr() as usize);
        let want_huge = match selected.as_str() {
            "[always]" => true,
            "[madvise]" => p == Prefault::Huge,
            _ => false,
        };
        if want_huge {
            // All but the unaligned ends of the 64 MiB mapping (and any 2 MiB range the
            // kernel could not find a free huge page for: allow a quarter).
            assert!(
                huge >= 48 << 20,
                "{p:?} with THP {selected}: {huge} B in huge pages"
            );
        } else {
            assert_eq!(huge, 0, "{p:?} with THP {selected}");
        }
    }
}

/// `Engine::recv_into` with the default `Prefault::Huge` advises the caller's
/// fresh buffer (`vec![0u8; 64 MiB]`: glibc maps it, untouched) so the receive faults it
/// in huge pages where THP is `madvise` or `always`; with `Prefault::None` only `always`
/// gives huge pages. Both backends, over a Unix socket pair, byte-exact.
#[test]
fn recv_into_advises_the_callers_buffer() {
    use std::io::Write;
    let mode =
        std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
    let always = mode.contains("[always]");
    let madvise = mode.contains("[madvise]");
    let len = 64 << 20;
    let data: Vec<u8> = (0..len).map(|i| (i * 7 + i / 4093) as u8).collect();
    for backend in [Backend::Blocking, Backend::Uring] {
        for p in [Prefault::Huge, Prefault::None] {
            let opts = Options {
                backend,
                prefault: p,
                ..Options::default()
            };
            let Ok(mut e) = Engine::with_options(opts) else {
                assert!(
                    std::env::var_os("RINGXFER_TEST_REQUIRE_URING").is_none(),
                    "io_uring required"
                );
                continue;
            };
            let (mut a, b) = std::os::unix::net::UnixStream::pair().unwrap();
            let mut got = vec![0u8; len];
            std::thread::scope(|s| {
                s.spawn(|| a.write_all(&data).unwrap());
                e.recv_into(&b, &mut got).unwrap();
            });
            assert!(got == data, "{backend:?} {p:?}: bytes");
            // The advice splits the mapping at its first and last 2 MiB boundary: look at
            // the middle part.
            let huge = anon_huge_bytes(got.as_ptr() as usize + len / 2);
            let want = always || (madvise && p == Prefault::Huge);
            assert_eq!(
                huge >= 32 << 20,
                want,
                "{backend:?} {p:?} ({mode:?}): {huge} B"
            );
        }
    }
}
