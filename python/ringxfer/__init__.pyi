# Type stubs of the ringxfer Python package (docstrings: __init__.py, _errors.py).
# Sizes are bytes unless a name says elements; timeouts are seconds.
from typing import Any, Literal, Optional, Protocol, Sequence, Tuple, Union

import numpy

from ._errors import (
    BackendUnavailable as BackendUnavailable,
    Error as Error,
    FrameError as FrameError,
    NotStreamError as NotStreamError,
    TimedOut as TimedOut,
    TransferOSError as TransferOSError,
    UnexpectedEOF as UnexpectedEOF,
)

class _HasFileno(Protocol):
    def fileno(self) -> int: ...

# Anything with the buffer protocol (numpy.ndarray, bytes, bytearray, memoryview, array.array).
_Buffer = Any
_Sock = _HasFileno
_Backend = Literal["auto", "uring", "blocking"]
_Format = Literal["rgxf", "npy"]

__version__: str
#: Longest a running transfer goes without looking for Ctrl-C (0.1 s).
INTERRUPT_POLL_SECONDS: float
#: Default Engine(max_payload=...): 8 GiB (8 * 2**30 bytes).
DEFAULT_MAX_PAYLOAD: int
FORMATS: Tuple[str, ...]

def probe() -> Tuple[bool, Optional[str]]:
    """Whether io_uring works in this process, and why not."""

class Engine:
    def __init__(
        self,
        backend: _Backend = "auto",
        idle_timeout: Optional[float] = None,
        max_payload: Optional[int] = None,
        streams: Optional[int] = None,
    ) -> None: ...
    @property
    def backend(self) -> Literal["uring", "blocking"]: ...
    @property
    def fallback_reason(self) -> Optional[str]: ...
    @property
    def idle_timeout(self) -> Optional[float]: ...
    @property
    def max_payload(self) -> int: ...
    @property
    def streams(self) -> Optional[int]: ...
    def send_from(self, arr: _Buffer, sock: _Sock) -> None: ...
    def recv_into(self, arr: _Buffer, sock: _Sock) -> None: ...
    def send_array(self, sock: _Sock, a: Any, format: _Format = "rgxf") -> None: ...
    def recv_array(self, sock: _Sock) -> numpy.ndarray: ...
    # An instance method: ringxfer.Engine().empty(n) / eng.empty(n); ringxfer.empty(n) below is
    # the same on this thread's default engine.
    def empty(
        self, shape: Union[int, Sequence[int]], dtype: Any = ..., order: Literal["C", "F"] = "C"
    ) -> numpy.ndarray: ...
    def send_striped(self, socks: Sequence[_Sock], arr: _Buffer) -> None: ...
    def recv_striped(self, socks: Sequence[_Sock], out: _Buffer) -> None: ...
    def send_array_striped(self, socks: Sequence[_Sock], a: Any) -> None: ...
    def recv_array_striped(self, socks: Sequence[_Sock]) -> numpy.ndarray: ...

def send_from(arr: _Buffer, sock: _Sock) -> None: ...
def recv_into(arr: _Buffer, sock: _Sock) -> None: ...
def send_array(sock: _Sock, a: Any, format: _Format = "rgxf") -> None: ...
def recv_array(sock: _Sock) -> numpy.ndarray: ...
# ringxfer.empty(n): Engine.empty on this thread's default engine.
def empty(
    shape: Union[int, Sequence[int]], dtype: Any = ..., order: Literal["C", "F"] = "C"
) -> numpy.ndarray: ...
