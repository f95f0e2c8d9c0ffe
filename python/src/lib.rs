//! `ringxfer._ringxfer`: the Python binding's native module (PyO3). The public Python API is
//! `python/ringxfer/__init__.py`, which wraps the `_Engine` class defined here
//! (`PyEngine`); see its docstrings and `python/ringxfer/__init__.pyi` for units and exceptions.
//!
//! What this module does on the Rust side of every call:
//!
//! * takes the caller's memory through the buffer protocol (`PyObject_GetBuffer` with
//!   `PyBUF_ANY_CONTIGUOUS`, plus `PyBUF_WRITABLE` to receive), any format: the bytes are
//!   moved as they lie in memory, as the recipe's `memoryview(arr).cast('B')` does;
//! * takes the socket's descriptor from `sock.fileno()` and its Python timeout from
//!   `sock.gettimeout()` (a positive timeout becomes the idle timeout);
//! * releases the GIL for the whole transfer ([`Python::detach`]); Ctrl-C is seen through
//!   [`ringxfer::Options::interrupt`]: every 20 ms at most the transfer re-takes the GIL to run
//!   `PyErr_CheckSignals`; when a signal handler raises (`KeyboardInterrupt`), the library
//!   cancels and drains the transfer's SQEs and the handler's exception is raised with
//!   `.transferred`/`.expected` set;
//! * turns [`ringxfer::Error`] into the exception classes of `ringxfer/_errors.py`.

