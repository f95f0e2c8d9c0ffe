"""ringxfer: numpy arrays through stream sockets without a user-space copy.

The recipe this package replaces moves an array with a ``memoryview`` loop::

    def send_from(arr, sock):                    def recv_into(arr, sock):
        view = memoryview(arr).cast('B')             view = memoryview(arr).cast('B')
        while len(view):                             while len(view):
            nsent = sock.send(view)                      nrecv = sock.recv_into(view)
            view = view[nsent:]                          view = view[nrecv:]

``ringxfer.send_from(arr, sock)`` and ``ringxfer.recv_into(arr, sock)`` take the same
arguments and move the same bytes (so either end may still run the recipe), on ringxfer's
engine: io_uring link chains where the kernel allows it, a blocking loop otherwise (the
``"auto"`` backend; the environment variable ``RINGXFER_BACKEND=blocking|uring|auto``
overrides it). The GIL is released for the whole transfer; Ctrl-C interrupts it within about
100 ms.

``send_array(sock, a)`` / ``recv_array(sock)`` carry dtype, shape and C/F order with the data
(ringxfer's RGXF frame, docs/PROTOCOL.md), so the receiver needs no prior knowledge. numpy's
own ``.npy`` stream works on the wire too, so a peer needs no ringxfer code:
``send_array(sock, a, format="npy")`` writes what ``numpy.save`` writes (read it with
``numpy.lib.format.read_array(sock.makefile('rb', buffering=0))``), and ``recv_array`` takes
either format, told apart by the first byte (``numpy.save(w, a)`` with a ``w`` whose
``write(b)`` calls ``sock.sendall(b)``; ``numpy.save``/``numpy.load`` on a buffered
``sock.makefile()`` fail: a socket is not seekable). **No checksum travels in ``.npy``**:
corrupted bytes go undetected, where RGXF's CRC-32 would raise ``FrameError``.

Sizes are bytes unless a name says elements; timeouts are seconds. Exceptions: see
``ringxfer._errors`` (``ringxfer.Error`` and its subclasses; ``KeyboardInterrupt`` with byte
counts).

Sockets: a connected stream socket object (TCP or Unix), or anything with ``fileno()``. Its
Python timeout (``settimeout(t)``) becomes the idle timeout — the call fails with
``TimedOut`` when no byte moves for ``t`` seconds, however long the whole transfer takes — and
a non-blocking socket (``setblocking(False)``) works as a blocking one for the call (its mode
is restored afterwards). The socket is not closed on any error.
"""

# The modules this file uses are imported under private names, so that ``dir(ringxfer)``
# shows the public API only (the names of ``__all__``; tests/test_namespace.py).
import os as _os
import threading as _threading

import numpy as _numpy

from ._errors import (
    BackendUnavailable,
    Error,
    FrameError,
    NotStreamError,
    TimedOut,
    TransferOSError,
    UnexpectedEOF,
)
from ._ringxfer import DEFAULT_MAX_PAYLOAD, INTERRUPT_POLL_SECONDS, _Engine, __version__, probe

__all__ = [
    "Engine",
    "send_from",
    "recv_into",
    "send_array",
    "recv_array",
    "empty",
    "probe",
    "FORMATS",
    "DEFAULT_MAX_PAYLOAD",
    "INTERRUPT_POLL_SECONDS",
    "Error",
    "UnexpectedEOF",
    "TransferOSError",
    "TimedOut",
    "FrameError",
    "NotStreamError",
    "BackendUnavailable",
    "__version__",
]

#: Wire formats ``send_array`` can emit (``recv_array`` takes both). ``"rgxf"``: ringxfer's
#: frame (header with dtype, shape and order, payload, CRC-32 trailer; the receiver checks the
#: CRC). ``"npy"``: numpy's ``.npy`` stream (format version 1.0, or 2.0 for a header over
#: 64 KiB; numpy's ``numpy.lib.format`` documentation, NEP 1): header then payload, **no
#: checksum**.
FORMATS = ("rgxf", "npy")


def _framed(a, format):
    """``a`` as a C- or F-contiguous ndarray with its dtype string, shape and order."""
    if format not in FORMATS:
        raise ValueError(
            "format must be one of %s, not %r"
            % (", ".join(repr(f) for f in FORMATS), format)
        )
    a = _numpy.asarray(a)
    if a.flags.c_contiguous:
        order = "C"
    elif a.flags.f_contiguous:
        order = "F"
    else:
        a = _numpy.ascontiguousarray(a)
        order = "C"
    if a.dtype.fields is not None or a.dtype.hasobject or a.dtype.subdtype is not None:
        raise ValueError("dtype %s is not carried by the frame format" % a.dtype)
    return a, a.dtype.str, tuple(int(n) for n in a.shape), order


