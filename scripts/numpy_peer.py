#!/usr/bin/env python3
"""Reference peer for ringxfer's framed-array wire format, version 1 (docs/PROTOCOL.md).

Only numpy and the Python standard library. Two roles, each able to listen or connect:

  numpy_peer.py send --connect HOST:PORT --dtype '<f8' --shape 20,10,5 --order F [--arrays N]
  numpy_peer.py recv --listen HOST:PORT [--expect-dtype '<f8' --expect-shape 20,10,5
                     --expect-order F] [--arrays N] [--json]

With --listen the first line on stdout is always "listening HOST:PORT" with the port actually
bound, so a caller can pass port 0 and read the port back without a race.

The pattern (--pattern arange, the only one): the sender builds
    a = np.arange(n).astype(dtype).reshape(shape, order=order)      # n = prod(shape)
and sends a.tobytes(order=order), so the PAYLOAD BYTES are always np.arange(n).astype(dtype) in
memory order, whatever the order -- the same bytes ringxfer's `dtype::fill_arange` writes. The
receiver rebuilds np.frombuffer(payload, dtype).reshape(shape, order=order) and checks that
array's bytes in memory order against that pattern (so for order F, a[i, j, k] holds
i + j*shape[0] + k*shape[0]*shape[1]).

Shapes are comma-separated element counts: "20,10,5"; "0" is an empty 1-d array, "3,0,2" an
empty 3-d one; "" or "()" is a 0-d array (one element). --dtype, --shape and --order may be
repeated: message k uses entry k mod len of each list (a single entry applies to all), and
--arrays N (default: the longest list) sends N messages on one connection. The receiver's
--expect-* options are matched the same way; without --arrays it reads until the peer closes
cleanly between two messages.

recv prints one line per array (JSON with --json): dtype, shape, order, bytes, seconds,
gbytes_per_s, verified, and error when something did not match.

Exit status: 0 all good; 1 an array arrived intact but failed a check (pattern, expectation,
payload CRC); 2 usage error; 3 a protocol error (bad magic, version, header length, dtype,
order, flags, header CRC, lengths, limit, trailer: the stream is out of sync and is closed);
4 a connection error (refused, reset, timeout, or the stream ended inside a message).
"""

from __future__ import annotations

import argparse
import json
import math
import socket
import struct
import sys
import time
import zlib

import numpy as np

MAGIC = b"RGXF"
END_MAGIC = b"RGXE"
VERSION = 1
PREFIX_LEN = 32
TRAILER_LEN = 8
MAX_NDIM = 32
FLAG_PAYLOAD_CRC32 = 1
DEFAULT_MAX_PAYLOAD_BYTES = 8 << 30
# Fixed prefix: magic, version, header_len, dtype, order, ndim, flags, reserved, payload_len.
PREFIX = struct.Struct("<4sHH8sBBHIQ")
# Elements per step when building or checking the pattern: bounds the extra memory.
CHUNK_ELEMS = 1 << 20
# Kinds that have a fixed-size binary element (no objects, strings, datetimes, voids).
KINDS = "biufc"

EXIT_MISMATCH, EXIT_USAGE, EXIT_PROTOCOL, EXIT_CONNECTION = 1, 2, 3, 4


class ProtocolError(Exception):
    """A framed message was rejected; `kind` is the FrameError variant name of the Rust side."""

    def __init__(self, kind: str, detail: str):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


class ConnectionEnded(Exception):
    """The stream ended inside a message (ringxfer's UnexpectedEof)."""

    def __init__(self, transferred: int, expected: int, what: str):
        super().__init__(
            f"peer closed the connection after {transferred} of {expected} bytes of the {what}"
        )
        self.transferred = transferred


# --------------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------------


