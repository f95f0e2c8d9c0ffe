//! Real files in and out: `send --file`, `recv --out`, `serve --out-dir`. Every file is
//! mapped ([`ringxfer::file`]) and the array moves between the socket and the file's pages
//! with no copy through a buffer of ours.
//!
//! **Sending** ([`NpyFile`], [`open_raw`]): framed mode sends a `.npy` file (versions 1.0,
//! 2.0, 3.0; numpy's format, `numpy.lib.format` docs / NEP 1): its header is read and checked
//! with [`ringxfer::npy::read_file_header`] (bounded; the file's length must be exactly the
//! header plus `product(shape) * itemsize` bytes), then the data after the header is sent
//! from the mapping as one framed array with the header's dtype, shape and order. `--raw`
//! sends every byte of any file as it is (a `.npy` file too, its header included, so a raw
//! receiver with `--out` writes a loadable copy). Everything is checked before connecting: a
//! bad file sends nothing.
//!
//! **Receiving** ([`OutFile`]): the output is created under a temporary name in the target's
//! directory, `.NAME.PID.part` (hidden, and not ending in `.npy`), sized (sparse; an array
//! larger than the filesystem's available bytes is refused before the file is made), mapped,
//! received into, then `msync`ed, `fsync`ed and renamed to its name with `RENAME_NOREPLACE`,
//! so an existing file is never replaced (the rename fails instead). On any error the temporary
//! file is deleted: a failed receive leaves no file at the target name and nothing that
//! looks complete. (A process killed by SIGKILL cannot delete it: a `.part` file remains.)
//! Framed, the file is `.npy`: the header [`ringxfer::npy::encode_header`] writes (what
//! `numpy.save` writes for the same array), then the payload, received straight into the
//! mapping ([`recv_npy`]) after the frame header said how large to make the file: by
//! [`Engine::recv_payload_into`] on one connection, by
//! [`Engine::recv_striped_payload_into`] for a striped array (its header from
//! [`Engine::recv_striped_header`]), each stripe into its part of the mapping; a `.npy`
//! stream (`serve --out-dir`) by [`Engine::recv_npy_payload_into`] ([`npy_stream_to_file`]).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Instant;

use ringxfer::file::{MappedFile, MappedFileMut};
use ringxfer::npy::{self, NpyError, NpyHeader};
use ringxfer::{Engine, Header};

use crate::failure::Failure;
use crate::measure::{SockBufs, with_cpu};
use crate::net::Conn;
use crate::xfer::framed::{ArrayLine, ErrorLine, Outcome, Received};

/// A `.npy` file mapped for sending: its checked header and its bytes.
#[derive(Debug)]
pub struct NpyFile {
    map: MappedFile,
    header: NpyHeader,
}

impl NpyFile {
    /// Opens, checks and maps the `.npy` file at `path`.
    ///
    /// # Errors
    /// A runtime failure (exit 1) naming the file: the OS error, or the header's
    /// [`NpyError`] (a file that is not `.npy` at all gets a hint to use `--raw`).
    pub fn open(path: &Path) -> Result<NpyFile, Failure> {
        let file = File::open(path).map_err(|e| file_failure(path, &e))?;
        let header = npy::read_file_header(&file, u64::MAX).map_err(|e| {
            let npy = e.get_ref().and_then(|i| i.downcast_ref::<NpyError>());
            match npy {
                Some(NpyError::BadMagic(_)) => Failure::runtime(format!(
                    "{}: {e}: not a .npy file (add --raw to send its bytes as they are)",
                    path.display()
                )),
                _ => file_failure(path, &e),
            }
        })?;
        let map = MappedFile::of(file).map_err(|e| file_failure(path, &e))?;
        // The length was checked by `read_file_header` on the same open file.
        if map.len() as u64 != header.header_len as u64 + header.payload_len {
            return Err(Failure::runtime(format!(
                "{}: changed while being opened ({} bytes mapped)",
                path.display(),
                map.len()
            )));
        }
        Ok(NpyFile { map, header })
    }

    /// The checked header.
    pub fn header(&self) -> &NpyHeader {
        &self.header
    }

    /// The array's bytes: everything after the header.
    pub fn payload(&self) -> &[u8] {
        &self.map.bytes()[self.header.header_len..]
    }
}

/// Maps all of the file at `path` for `--raw --file`.
///
/// # Errors
/// A runtime failure naming the file (the OS error; a directory or a pipe cannot be mapped).
pub fn open_raw(path: &Path) -> Result<MappedFile, Failure> {
    MappedFile::open(path).map_err(|e| file_failure(path, &e))
}

