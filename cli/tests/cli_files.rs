//! Real files through the CLI (issue 10, item 5), with the built binary as child processes on
//! both backends: `.npy` files written by numpy, sent with `send --file`, received with
//! `recv --out` / `serve --out-dir` and read back by `numpy.load`; raw files byte-exact;
//! hostile `.npy` files refused before anything connects; a peer that breaks off leaves no
//! output file; a file larger than 4 GiB (ignored by default: `.ci/run`'s `--ignored` step).

mod util;

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::thread;
use std::time::Duration;

use ringxfer::{Backend, Error, Header, Order};
use serde_json::Value;
use util::bin::{
    command, connect_unix, json, output, spawn, spawn_serve, text, wait_unix_listening,
};
use util::py::{Python, numpy_available};
use util::tmpdir;

const T: Duration = Duration::from_secs(60);

/// The names in `dir`, sorted (hidden `.part` files included).
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// `recv --listen unix:SOCK ARGS` then `send --connect unix:SOCK ARGS`, both `--json` on
/// `backend`; asserts both exit 0 and returns their JSON lines.
fn pair(dir: &Path, backend: Backend, recv: &[&str], send: &[&str]) -> (Value, Value) {
    let sock = dir.join("s.sock");
    let addr = format!("unix:{}", sock.display());
    let b = backend.to_string();
    let common = ["--json", "--backend", b.as_str()];
    let mut ra = vec!["recv", "--listen", addr.as_str()];
    ra.extend(common);
    ra.extend(recv);
    let r = spawn(&ra);
    wait_unix_listening(&sock, T);
    let mut sa = vec!["send", "--connect", addr.as_str()];
    sa.extend(common);
    sa.extend(send);
    let s = output(&sa);
    let mut r = r;
    if s.status.code() != Some(0) {
        // The receiver would wait for a sender forever.
        let _ = r.kill();
    }
    let r = r.wait_with_output().unwrap();
    assert_eq!(s.status.code(), Some(0), "send {sa:?}: {}", text(&s.stderr));
    assert_eq!(r.status.code(), Some(0), "recv {ra:?}: {}", text(&r.stderr));
    (json(&text(&s.stdout)), json(&text(&r.stdout)))
}

/// Writes one `.npy` file per case into `argv[1]` and prints each name: every dtype the frame
/// format carries in both byte orders (one for 1-byte types), C and F order, and 0-d, empty,
/// `(1, 5)` Fortran, 1-D float16, format versions 2.0 and 3.0.
const MAKE: &str = r#"
import sys, os
import numpy as np
from numpy.lib import format as F
d = sys.argv[1]
def arr(dt, shape):
    n = int(np.prod(shape)) if len(shape) else 1
    base = np.arange(n) - n // 3
    k = np.dtype(dt).kind
    if k == 'b': a = base % 3 == 0
    elif k == 'c': a = base * 0.5 + 1j * base[::-1]
    elif k == 'f': a = base * 0.25
    elif k == 'u': a = np.arange(n) * 7
    else: a = base * 3
    return np.asarray(a).astype(dt).reshape(shape)
cases = []
for kind in ['f8', 'f4', 'f2', 'i8', 'i4', 'i2', 'u8', 'u4', 'u2', 'c8', 'c16', 'i1', 'u1', 'b1']:
    orders = ['<', '>'] if np.dtype(kind).itemsize > 1 else ['|']
    for bo in orders:
        a = arr(bo + kind, (2, 3, 4))
        cases.append(('%s%s-C.npy' % ({'<': 'lt', '>': 'gt', '|': 'na'}[bo], kind), a))
        cases.append(('%s%s-F.npy' % ({'<': 'lt', '>': 'gt', '|': 'na'}[bo], kind), np.asfortranarray(a)))
