"""The pure-Python memoryview recipe ringxfer grew from, for comparison: the peer of the
binding in the tests and the baseline of ``python -m ringxfer.bench``. The receiver must know
the size (or the sender sends it first); ``recv_into`` raises ``EOFError`` when the peer
closes early. Neither handles a shape with a zero in it nor an F-contiguous array (the
``memoryview`` cast refuses both); ``ringxfer.send_from``/``recv_into`` do."""


def send_from(arr, sock):
    view = memoryview(arr).cast("B")
    while len(view):
        nsent = sock.send(view)
        view = view[nsent:]


def recv_into(arr, sock):
    view = memoryview(arr).cast("B")
    while len(view):
        nrecv = sock.recv_into(view)
        if nrecv == 0:
            raise EOFError("peer closed with %d bytes to go" % len(view))
        view = view[nrecv:]