/// `PATH: error`, exit 1.
fn file_failure(path: &Path, e: &dyn std::fmt::Display) -> Failure {
    Failure::runtime(format!("{}: {e}", path.display()))
}

/// Checks before connecting that `--out PATH` can be created: it does not exist (nothing is
/// ever overwritten) and its directory does.
///
/// # Errors
/// A usage error (exit 2) saying which.
pub fn check_out(path: &Path) -> Result<(), Failure> {
    if path.symlink_metadata().is_ok() {
        return Err(Failure::usage(format!(
            "--out {}: the file exists (ringxfer never overwrites: remove it or choose another \
             name)",
            path.display()
        )));
    }
    let dir = parent(path);
    if !dir.is_dir() {
        return Err(Failure::usage(format!(
            "--out {}: no directory {}",
            path.display(),
            dir.display()
        )));
    }
    Ok(())
}

/// The directory a path's file goes in (`.` for a bare name).
fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// An output file being received: mapped under its temporary name, renamed to its name by
/// [`OutFile::commit`], deleted when dropped uncommitted.
#[derive(Debug)]
pub struct OutFile {
    map: Option<MappedFileMut>,
    part: PathBuf,
    path: PathBuf,
}

impl OutFile {
    /// Creates `.NAME.PID.part` next to `path`, `len` bytes (sparse), and maps it, once the
    /// filesystem was seen to have room for them ([`OutFile::check_room`]).
    ///
    /// # Errors
    /// The OS error, naming the file; "no room for the array's N bytes" with the bytes the
    /// filesystem has, naming the directory (nothing is created then).
    pub fn create(path: &Path, len: u64) -> Result<OutFile, String> {
        let name = path
            .file_name()
            .ok_or_else(|| format!("{}: not a file name", path.display()))?;
        let mut part_name = std::ffi::OsString::from(".");
        part_name.push(name);
        part_name.push(format!(".{}.part", std::process::id()));
        let part = parent(path).join(part_name);
        Self::check_room(parent(path), len)?;
        let map = MappedFileMut::create_new(&part, len)
            .map_err(|e| format!("{}: {e}", part.display()))?;
        Ok(OutFile {
            map: Some(map),
            part,
            path: path.to_owned(),
        })
    }

    /// Refuses `len` bytes that the filesystem of `dir` has no room for (`statvfs(3)`:
    /// `f_bavail` blocks of `f_frsize` bytes, the "Avail" of `df`), so such an array fails
    /// before any of its bytes are read and before a file is made. The output file is sparse
    /// (its blocks are taken page by page as the receive writes them), and without this check
    /// the first page the filesystem could not give failed the receive mid-array with
    /// `EFAULT`, "Bad address" (the kernel's copy into the mapping faulted). Only a check,
    /// not a reservation: a peer that sends a header and nothing more takes no disk, and
    /// another writer that fills the disk during the receive still fails it that way.
    ///
    /// A filesystem that gives no sizes (`statvfs` fails, or reports 0 blocks in all, as some
    /// virtual and FUSE filesystems do) is not checked.
    ///
    /// # Errors
    /// Both numbers, naming the directory.
    fn check_room(dir: &Path, len: u64) -> Result<(), String> {
        let Ok(st) = rustix::fs::statvfs(dir) else {
            return Ok(());
        };
        if st.f_blocks == 0 {
            return Ok(());
        }
        let avail = st.f_bavail.saturating_mul(st.f_frsize);
        match len <= avail {
            true => Ok(()),
            false => Err(format!(
                "{}: no room for the array's {len} bytes: the filesystem has {avail} bytes \
                 available",
                dir.display()
            )),
        }
    }

