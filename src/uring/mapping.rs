//! Files mapped into memory, so an array is sent straight from a file's pages and received
//! straight into them, with no copy through a user-space buffer: [`MappedFile`] (read-only,
//! to send a file) and [`MappedFileMut`] (a new file, created, sized and mapped read-write, to
//! receive into). Public as `ringxfer::file`.
//!
//! This module lives in `src/uring/` because mapping a file is `unsafe` in
//! [`memmap2`](https://docs.rs/memmap2) and this directory is the crate's one place for
//! `unsafe`; the io_uring backend does not use it.
//!
//! The invariant every mapping needs (nobody truncates or modifies a mapped file; a
//! truncation raises `SIGBUS`) is stated once, in the docs of the public module
//! [`crate::file`] (`src/lib.rs`).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use memmap2::{Mmap, MmapMut};

/// A whole file mapped read-only: its bytes as a `&[u8]` ([`MappedFile::bytes`]), to send
/// without reading them into a buffer first. An empty file maps to an empty slice.
#[derive(Debug)]
pub struct MappedFile {
    map: Mmap,
    file: File,
}

impl MappedFile {
    /// Opens `path` read-only and maps all of it.
    ///
    /// The caller promises that nothing truncates or modifies the file while the returned
    /// value lives (see [`crate::file`]: a truncation kills the process with
    /// `SIGBUS` on the next access to a lost page).
    ///
    /// # Errors
    /// The OS error of `open`, `fstat` or `mmap` (`ENODEV` for a file that cannot be mapped,
    /// e.g. a pipe or a directory; `ENOMEM` when the address space is exhausted).
    pub fn open(path: &Path) -> io::Result<MappedFile> {
        MappedFile::of(File::open(path)?)
    }

    /// Maps all of an open `file` (opened for reading), under the same promise as
    /// [`MappedFile::open`].
    ///
    /// # Errors
    /// As [`MappedFile::open`].
    pub fn of(file: File) -> io::Result<MappedFile> {
        // SAFETY: `Mmap::map` is unsafe because the mapped bytes are shared with the file:
        // if another process modifies the file they change under the `&[u8]` this type hands
        // out, and if it truncates the file an access past the new end raises SIGBUS. Both
        // are the caller's promise (stated on `open` and `of`, and in the `crate::file` docs): this
        // type never writes to the file and keeps it open, unchanged, for the mapping's life.
        let map = unsafe { Mmap::map(&file)? };
        Ok(MappedFile { map, file })
    }

    /// The file's bytes (its length at the time it was mapped).
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// The mapped length in bytes.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True for an empty file.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The open file (to read its header with `pread`, say; reading does not disturb the
    /// mapping).
    pub fn file(&self) -> &File {
        &self.file
    }
}

/// A file this process created, sized and mapped read-write: receive into
/// [`MappedFileMut::bytes_mut`], then [`MappedFileMut::flush`]. The file is not removed on
/// drop (deciding whether a partial file stays is the caller's job).
#[derive(Debug)]
pub struct MappedFileMut {
    map: MmapMut,
    file: File,
}

impl MappedFileMut {
    /// Creates `path`, which must not exist (`O_CREAT | O_EXCL`, mode 0600 before the
    /// umask), sets its length to `len` bytes — a sparse file: no disk block is written until
    /// a page is — and maps all of it read-write. A `len` of 0 gives an empty file and an
    /// empty slice.
    ///
    /// # Errors
    /// The OS error of `open` (`AlreadyExists` when `path` exists: nothing is overwritten),
    /// `ftruncate` (`EFBIG` above the filesystem's largest file) or `mmap`. On an error after
    /// the file was created, it is removed again.
    pub fn create_new(path: &Path, len: u64) -> io::Result<MappedFileMut> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        let mapped = file.set_len(len).and_then(|()| {
            // SAFETY: `MmapMut::map_mut` is unsafe because the pages are shared with the file:
            // another process that truncates it makes accesses past the new end raise SIGBUS,
            // one that writes to it changes bytes under our `&mut [u8]`. The file was created
            // just now by this call (O_EXCL: no one else had it open), with mode 0600, and is
            // held open by the returned value for the mapping's life: the process that
            // created it owns it, and the CLI never hands its path to anyone while mapped.
            // Another process of the same user could still open it by name; that is the
            // residual risk the `crate::file` docs state.
            unsafe { MmapMut::map_mut(&file) }
        });
        match mapped {
            Ok(map) => Ok(MappedFileMut { map, file }),
            Err(e) => {
                let _ = std::fs::remove_file(path);
                Err(e)
            }
        }
    }

    /// The mapped bytes (all of the file), to receive into.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.map
    }

    /// The mapped bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// The mapped length in bytes.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True for an empty file.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Writes the mapping's dirty pages to the file and waits for them (`msync(MS_SYNC)`),
    /// then `fsync`s the file. After it returns `Ok`, the file holds the mapped bytes even if
    /// the machine loses power. (Without it the bytes still reach the file, through the page
    /// cache, once the mapping is dropped; only their durability is not waited for.)
    ///
    /// # Errors
    /// The OS error of `msync` or `fsync` (`EIO`, `ENOSPC` on a filesystem that allocates
    /// blocks late — a sparse file's blocks are allocated here).
    pub fn flush(&self) -> io::Result<()> {
        if !self.map.is_empty() {
            self.map.flush()?;
        }
        self.file.sync_all()
    }

    /// The open file.
    pub fn file(&self) -> &File {
        &self.file
    }
}