use std::ffi::{c_int, c_void};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use numpy::npyffi::{self, NPY_ARRAY_F_CONTIGUOUS, NPY_ARRAY_WRITEABLE, NpyTypes, PY_ARRAY_API};
use numpy::{PyArrayDescr, PyArrayDescrMethods};
use pyo3::exceptions::{PyBufferError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::{ffi, intern};
use ringxfer::dtype::DType;
use ringxfer::{AnyArray, ArrayView, Backend, Error, Interrupt, Order, WireFormat};

/// How often, at most, a running transfer re-takes the GIL to look for signals.
const SIGNAL_CHECK_NS: u64 = 20_000_000;

// ---------------------------------------------------------------------------------------------
// Buffers
// ---------------------------------------------------------------------------------------------

/// A contiguous buffer exported by a Python object for the duration of one call.
struct Buffer {
    view: Box<ffi::Py_buffer>,
}

// SAFETY: the Py_buffer only holds pointers; it is released (`PyBuffer_Release`) in `Drop`,
// which runs with the GIL held (every `Buffer` lives in a `#[pymethods]` frame and is dropped
// there, after `detach` returned). Only `ptr`/`len` cross into the GIL-free part.
unsafe impl Send for Buffer {}

impl Buffer {
    /// `obj`'s memory, C- or F-contiguous (any element format), writable if `writable`.
    fn get(obj: &Bound<'_, PyAny>, writable: bool, what: &str) -> PyResult<Buffer> {
        let mut view: Box<ffi::Py_buffer> = Box::new(
            // SAFETY: Py_buffer is a plain C struct; all-zero is the state PyObject_GetBuffer
            // expects to fill.
            unsafe { std::mem::zeroed() },
        );
        let flags = ffi::PyBUF_ANY_CONTIGUOUS | if writable { ffi::PyBUF_WRITABLE } else { 0 };
        // SAFETY: `obj` is a live object (we hold a reference with the GIL); `view` is a
        // valid, exclusively owned Py_buffer that outlives the call.
        let rc = unsafe { ffi::PyObject_GetBuffer(obj.as_ptr(), &mut *view, flags) };
        if rc != 0 {
            let cause = PyErr::fetch(obj.py());
            let need = if writable {
                "a writable, C- or F-contiguous buffer"
            } else {
                "a C- or F-contiguous buffer"
            };
            // No buffer protocol at all (a str, an int): TypeError, as the recipe's own
            // `memoryview(obj)` and `sock.send(obj)` raise; a buffer of the wrong kind
            // (read-only, strided): BufferError.
            let msg = format!(
                "{what} needs {need} ({}: {})",
                cause.get_type(obj.py()).name()?,
                cause.value(obj.py())
            );
            let e = if cause.is_instance_of::<PyTypeError>(obj.py()) {
                PyTypeError::new_err(msg)
            } else {
                PyBufferError::new_err(msg)
            };
            e.set_cause(obj.py(), Some(cause));
            return Err(e);
        }
        Ok(Buffer { view })
    }

    fn len(&self) -> usize {
        self.view.len as usize
    }

    /// The memory as `(address, length)`, to cross into the GIL-free part of the call.
    fn raw(&self) -> (usize, usize) {
        (self.view.buf as usize, self.len())
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        // SAFETY: the view was filled by a successful PyObject_GetBuffer and is released once;
        // the GIL is held (see the `Send` impl's comment).
        unsafe { ffi::PyBuffer_Release(&mut *self.view) }
    }
}

/// The bytes of a buffer's memory, read-only.
///
/// # Safety
/// `(addr, len)` comes from [`Buffer::raw`] of a buffer still exported.
unsafe fn bytes<'a>((addr, len): (usize, usize)) -> &'a [u8] {
    if len == 0 {
        return &[];
    }
    // SAFETY: the exporter keeps `[addr, addr + len)` alive and in place while exported
    // (numpy and bytearray refuse to resize an exported buffer); the caller's contract.
    unsafe { std::slice::from_raw_parts(addr as *const u8, len) }
}

/// The bytes of a writable buffer's memory.
///
/// # Safety
/// As [`bytes`], for a buffer exported with `PyBUF_WRITABLE`; no other Rust reference to it.
unsafe fn bytes_mut<'a>((addr, len): (usize, usize)) -> &'a mut [u8] {
    if len == 0 {
        return &mut [];
    }
    // SAFETY: as `bytes`; writable by the export's flags. Another Python thread writing the
    // same array meanwhile races with the transfer exactly as it would with the recipe's
    // `sock.recv_into(view)`.
    unsafe { std::slice::from_raw_parts_mut(addr as *mut u8, len) }
}

// ---------------------------------------------------------------------------------------------
// Sockets
// ---------------------------------------------------------------------------------------------

/// A socket argument: its descriptor and its Python timeout (`None`: blocking or none).
struct Sock {
    /// A duplicate of the socket's descriptor, owned for the call: another thread closing the
    /// Python socket meanwhile (its descriptor number then free for reuse by a new socket)
    /// cannot make the transfer read or write someone else's connection; the transfer goes on
    /// on the same connection, which stays open until this duplicate is closed at the end.
    fd: OwnedFd,
    timeout: Option<Duration>,
}

impl Sock {
    /// A socket object, or anything with `fileno()` (and optionally `gettimeout()`).
    fn of(obj: &Bound<'_, PyAny>) -> PyResult<Sock> {
        let py = obj.py();
        let fd: RawFd = match obj.getattr(intern!(py, "fileno")) {
            Ok(f) => f.call0()?.extract()?,
            Err(_) => {
                return Err(PyTypeError::new_err(format!(
                    "expected a socket (an object with fileno()), got {}",
                    obj.get_type().name()?
                )));
            }
        };
        if fd < 0 {
            return Err(PyValueError::new_err(
                "the socket is closed (fileno() is -1)",
            ));
        }
        let timeout = match obj.getattr(intern!(py, "gettimeout")) {
            Ok(f) => f.call0()?.extract::<Option<f64>>()?,
            Err(_) => None,
        };
        // SAFETY: `fileno()` just returned `fd` and this thread holds the GIL, which closing a
        // Python socket needs, so `fd` is open for this borrow; it is only duplicated here.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) }
            .try_clone_to_owned()
            .map_err(PyErr::from)?;
        Ok(Sock {
            fd,
            // 0.0 is non-blocking mode (the library copes with EAGAIN), not a timeout.
            timeout: timeout.filter(|t| *t > 0.0).map(Duration::from_secs_f64),
        })
    }

    /// Every socket of a list or tuple.
    fn all(objs: &Bound<'_, PyAny>) -> PyResult<Vec<Sock>> {
        objs.try_iter()?.map(|o| Sock::of(&o?)).collect()
    }
}

/// The smallest positive Python timeout of `socks`, if any.
fn socket_timeout(socks: &[Sock]) -> Option<Duration> {
    socks.iter().filter_map(|s| s.timeout).min()
}

// ---------------------------------------------------------------------------------------------
// Signals
// ---------------------------------------------------------------------------------------------

/// The Ctrl-C state of one engine: polled by the library through [`Options::interrupt`]
/// (`ringxfer::Options::interrupt`) while the GIL is released.
struct Signals {
    base: Instant,
    /// When the GIL was last taken to check signals (ns since `base`).
    last: AtomicU64,
    fired: AtomicBool,
    /// The exception a signal handler raised (`KeyboardInterrupt` for Ctrl-C).
    err: Mutex<Option<PyErr>>,
}

impl Signals {
    fn new() -> Arc<Signals> {
        Arc::new(Signals {
            base: Instant::now(),
            last: AtomicU64::new(0),
            fired: AtomicBool::new(false),
            err: Mutex::new(None),
        })
    }

    /// Called by the library at every wake-up: at most every [`SIGNAL_CHECK_NS`] it takes
    /// the GIL and runs `PyErr_CheckSignals` (which runs Python signal handlers, in the main
    /// thread only, as Python itself does).
    fn poll(&self) -> bool {
        if self.fired.load(Ordering::Relaxed) {
            return true;
        }
        let now = self.base.elapsed().as_nanos() as u64;
        if now.saturating_sub(self.last.load(Ordering::Relaxed)) < SIGNAL_CHECK_NS {
            return false;
        }
        self.last.store(now, Ordering::Relaxed);
        match Python::attach(|py| py.check_signals()) {
            Ok(()) => false,
            Err(e) => {
                *lock(&self.err) = Some(e);
                self.fired.store(true, Ordering::Relaxed);
                true
            }
        }
    }

    /// Before a call.
    fn reset(&self) {
        self.fired.store(false, Ordering::Relaxed);
        self.last
            .store(self.base.elapsed().as_nanos() as u64, Ordering::Relaxed);
        *lock(&self.err) = None;
    }

    /// The exception a signal handler raised during the call, if any.
    fn take(&self) -> Option<PyErr> {
        lock(&self.err).take()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the value half-updated.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Bytes expected by the transfer an error comes from.
fn expected(e: &Error) -> Option<u64> {
    match e {
        Error::UnexpectedEof { expected, .. }
        | Error::Io { expected, .. }
        | Error::TimedOut { expected, .. }
        | Error::TimedOutAborted { expected, .. }
        | Error::ReadShutdown { expected, .. }
        | Error::Canceled { expected, .. }
        | Error::Interrupted { expected, .. } => Some(*expected),
        _ => None,
    }
}

/// The Python exception for `e` (built by `ringxfer._errors._from_rust`). A signal handler's
/// exception raised during the call wins over everything (it is what Python would raise).
fn to_pyerr(py: Python<'_>, e: Error, signal: Option<PyErr>) -> PyErr {
    let (stream, e) = match e {
        Error::Stream { stream, source, .. } => (Some(stream), *source),
        e => (None, e),
    };
    let category = match &e {
        Error::UnexpectedEof { .. } => "eof",
        Error::Io { .. } | Error::Setup { .. } => "os",
        Error::TimedOut { .. } | Error::TimedOutAborted { .. } => "timeout",
        Error::Frame(_) => "frame",
        Error::NotStream { .. } => "not_stream",
        Error::InvalidInput(_) | Error::InvalidArray(_) => "invalid",
        Error::UringUnavailable(_) => "unavailable",
        Error::Interrupted { .. } => "interrupted",
        Error::Alloc { .. } => "memory",
        _ => "other",
    };
    let timeout_ms = match &e {
        Error::TimedOut { timeout_ms, .. } | Error::TimedOutAborted { timeout_ms, .. } => {
            Some(*timeout_ms)
        }
        _ => None,
    };
    let counts = (e.transferred(), expected(&e));
    let build = || -> PyResult<PyErr> {
        let errors = py.import(intern!(py, "ringxfer._errors"))?;
        let exc = match &signal {
            Some(s) => s.value(py).clone().into_any(),
            None => errors.getattr(intern!(py, "_from_rust"))?.call1((
                category,
                e.kind(),
                e.to_string(),
                e.raw_os_error(),
                timeout_ms,
            ))?,
        };
        errors
            .getattr(intern!(py, "_annotate"))?
            .call1((&exc, counts.0, counts.1, stream))?;
        Ok(PyErr::from_value(exc))
    };
    build().unwrap_or_else(|failure| failure)
}

/// The result of a call: `r`, unless a signal handler raised meanwhile (then its exception,
/// as Python would raise it after the call).
fn finish<T>(py: Python<'_>, r: ringxfer::Result<T>, signal: Option<PyErr>) -> PyResult<T> {
    match (r, signal) {
        (Ok(v), None) => Ok(v),
        (Ok(_), Some(e)) => Err(e),
        (Err(e), signal) => Err(to_pyerr(py, e, signal)),
    }
}

// ---------------------------------------------------------------------------------------------
// Engine
// ---------------------------------------------------------------------------------------------

/// The library engine and the idle timeout it was built with.
struct State {
    engine: ringxfer::Engine,
    idle: Option<Duration>,
}

/// The native engine behind `ringxfer.Engine` (see its docstring in `__init__.py`).
#[pyclass(subclass, module = "ringxfer._ringxfer", name = "_Engine")]
struct PyEngine {
    /// Locked only with the GIL released (inside `detach`): a second Python thread using the
    /// same engine waits there without holding the GIL.
    state: Mutex<State>,
    opts: ringxfer::Options,
    /// The engine's own idle timeout (seconds in Python); `None`: the socket's timeout.
    idle: Option<Duration>,
    streams: Option<usize>,
    signals: Arc<Signals>,
    backend: ringxfer::ActiveBackend,
    fallback_reason: Option<String>,
}

impl PyEngine {
    /// Runs `f` on the engine with the GIL released, the idle timeout being the engine's own
    /// or else `sock_timeout`; the engine is rebuilt (one `io_uring_setup`) when the timeout
    /// differs from the last call's.
    fn run<T: Send>(
        &self,
        py: Python<'_>,
        sock_timeout: Option<Duration>,
        f: impl FnOnce(&mut ringxfer::Engine) -> ringxfer::Result<T> + Send,
    ) -> PyResult<T> {
        let idle = self.idle.or(sock_timeout);
        let (r, signal) = py.detach(|| {
            let mut st = lock(&self.state);
            // The signal state is the call's: reset and taken under the engine's lock.
            self.signals.reset();
            let r = (|| {
                if st.idle != idle {
                    st.engine = ringxfer::Engine::with_options(ringxfer::Options {
                        idle_timeout: idle,
                        ..self.opts.clone()
                    })?;
                    st.idle = idle;
                }
                f(&mut st.engine)
            })();
            (r, self.signals.take())
        });
        finish(py, r, signal)
    }

    fn check_streams(&self, n: usize) -> PyResult<()> {
        match self.streams {
            Some(want) if want != n => Err(PyValueError::new_err(format!(
                "this engine stripes over {want} streams (Engine(streams={want})), got {n} sockets"
            ))),
            _ if n == 0 => Err(PyValueError::new_err("no sockets given")),
            _ => Ok(()),
        }
    }
}

/// dtype, shape and order of a framed send, as the Python wrapper computed them.
fn frame_args(dtype: &str, order: &str) -> PyResult<(DType, Order)> {
    let dt: DType = dtype
        .parse()
        .map_err(|e: ringxfer::dtype::UnknownName| PyValueError::new_err(e.to_string()))?;
    let order = match order {
        "C" => Order::C,
        "F" => Order::F,
        o => {
            return Err(PyValueError::new_err(format!(
                "order must be 'C' or 'F', not {o:?}"
            )));
        }
    };
    Ok((dt, order))
}

#[pymethods]
impl PyEngine {
    #[new]
    #[pyo3(signature = (backend = "auto", idle_timeout = None, max_payload = None, streams = None))]
    fn new(
        py: Python<'_>,
        backend: &str,
        idle_timeout: Option<f64>,
        max_payload: Option<u64>,
        streams: Option<usize>,
    ) -> PyResult<Self> {
        let backend: Backend = backend
            .parse()
            .map_err(|e: Error| PyValueError::new_err(e.to_string()))?;
        let idle = match idle_timeout {
            Some(t) if t.is_finite() && t > 0.0 => Some(Duration::from_secs_f64(t)),
            Some(t) => {
                return Err(PyValueError::new_err(format!(
                    "idle_timeout must be a positive number of seconds or None, not {t}"
                )));
            }
            None => None,
        };
        if streams == Some(0) {
            return Err(PyValueError::new_err("streams must be at least 1"));
        }
        let signals = Signals::new();
        let s = Arc::clone(&signals);
        let opts = ringxfer::Options {
            backend,
            idle_timeout: idle,
            max_payload_bytes: max_payload.unwrap_or(ringxfer::DEFAULT_MAX_PAYLOAD_BYTES),
            interrupt: Some(Interrupt::new(move || s.poll())),
            ..ringxfer::Options::default()
        };
        let o = opts.clone();
        let engine = py
            .detach(move || ringxfer::Engine::with_options(o))
            .map_err(|e| to_pyerr(py, e, None))?;
        Ok(PyEngine {
            backend: engine.backend(),
            fallback_reason: engine.fallback_reason().map(str::to_owned),
            state: Mutex::new(State { engine, idle }),
            opts,
            idle,
            streams,
            signals,
        })
    }

    /// The backend in use: `"uring"` or `"blocking"`.
    #[getter]
    fn backend(&self) -> &'static str {
        self.backend.name()
    }

    /// Why `backend="auto"` ended up on the blocking backend (`None` when it did not).
    #[getter]
    fn fallback_reason(&self) -> Option<String> {
        self.fallback_reason.clone()
    }

    /// The engine's own idle timeout in seconds (`None`: each call uses its socket's timeout).
    #[getter]
    fn idle_timeout(&self) -> Option<f64> {
        self.idle.map(|d| d.as_secs_f64())
    }

    /// Largest framed payload accepted, in bytes (checked before allocating).
    #[getter]
    fn max_payload(&self) -> u64 {
        self.opts.max_payload_bytes
    }

    /// Number of streams striped calls must be given (`None`: any).
    #[getter]
    fn streams(&self) -> Option<usize> {
        self.streams
    }

    fn send_from(
        &self,
        py: Python<'_>,
        arr: &Bound<'_, PyAny>,
        sock: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let buf = Buffer::get(arr, false, "send_from")?;
        let s = Sock::of(sock)?;
        let raw = buf.raw();
        self.run(py, s.timeout, move |e| {
            // SAFETY: `buf` stays exported until this method returns.
            e.send_from(&s.fd.as_fd(), unsafe { bytes(raw) })
        })
    }

    fn recv_into(
        &self,
        py: Python<'_>,
        arr: &Bound<'_, PyAny>,
        sock: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let buf = Buffer::get(arr, true, "recv_into")?;
        let s = Sock::of(sock)?;
        let raw = buf.raw();
        self.run(py, s.timeout, move |e| {
            // SAFETY: `buf` stays exported (writable) until this method returns.
            e.recv_into(&s.fd.as_fd(), unsafe { bytes_mut(raw) })
        })
    }

    /// Framed send of a buffer's bytes with the dtype string, shape (elements) and order
    /// ('C'/'F') the Python wrapper read from the numpy array, in stream format `format`
    /// (`"rgxf"`: ringxfer's frame with its CRC-32; `"npy"`: numpy's `.npy` stream, no
    /// checksum).
    #[pyo3(signature = (sock, arr, dtype, shape, order, format = "rgxf"))]
    #[allow(clippy::too_many_arguments)]
    fn _send_array(
        &self,
        py: Python<'_>,
        sock: &Bound<'_, PyAny>,
        arr: &Bound<'_, PyAny>,
        dtype: &str,
        shape: Vec<u64>,
        order: &str,
        format: &str,
    ) -> PyResult<()> {
        let (dt, order) = frame_args(dtype, order)?;
        let format: WireFormat = format
            .parse()
            .map_err(|e: ringxfer::dtype::UnknownName| PyValueError::new_err(e.to_string()))?;
        let buf = Buffer::get(arr, false, "send_array")?;
        let s = Sock::of(sock)?;
        let raw = buf.raw();
        self.run(py, s.timeout, move |e| {
            let view = ArrayView {
                dtype: dt,
                // SAFETY: `buf` stays exported until this method returns.
                bytes: unsafe { bytes(raw) },
                shape: &shape,
                order,
            };
            e.send_view(&s.fd.as_fd(), view, format)
        })
    }

    /// A numpy array of `dtype`, `shape`, `order` in the engine's receive memory (recycled
    /// pages of dropped arrays when one fits); contents unspecified, like `numpy.empty`.
    fn _empty<'py>(
        &self,
        py: Python<'py>,
        shape: Vec<u64>,
        dtype: &str,
        order: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (dt, order) = frame_args(dtype, order)?;
        let any = self.run(py, None, move |e| e.empty_array(dt, &shape, order))?;
        to_ndarray(py, any)
    }

    /// Receives one array, RGXF or `.npy` (told apart by the first byte): a numpy array over
    /// the received memory (no copy).
    fn recv_array<'py>(
        &self,
        py: Python<'py>,
        sock: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let s = Sock::of(sock)?;
        let any = self.run(py, s.timeout, move |e| e.recv_any(&s.fd.as_fd()))?;
        to_ndarray(py, any)
    }

    fn send_striped(
        &self,
        py: Python<'_>,
        socks: &Bound<'_, PyAny>,
        arr: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let socks = Sock::all(socks)?;
        self.check_streams(socks.len())?;
        let buf = Buffer::get(arr, false, "send_striped")?;
        let raw = buf.raw();
        self.run(py, socket_timeout(&socks), move |e| {
            let fds: Vec<BorrowedFd<'_>> = socks.iter().map(|s| s.fd.as_fd()).collect();
            // SAFETY: `buf` stays exported until this method returns.
            e.send_striped(&fds, unsafe { bytes(raw) })
        })
    }

    fn recv_striped(
        &self,
        py: Python<'_>,
        socks: &Bound<'_, PyAny>,
        out: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let socks = Sock::all(socks)?;
        self.check_streams(socks.len())?;
        let buf = Buffer::get(out, true, "recv_striped")?;
        let raw = buf.raw();
        self.run(py, socket_timeout(&socks), move |e| {
            let fds: Vec<BorrowedFd<'_>> = socks.iter().map(|s| s.fd.as_fd()).collect();
            // SAFETY: `buf` stays exported (writable) until this method returns.
            e.recv_striped(&fds, unsafe { bytes_mut(raw) })
        })
    }

    /// Framed striped send (see `_send_array`).
    #[allow(clippy::too_many_arguments)]
    fn _send_array_striped(
        &self,
        py: Python<'_>,
        socks: &Bound<'_, PyAny>,
        arr: &Bound<'_, PyAny>,
        dtype: &str,
        shape: Vec<u64>,
        order: &str,
    ) -> PyResult<()> {
        let (dt, order) = frame_args(dtype, order)?;
        let socks = Sock::all(socks)?;
        self.check_streams(socks.len())?;
        let buf = Buffer::get(arr, false, "send_array_striped")?;
        let raw = buf.raw();
        self.run(py, socket_timeout(&socks), move |e| {
            let fds: Vec<BorrowedFd<'_>> = socks.iter().map(|s| s.fd.as_fd()).collect();
            // SAFETY: `buf` stays exported until this method returns.
            e.send_array_striped(&fds, dt, unsafe { bytes(raw) }, &shape, order)
        })
    }

    /// Receives one framed array striped over `socks` (any order of the streams).
    fn recv_array_striped<'py>(
        &self,
        py: Python<'py>,
        socks: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let socks = Sock::all(socks)?;
        self.check_streams(socks.len())?;
        let any = self.run(py, socket_timeout(&socks), move |e| {
            let fds: Vec<BorrowedFd<'_>> = socks.iter().map(|s| s.fd.as_fd()).collect();
            e.recv_any_striped(&fds)
        })?;
        to_ndarray(py, any)
    }
}

