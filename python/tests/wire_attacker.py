"""An attacker on the same network as a craft cluster (issue 13): a process that speaks craft's
wire format (docs/wire.md) from scratch, with msgpack from craft.codec, over plain TCP or over
TLS with whatever certificate it managed to get. It forges what issue 13 found accepted:
TimeoutNow and AppendEntries "from the leader", a term of 2^64 - 1, a member's id from another
address, floods of connections, partial frames of 60 MiB."""

import socket
import ssl
import struct
import time
from typing import Any, List, Optional

from craft import codec

VERSION = 1
APPEND_ENTRIES, TIMEOUT_NOW = 3, 7
HANDSHAKE, REQUEST, RESPONSE = 64, 65, 66
ENTRY_COMMAND = 1


def frame(fields: List[Any]) -> bytes:
    body = codec.dumps(fields)
    return struct.pack(">I", len(body)) + body


def handshake(frm: int, to: int, cluster_id: int, address: str = "") -> bytes:
    return frame([VERSION, HANDSHAKE, frm, to, 0, cluster_id, 0, address])


def timeout_now(frm: int, to: int, term: int) -> bytes:
    return frame([VERSION, TIMEOUT_NOW, frm, to, term])


def append_entries(frm: int, to: int, term: int, prev_index: int, prev_term: int, commit: int,
                   entries: List[bytes], entry_term: Optional[int] = None) -> bytes:
    et = term if entry_term is None else entry_term
    return frame([VERSION, APPEND_ENTRIES, frm, to, term, prev_index, prev_term, commit, 0,
                  [[et, ENTRY_COMMAND, e] for e in entries]])


def request(rid: int, payload: bytes, kind: int = 1) -> bytes:
    return frame([VERSION, REQUEST, 0, 0, 0, rid, kind, payload])


def host_port(address: str):
    host, _, port = address.rpartition(":")
    return host, int(port)


def connect(address: str, source: Optional[str] = None, tls: Optional[dict] = None,
            timeout: float = 5.0) -> socket.socket:
    """A TCP connection to address, from source IP (e.g. "127.0.0.2", another host as far as
    the node can tell), optionally wrapped in TLS 1.3 with tls={"cert", "key", "ca"} (no host
    name check: craft identifies servers by the id their certificate names)."""
    s = socket.create_connection(host_port(address), timeout=timeout,
                                 source_address=(source, 0) if source else None)
    if tls is None:
        return s
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.load_verify_locations(tls["ca"])
    if tls.get("cert"):
        ctx.load_cert_chain(tls["cert"], tls["key"])
    return ctx.wrap_socket(s)


def read_frames(s: socket.socket, timeout: float = 3.0) -> List[list]:
    """Frames the other side sends until it closes or stays silent for `timeout`."""
    s.settimeout(timeout)
    buf = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    except (socket.timeout, ConnectionError, ssl.SSLError, OSError):
        pass
    out = []
    while len(buf) >= 4:
        (n,) = struct.unpack(">I", buf[:4])
        if len(buf) < 4 + n:
            break
        out.append(codec.loads(buf[4:4 + n]))
        buf = buf[4 + n:]
    return out


def closed_by_peer(s: socket.socket, timeout: float = 5.0) -> bool:
    """True once the other side has closed the connection (reads end or fail)."""
    s.settimeout(0.2)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if s.recv(65536) == b"":
                return True
        except socket.timeout:
            continue
        except (ConnectionError, ssl.SSLError, OSError):
            return True
    return False


def send_quietly(s: socket.socket, data: bytes) -> bool:
    """Sends what the peer takes; False when it closed the connection meanwhile."""
    try:
        s.sendall(data)
        return True
    except (ConnectionError, ssl.SSLError, OSError):
        return False


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")