/// Smallest receive buffer [`advise_huge_pages`] advises: numpy's own threshold for the
/// arrays it allocates with `malloc` (`numpy/_core/src/multiarray/alloc.c`, 4 MiB).
pub(crate) const HUGE_ADVICE_MIN: usize = 4 << 20;

/// `MADV_HUGEPAGE` (Linux 2.6.38) on the 2 MiB-aligned interior of `bytes`, when it is at least
/// [`HUGE_ADVICE_MIN`] long: pages of it not yet faulted in are then faulted in 2 MiB at a time
/// where the system's THP mode is `madvise` or `always` ([`crate::Prefault::Huge`]). Memory
/// the advice does not apply to (a file mapping: `EINVAL`; THP `never`) is left as it was.
pub(crate) fn advise_huge_pages(bytes: &mut [u8]) {
    const HUGE: usize = 2 << 20;
    if bytes.len() < HUGE_ADVICE_MIN {
        return;
    }
    let start = bytes.as_mut_ptr() as usize;
    let (first, end) = (
        start.next_multiple_of(HUGE),
        (start + bytes.len()) & !(HUGE - 1),
    );
    if first >= end {
        return;
    }
    // SAFETY: `[first, end)` lies inside `bytes`, memory the caller holds mutably for the
    // call, and is page-aligned. MADV_HUGEPAGE changes only the page size later faults use
    // (and lets khugepaged merge present pages in the background, copying their contents):
    // it never changes a byte and creates no reference to the memory. An error (e.g. EINVAL
    // for a file mapping) leaves the memory as it was; the advice is a hint.
    let _ = unsafe { libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!(
            "ringxfer-mapping-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn read_only_map_shows_the_file() {
        let d = dir();
        let p = d.join("a.bin");
        let content: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::File::create(&p)
            .unwrap()
            .write_all(&content)
            .unwrap();
        let m = MappedFile::open(&p).unwrap();
        assert_eq!(m.bytes(), &content[..]);
        assert_eq!((m.len(), m.is_empty()), (10_000, false));
        assert_eq!(m.file().metadata().unwrap().len(), 10_000);
        let empty = d.join("empty");
        std::fs::File::create(&empty).unwrap();
        let m = MappedFile::open(&empty).unwrap();
        assert_eq!((m.bytes(), m.is_empty()), (&[][..], true));
        let e = MappedFile::open(&d.join("missing")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn create_new_maps_a_sparse_file_and_never_overwrites() {
        let d = dir();
        let p = d.join("out.bin");
        let mut m = MappedFileMut::create_new(&p, 3 * 4096 + 5).unwrap();
        assert_eq!(m.len(), 3 * 4096 + 5);
        assert!(m.bytes().iter().all(|&b| b == 0));
        m.bytes_mut()[4096..4101].copy_from_slice(b"hello");
        *m.bytes_mut().last_mut().unwrap() = 0xAB;
        m.flush().unwrap();
        drop(m);
        let mut got = Vec::new();
        std::fs::File::open(&p)
            .unwrap()
            .read_to_end(&mut got)
            .unwrap();
        assert_eq!(got.len(), 3 * 4096 + 5);
        assert_eq!(&got[4096..4101], b"hello");
        assert_eq!(got[3 * 4096 + 4], 0xAB);
        assert_eq!(got.iter().filter(|&&b| b != 0).count(), 6);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "group/other bits: {mode:o}");

        // An existing file is never replaced, and stays as it was.
        let e = MappedFileMut::create_new(&p, 10).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 3 * 4096 + 5);

        let z = d.join("zero");
        let m = MappedFileMut::create_new(&z, 0).unwrap();
        assert!(m.is_empty());
        m.flush().unwrap();
        assert_eq!(std::fs::metadata(&z).unwrap().len(), 0);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_failed_size_removes_the_created_file() {
        let d = dir();
        let p = d.join("huge");
        // 4 EiB: ftruncate fails (EFBIG) on a filesystem with a smaller largest file, else
        // (tmpfs takes it, sparse) mmap fails (ENOMEM: above the 128 TiB address space).
        let e = MappedFileMut::create_new(&p, 1 << 62).unwrap_err();
        assert!(e.raw_os_error().is_some(), "{e:?}");
        assert!(!p.exists());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