    /// The mapped bytes, to receive into.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        self.map.as_mut().map_or(&mut [], |m| m.bytes_mut())
    }

    /// The mapped bytes.
    pub fn bytes(&self) -> &[u8] {
        self.map.as_ref().map_or(&[], |m| m.bytes())
    }

    /// Checks now that no file took this one's name since [`check_out`]: for a receive that
    /// must close its connections before [`OutFile::commit`] (striped: each stream closes once
    /// checked), so that a name taken meanwhile fails while the sender can still be told. A
    /// file that appears at the name during the close, or a failed `msync`, still fails the
    /// commit, untold (the bytes are not written to disk here: a large array's `msync` would
    /// hold the sender's close for as long).
    ///
    /// # Errors
    /// A file at the name, as [`check_out`] words it.
    pub fn ready(&self) -> Result<(), String> {
        check_out(&self.path).map_err(|f| f.message)
    }

    /// Writes the bytes to disk (`msync`, `fsync`), unmaps and renames the file to its name,
    /// failing rather than replacing a file that appeared there meanwhile.
    ///
    /// # Errors
    /// The OS error, naming the file; the temporary file is deleted.
    pub fn commit(mut self) -> Result<PathBuf, String> {
        let map = self.map.take().expect("mapped until committed");
        map.flush()
            .map_err(|e| format!("{}: {e}", self.part.display()))?;
        drop(map);
        rustix::fs::renameat_with(
            rustix::fs::CWD,
            &self.part,
            rustix::fs::CWD,
            &self.path,
            rustix::fs::RenameFlags::NOREPLACE,
        )
        .map_err(|e| {
            format!(
                "{}: cannot rename the received file into place: {}",
                self.path.display(),
                std::io::Error::from(e)
            )
        })?;
        self.part = PathBuf::new();
        Ok(self.path.clone())
    }
}

impl Drop for OutFile {
    /// Deletes the temporary file unless it was committed.
    fn drop(&mut self) {
        self.map = None;
        if !self.part.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.part);
        }
    }
}

/// Receives the array of `header` (just read; `format` says from which wire format) into a
/// new `.npy` file at `path` (not yet committed) and gives its report line; the clock starts
/// at `started`. The file is created and sized from `header`, its `.npy` header written, and
/// `receive` fills the payload part of the mapping in place: [`Engine::recv_payload_into`]
/// on one connection, [`Engine::recv_striped_payload_into`] over a striped array's streams
/// (for RGXF the payload's checksum was verified when `receive` returns `Ok`: both calls check
/// the CRC-32 they carry), [`Engine::recv_npy_payload_into`] for a `.npy` stream (no
/// checksum travels).
///
/// # Errors
/// The line of the failure: the library's error, or `out_file` when the file cannot be made.
pub fn recv_npy(
    engine: &mut Engine,
    socket_buffers: SockBufs,
    (peer, array): (&str, u64),
    started: Instant,
    (header, format): (&Header, ringxfer::WireFormat),
    path: &Path,
    receive: impl FnOnce(&mut Engine, &mut [u8]) -> ringxfer::Result<()>,
) -> Result<(ArrayLine, OutFile), ErrorLine> {
    let head = npy::encode_header(header.dtype, &header.shape, header.order);
    let ((got, seconds), cpu) = with_cpu(|| {
        let got = OutFile::create(path, head.len() as u64 + header.payload_len)
            .map_err(|e| out_file_error(peer, array, e))
            .and_then(|mut out| {
                let (h, payload) = out.bytes_mut().split_at_mut(head.len());
                h.copy_from_slice(&head);
                match receive(engine, payload) {
                    Ok(()) => Ok(out),
                    Err(e) => Err(ErrorLine::new(peer, array, &e)),
                }
            });
        (got, started.elapsed().as_secs_f64())
    });
    let out = got?;
    let received = Received {
        format,
        verified: format == ringxfer::WireFormat::Rgxf,
        dtype: header.dtype,
        shape: &header.shape,
        order: header.order,
        payload: &out.bytes()[head.len()..],
        file: Some(path),
    };
    let line = ArrayLine::of(
        peer,
        array,
        engine.backend().name(),
        received,
        (seconds, cpu, socket_buffers),
    );
    Ok((line, out))
}

/// `serve --out-dir`: [`recv_npy`] into `path`, committed at once.
pub fn to_file(
    engine: &mut Engine,
    sock: &Conn,
    (peer, array): (&str, u64),
    started: Instant,
    header: &Header,
    path: &Path,
) -> Outcome {
    let got = recv_npy(
        engine,
        SockBufs::of(sock),
        (peer, array),
        started,
        (header, ringxfer::WireFormat::Rgxf),
        path,
        |e, out| e.recv_payload_into(sock, header, out),
    );
    committed(got, (peer, array))
}

