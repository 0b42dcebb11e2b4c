"""A replicated key-value store on craft: three processes on 127.0.0.1, each a Raft node with a
tiny line-oriented TCP front end for clients.

    # a cluster secret, once (give the same file to every server):
    python examples/python/kv.py keygen /tmp/kv.secret
    # three terminals (or &), one per server:
    python examples/python/kv.py serve 1 --secret-file /tmp/kv.secret
    python examples/python/kv.py serve 2 --secret-file /tmp/kv.secret
    python examples/python/kv.py serve 3 --secret-file /tmp/kv.secret
    # then, against any of them:
    python examples/python/kv.py set --port 8002 colour blue
    python examples/python/kv.py get --port 8003 colour
    python examples/python/kv.py cas --port 8001 colour blue green

Kill the leader with kill -9: the other two elect a new one within a second and keep serving;
restart it with the same command and it catches up from its data directory. Every client
request goes through a craft session, so a retried "incr" is applied exactly once.

The protocol, one request per line, one answer per line ("ERR ..." on failure):

    get K            the value, or (nil): a linearizable read (ReadIndex, from any node)
    set K V          OK
    del K            True if K existed, else False
    cas K FROM TO    True if K held FROM (the word (nil): K was missing) and now holds TO
    incr K           the new value (K as an integer, missing = 0)
    status           this node's role, term, leader, commit and applied indexes
    digest [I]       "I HASH": the hash chain over every command applied up to index I (the
                     last applied when I is omitted), "unknown" if this process never saw I.
                     Two nodes applied the same sequence up to I iff their hashes at I agree.
    add ID ADDRESS   admin: add server ID (started with --join) at ADDRESS; it is promoted to
                     a voter once it has caught up (ask the leader)
    remove ID        admin: remove server ID from the configuration (ask the leader)
    transfer [ID]    admin: hand leadership to ID (0 or nothing: the most up-to-date voter)
    faults TO DROP MIN_MS MAX_MS BLOCK
                     only with --test-hooks: Node.set_faults (drop, delay and one-way cuts of
                     this node's messages to server TO; all zero clears); used by the fault
                     campaign in tests/faults/campaign.py

The servers authenticate each other with the cluster secret (TLS 1.3 with a key derived from
it; docs/security.md). Without --secret-file, serve uses DATA/kv-cluster.secret, generating it
if no server has yet (fine on one machine; on several, copy the file). --tls-cert/--tls-key/
--tls-ca use certificates instead; --plaintext turns security off (anyone who reaches the Raft
ports can then act as a server). The client protocol below is this example's own, on
127.0.0.1 or a Unix socket, and is not authenticated.

Options of serve for other layouts: --peers 1=HOST:PORT,2=... (any number of servers),
--join with --address (a new empty server, added by "add" on the leader), --client-unix PATH
(clients on a Unix socket instead of TCP), --snapshot-entries, --timeout, --segment-size (bytes
of one WAL segment: 1 MiB here, an example's size; craft's default, 64 MiB, suits a server that
writes a lot), --metrics-address HOST:PORT (GET /metrics for Prometheus, docs/metrics.md).
docs/operations.md runs a cluster of these servers the way an operator would, with the `craft`
command line.

Checked with mypy --strict (python/tests/test_stubs.py).
"""

import argparse
import hashlib
import os
import socketserver
import sys
import threading
from typing import Any, Dict, Optional, Tuple

import craft
from craft import codec

RAFT_PORTS = {1: 7001, 2: 7002, 3: 7003}
CLIENT_PORT_BASE = 8000
# Each WAL segment is preallocated: 1 MiB keeps three demo servers small on disk. A server that
# writes a lot keeps craft's default (64 MiB: fewer files to create and sync).
SEGMENT_SIZE = 1 << 20
NIL = "(nil)"
HISTORY_MAX = 2_000_000  # digests remembered per process (index -> hash), for "digest I"


