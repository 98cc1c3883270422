"""A tiny server on loopback that stamps the arrival of each UDP datagram: a vendor's count.

Run by the shared-rate case: every grant a worker's limiter makes is one datagram, so the
arrival times are what a vendor would see of the requests, without the cost of HTTP (which
on 2 cores would cap the rate far below 1,000 requests/s and measure the client instead).
Protocol, one line each:

* stdout: ``listening on udp://127.0.0.1:PORT`` once bound;
* stdin ``stats``: stdout gets one JSON line, ``{"arrivals": [...]}``, the arrival times
  of the datagrams since the last ``stats``, in seconds, and the list starts afresh.

On Linux each datagram carries the kernel's own receive time (``SO_TIMESTAMPNS``), so a
moment when this process is not scheduled does not bunch the stamps of what arrived
meanwhile; elsewhere it is ``time.monotonic()`` when read.
* stdin closed: the script exits 0.
"""

from __future__ import annotations

import json
import selectors
import socket
import struct
import sys
import time

#: Linux's SO_TIMESTAMPNS (and its control message type), which Python does not name.
_SO_TIMESTAMPNS = 35


def _stamp(ancillary: list[tuple[int, int, bytes]]) -> float:
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(data) >= 16:
            seconds, nanoseconds = struct.unpack("qq", data[:16])
            return seconds + nanoseconds / 1e9
    return time.time()


def main() -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    stamped = sys.platform == "linux"
    if stamped:
        sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    print(f"listening on udp://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ, "socket")
    selector.register(sys.stdin, selectors.EVENT_READ, "stdin")
    arrivals: list[float] = []
    while True:
        for key, _ in selector.select():
            if key.data == "socket":
                while True:
                    try:
                        _, ancillary, _, _ = sock.recvmsg(16, 64)
                    except BlockingIOError:
                        break
                    arrivals.append(_stamp(ancillary) if stamped else time.monotonic())
                continue
            line = sys.stdin.readline()
            if not line:
                return 0
            if line.strip() == "stats":
                print(json.dumps({"arrivals": arrivals}), flush=True)
                arrivals = []


if __name__ == "__main__":
    sys.exit(main())