def encode_header(dtype: np.dtype, shape: tuple[int, ...], order: str, payload_len: int) -> bytes:
    """The header of docs/PROTOCOL.md for an array of dtype/shape/order."""
    s = dtype.str.encode("ascii")
    if len(s) > 8:
        raise ValueError(f"dtype string {dtype.str!r} does not fit 8 bytes")
    if len(shape) > MAX_NDIM:
        raise ValueError(f"ndim {len(shape)} exceeds {MAX_NDIM}")
    head = PREFIX.pack(
        MAGIC,
        VERSION,
        40 + 8 * len(shape),
        s,  # struct pads "8s" with NULs
        ord(order),
        len(shape),
        FLAG_PAYLOAD_CRC32,
        0,
        payload_len,
    )
    head += struct.pack(f"<{len(shape)}Q", *shape)
    return head + struct.pack("<II", zlib.crc32(head), 0)


def encode_trailer(payload_crc: int) -> bytes:
    return struct.pack("<I4s", payload_crc, END_MAGIC)


def payload_view(a: np.ndarray, order: str) -> memoryview:
    """The array's bytes in memory order `order`, without a copy when `a` is contiguous in that
    order (a non-contiguous array is copied first, never sent as it lies: case C03)."""
    flat = a.reshape(-1, order=order)  # a view when contiguous in `order`, else a copy
    flat = np.ascontiguousarray(flat)
    return memoryview(flat.view(np.uint8))


def send_parts(sock: socket.socket, parts: list) -> None:
    """Sends every byte of `parts` in order with sendmsg (one syscall for a small message),
    resuming after short sends from where the kernel stopped."""
    views = [memoryview(p).cast("B") for p in parts if len(p)]
    while views:
        sent = sock.sendmsg(views[:64])
        while sent:
            if sent >= len(views[0]):
                sent -= len(views[0])
                views.pop(0)
            else:
                views[0] = views[0][sent:]
                sent = 0


def arange_pattern(dtype: np.dtype, start: int, stop: int) -> np.ndarray:
    """Elements start..stop of np.arange(n).astype(dtype)."""
    return np.arange(start, stop, dtype=np.int64).astype(dtype)


def make_array(dtype: np.dtype, shape: tuple[int, ...], order: str) -> np.ndarray:
    n = math.prod(shape)
    return arange_pattern(dtype, 0, n).reshape(shape, order=order)


def send_array(sock: socket.socket, a: np.ndarray, order: str) -> int:
    """Frames and sends one array; returns the payload bytes."""
    payload = payload_view(a, order)
    head = encode_header(a.dtype, a.shape, order, payload.nbytes)
    trailer = encode_trailer(zlib.crc32(payload))
    send_parts(sock, [head, payload, trailer])
    return payload.nbytes


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------


def recv_into_exact(sock: socket.socket, buf: memoryview, what: str, before: int, whole: int):
    """Fills `buf` from the socket (the memoryview recipe: recv_into on a moving slice)."""
    got = 0
    n = len(buf)
    while got < n:
        k = sock.recv_into(buf[got:], n - got)
        if k == 0:
            raise ConnectionEnded(before + got, whole, what)
        got += k


def parse_dtype(raw: bytes) -> np.dtype:
    text_bytes = raw.rstrip(b"\0")
    if b"\0" in text_bytes:
        raise ProtocolError("UnknownDtype", f"{raw!r}: NUL inside the dtype string")
    try:
        text = text_bytes.decode("ascii")
        dt = np.dtype(text)
    except (UnicodeDecodeError, TypeError, ValueError) as e:
        raise ProtocolError("UnknownDtype", f"{raw!r}: {e}") from None
    # The field is numpy's dtype.str: explicit byte order, canonical spelling. Anything else
    # ("f8", "=f8", "float64") would mean "the receiver's native order" -- platform dependent.
    if dt.str != text or dt.kind not in KINDS:
        raise ProtocolError("UnknownDtype", f"{text!r} is not a numpy dtype.str of kind {KINDS}")
    return dt


