"""Issue 11 item 4: numpy's own ``.npy`` stream on the wire, against numpy's reader and writer
with no ringxfer code on the other end, on both backends.

* ``send_array(sock, a, format="npy")`` (and ``Engine.send_array``) → numpy's
  ``numpy.lib.format.read_array`` on ``sock.makefile('rb', buffering=0)``;
* ``numpy.save`` (format versions 1.0–3.0) → ``recv_array``, every dtype, C/F, 0-d, empty;
* ``.npy`` and RGXF mixed on one connection;
* hostile ``.npy`` headers → ``ringxfer.FrameError`` with the exact ``.kind``; a cut stream →
  ``UnexpectedEOF`` with exact counts; a corrupted ``.npy`` payload is NOT detected (no
  checksum travels), where RGXF's is.

(``numpy.save``/``numpy.load`` straight on a buffered ``sock.makefile()`` fail on a socket,
numpy 2.4: not seekable; the writer here is an object whose ``write`` is ``sock.sendall``.)
"""

import socket
import struct

import numpy as np
import numpy.lib.format as fmt
import pytest

import ringxfer
from conftest import Peer, tcp_pair
from test_framed import FRAMED_DTYPES, assert_same, recv_raw
from test_recipe import sample


class SendAll:
    """A file for ``numpy.save`` whose ``write`` is ``sock.sendall``."""

    def __init__(self, sock):
        self.sock = sock

    def write(self, b):
        self.sock.sendall(b)


def numpy_save(sock, arrays, version=None):
    for a in arrays:
        if version is None:
            np.save(SendAll(sock), a)
        else:
            fmt.write_array(SendAll(sock), a, version=version)


def numpy_read(sock, n):
    f = sock.makefile("rb", buffering=0)
    return [fmt.read_array(f) for _ in range(n)]


def expected_order(a):
    """The order numpy writes in a ``.npy`` header (``fortran_order`` only when the array is
    F- and not C-contiguous)."""
    return "F" if a.flags.f_contiguous and not a.flags.c_contiguous else "C"


@pytest.mark.parametrize("dtype", FRAMED_DTYPES)
@pytest.mark.parametrize("order", ["C", "F"])
def test_npy_both_ways(backend, dtype, order):
    """``send_array(..., "npy")`` read by numpy's ``read_array``, and ``numpy.save`` received
    by ``recv_array`` (into its own memory), every dtype, C and F."""
    a = np.asarray(sample(dtype, (37, 11)), order=order)
    s, r = tcp_pair()
    with s, r:
        peer = Peer(ringxfer.send_array, s, a, "npy")
        (read,) = numpy_read(r, 1)
        peer.result()
        peer = Peer(numpy_save, r, [a])
        got = ringxfer.recv_array(s)
        peer.result()
    assert_same(read, a, order)
    assert_same(got, a, order)
    assert type(got.base).__name__ == "_Payload"


@pytest.mark.parametrize(
    "a",
    [
        np.float64(2.5).reshape(()),
        np.array(7, dtype=">i4").reshape(()),
        np.zeros((0,), dtype="<f2"),
        np.zeros((4, 0, 3), dtype="<c16", order="F"),
        np.arange(5) % 2 == 1,
        np.arange(6, dtype=">f2").reshape(1, 6, order="F"),
    ],
    ids=["0d-f8", "0d-be-i4", "empty-f2", "empty-F-c16", "1d-b1", "1x6-F-be-f2"],
)
def test_shapes_both_ways(backend, a):
    s, r = tcp_pair()
    with s, r:
        peer = Peer(numpy_save, s, [a])
        got = ringxfer.recv_array(r)
        peer.result()
        peer = Peer(ringxfer.send_array, r, got, "npy")
        (back,) = numpy_read(s, 1)
        peer.result()
    for x in (got, back):
        assert x.dtype.str == a.dtype.str and x.shape == a.shape
        assert x.tobytes(order="A") == a.tobytes(order="A")
        assert expected_order(x) == expected_order(a)


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
def test_numpy_format_versions(backend, version):
    arrays = [sample("<f8", (100, 3)), np.asarray(sample(">c8", (5, 4)), order="F")]
    s, r = tcp_pair()
    with s, r:
        peer = Peer(numpy_save, s, arrays, version)
        got = [ringxfer.recv_array(r) for _ in arrays]
        peer.result()
    assert_same(got[0], arrays[0], "C")
    assert_same(got[1], arrays[1], "F")


