from typing import Optional

class Error(Exception):
    kind: str
    transferred: Optional[int]
    expected: Optional[int]
    stream: Optional[int]

class UnexpectedEOF(Error, ConnectionError): ...
class TransferOSError(Error, OSError): ...

class TimedOut(Error, TimeoutError):
    timeout: Optional[float]
    aborted: bool

class FrameError(Error, ValueError): ...
class NotStreamError(Error, TypeError): ...
class BackendUnavailable(Error, RuntimeError): ...
