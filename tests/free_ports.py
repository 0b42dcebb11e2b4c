"""Free ports on 127.0.0.1 for test and benchmark nodes, from below the kernel's ephemeral range.

Binding to port 0 lets the kernel choose from the ephemeral range (net.ipv4.ip_local_port_range,
32768-60999 by default), the same range it gives the local end of every outgoing connection.
Between our probe and the node's listen, and while a node is down for a restart, another node's
connect() can be handed that very port, and the node fails with EADDRINUSE (seen in CI on a
restarted node of test_operations). connect() never hands out a port below the range.

One cursor per process, started at a random place and moving on, so one process never gets the
same port twice and two processes rarely start at the same place. Every port returned was free
a moment ago (bound without SO_REUSEADDR, so one with a connection in TIME_WAIT is skipped).
The C twin is c/tests/free_port.h; the Lua one is support.free_addresses in spec/support.lua.
"""

import os
import random
import socket
from typing import List

LOWEST = 10000


def ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        lo = 32768
    return lo if lo > LOWEST + 1000 else 32768


_cursor = None


def _is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_ports(n: int) -> List[int]:
    """n distinct ports, each free a moment ago."""
    global _cursor
    span = ephemeral_low() - LOWEST
    if _cursor is None:
        _cursor = random.Random(os.getpid() ^ int.from_bytes(os.urandom(4), "big")).randrange(span)
    out: List[int] = []
    for _ in range(span):
        if len(out) == n:
            return out
        port = LOWEST + _cursor
        _cursor = (_cursor + 1) % span
        if _is_free(port):
            out.append(port)
    raise RuntimeError(f"fewer than {n} free ports on 127.0.0.1 below {LOWEST + span}")


def free_range(n: int) -> int:
    """A base b such that b+1 .. b+n are all free (for pages that number their ports)."""
    global _cursor
    span = ephemeral_low() - LOWEST
    for _ in range(200):
        base = free_ports(1)[0] - 1
        if base + n >= LOWEST + span:
            continue
        if all(_is_free(p) for p in range(base + 1, base + n + 1)):
            _cursor = (base + n + 1 - LOWEST) % span
            return base
    raise RuntimeError(f"no {n} consecutive free ports on 127.0.0.1 below {LOWEST + span}")