/// `serve --out-dir` for a `.npy` stream (its header `header` just read from `sock`, its
/// payload length already checked against `--max-payload`): [`recv_npy`] into `path`, the
/// payload received in place with [`Engine::recv_npy_payload_into`] (a `.npy` stream has no
/// trailer and no checksum), committed at once. Byte counts in an error line are the whole
/// message's, header included, as without `--out-dir`.
pub fn npy_stream_to_file(
    engine: &mut Engine,
    sock: &Conn,
    (peer, array): (&str, u64),
    started: Instant,
    header: &NpyHeader,
    path: &Path,
) -> Outcome {
    let got = recv_npy(
        engine,
        SockBufs::of(sock),
        (peer, array),
        started,
        (&header.frame_header(), ringxfer::WireFormat::Npy),
        path,
        |e, out| e.recv_npy_payload_into(sock, header, out),
    );
    committed(got, (peer, array))
}

/// The outcome of a receive into a file: the array's line once the file is committed (synced
/// and renamed into place), else the failure's line (`out_file` when the commit fails).
pub fn committed(
    got: Result<(ArrayLine, OutFile), ErrorLine>,
    (peer, array): (&str, u64),
) -> Outcome {
    match got {
        Ok((line, file)) => match file.commit() {
            Ok(_) => Outcome::Array(line),
            Err(e) => Outcome::Failed(out_file_error(peer, array, e)),
        },
        Err(line) => Outcome::Failed(line),
    }
}

/// The line of an output file that could not be created or committed: kind `out_file`.
pub fn out_file_error(peer: &str, array: u64, error: String) -> ErrorLine {
    ErrorLine {
        peer: peer.to_owned(),
        array,
        error,
        kind: "out_file",
        transferred: None,
        expected: None,
    }
}

/// `serve --out-dir`'s name for array `array` of connection `conn` from `peer`:
/// `<peer>-c<conn>-a<array>.npy`, where every byte of the peer's address other than ASCII
/// letters, digits, `.` and `-` becomes `_` (`127.0.0.1_40312-c3-a1.npy`,
/// `unix__tmp_s.sock_2-c2-a1.npy`): never a `/`, never `.` or `..`, so the file is always
/// directly inside the directory.
pub fn serve_name(peer: &str, conn: u64, array: u64) -> String {
    let peer: String = peer
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{peer}-c{conn}-a{array}.npy")
}

/// Checks `serve --out-dir DIR` at start: an existing directory.
///
/// # Errors
/// A usage error (exit 2).
pub fn check_out_dir(dir: &Path) -> Result<(), Failure> {
    if dir.is_dir() {
        Ok(())
    } else {
        Err(Failure::usage(format!(
            "--out-dir {}: not an existing directory",
            dir.display()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_names_stay_in_the_directory() {
        assert_eq!(
            serve_name("127.0.0.1:40312", 3, 1),
            "127.0.0.1_40312-c3-a1.npy"
        );
        assert_eq!(serve_name("[::1]:5", 1, 2), "___1__5-c1-a2.npy");
        assert_eq!(
            serve_name("unix:/tmp/s.sock#2", 2, 1),
            "unix__tmp_s.sock_2-c2-a1.npy"
        );
        assert_eq!(serve_name("../../etc", 1, 1), ".._.._etc-c1-a1.npy");
        for peer in ["..", "/", "a/../../b", "\u{e9}\0x"] {
            let n = serve_name(peer, 9, 9);
            assert!(!n.contains('/') && !n.contains('\0'), "{n}");
            assert_eq!(Path::new(&n).components().count(), 1, "{n}");
        }
    }

    #[test]
    fn out_file_is_renamed_on_commit_and_deleted_otherwise() {
        let dir = std::env::temp_dir().join(format!("ringxfer-outfile-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.npy");
        let part = dir.join(format!(".a.npy.{}.part", std::process::id()));
        let mut f = OutFile::create(&path, 5).unwrap();
        assert!(part.exists() && !path.exists());
        f.bytes_mut().copy_from_slice(b"hello");
        assert_eq!(f.commit().unwrap(), path);
        assert_eq!(std::fs::read(&path).unwrap(), b"hello");
        assert!(!part.exists());

        // Dropped uncommitted: nothing stays.
        let other = dir.join("b.npy");
        drop(OutFile::create(&other, 100).unwrap());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);

        // A file that appeared at the name meanwhile is not replaced.
        let mut f = OutFile::create(&path, 3).unwrap();
        f.bytes_mut().copy_from_slice(b"new");
        let e = f.commit().unwrap_err();
        assert!(
            e.contains("cannot rename the received file into place: File exists"),
            "{e}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"hello");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        assert!(check_out(&path).is_err_and(|f| f.code == 2));
        assert!(check_out(&dir.join("nodir/x.npy")).is_err_and(|f| f.code == 2));
        assert!(check_out(&dir.join("new.npy")).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