cases.append(('zero-d-f8.npy', np.array(3.5)))
cases.append(('empty-i4.npy', np.zeros((0, 3), '<i4')))
cases.append(('empty-F-c16.npy', np.asfortranarray(np.zeros((3, 0), '>c16'))))
cases.append(('row-F-u2.npy', np.asfortranarray(arr('<u2', (1, 5)))))
cases.append(('vec-f2.npy', arr('>f2', (7,))))
for name, a in cases:
    np.save(os.path.join(d, name), a)
    print(name)
for name, a, v in [('v2-F-f8.npy', np.asfortranarray(arr('>f8', (3, 4))), (2, 0)),
                   ('v3-i8.npy', arr('<i8', (4, 3)), (3, 0))]:
    with open(os.path.join(d, name), 'wb') as f:
        F.write_array(f, a, version=v)
    print(name)
"#;

/// For each name on stdin: `numpy.load` of `argv[1]/name` and `argv[2]/name` have the same
/// dtype (byte order included), shape, memory order and bytes; prints `ok NAME` or why not.
const CHECK: &str = r#"
import sys, os
import numpy as np
for name in sys.argv[3:]:
    a = np.load(os.path.join(sys.argv[1], name))
    b = np.load(os.path.join(sys.argv[2], name))
    same = (a.dtype.str == b.dtype.str and a.shape == b.shape
            and np.isfortran(a) == np.isfortran(b) and np.array_equal(a, b)
            and a.tobytes('A') == b.tobytes('A'))
    print(('ok ' if same else 'BAD ') + name + ('' if same else ' %s %s' % (a.dtype.str, b.dtype.str)))
"#;

/// `numpy.save` → `send --file` → `recv --out` → `numpy.load`, every case of [`MAKE`].
fn npy_round_trips(backend: Backend) {
    if !numpy_available() {
        return;
    }
    let dir = tmpdir("cli-files", &format!("npy-{backend}"));
    let (inp, out) = (dir.join("in"), dir.join("out"));
    std::fs::create_dir_all(&inp).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    let made = Python::start(MAKE, &[inp.to_str().unwrap()]).success(T);
    let names: Vec<&str> = made.lines().collect();
    assert_eq!(names.len(), 2 * 25 + 7, "{names:?}");
    for name in &names {
        let (src, dst) = (inp.join(name), out.join(name));
        let (s, r) = pair(
            &dir,
            backend,
            &["--out", dst.to_str().unwrap()],
            &["--file", src.to_str().unwrap()],
        );
        assert_eq!(r["file"], dst.to_str().unwrap(), "{r}");
        assert_eq!(s["file"], src.to_str().unwrap(), "{s}");
        assert_eq!(
            r.get("arange"),
            None,
            "a file is not checked for the pattern: {r}"
        );
        for k in ["dtype", "shape", "order", "crc32", "backend"] {
            assert_eq!(s[k], r[k], "{name} {k}: {s} {r}");
        }
        let want = std::fs::read(&src).unwrap();
        let got = std::fs::read(&dst).unwrap();
        if name.starts_with('v') {
            // Versions 2.0 and 3.0 are written back as 1.0 (numpy.save's choice): same data.
            let data = |b: &[u8]| b[b.len() - s["bytes"].as_u64().unwrap() as usize..].to_vec();
            assert_eq!(data(&got), data(&want), "{name}");
            assert_eq!(&got[6..8], &[1, 0], "{name}: version 1.0");
        } else {
            // numpy.save's file, byte for byte: the header is the one numpy writes.
            assert!(
                got == want,
                "{name}: the received file differs from numpy.save's"
            );
        }
    }
    let mut args = vec![inp.to_str().unwrap(), out.to_str().unwrap()];
    args.extend(&names);
    let checked = Python::start(CHECK, &args).success(T);
    let want: Vec<String> = names.iter().map(|n| format!("ok {n}")).collect();
    assert_eq!(checked.lines().collect::<Vec<_>>(), want);
    assert_eq!(listing(&out), {
        let mut n: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        n.sort();
        n
    });
    let _ = std::fs::remove_dir_all(&dir);
}