def recv_header(sock: socket.socket, max_payload: int):
    """Reads and checks one header. Returns None on a clean close between messages."""
    prefix = bytearray(PREFIX_LEN)
    view = memoryview(prefix)
    got = 0
    while got < PREFIX_LEN:
        k = sock.recv_into(view[got:], PREFIX_LEN - got)
        if k == 0:
            if got == 0:
                return None
            raise ConnectionEnded(got, PREFIX_LEN, "header")
        got += k
    magic, version, header_len, raw_dtype, order, ndim, flags, reserved, payload_len = (
        PREFIX.unpack(prefix)
    )
    if magic != MAGIC:
        raise ProtocolError("BadMagic", f"{magic!r} (expected b'RGXF')")
    if version != VERSION:
        raise ProtocolError("UnsupportedVersion", f"{version} (this peer speaks {VERSION})")
    if ndim > MAX_NDIM:
        raise ProtocolError("TooManyDims", f"ndim {ndim} > {MAX_NDIM}")
    if header_len != 40 + 8 * ndim:
        raise ProtocolError("BadHeaderLen", f"header_len {header_len} with ndim {ndim}")
    # Checked before reading or allocating anything more.
    if payload_len > max_payload:
        raise ProtocolError("TooLarge", f"payload_len {payload_len} > limit {max_payload}")
    rest = bytearray(header_len - PREFIX_LEN)
    recv_into_exact(sock, memoryview(rest), "header", PREFIX_LEN, header_len + payload_len)
    head = bytes(prefix) + bytes(rest)
    crc_at = PREFIX_LEN + 8 * ndim
    header_crc, pad = struct.unpack_from("<II", head, crc_at)
    actual = zlib.crc32(head[:crc_at])
    if header_crc != actual:
        raise ProtocolError("HeaderChecksum", f"header says {header_crc:08x}, bytes give {actual:08x}")
    if flags & ~FLAG_PAYLOAD_CRC32 or reserved or pad:
        raise ProtocolError("UnsupportedFlags", f"flags {flags:#06x} reserved {reserved:#x} pad {pad:#x}")
    dtype = parse_dtype(raw_dtype)
    if order not in (ord("C"), ord("F")):
        raise ProtocolError("BadOrder", f"{order:#04x} (expected 'C' or 'F')")
    shape = struct.unpack_from(f"<{ndim}Q", head, PREFIX_LEN)
    # Overflow is judged on the non-zero dimensions, like numpy's own "array is too big" check,
    # so the verdict does not depend on where a zero dimension sits in the shape.
    if math.prod(d for d in shape if d) * dtype.itemsize >= 1 << 64:
        raise ProtocolError("ShapeOverflow", f"shape {shape} x itemsize {dtype.itemsize}")
    computed = math.prod(shape) * dtype.itemsize
    if computed != payload_len:
        raise ProtocolError("LengthMismatch", f"payload_len {payload_len} != {computed}")
    return dtype, chr(order), tuple(shape), payload_len, flags, header_len


def recv_array(sock: socket.socket, max_payload: int):
    """Receives one framed array. Returns (array, crc_ok, payload_crc_info) or None at a
    clean close between messages."""
    h = recv_header(sock, max_payload)
    if h is None:
        return None
    dtype, order, shape, payload_len, flags, header_len = h
    n = math.prod(shape)
    # Preallocated flat array; the payload goes straight into its memory.
    flat = np.empty(n, dtype=dtype)
    whole = header_len + payload_len + TRAILER_LEN
    recv_into_exact(sock, memoryview(flat.view(np.uint8)), "payload", header_len, whole)
    trailer = bytearray(TRAILER_LEN)
    recv_into_exact(sock, memoryview(trailer), "trailer", header_len + payload_len, whole)
    expected, end = struct.unpack("<I4s", trailer)
    if end != END_MAGIC:
        raise ProtocolError("BadTrailer", f"{end!r} (expected b'RGXE'): stream out of sync")
    crc_error = None
    if flags & FLAG_PAYLOAD_CRC32:
        actual = zlib.crc32(memoryview(flat.view(np.uint8)))
        if actual != expected:
            crc_error = f"PayloadChecksum: sender says {expected:08x}, received bytes give {actual:08x}"
    a = flat.reshape(shape, order=order)  # a view: no copy for either order
    return a, order, crc_error