// ---------------------------------------------------------------------------------------------
// Received arrays
// ---------------------------------------------------------------------------------------------

/// Owns a received array's memory; the base object of the numpy array over it. Dropped with
/// the last numpy view, which returns a large mapping to the library's recycling pool.
#[pyclass(module = "ringxfer._ringxfer", name = "_Payload")]
struct Payload {
    _data: AnyArray,
}

/// A numpy array of `any`'s dtype, shape and order over its memory, without a copy.
fn to_ndarray<'py>(py: Python<'py>, mut any: AnyArray) -> PyResult<Bound<'py, PyAny>> {
    let descr = PyArrayDescr::new(py, any.dtype().to_string())?;
    let mut dims: Vec<npyffi::npy_intp> = any
        .shape()
        .iter()
        .map(|&d| npyffi::npy_intp::try_from(d))
        .collect::<Result<_, _>>()
        .map_err(|_| PyValueError::new_err("a dimension does not fit numpy's npy_intp"))?;
    let nd =
        c_int::try_from(dims.len()).map_err(|_| PyValueError::new_err("too many dimensions"))?;
    let flags = NPY_ARRAY_WRITEABLE
        | match any.order() {
            Order::F => NPY_ARRAY_F_CONTIGUOUS,
            _ => 0,
        };
    // The memory is a heap block or a mapping owned by `any`: moving `any` into the owner
    // below does not move it.
    let data = any.bytes_mut().as_mut_ptr().cast::<c_void>();
    let owner = Bound::new(py, Payload { _data: any })?;
    // SAFETY: numpy's C API with the GIL held. `descr` is a new reference stolen by
    // PyArray_NewFromDescr; `dims` outlives the call; `data` points to
    // `product(dims) * itemsize` bytes (the library checked the payload length against the
    // header), 8-byte aligned at least, kept alive by `owner`, which becomes the array's base
    // object (PyArray_SetBaseObject steals that reference, also on failure).
    unsafe {
        let subtype = PY_ARRAY_API.get_type_object(py, NpyTypes::PyArray_Type);
        let arr = PY_ARRAY_API.PyArray_NewFromDescr(
            py,
            subtype,
            descr.into_dtype_ptr(),
            nd,
            dims.as_mut_ptr(),
            std::ptr::null_mut(),
            data,
            flags,
            std::ptr::null_mut(),
        );
        let arr = Bound::from_owned_ptr_or_err(py, arr)?;
        if PY_ARRAY_API.PyArray_SetBaseObject(py, arr.as_ptr().cast(), owner.into_ptr()) < 0 {
            return Err(PyErr::fetch(py));
        }
        Ok(arr)
    }
}

/// The io_uring probe of this process: `(available, reason)`.
#[pyfunction]
fn probe() -> (bool, Option<String>) {
    let p = ringxfer::probe();
    (p.available, p.reason.clone())
}

#[pymodule]
fn _ringxfer(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyEngine>()?;
    m.add_class::<Payload>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(probe, m)?)?;
    m.add(
        "INTERRUPT_POLL_SECONDS",
        ringxfer::INTERRUPT_POLL.as_secs_f64(),
    )?;
    m.add("DEFAULT_MAX_PAYLOAD", ringxfer::DEFAULT_MAX_PAYLOAD_BYTES)?;
    Ok(())
}