/// `ringxfer serve --json --backend BACKEND --out-dir DIR`, as [`spawn_serve`] gives it.
fn serve_into(
    backend: Backend,
    dir: &Path,
) -> (util::proc::Killed, util::proc::Lines, std::net::SocketAddr) {
    spawn_serve(&[
        "--json",
        "--backend",
        &backend.to_string(),
        "--out-dir",
        dir.to_str().unwrap(),
    ])
}

/// `serve --out-dir` with two clients at once (one sends its file twice): one file per array,
/// named `PEER-cCONN-aN.npy` as each line says, each `numpy.save`'s file byte for byte, and
/// nothing else in the directory. `format`: the senders' `--format` (`rgxf`, or `npy`: the
/// server receives numpy's own stream, straight into the file, and says so in its line).
fn serve_out_dir(backend: Backend, format: &str) {
    if !numpy_available() {
        return;
    }
    let dir = tmpdir("cli-files", &format!("serve-{backend}-{format}"));
    let (inp, out) = (dir.join("in"), dir.join("out"));
    std::fs::create_dir_all(&inp).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    Python::start(
        "import numpy as np, sys\n\
         np.save(sys.argv[1] + '/a.npy', np.arange(300000, dtype='>i4').reshape(600, 500).T)\n\
         np.save(sys.argv[1] + '/b.npy', np.linspace(0, 1, 12345, dtype='<f2'))\n",
        &[inp.to_str().unwrap()],
    )
    .success(T);
    let b = backend.to_string();
    let (_serve, lines, addr) = serve_into(backend, &out);
    let addr = addr.to_string();
    let send = |file: &str, arrays: &str| {
        let f = inp.join(file);
        let args = [
            "send",
            "--connect",
            &addr,
            "--backend",
            &b,
            "--file",
            f.to_str().unwrap(),
            "--arrays",
            arrays,
            "--format",
            format,
        ];
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        thread::spawn(move || {
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            output(&a)
        })
    };
    let (ta, tb) = (send("a.npy", "2"), send("b.npy", "1"));
    for t in [ta, tb] {
        let o = t.join().unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    }
    let got: Vec<Value> = lines.take(3, T).iter().map(|l| json(l)).collect();
    let mut files = Vec::new();
    for v in &got {
        let peer = v["peer"].as_str().unwrap();
        let file = PathBuf::from(v["file"].as_str().unwrap());
        let name = file.file_name().unwrap().to_str().unwrap().to_owned();
        // PEER (':' made '_'), the connection number, the array number.
        let prefix = format!("{}-c", peer.replace(':', "_"));
        assert!(name.starts_with(&prefix), "{name} {peer}");
        let rest = name[prefix.len()..].strip_suffix(".npy").unwrap();
        let (conn, array) = rest.split_once("-a").unwrap();
        assert!(conn.parse::<u64>().unwrap() >= 1, "{name}");
        assert_eq!(array, v["array"].to_string(), "{name}");
        assert_eq!(file.parent().unwrap(), out, "{name}");
        assert_eq!(v["format"], format, "{name}");
        assert_eq!(
            v["verified"],
            format == "rgxf",
            "{name}: a .npy stream has no checksum"
        );
        let src = if v["dtype"] == ">i4" {
            "a.npy"
        } else {
            "b.npy"
        };
        assert!(
            std::fs::read(&file).unwrap() == std::fs::read(inp.join(src)).unwrap(),
            "{name} is {src} byte for byte"
        );
        files.push(name);
    }
    files.sort();
    assert_eq!(listing(&out), files, "one file per array, no .part left");
    let a_conns: Vec<&Value> = got.iter().filter(|v| v["dtype"] == ">i4").collect();
    assert_eq!(a_conns.len(), 2);
    assert_eq!(
        a_conns[0]["peer"], a_conns[1]["peer"],
        "one connection, two arrays"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A fresh directory `test-backend` holding `blob.bin`, `len` patterned bytes (`seed`):
/// the directory, the bytes, the file and the path of its copy-to-be `copy.bin`.
fn blob(
    test: &str,
    backend: Backend,
    len: usize,
    seed: u64,
) -> (PathBuf, Vec<u8>, PathBuf, PathBuf) {
    let dir = tmpdir("cli-files", &format!("{test}-{backend}"));
    let mut bytes = vec![0u8; len];
    util::fill_pattern(&mut bytes, seed);
    let src = dir.join("blob.bin");
    std::fs::write(&src, &bytes).unwrap();
    let dst = dir.join("copy.bin");
    (dir, bytes, src, dst)
}

/// `--raw --file` of an arbitrary binary file (an odd size, not a whole number of pages)
/// → `recv --raw --out --dtype u1 --size N`: the same bytes.
fn raw_file_byte_exact(backend: Backend) {
    let (dir, bytes, src, dst) = blob("raw", backend, 3 * 1024 * 1024 + 12345, 99);
    let n = bytes.len().to_string();
    let (s, r) = pair(
        &dir,
        backend,
        &[
            "--raw",
            "--out",
            dst.to_str().unwrap(),
            "--dtype",
            "u1",
            "--size",
            &n,
        ],
        &["--raw", "--file", src.to_str().unwrap()],
    );
    assert_eq!(
        (&s["bytes"], &r["bytes"]),
        (&bytes.len().into(), &bytes.len().into())
    );
    assert_eq!(
        (&s["dtype"], &s["count"]),
        (&"|u1".into(), &bytes.len().into())
    );
    assert_eq!(s["crc32"], r["crc32"]);
    assert_eq!(r["out"], dst.to_str().unwrap());
    assert_eq!(r.get("verified"), None, "{r}");
    assert!(std::fs::read(&dst).unwrap() == bytes, "byte-exact copy");
    assert_eq!(listing(&dir), ["blob.bin", "copy.bin"]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--raw --file` over two rails of three streams each (`127.0.0.1:0,127.0.0.1:0`, the
/// receiver's bound ports read from its stderr) into `--raw --out`: byte-exact, 6 streams.
fn striped_file_byte_exact(backend: Backend) {
    let (dir, bytes, src, dst) = blob("striped", backend, 5 * 1024 * 1024 + 4097, 5);
    let (b, n) = (backend.to_string(), bytes.len().to_string());
    let mut r = command(&[
        "recv",
        "--raw",
        "--json",
        "--listen",
        "127.0.0.1:0,127.0.0.1:0",
        "--streams",
        "3",
        "--backend",
        &b,
        "--dtype",
        "u1",
        "--size",
        &n,
        "--out",
        dst.to_str().unwrap(),
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let err = util::proc::Lines::new(r.stderr.take().unwrap());
    let addrs: Vec<String> = err
        .take(2, T)
        .iter()
        .map(|l| {
            l.strip_prefix("ringxfer recv: listening on ")
                .unwrap()
                .to_owned()
        })
        .collect();
    let addrs = addrs.join(",");
    let s = output(&[
        "send",
        "--raw",
        "--json",
        "--connect",
        &addrs,
        "--streams",
        "3",
        "--backend",
        &b,
        "--file",
        src.to_str().unwrap(),
    ]);
    if s.status.code() != Some(0) {
        let _ = r.kill();
    }
    let o = r.wait_with_output().unwrap();
    assert_eq!(s.status.code(), Some(0), "send: {}", text(&s.stderr));
    assert_eq!(
        o.status.code(),
        Some(0),
        "recv: {:?}",
        err.drain_for(Duration::from_millis(100))
    );
    let (s, r) = (json(&text(&s.stdout)), json(&text(&o.stdout)));
    assert_eq!((&s["streams"], &r["streams"]), (&6.into(), &6.into()));
    assert_eq!(s["crc32"], r["crc32"]);
    assert_eq!(r["out"], dst.to_str().unwrap());
    assert!(
        std::fs::read(&dst).unwrap() == bytes,
        "byte-exact copy over 6 streams"
    );
    assert_eq!(listing(&dir), ["blob.bin", "copy.bin"]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A `.npy` header for `dict` (version 1.0, padded to a multiple of 64 bytes) followed by
/// `data`.
fn npy_bytes(dict: &str, data: &[u8]) -> Vec<u8> {
    let mut text = dict.to_owned();
    while (10 + text.len() + 1) % 64 != 0 {
        text.push(' ');
    }
    text.push('\n');
    let mut v = b"\x93NUMPY\x01\x00".to_vec();
    v.extend_from_slice(&(text.len() as u16).to_le_bytes());
    v.extend_from_slice(text.as_bytes());
    v.extend_from_slice(data);
    v
}

/// Hostile `.npy` files: exit 1 with the exact message, and nothing connects to the peer.
fn hostile_npy_refused(backend: Backend) {
    let dir = tmpdir("cli-files", &format!("hostile-{backend}"));
    let good = "{'descr': '<f8', 'fortran_order': False, 'shape': (10,), }";
    let cases: Vec<(&str, Vec<u8>, String)> =
        vec![
        (
            "text.npy",
            b"hello, not numpy\n".to_vec(),
            "bad .npy magic b\"h\" (expected b\"\\x93NUMPY\"): not a .npy file (add --raw to send \
             its bytes as they are)"
                .into(),
        ),
        (
            "long.npy",
            npy_bytes(good, &[0u8; 81]),
            ".npy file of 209 bytes does not hold its 128-byte header plus 80 bytes of data".into(),
        ),
        (
            "short.npy",
            npy_bytes(good, &[0u8; 72]),
            ".npy file of 200 bytes does not hold its 128-byte header plus 80 bytes of data".into(),
        ),
        (
            "cut.npy",
            npy_bytes(good, &[])[..40].to_vec(),
            ".npy header needs 128 bytes, got 40".into(),
        ),
        (
            "unicode.npy",
            npy_bytes("{'descr': '<U4', 'fortran_order': False, 'shape': (2,), }", &[0; 32]),
            ".npy header descr '<U4' is not a dtype ringxfer supports".into(),
        ),
        (
            "key.npy",
            npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (1,), 'x': 1}", &[0; 8]),
            ".npy header has unknown key 'x'".into(),
        ),
        (
            "overflow.npy",
            npy_bytes(
                "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296), }",
                &[],
            ),
            ".npy header shape [4294967296, 4294967296] x itemsize 8 overflows 64 bits".into(),
        ),
        (
            "huge-len.npy",
            b"\x93NUMPY\x02\x00\xf0\xff\xff\xff".to_vec(),
            ".npy header of 4294967292 bytes exceeds the limit of 65536 bytes".into(),
        ),
    ];
    let sock = dir.join("s.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = format!("unix:{}", sock.display());
    let b = backend.to_string();
    for (name, bytes, message) in cases {
        let path = dir.join(name);
        std::fs::write(&path, &bytes).unwrap();
        let p = path.to_str().unwrap();
        let o = output(&["send", "--connect", &addr, "--backend", &b, "--file", p]);
        assert_eq!(o.status.code(), Some(1), "{name}: {}", text(&o.stderr));
        assert_eq!(
            text(&o.stderr),
            format!("ringxfer send: {p}: {message}\n"),
            "{name}"
        );
        assert_eq!(text(&o.stdout), "", "{name}");
        match listener.accept() {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("{name}: the sender connected: {other:?}"),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `recv --out` (framed, then raw) from a peer that breaks off: exit 1 with the library's
/// error, and the directory holds no file at all (no output, no `.part`). Framed also with
/// a payload whose CRC-32 does not match.
fn broken_peer_leaves_no_file(backend: Backend) {
    let dir = tmpdir("cli-files", &format!("broken-{backend}"));
    let b = backend.to_string();
    let header = Header::new("<f8".parse().unwrap(), &[1000], Order::C).unwrap();
    let hl = header.encoded_len() as u64;
    let mut cut = header.encode();
    cut.extend_from_slice(&[7u8; 3000]);
    let mut bad_crc = header.encode();
    bad_crc.extend_from_slice(&[7u8; 8000]);
    bad_crc.extend_from_slice(&[0, 0, 0, 0]);
    bad_crc.extend_from_slice(b"RGXE");
    let crc = crc32fast::hash(&[7u8; 8000]);
    let cases: Vec<(&str, Vec<&str>, Vec<u8>, String)> = vec![
        (
            "cut",
            vec![],
            cut,
            format!(
                "array 1 of 1: {}",
                Error::UnexpectedEof {
                    transferred: hl + 3000,
                    expected: hl + 8008
                }
            ),
        ),
        (
            "crc",
            vec![],
            bad_crc,
            format!(
                "array 1 of 1: {}",
                Error::Frame(ringxfer::FrameError::PayloadChecksum {
                    expected: 0,
                    actual: crc
                })
            ),
        ),
        (
            "raw",
            vec!["--raw", "--dtype", "u1", "--size", "10000"],
            vec![7u8; 4000],
            Error::UnexpectedEof {
                transferred: 4000,
                expected: 10000,
            }
            .to_string(),
        ),
    ];
    for (what, extra, bytes, message) in cases {
        let sock = dir.join("s.sock");
        let out = dir.join("out.npy");
        let addr = format!("unix:{}", sock.display());
        let mut args = vec!["recv", "--listen", &addr, "--backend", &b, "--out"];
        args.push(out.to_str().unwrap());
        args.extend(extra);
        let r = spawn(&args);
        let mut s = connect_unix(&sock, T);
        s.write_all(&bytes).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let o = r.wait_with_output().unwrap();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        assert_eq!(o.status.code(), Some(1), "{what}: {}", text(&o.stderr));
        assert_eq!(
            text(&o.stderr),
            format!("ringxfer recv: {message}\n"),
            "{what}"
        );
        assert_eq!(listing(&dir), Vec::<String>::new(), "{what}: no file left");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

both_backends! {
    fn npy_round_trip_every_dtype(backend) { npy_round_trips(backend) }
    fn serve_out_dir_two_clients(backend) { serve_out_dir(backend, "rgxf") }
    fn serve_out_dir_npy_streams(backend) { serve_out_dir(backend, "npy") }
    fn serve_out_dir_receives_a_npy_stream_in_place(backend) {
        serve_out_dir_npy_stream_in_place(backend)
    }
    fn raw_file_is_byte_exact(backend) { raw_file_byte_exact(backend) }
    fn striped_raw_file_is_byte_exact(backend) { striped_file_byte_exact(backend) }
    fn hostile_npy_files_send_nothing(backend) { hostile_npy_refused(backend) }
    fn broken_peer_leaves_no_output_file(backend) { broken_peer_leaves_no_file(backend) }
}

/// The flags' own rules: exit 2 with the exact message, before anything connects.
#[test]
fn file_flag_usage_errors() {
    let dir = tmpdir("cli-files", "usage");
    let existing = dir.join("x.npy");
    std::fs::write(&existing, b"keep").unwrap();
    let x = existing.to_str().unwrap();
    let nodir = dir.join("no/such/dir.npy");
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["recv", "--listen", "127.0.0.1:0", "--out", x],
            format!(
                "--out {x}: the file exists (ringxfer never overwrites: remove it or choose \
                 another name)"
            ),
        ),
        (
            vec![
                "recv",
                "--listen",
                "127.0.0.1:0",
                "--out",
                nodir.to_str().unwrap(),
            ],
            format!(
                "--out {}: no directory {}",
                nodir.display(),
                dir.join("no/such").display()
            ),
        ),
        (
            vec!["recv", "--listen", "127.0.0.1:0", "--file", x],
            "--file is for send (recv writes with --out)".into(),
        ),
        (
            vec!["send", "--connect", "127.0.0.1:1", "--out", x],
            "--out is for recv (send reads with --file)".into(),
        ),
        (
            vec![
                "recv",
                "--listen",
                "127.0.0.1:0",
                "--out",
                "/tmp/n.npy",
                "--arrays",
                "2",
            ],
            "--out writes one array: --arrays must be 1 (serve --out-dir takes many)".into(),
        ),
        (
            vec![
                "recv",
                "--listen",
                "127.0.0.1:0",
                "--raw",
                "--out",
                "/tmp/n.bin",
            ],
            "--raw --out needs --count or --size: raw bytes carry no length".into(),
        ),
        (
            vec![
                "send",
                "--connect",
                "127.0.0.1:1",
                "--raw",
                "--bidir",
                "--file",
                x,
            ],
            "--file moves data one way: not with --bidir".into(),
        ),
        (
            vec![
                "send",
                "--connect",
                "127.0.0.1:1",
                "--streams",
                "2",
                "--file",
                x,
                "--format",
                "npy",
            ],
            "--format npy cannot stripe: numpy's .npy stream has no place for the stripe \
             geometry; drop --format npy (RGXF stripes) or send over one connection"
                .into(),
        ),
        (
            vec!["serve", "--listen", "127.0.0.1:0", "--out-dir", x],
            format!("--out-dir {x}: not an existing directory"),
        ),
    ];
    for (args, message) in cases {
        let o = output(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o.stderr));
        assert_eq!(
            text(&o.stderr),
            format!("ringxfer {}: {message}\n", args[0]),
            "{args:?}"
        );
    }
    assert_eq!(std::fs::read(&existing).unwrap(), b"keep");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Compares two files in 16 MiB pieces (never either whole in memory); the first differing
/// byte offset, if any.
fn first_difference(a: &Path, b: &Path) -> Option<u64> {
    let (mut fa, mut fb) = (
        std::fs::File::open(a).unwrap(),
        std::fs::File::open(b).unwrap(),
    );
    assert_eq!(fa.metadata().unwrap().len(), fb.metadata().unwrap().len());
    let (mut ba, mut bb) = (vec![0u8; 16 << 20], vec![0u8; 16 << 20]);
    let mut at = 0u64;
    loop {
        let n = fa.read(&mut ba).unwrap();
        if n == 0 {
            return None;
        }
        fb.read_exact(&mut bb[..n]).unwrap();
        if let Some(i) = (0..n).find(|&i| ba[i] != bb[i]) {
            return Some(at + i as u64);
        }
        at += n as u64;
    }
}

/// A `.npy` file of more than 4 GiB of data (`<u2`, 2^31 + 2^20 elements: 4 GiB + 2 MiB;
/// sparse, with 1 MiB patterned stretches at the start, across the 4 GiB mark and at the end) sent with
/// `send --file` and received with `recv --out`: the same bytes, compared piecewise.
fn over_4_gib(backend: Backend) {
    let dir = tmpdir("cli-files", &format!("huge-{backend}"));
    let n: u64 = (1 << 31) + (1 << 20);
    let head = ringxfer::npy::encode_header("<u2".parse().unwrap(), &[n], Order::C);
    let src = dir.join("big.npy");
    let total = head.len() as u64 + 2 * n;
    assert!(total - head.len() as u64 > 1 << 32);
    {
        let mut f = std::fs::File::create(&src).unwrap();
        f.write_all(&head).unwrap();
        f.set_len(total).unwrap();
        use std::os::unix::fs::FileExt;
        let mut stretch = vec![0u8; 1 << 20];
        let data_at = head.len() as u64;
        let stretches = [data_at, data_at + (1 << 32) - 12345, total - (1 << 20)];
        for (i, at) in stretches.into_iter().enumerate() {
            util::fill_pattern(&mut stretch, i as u64 + 1);
            f.write_all_at(&stretch, at).unwrap();
        }
        assert_eq!(
            f.metadata().unwrap().len(),
            total,
            "the stretches lie inside the file"
        );
    }
    let dst = dir.join("copy.npy");
    let (s, r) = pair(
        &dir,
        backend,
        &["--out", dst.to_str().unwrap()],
        &["--file", src.to_str().unwrap()],
    );
    assert_eq!(s["bytes"], 2 * n);
    assert_eq!(r["bytes"], 2 * n);
    assert_eq!(r["shape"], serde_json::json!([n]));
    assert_eq!(s["crc32"], r["crc32"]);
    assert_eq!(first_difference(&src, &dst), None);
    let _ = std::fs::remove_dir_all(&dir);
}

both_backends! {
    #[ignore = "moves 2 x 4 GiB through the page cache: run by .ci/run's --ignored step"]
    fn file_over_4_gib(backend) { over_4_gib(backend) }
}

/// `serve --out-dir` receives a `.npy` stream (numpy's own format, written here by hand: the
/// header `numpy.save` writes, then the payload) straight into the file's mapping: while the
/// payload is only half sent, the hidden `.part` file already has the whole array's size —
/// a receive into memory and a copy would create it only once every byte is in. Then the
/// rest arrives and the committed file is the `.npy` file byte for byte.
fn serve_out_dir_npy_stream_in_place(backend: Backend) {
    let dir = tmpdir("cli-files", &format!("npy-in-place-{backend}"));
    let (_serve, lines, addr) = serve_into(backend, &dir);
    let shape = [1000u64, 301];
    let head = ringxfer::npy::encode_header("<f8".parse().unwrap(), &shape, Order::C);
    let payload: Vec<u8> = (0..shape[0] * shape[1] * 8)
        .map(|i| (i * 7 + i / 251) as u8)
        .collect();
    let whole: Vec<u8> = [head.as_slice(), &payload].concat();
    let mut sock = std::net::TcpStream::connect(addr).unwrap();
    let half = head.len() + payload.len() / 2;
    sock.write_all(&whole[..half]).unwrap();
    // The file is made at the array's size before the payload is in. It is created empty,
    // then sized (`MappedFileMut::create_new`: open, then `set_len`): a look between the two
    // sees 0 bytes, so wait for the size, while the second half is still held back.
    let deadline = std::time::Instant::now() + T;
    let mut seen = Vec::new();
    loop {
        let found = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.file_name().unwrap().to_string_lossy().ends_with(".part"));
        if let Some(p) = found {
            let len = std::fs::metadata(&p).map(|m| m.len()).ok();
            if len == Some(whole.len() as u64) {
                break;
            }
            if seen.last() != Some(&len) {
                seen.push(len);
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no .part file of {} bytes while the payload is half sent; sizes seen: {seen:?}",
            whole.len()
        );
        thread::sleep(Duration::from_millis(10));
    }
    sock.write_all(&whole[half..]).unwrap();
    sock.shutdown(std::net::Shutdown::Write).unwrap();
    let v = json(&lines.take(1, T)[0]);
    assert_eq!(
        (v["format"].as_str(), v["dtype"].as_str()),
        (Some("npy"), Some("<f8")),
        "{v}"
    );
    assert_eq!(v["bytes"], payload.len() as u64, "{v}");
    let file = PathBuf::from(v["file"].as_str().unwrap());
    assert!(
        std::fs::read(&file).unwrap() == whole,
        "the .npy stream byte for byte"
    );
    assert_eq!(
        listing(&dir),
        vec![file.file_name().unwrap().to_string_lossy().into_owned()]
    );
    let _ = std::fs::remove_dir_all(&dir);
}