class KV(craft.StateMachine):
    """The replicated state: a dict of str to str. Commands are msgpack lists.

    Besides the data it keeps a hash chain over every command it applied, with the command's
    log index: chain(i) = blake2b(chain(previous) + i + command). It is part of the snapshot,
    so every replica has the same chain at the same index, whichever way it got there."""

    def __init__(self) -> None:
        self.data: Dict[str, str] = {}
        self.applied = 0
        self.chain = bytes(16)
        self.history: Dict[int, bytes] = {}  # not replicated: what this process has seen

    def _remember(self) -> None:
        self.history[self.applied] = self.chain
        if len(self.history) > HISTORY_MAX:
            del self.history[next(iter(self.history))]

    def apply(self, command: bytes, index: int) -> bytes:
        self.chain = hashlib.blake2b(self.chain + index.to_bytes(8, "little") + command,
                                     digest_size=16).digest()
        self.applied = index
        self._remember()
        op, *args = codec.loads(command)
        if op == "set":
            self.data[args[0]] = args[1]
            return codec.dumps("OK")
        if op == "del":
            return codec.dumps(self.data.pop(args[0], None) is not None)
        if op == "cas":
            key, expected, new = args
            if self.data.get(key) != expected:
                return codec.dumps(False)
            self.data[key] = new
            return codec.dumps(True)
        if op == "incr":
            value = int(self.data.get(args[0], "0")) + 1  # ValueError reaches the client
            self.data[args[0]] = str(value)
            return codec.dumps(value)
        raise ValueError(f"unknown command {op!r}")

    def snapshot(self) -> bytes:
        return codec.dumps({"data": self.data, "applied": self.applied, "chain": self.chain})

    def restore(self, reader: Any) -> None:
        state = codec.loads(reader.read())
        self.data = state["data"]
        self.applied = state["applied"]
        self.chain = bytes(state["chain"])
        self._remember()


class Service:
    """What the connection handlers share: the node and one client session (thread-safe),
    opened when first needed and replaced when the cluster has forgotten it."""

    def __init__(self, node: "craft.Node[KV]", timeout: float, test_hooks: bool) -> None:
        self.node = node
        self.timeout = timeout
        self.test_hooks = test_hooks
        self._session: Optional[craft.Session] = None
        self._lock = threading.Lock()

    def write(self, command: list[Any]) -> str:
        with self._lock:
            if self._session is None:
                self._session = self.node.session(timeout=self.timeout)
            session = self._session
        try:
            return str(codec.loads(session.apply(codec.dumps(command))))
        except craft.SessionError:
            with self._lock:
                if self._session is session:
                    self._session = None  # expired or forgot us: register again next time
            raise


class Handler(socketserver.StreamRequestHandler):
    """One client connection: one request per line (see the module's docstring)."""

    service: Service

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
            except ValueError as e:
                reply = f"ERR ValueError: {e}"
            self.wfile.write((reply.replace("\n", " ") + "\n").encode())

    def execute(self, parts: list[str]) -> str:
        svc = self.service
        node = svc.node
        op, args = parts[0], parts[1:]
        if op == "get" and len(args) == 1:
            key = args[0]
            value: Optional[str] = node.read(lambda fsm: fsm.data.get(key))
            return NIL if value is None else value
        if op == "status":
            st = node.status()
            voters = sorted(int(p["id"]) for p in st["peers"] if p["role"] == "voter")
            learners = sorted(int(p["id"]) for p in st["peers"] if p["role"] == "learner")
            return f"id={st['id']} role={st['role']} term={st['term']} leader={st['leader']} " \
                   f"commit={st['commit']} applied={st['applied']} " \
                   f"voters={','.join(map(str, voters))} learners={','.join(map(str, learners))}"
        if op in ("set", "del", "incr") and len(args) == (2 if op == "set" else 1):
            return svc.write([op, *args])
        if op == "cas" and len(args) == 3:
            expected = None if args[1] == NIL else args[1]
            return svc.write(["cas", args[0], expected, args[2]])
        if op == "digest" and len(args) <= 1:
            at = int(args[0]) if args else None

            def digest(fsm: KV) -> str:
                i = fsm.applied if at is None else at
                h = fsm.chain if at is None else fsm.history.get(i)
                return "unknown" if h is None else f"{i} {h.hex()}"
            result: str = node.read(digest, mode="stale")
            return result
        if op == "add" and len(args) == 2:
            return f"OK {node.add_server(int(args[0]), args[1])}"
        if op == "remove" and len(args) == 1:
            return f"OK {node.remove_server(int(args[0]))}"
        if op == "transfer" and len(args) <= 1:
            node.transfer_leadership(int(args[0]) if args else 0)
            return "OK"
        if op == "faults" and len(args) == 5 and svc.test_hooks:
            node.set_faults(int(args[0]), float(args[1]), (int(args[2]), int(args[3])),
                            args[4] not in ("0", "false", "False"))
            return "OK"
        return "ERR usage: get K | set K V | del K | cas K FROM TO | incr K | status | " \
               "digest [I] | add ID ADDRESS | remove ID | transfer [ID]"


