"""The recipe ringxfer grew from, verbatim in spirit: pure-Python memoryview loops. Used as
the peer of the binding in the tests and as the baseline of the benchmark."""


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