def test_engine_format_npy_and_mixed_stream(backend):
    """``Engine.send_array(..., format="npy")`` and RGXF alternate on one connection; one
    ``Engine.recv_array`` takes them all, large (several MiB) and small."""
    e = ringxfer.Engine(backend=backend)
    arrays = [
        (sample("<f8", (1 << 19,)), "npy"),
        (sample(">i2", (3, 4)), "rgxf"),
        (np.asarray(sample("<f2", (300, 7)), order="F"), "npy"),
        (sample("|u1", (5,)), "rgxf"),
        (sample("<c16", (2, 2)), "npy"),
    ]

    def send(sock):
        for a, f in arrays:
            e.send_array(sock, a, format=f)

    s, r = tcp_pair()
    with s, r:
        peer = Peer(send, s)
        receiver = ringxfer.Engine(backend=backend)
        got = [receiver.recv_array(r) for _ in arrays]
        peer.result()
        s.shutdown(socket.SHUT_WR)
        with pytest.raises(ringxfer.UnexpectedEOF) as ex:
            receiver.recv_array(r)
        assert (ex.value.transferred, ex.value.expected) == (0, 32)
    for g, (a, _) in zip(got, arrays):
        assert_same(g, a, expected_order(a))


def npy_bytes(a):
    """What ``numpy.save`` writes for ``a``."""
    out = []

    class W:
        def write(self, b):
            out.append(bytes(b))

    np.save(W(), a)
    return b"".join(out)


def wrap(text):
    """A version-1.0 header around the dict ``text``, padded to 64 bytes."""
    t = text.encode()
    t += b" " * (-(10 + len(t) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(t)) + t


@pytest.mark.parametrize(
    "raw, kind",
    [
        (b"\x93NUMPY\x02\x00" + struct.pack("<I", 0xFFFFFFF0), "npy_header_too_long"),
        (b"\x93NUMPY\x07\x00" + b"\x00" * 100, "npy_unsupported_version"),
        (b"\x93NUMPZ\x01\x00" + b"\x00" * 100, "npy_bad_magic"),
        (wrap("{'descr': '<f8', 'fortran_order': False, 'shape': (3,), 'x': 1}"), "npy_unknown_key"),
        (wrap("{'descr': '<f8', 'fortran_order': False}"), "npy_missing_key"),
        (wrap("{'descr': '|O', 'fortran_order': False, 'shape': (3,)}"), "npy_unsupported_dtype"),
        (wrap("{'descr': '<U4', 'fortran_order': False, 'shape': (3,)}"), "npy_unsupported_dtype"),
        (wrap("{'descr': '<f8', 'fortran_order': 1, 'shape': (3,)}"), "npy_wrong_type"),
        (wrap("{'descr': '<f8', 'fortran_order': False, 'shape': (%d, 4)}" % (1 << 62)),
         "npy_shape_overflow"),
        (wrap("{'descr': '<f8', 'fortran_order': False, 'shape': (-1,)}"), "npy_bad_dim"),
        (wrap("{'descr': '<f8', 'fortran_order': False, 'shape': (3,)"), "npy_syntax"),
        (wrap("{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000,)}"), "too_large"),
    ],
    ids=["huge-len", "version", "magic", "unknown-key", "missing-key", "object", "unicode",
         "wrong-type", "overflow", "negative", "syntax", "too-large"],
)
def test_hostile_npy_headers(backend, raw, kind):
    with pytest.raises(ringxfer.FrameError) as ex:
        recv_raw(raw + b"\x00" * 64)
    assert ex.value.kind == kind
    assert isinstance(ex.value, ValueError)


def test_npy_max_payload_and_cut_streams(backend):
    a = np.arange(100, dtype="<f8")
    good = npy_bytes(a)
    assert len(good) == 128 + 800
    with pytest.raises(ringxfer.FrameError) as ex:
        recv_raw(good, ringxfer.Engine(max_payload=799))
    assert ex.value.kind == "too_large"
    assert_same(recv_raw(good, ringxfer.Engine(max_payload=800)), a, "C")

    with pytest.raises(ringxfer.UnexpectedEOF) as ex:
        recv_raw(good[:5])
    assert (ex.value.transferred, ex.value.expected) == (5, 8)
    with pytest.raises(ringxfer.UnexpectedEOF) as ex:
        recv_raw(good[:100])
    assert (ex.value.transferred, ex.value.expected) == (100, 128)
    with pytest.raises(ringxfer.UnexpectedEOF) as ex:
        recv_raw(good[:128 + 300])
    assert (ex.value.transferred, ex.value.expected) == (428, 928)


def test_npy_carries_no_checksum(backend):
    """A flipped payload bit in ``.npy`` arrives as data (nothing can tell); the same flip in
    RGXF is ``FrameError`` ``payload_checksum``."""
    a = np.arange(100, dtype="<f8")
    bad = bytearray(npy_bytes(a))
    bad[128 + 8 * 5] ^= 0x01
    got = recv_raw(bytes(bad))
    want = a.copy()
    want.view(np.uint8)[8 * 5] ^= 0x01
    assert got.tobytes() == want.tobytes() and got[5] != a[5]