def check_pattern(a: np.ndarray, order: str) -> str | None:
    """None when `a`'s bytes in memory order are np.arange(n).astype(dtype), else why not."""
    flat = a.reshape(-1, order=order)  # a view: `a` is contiguous in `order`
    b = flat.view(np.uint8)
    size = a.dtype.itemsize
    for start in range(0, flat.size, CHUNK_ELEMS):
        stop = min(start + CHUNK_ELEMS, flat.size)
        want = arange_pattern(a.dtype, start, stop).view(np.uint8)
        got = b[start * size : stop * size]
        if not np.array_equal(got, want):  # bytes, so -0.0 and NaN patterns count
            bad = int(np.flatnonzero(got != want)[0]) // size + start
            return f"element {bad} (memory order) is not the arange pattern"
    return None


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def parse_shape(s: str) -> tuple[int, ...]:
    s = s.strip()
    if s in ("", "()"):
        return ()
    try:
        dims = tuple(int(d) for d in s.strip("()").split(",") if d.strip() != "")
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad shape {s!r} (expected e.g. 20,10,5)") from None
    if any(d < 0 or d >= 1 << 64 for d in dims):
        raise argparse.ArgumentTypeError(f"bad shape {s!r}: dimensions are u64")
    return dims


def parse_dtype_arg(s: str) -> np.dtype:
    try:
        dt = np.dtype(s)
    except TypeError as e:
        raise argparse.ArgumentTypeError(f"bad dtype {s!r}: {e}") from None
    if dt.kind not in KINDS:
        raise argparse.ArgumentTypeError(f"dtype {s!r} is not of kind {KINDS}")
    return dt


def parse_order(s: str) -> str:
    if s.upper() not in ("C", "F"):
        raise argparse.ArgumentTypeError(f"order {s!r}: expected C or F")
    return s.upper()


def parse_addr(s: str) -> tuple[str, int]:
    host, sep, port = s.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"bad address {s!r} (expected HOST:PORT)")
    return host.strip("[]") or "127.0.0.1", int(port)


def pick(values: list, k: int, default=None):
    return values[k % len(values)] if values else default


def open_connection(args) -> socket.socket:
    """Connects to --connect, or listens on --listen (printing the bound port) and accepts one
    connection."""
    if args.connect:
        sock = socket.create_connection(args.connect, timeout=args.timeout)
    else:
        host, port = args.listen
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        lst = socket.socket(family, socket.SOCK_STREAM)
        lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lst.bind((host, port))
        lst.listen(1)
        bound = lst.getsockname()
        shown = f"[{bound[0]}]" if family == socket.AF_INET6 else bound[0]
        print(f"listening {shown}:{bound[1]}", flush=True)
        lst.settimeout(args.timeout)
        sock, _ = lst.accept()
        lst.close()
    sock.settimeout(args.timeout)  # an idle timeout per socket call, not for the whole array
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def cmd_send(args) -> int:
    dtypes = args.dtype or [np.dtype("<f8")]
    shapes = args.shape or [(1000,)]
    orders = args.order or ["C"]
    count = args.arrays if args.arrays is not None else max(len(dtypes), len(shapes), len(orders))
    sock = open_connection(args)
    built = {}
    with sock:
        for k in range(count):
            dt, shape, order = pick(dtypes, k), pick(shapes, k), pick(orders, k)
            key = (dt.str, shape, order)
            if key not in built:
                built = {key: make_array(dt, shape, order)}  # keep one: arrays can be big
            a = built[key]
            t0 = time.perf_counter()
            nbytes = send_array(sock, a, order)
            dt_s = time.perf_counter() - t0
            line = {
                "sent": k,
                "dtype": a.dtype.str,
                "shape": list(a.shape),
                "order": order,
                "bytes": nbytes,
                "seconds": round(dt_s, 6),
            }
            print(json.dumps(line) if args.json else
                  f"sent {a.dtype.str} shape {a.shape} order {order}: {nbytes} bytes", flush=True)
        sock.shutdown(socket.SHUT_WR)
        # Wait for the receiver to close, so all bytes are read before the process exits and
        # a receiver error (RST) is not lost.
        try:
            while sock.recv(1 << 16):
                pass
        except OSError:
            pass
    return 0