class Engine(_Engine):
    """A transfer engine: one io_uring instance (or the blocking loop) reused across calls.

    ``Engine(backend="auto", idle_timeout=None, max_payload=None, streams=None)``

    * ``backend``: ``"auto"`` (io_uring when the kernel allows it, else blocking;
      ``RINGXFER_BACKEND`` overrides it), ``"uring"`` (``BackendUnavailable`` if refused) or
      ``"blocking"``.
    * ``idle_timeout``: seconds without a byte moving before a call fails with ``TimedOut``;
      ``None`` (default) uses each socket's own ``gettimeout()`` (``None``: wait forever).
    * ``max_payload``: largest array ``recv_array`` accepts, in bytes (RGXF or ``.npy``),
      checked against the header before anything is allocated (default
      ``DEFAULT_MAX_PAYLOAD``, 8 GiB); a larger one raises ``FrameError`` (kind
      ``"too_large"``).
    * ``streams``: the number of sockets striped calls must be given (``None``: any number);
      both ends must use the same count and order of streams.

    Properties ``backend`` (``"uring"``/``"blocking"``), ``fallback_reason`` (why ``"auto"``
    ended on blocking, else ``None``), ``idle_timeout``, ``max_payload``, ``streams``.

    One call at a time: a second thread using the same engine waits for the first call
    (without holding the GIL). The module-level functions use one engine per thread.
    """

    def send_from(self, arr, sock):
        """Sends every byte of ``arr`` (any C- or F-contiguous buffer: numpy array of any
        dtype, ``bytes``, ``bytearray``, ``memoryview``, ``array.array``) on ``sock``, in
        memory order. Returns once the kernel has accepted them all.

        Raises ``TypeError`` for an object without the buffer protocol (a ``str``, an
        ``int``), ``BufferError`` for a non-contiguous buffer, ``NotStreamError`` (a
        ``TypeError``) for a non-stream socket, ``TransferOSError`` (``BrokenPipeError``,
        ``ConnectionResetError``, …), ``TimedOut``; counts in bytes on the exception.
        """
        return _Engine.send_from(self, arr, sock)

    def recv_into(self, arr, sock):
        """Fills every byte of ``arr`` (a writable C- or F-contiguous buffer) from ``sock``.

        Raises ``TypeError`` for an object without the buffer protocol, ``BufferError``
        for a read-only or non-contiguous buffer, ``UnexpectedEOF``
        when the peer closes first (the first ``.transferred`` bytes are valid), and as
        ``send_from``.
        """
        return _Engine.recv_into(self, arr, sock)

    def send_array(self, sock, a, format="rgxf"):
        """Sends numpy array ``a`` as one message: dtype (any numeric numpy dtype the
        frame carries: ``f8 f4 f2 i8 i4 i2 i1 u8 u4 u2 u1 c8 c16 b1``, either byte order),
        shape and C/F order travel with the data. A C- or F-contiguous array is sent from its
        own memory; any other (a strided view) is sent as ``numpy.ascontiguousarray(a)``
        makes it — one copy, C order.

        ``format``: ``"rgxf"`` (default; ringxfer's frame, payload CRC-32 checked by the
        receiver) or ``"npy"`` (numpy's ``.npy`` stream, byte for byte what ``numpy.save``
        writes: any reader of the format takes it, e.g.
        ``numpy.lib.format.read_array(sock.makefile('rb', buffering=0))``; **no checksum
        travels**). ``ValueError`` for another format or a dtype the frame cannot carry;
        errors as ``send_from``.
        """
        a, dtype, shape, order = _framed(a, format)
        self._send_array(sock, a, dtype, shape, order, format)

    def recv_array(self, sock):
        """Receives one array and returns it as a new numpy array with the sender's dtype
        (byte order included), shape and order, received straight into the array's own
        memory (large arrays reuse the pages of dropped ones).

        The message may be an RGXF frame (``send_array``) or numpy's ``.npy`` stream
        (``send_array(..., format="npy")``, ``numpy.save``; format versions 1.0–3.0), told
        apart by its first byte; messages of both formats may follow each other on one
        connection. A ``.npy`` header is read in bounded steps (at most 64 KiB) and checked
        against ``max_payload`` before anything is allocated; its payload carries no checksum,
        so nothing verifies its bytes.

        Raises ``FrameError`` for a bad or too large message (``max_payload``; ``.kind`` says
        which: ``"bad_magic"``, ``"too_large"``, ``"npy_unknown_key"``,
        ``"npy_header_too_long"``, ``"npy_unsupported_dtype"``, … — a ``.npy`` rejection's
        kind starts with ``npy_``), ``UnexpectedEOF`` when the stream ends inside one
        (``transferred == 0`` with ``expected == 32``: the peer closed cleanly between
        messages; inside a ``.npy`` header ``expected`` counts the header's bytes), and as
        ``recv_into``.
        """
        return _Engine.recv_array(self, sock)

    def empty(self, shape, dtype=_numpy.float64, order="C"):
        """An instance method: ``ringxfer.Engine().empty(n)``, or ``eng.empty(n)`` on an engine
        you keep (``ringxfer.empty(n)`` is the same on this thread's default engine).

        A new numpy array of ``shape`` (elements per dimension; an int for 1-D),
        ``dtype`` (any dtype ``send_array`` carries) and ``order`` (``"C"`` or ``"F"``),
        whose memory is the engine's receive memory: the pages of a dropped array of about
        the same size when the engine holds one (the recycling ``recv_array`` uses), else
        fresh ones. Contents are **unspecified**, as ``numpy.empty``'s.

        What it is for: a receive into a new array per message. ``recv_into(numpy.zeros(n),
        sock)`` pays a page fault (and the kernel's zeroing) per page of the new array while
        the bytes arrive; ``recv_into(engine.empty(n), sock)`` receives into pages already
        present once an earlier array of that size was dropped (its memory returns to the
        engine when the last numpy reference to it goes). Arrays under 1 MiB live on the
        heap and are not recycled. ``ValueError`` for a dtype the frame cannot carry, an
        order other than ``"C"``/``"F"`` or a shape whose byte size overflows.
        """
        if isinstance(shape, int):
            shape = (shape,)
        dt = _numpy.dtype(dtype)
        if dt.fields is not None or dt.hasobject or dt.subdtype is not None:
            raise ValueError("dtype %s is not carried by the frame format" % dt)
        shape = tuple(int(n) for n in shape)
        if any(n < 0 for n in shape):
            raise ValueError("negative dimensions are not allowed: %r" % (shape,))
        return self._empty(list(shape), dt.str, order)

    def send_striped(self, socks, arr):
        """Sends ``arr`` striped over the sockets ``socks``, all at once: stream ``i`` carries
        the ``i``-th contiguous stripe (multiples of 4096 bytes; see the library's
        ``stripe`` module). The receiver calls ``recv_striped`` with its ends in the same
        order. Errors as ``send_from``, with ``.stream`` the failing stream's index."""
        return _Engine.send_striped(self, socks, arr)

    def recv_striped(self, socks, out):
        """Fills ``out`` from an array striped over ``socks`` (see ``send_striped``), each
        stripe written in place. Errors as ``recv_into``, with ``.stream``."""
        return _Engine.recv_striped(self, socks, out)

    def send_array_striped(self, socks, a):
        """``send_array`` striped over ``socks``: each stream carries a stripe prefix,
        stream 0 also the header; ``recv_array_striped`` takes the streams in any order."""
        a, dtype, shape, order = _framed(a, "rgxf")
        self._send_array_striped(socks, a, dtype, shape, order)

    def recv_array_striped(self, socks):
        """Receives one array sent by ``send_array_striped`` over ``socks``."""
        return _Engine.recv_array_striped(self, socks)


