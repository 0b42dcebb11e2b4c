"""A replicated key-value store on craft: three processes on 127.0.0.1, each a Raft node with a
tiny line-oriented TCP front end for clients.

    # three terminals (or &), one per server:
    python examples/python/kv.py serve 1
    python examples/python/kv.py serve 2
    python examples/python/kv.py serve 3
    # then, against any of them:
    python examples/python/kv.py set --port 8002 colour blue
    python examples/python/kv.py get --port 8003 colour

Kill the leader with kill -9: the other two elect a new one within a second and keep serving;
restart it with the same command and it catches up from its data directory. Every client
request goes through a craft session, so a retried "incr" is applied exactly once.

Checked with mypy --strict (python/tests/test_stubs.py).
"""

import argparse
import os
import socketserver
import sys
import threading
from typing import Any, Dict, Optional, Tuple

import craft
from craft import codec

RAFT_PORTS = {1: 7001, 2: 7002, 3: 7003}
CLIENT_PORT_BASE = 8000


class KV(craft.StateMachine):
    """The replicated state: a dict of str to str. Commands are msgpack lists."""

    def __init__(self) -> None:
        self.data: Dict[str, str] = {}

    def apply(self, command: bytes, index: int) -> bytes:
        op, *args = codec.loads(command)
        if op == "set":
            self.data[args[0]] = args[1]
            return codec.dumps("OK")
        if op == "del":
            return codec.dumps(self.data.pop(args[0], None) is not None)
        if op == "incr":
            value = int(self.data.get(args[0], "0")) + 1  # ValueError reaches the client
            self.data[args[0]] = str(value)
            return codec.dumps(value)
        raise ValueError(f"unknown command {op!r}")

    def snapshot(self) -> bytes:
        return codec.dumps(self.data)

    def restore(self, reader: Any) -> None:
        self.data = codec.loads(reader.read())


class Handler(socketserver.StreamRequestHandler):
    """One client connection: lines "set k v", "get k", "del k", "incr k", "status"."""

    node: craft.Node
    session: craft.Session

    def handle(self) -> None:
        for raw in self.rfile:
            parts = raw.decode("utf-8", "replace").split()
            if not parts:
                continue
            try:
                reply = self.execute(parts)
            except craft.ApplyError as e:
                reply = f"ERR {e.type_name}: {e.message}"
            except craft.Error as e:
                reply = f"ERR {type(e).__name__}: {e}"
            self.wfile.write((reply + "\n").encode())

    def execute(self, parts: list[str]) -> str:
        op, args = parts[0], parts[1:]
        if op == "get" and len(args) == 1:
            key = args[0]
            value: Optional[str] = self.node.read(lambda fsm: fsm.data.get(key))
            return "(nil)" if value is None else value
        if op == "status":
            st = self.node.status()
            return f"id={st['id']} role={st['role']} term={st['term']} leader={st['leader']} " \
                   f"commit={st['commit']} applied={st['applied']}"
        if op in ("set", "del", "incr") and len(args) >= 1:
            return str(codec.loads(self.session.apply(codec.dumps([op, *args]))))
        return "ERR usage: set K V | get K | del K | incr K | status"


def serve(node_id: int, data_root: str, raft_base: int = 7000,
          client_base: int = CLIENT_PORT_BASE) -> None:
    peers = {i: f"127.0.0.1:{raft_base + i}" for i in RAFT_PORTS}
    data_dir = os.path.join(data_root, f"kv{node_id}")
    node = craft.Node(node_id, peers[node_id], data_dir, KV(), peers=peers, timeout=5.0)
    node.on("leader", lambda leader, term: print(f"[{node_id}] leader is now {leader} "
                                                 f"(term {term})", flush=True))
    with node:
        node.wait_for_leader(timeout=30)
        Handler.node = node
        Handler.session = node.session(timeout=30)
        port = client_base + node_id
        server = socketserver.ThreadingTCPServer(("127.0.0.1", port), Handler)
        server.daemon_threads = True
        print(f"[{node_id}] serving clients on 127.0.0.1:{port}", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()


def client(port: int, line: str) -> Tuple[bool, str]:
    import socket
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(line.encode() + b"\n")
        answer = s.makefile().readline().strip()
    return not answer.startswith("ERR"), answer


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("id", type=int, choices=sorted(RAFT_PORTS))
    s.add_argument("--data", default=os.environ.get("TMPDIR", "/tmp"))
    s.add_argument("--raft-base", type=int, default=7000,
                   help="server i listens for Raft on 127.0.0.1:RAFT_BASE+i (default 7000)")
    s.add_argument("--client-base", type=int, default=CLIENT_PORT_BASE,
                   help="server i serves clients on 127.0.0.1:CLIENT_BASE+i (default 8000)")
    for name in ("set", "get", "del", "incr", "status"):
        c = sub.add_parser(name)
        c.add_argument("--port", type=int, default=8001)
        c.add_argument("args", nargs="*")
    a = p.parse_args(argv)
    if a.cmd == "serve":
        serve(a.id, a.data, a.raft_base, a.client_base)
        return 0
    ok, answer = client(a.port, " ".join([a.cmd, *a.args]))
    print(answer)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