def cmd_recv(args) -> int:
    sock = open_connection(args)
    status = 0
    k = 0
    with sock:
        while args.arrays is None or k < args.arrays:
            t0 = time.perf_counter()
            got = recv_array(sock, args.max_payload_bytes)
            if got is None:
                if args.arrays is not None:
                    raise ConnectionEnded(0, PREFIX_LEN, f"header of array {k} of {args.arrays}")
                break
            a, order, crc_error = got
            seconds = time.perf_counter() - t0
            errors = [crc_error] if crc_error else []
            if args.pattern == "arange" and not crc_error:
                why = check_pattern(a, order)
                if why:
                    errors.append(why)
            for name, want, have in [
                ("dtype", pick(args.expect_dtype, k), a.dtype),
                ("shape", pick(args.expect_shape, k), a.shape),
                ("order", pick(args.expect_order, k), order),
            ]:
                if want is not None and want != have:
                    shown = want.str if isinstance(want, np.dtype) else want
                    errors.append(f"expected {name} {shown}, got {getattr(have, 'str', have)}")
            line = {
                "index": k,
                "dtype": a.dtype.str,
                "shape": list(a.shape),
                "order": order,
                "bytes": a.nbytes,
                "seconds": round(seconds, 6),
                "gbytes_per_s": round(a.nbytes / seconds / 1e9, 3) if seconds > 0 else None,
                "verified": not errors,
            }
            if errors:
                line["error"] = "; ".join(errors)
                status = EXIT_MISMATCH
            if args.json:
                print(json.dumps(line), flush=True)
            else:
                print(f"array {k}: {line['dtype']} shape {tuple(a.shape)} order {order} "
                      f"{a.nbytes} bytes {'verified' if not errors else 'FAILED: ' + line['error']}",
                      flush=True)
            k += 1
    return status


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="role", required=True)

    def common(sp):
        where = sp.add_mutually_exclusive_group(required=True)
        where.add_argument("--connect", type=parse_addr, metavar="HOST:PORT")
        where.add_argument("--listen", type=parse_addr, metavar="HOST:PORT",
                           help="port 0 picks one; 'listening HOST:PORT' is printed first")
        sp.add_argument("--arrays", type=int, metavar="N", help="messages on the connection")
        sp.add_argument("--pattern", choices=["arange"], default="arange")
        sp.add_argument("--json", action="store_true", help="one JSON object per line")
        sp.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                        help="idle timeout of each socket call (default 60)")

    s = sub.add_parser("send", help="send framed arange arrays")
    common(s)
    s.add_argument("--dtype", type=parse_dtype_arg, action="append", help="default <f8")
    s.add_argument("--shape", type=parse_shape, action="append", help="default 1000")
    s.add_argument("--order", type=parse_order, action="append", help="C (default) or F")

    r = sub.add_parser("recv", help="receive and verify framed arrays")
    common(r)
    r.add_argument("--expect-dtype", type=parse_dtype_arg, action="append")
    r.add_argument("--expect-shape", type=parse_shape, action="append")
    r.add_argument("--expect-order", type=parse_order, action="append")
    r.add_argument("--max-payload-bytes", type=int, default=DEFAULT_MAX_PAYLOAD_BYTES)

    args = p.parse_args(argv)
    try:
        return cmd_send(args) if args.role == "send" else cmd_recv(args)
    except ProtocolError as e:
        print(f"numpy_peer: protocol error: {e}", file=sys.stderr)
        return EXIT_PROTOCOL
    except (ConnectionEnded, OSError) as e:
        print(f"numpy_peer: connection error: {e}", file=sys.stderr)
        return EXIT_CONNECTION


if __name__ == "__main__":
    sys.exit(main())