class TCPServer(socketserver.ThreadingTCPServer):
    """The client listener. A server restarted after kill -9 binds its port again at once: the
    connections of the process it replaces (its clients may still be connected) linger in
    FIN_WAIT or TIME_WAIT on that port, and without SO_REUSEADDR the bind fails with "Address
    already in use". (Two live listeners on one port are still refused.)"""

    allow_reuse_address = True


def parse_peers(text: str) -> Dict[int, str]:
    """'1=127.0.0.1:7001,2=...' -> {1: '127.0.0.1:7001', ...}"""
    peers = {}
    for item in text.split(","):
        sid, _, address = item.partition("=")
        peers[int(sid)] = address
    return peers


def default_secret(data_root: str, node_id: int) -> str:
    """DATA/kv-cluster.secret, generated by whichever server starts first. It appears under its
    name only once whole (written aside, then linked), so a server starting at the same moment
    never reads half a secret."""
    path = os.path.join(data_root, "kv-cluster.secret")
    if not os.path.exists(path):
        os.makedirs(data_root, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        craft.generate_secret(tmp)
        try:
            os.link(tmp, path)
            print(f"[{node_id}] generated the cluster secret {path}", flush=True)
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    return path


def serve(node_id: int, data_root: str, raft_base: int = 7000,
          client_base: int = CLIENT_PORT_BASE, *, peers: Optional[Dict[int, str]] = None,
          address: Optional[str] = None, join: bool = False, client_unix: Optional[str] = None,
          timeout: float = 30.0, wait_leader: float = 30.0, test_hooks: bool = False,
          snapshot_entries: int = 16384, segment_size: int = SEGMENT_SIZE,
          security: Any = "default", metrics_address: Optional[str] = None) -> int:
    if peers is None and not join:
        peers = {i: f"127.0.0.1:{raft_base + i}" for i in RAFT_PORTS}
    if address is None:
        if peers is None or node_id not in peers:
            print(f"kv: server {node_id} needs --address (it is not in --peers)", file=sys.stderr)
            return 2
        address = peers[node_id]
    data_dir = os.path.join(data_root, f"kv{node_id}")
    if security == "default":
        security = craft.Secret(file=default_secret(data_root, node_id))
    node = craft.Node(node_id, address, data_dir, KV(), peers=None if join else peers,
                      join=join, timeout=timeout, snapshot_entries=snapshot_entries,
                      segment_size=segment_size, security=security,
                      metrics_address=metrics_address)
    node.on("leader", lambda leader, term: print(f"[{node_id}] leader is now {leader} "
                                                 f"(term {term})", flush=True))
    try:
        node.start()
    except craft.StorageError as e:
        # Corruption is reported, never skipped: the message names the file and the offset.
        print(f"kv: server {node_id} cannot open {data_dir}: {e}", file=sys.stderr, flush=True)
        return 3
    with node:
        if not join and wait_leader > 0:
            try:
                node.wait_for_leader(timeout=wait_leader)
            except craft.Timeout:
                print(f"[{node_id}] no leader yet; serving anyway", flush=True)
        Handler.service = Service(node, timeout, test_hooks)
        server: socketserver.BaseServer
        if client_unix is not None:
            if os.path.exists(client_unix):
                os.unlink(client_unix)
            server = socketserver.ThreadingUnixStreamServer(client_unix, Handler)
            where = client_unix
        else:
            port = client_base + node_id
            server = TCPServer(("127.0.0.1", port), Handler)
            where = f"127.0.0.1:{port}"
        server.daemon_threads = True
        print(f"[{node_id}] serving clients on {where}", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
    return 0


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
    s.add_argument("id", type=int)
    s.add_argument("--data", default=os.environ.get("TMPDIR", "/tmp"))
    s.add_argument("--raft-base", type=int, default=7000,
                   help="server i listens for Raft on 127.0.0.1:RAFT_BASE+i (default 7000)")
    s.add_argument("--client-base", type=int, default=CLIENT_PORT_BASE,
                   help="server i serves clients on 127.0.0.1:CLIENT_BASE+i (default 8000)")
    s.add_argument("--peers", type=parse_peers, default=None,
                   help="a new cluster's servers, ID=HOST:PORT,... (default: 1-3 on "
                        "127.0.0.1:RAFT_BASE+i)")
    s.add_argument("--address", help="this server's HOST:PORT (default: its entry in --peers)")
    s.add_argument("--join", action="store_true",
                   help="start empty and wait for the leader to add this server")
    s.add_argument("--client-unix", metavar="PATH", help="serve clients on this Unix socket")
    s.add_argument("--timeout", type=float, default=30.0, help="request timeout, seconds")
    s.add_argument("--wait-leader", type=float, default=30.0,
                   help="seconds to wait for a leader before serving clients (0: don't)")
    s.add_argument("--snapshot-entries", type=int, default=16384)
    s.add_argument("--segment-size", type=int, default=SEGMENT_SIZE,
                   help="bytes of one WAL segment, preallocated (default 1 MiB; craft's own "
                        "default is 64 MiB)")
    s.add_argument("--test-hooks", action="store_true", help="accept the 'faults' command")
    s.add_argument("--metrics-address", metavar="HOST:PORT",
                   help="serve GET /metrics (Prometheus text, docs/metrics.md) there")
    s.add_argument("--secret-file", help="the cluster secret (default: DATA/kv-cluster.secret, "
                                         "generated if missing)")
    s.add_argument("--tls-cert", help="mutual TLS instead: this server's certificate (PEM), "
                                      "naming its id (subjectAltName URI craft:server:ID)")
    s.add_argument("--tls-key", help="its private key (PEM)")
    s.add_argument("--tls-ca", help="the CA certificate(s) of the cluster (PEM)")
    s.add_argument("--plaintext", action="store_true",
                   help="no authentication, no encryption between the servers")
    k = sub.add_parser("keygen", help="write a new cluster secret to FILE (mode 0600)")
    k.add_argument("file")
    for name in ("set", "get", "del", "cas", "incr", "status", "digest"):
        c = sub.add_parser(name)
        c.add_argument("--port", type=int, default=8001)
        c.add_argument("args", nargs="*")
    a = p.parse_args(argv)
    if a.cmd == "keygen":
        craft.generate_secret(a.file)
        print(f"wrote a new cluster secret to {a.file}")
        return 0
    if a.cmd == "serve":
        security: Any = "default"
        if a.plaintext:
            security = None
        elif a.tls_cert or a.tls_key or a.tls_ca:
            if not (a.tls_cert and a.tls_key and a.tls_ca):
                p.error("--tls-cert, --tls-key and --tls-ca go together")
            security = craft.TLS(cert=a.tls_cert, key=a.tls_key, ca=a.tls_ca)
        elif a.secret_file:
            security = craft.Secret(file=a.secret_file)
        return serve(a.id, a.data, a.raft_base, a.client_base, peers=a.peers, address=a.address,
                     join=a.join, client_unix=a.client_unix, timeout=a.timeout,
                     wait_leader=a.wait_leader, test_hooks=a.test_hooks,
                     snapshot_entries=a.snapshot_entries, segment_size=a.segment_size,
                     security=security, metrics_address=a.metrics_address)
    ok, answer = client(a.port, " ".join([a.cmd, *a.args]))
    print(answer)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
