"""The exceptions ringxfer raises, and how a Rust error becomes one.

Hierarchy (every class below also derives from the built-in named beside it, so code written
for the recipe's socket errors keeps working)::

    Exception
    └── ringxfer.Error                       .kind, .transferred, .expected, .stream
        ├── UnexpectedEOF     (ConnectionError)   the peer closed before the whole array moved
        ├── TransferOSError   (OSError)           an OS error; .errno is the errno. For errnos
        │                                         Python maps to a subclass it also derives from
        │                                         that one: EPIPE → BrokenPipeError, ECONNRESET →
        │                                         ConnectionResetError, …
        ├── TimedOut          (TimeoutError)      no byte moved for the idle timeout; .timeout
        │                                         (seconds), .aborted (True when the connection
        │                                         had to be reset to free pages held by SEND_ZC)
        ├── FrameError        (ValueError)        a framed message was rejected (bad header,
        │                                         checksum, max_payload, …)
        ├── NotStreamError    (TypeError)         the socket is not SOCK_STREAM (UDP, …)
        └── BackendUnavailable (RuntimeError)     backend="uring" where io_uring is refused

``KeyboardInterrupt`` (Ctrl-C) during a transfer is raised as Python raises it, with
``.transferred`` and ``.expected`` set on it; so is any other exception a signal handler
raises. Argument errors are plain ``ValueError``/``TypeError``/``BufferError``; receive
memory that cannot be mapped (``empty`` or ``recv_array`` of an array larger than the machine
can hold) is a plain ``MemoryError``, as ``numpy.empty`` raises.

Counts are bytes, never elements: ``.transferred`` bytes at the start of the array moved
(confirmed in order), of ``.expected``. In a striped call they are the failing stream's own
(of its stripe) and ``.stream`` is that stream's index in the list of sockets; elsewhere
``.stream`` is None. ``.transferred``/``.expected`` are None for errors outside a transfer.
"""

from __future__ import annotations

import errno as _errno

__all__ = [
    "Error",
    "UnexpectedEOF",
    "TransferOSError",
    "TimedOut",
    "FrameError",
    "NotStreamError",
    "BackendUnavailable",
]


class Error(Exception):
    """Base class of ringxfer's exceptions.

    Attributes: ``kind`` (a stable snake-case name such as ``"unexpected_eof"``,
    ``"timed_out"``, ``"connection_reset"``, ``"bad_magic"``), ``transferred`` and
    ``expected`` (bytes, or None), ``stream`` (index of the failing stream in a striped
    call, else None).
    """

    kind: str = "error"
    transferred: "int | None" = None
    expected: "int | None" = None
    stream: "int | None" = None


class UnexpectedEOF(Error, ConnectionError):
    """The peer closed the connection before the whole array arrived.

    The first ``transferred`` bytes of the array are valid, of ``expected``.
    """


class TransferOSError(Error, OSError):
    """An operating-system error during a transfer; ``errno`` is the errno (``EPIPE``,
    ``ECONNRESET``, …) and the instance is also an instance of the built-in subclass Python
    maps that errno to (``BrokenPipeError``, ``ConnectionResetError``, …)."""


class TimedOut(Error, TimeoutError):
    """No byte moved for the idle timeout (``timeout``, seconds): the engine's
    ``idle_timeout``, or else the socket's ``settimeout()`` value.

    ``aborted`` is True when the connection was reset to make the kernel release pages of
    the array a zero-copy send still held (the socket is then unusable); False otherwise.
    """

    timeout: "float | None" = None
    aborted: bool = False


class FrameError(Error, ValueError):
    """A framed message was rejected: bad magic or header, unsupported dtype, payload over
    ``max_payload``, checksum mismatch, …  ``kind`` names which (``"bad_magic"``,
    ``"too_large"``, ``"payload_checksum"``, …; a rejected ``.npy`` header's kind starts with
    ``npy_``: ``"npy_header_too_long"``, ``"npy_unknown_key"``, ``"npy_shape_overflow"``,
    ``"npy_unsupported_dtype"``, …, except a payload over ``max_payload``, which is
    ``"too_large"`` in both formats). Unless ``kind`` is ``"payload_checksum"`` or
    ``"dtype_mismatch"`` the connection is out of step afterwards: close it."""


class NotStreamError(Error, TypeError):
    """The socket is not a stream socket (``SOCK_STREAM``): a UDP or ``SOCK_SEQPACKET``
    socket would silently drop what does not fit one datagram."""


class BackendUnavailable(Error, RuntimeError):
    """``backend="uring"`` was asked for but io_uring cannot be used here (seccomp,
    ``kernel.io_uring_disabled``, an old kernel); the message says why."""


_os_classes: "dict[type, type]" = {}


def _os_error_class(code: "int | None") -> type:
    """``TransferOSError``, combined with the built-in ``OSError`` subclass of ``code``."""
    if code is None:
        return TransferOSError
    builtin = type(OSError(code, ""))
    if builtin is OSError:
        return TransferOSError
    cls = _os_classes.get(builtin)
    if cls is None:
        cls = type(builtin.__name__, (TransferOSError, builtin), {"__module__": __name__})
        _os_classes[builtin] = cls
    return cls


def _from_rust(category, kind, message, code, timeout_ms):
    """The exception for a ringxfer error (called by the native module)."""
    if category == "eof":
        exc = UnexpectedEOF(message)
    elif category == "os":
        exc = _os_error_class(code)(code if code is not None else _errno.EIO, message)
    elif category == "timeout":
        exc = TimedOut(message)
        exc.timeout = None if timeout_ms is None else timeout_ms / 1000.0
        exc.aborted = kind == "timed_out_aborted"
    elif category == "frame":
        exc = FrameError(message)
    elif category == "not_stream":
        exc = NotStreamError(message)
    elif category == "invalid":
        return ValueError(message)
    elif category == "unavailable":
        exc = BackendUnavailable(message)
    elif category == "interrupted":
        return KeyboardInterrupt(message)
    elif category == "memory":
        # The receive memory could not be mapped (an array too large for this machine):
        # what numpy.empty raises for the same request.
        return MemoryError(message)
    else:
        exc = Error(message)
    exc.kind = kind
    return exc


def _annotate(exc, transferred, expected, stream):
    """Sets the byte counts (and the stream index) on ``exc``."""
    exc.transferred = transferred
    exc.expected = expected
    exc.stream = stream