_local = _threading.local()


def _engine():
    """This thread's default engine (rebuilt when ``RINGXFER_BACKEND`` changes)."""
    key = _os.environ.get("RINGXFER_BACKEND")
    cache = getattr(_local, "engines", None)
    if cache is None:
        cache = _local.engines = {}
    e = cache.get(key)
    if e is None:
        e = cache[key] = Engine()
    return e


def send_from(arr, sock):
    """``Engine().send_from(arr, sock)`` on this thread's default engine (backend
    ``"auto"``, idle timeout from the socket): sends every byte of ``arr``."""
    _engine().send_from(arr, sock)


def recv_into(arr, sock):
    """Fills every byte of ``arr`` from ``sock`` (see ``Engine.recv_into``)."""
    _engine().recv_into(arr, sock)


def send_array(sock, a, format="rgxf"):
    """Sends numpy array ``a`` as one message, ``format`` ``"rgxf"`` (default) or ``"npy"``
    (see ``Engine.send_array``)."""
    _engine().send_array(sock, a, format)


def empty(shape, dtype=_numpy.float64, order="C"):
    """A new array in this thread's default engine's receive memory, recycled pages when
    it holds some (the instance method ``Engine.empty`` on that engine; on an engine of
    your own: ``eng = ringxfer.Engine(); out = eng.empty(n)``): ``out = ringxfer.empty(n); recv_into(out, sock)``
    is the recipe's fresh-array receive without the page faults of ``numpy.zeros``."""
    return _engine().empty(shape, dtype, order)


def recv_array(sock):
    """Receives one array, RGXF or ``.npy``, as a new numpy array (see
    ``Engine.recv_array``)."""
    return _engine().recv_array(sock)
