"""One craft node in Python for the power-loss campaign (powercut.py), run under the lazyfs shim:

    python node.py --id 1 --peers 1=127.0.0.1:7001,... --data DIR --ctl CTL --applied FILE \\
        [--store disk|python] [--no-fsync] [--snapshot-entries N]

--store disk (the default) is craft's durable C store in DIR; --store python is
file_store.FileLogStore in DIR. --no-fsync turns syncing off (the campaign's negative control).

The state machine is a key-value store ("set K V") that also keeps a hash chain over what it
applied: chain(i) = blake2b(chain(prev) || i || command), part of its snapshot. Every apply is
written to the APPLIED file as "a INDEX CHAIN COMMAND", every restore from a snapshot as
"r INDEX CHAIN" (one write each, outside the shim's root: this file is the runner's record of
what each incarnation of the node applied, and survives the cut).

Control, through files in CTL (outside the root), as spec/support/py_node.py does it: the runner
writes req.N (N = 1, 2, ..., renamed into place), the node answers resp.N with "ok\\n<value>" or
"err\\n<message>". Requests: "set K V" (apply, answered with "OK"), "state" (every "k=v" line
after a linearizable read), "digest" ("APPLIED CHAIN" now), "status" ("role leader term
applied commit"). CTL/ready holds the pid once the node has started; a node that cannot start
(its store refused the directory) prints why and exits with status 3.
"""

import argparse
import hashlib
import json
import logging
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import craft  # noqa: E402


class KV(craft.StateMachine):
    def __init__(self, applied_fd: int) -> None:
        self.data = {}
        self.applied = 0
        self.chain = bytes(16)
        self.out = applied_fd

    def apply(self, command: bytes, index: int) -> bytes:
        self.chain = hashlib.blake2b(self.chain + index.to_bytes(8, "little") + command,
                                     digest_size=16).digest()
        self.applied = index
        text = command.decode()
        os.write(self.out, f"a {index} {self.chain.hex()} {text}\n".encode())
        op, k, v = text.split(" ", 2)
        if op != "set":
            raise ValueError(f"unknown command {text!r}")
        self.data[k] = v
        return b"OK"

    def snapshot(self) -> bytes:
        return json.dumps({"data": self.data, "applied": self.applied,
                           "chain": self.chain.hex()}).encode()

    def restore(self, reader) -> None:
        s = json.loads(reader.read())
        self.data, self.applied, self.chain = s["data"], s["applied"], bytes.fromhex(s["chain"])
        os.write(self.out, f"r {self.applied} {self.chain.hex()}\n".encode())

    def dump(self) -> str:
        return "".join(f"{k}={v}\n" for k, v in sorted(self.data.items()))


def write_atomic(path: str, text: str) -> None:
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--id", type=int, required=True)
    p.add_argument("--peers", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--ctl", required=True)
    p.add_argument("--applied", required=True)
    p.add_argument("--store", choices=("disk", "python"), default="disk")
    p.add_argument("--no-fsync", action="store_true")
    p.add_argument("--snapshot-entries", type=int, default=100)
    a = p.parse_args()
    peers = {int(k): v for k, v in (x.split("=", 1) for x in a.peers.split(","))}
    out = os.open(a.applied, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    fsm = KV(out)
    opts = dict(peers=peers, heartbeat_ms=50, election_timeout_ms=300, timeout=3.0,
                snapshot_entries=a.snapshot_entries, snapshot_trailing=20,
                fsync=not a.no_fsync, log_level="info")
    # Storage recovery lines (torn_tail, log_discard_resumed, ...) go to the node's log.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        if a.store == "python":
            import file_store
            store = file_store.FileLogStore(a.data, sync=not a.no_fsync)
            node = craft.Node(a.id, peers[a.id], None, fsm, log_store=store, **opts)
        else:
            node = craft.Node(a.id, peers[a.id], a.data, fsm, **opts)
        node.start()
    except Exception as e:  # the store refused its directory: the campaign's failure to report
        print(f"node {a.id}: cannot start: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        return 3
    st = node.status()
    print(f"node {a.id}: started: term {st['term']} commit {st['commit']} applied "
          f"{st['applied']} log {st['first_index']}..{st['last_index']} snapshot "
          f"{st['snapshot_index']}", flush=True)
    node.on("stopped", lambda code, msg: print(f"node {a.id}: stopped: {code} {msg}",
                                               flush=True))
    write_atomic(os.path.join(a.ctl, "ready"), str(os.getpid()))

    def answer(n: int, ok: bool, text: str) -> None:
        write_atomic(os.path.join(a.ctl, f"resp.{n}"), ("ok\n" if ok else "err\n") + text)

    def handle(n: int, req: str) -> None:
        try:
            if req.startswith("set "):
                answer(n, True, node.apply(req.encode()).decode())
            elif req == "state":
                answer(n, True, node.read(lambda f: f.dump()))
            elif req == "digest":
                answer(n, True, node.read(lambda f: f"{f.applied} {f.chain.hex()}",
                                          mode="stale"))
            elif req == "status":
                s = node.status()
                answer(n, True, f"{s['role']} {s['leader'] or 0} {s['term']} {s['applied']} "
                                f"{s['commit']}")
            else:
                answer(n, False, f"unknown request {req!r}")
        except craft.Error as e:
            answer(n, False, f"{type(e).__name__}: {e}")

    n = 1
    while True:
        path = os.path.join(a.ctl, f"req.{n}")
        try:
            with open(path) as f:
                req = f.read()
        except FileNotFoundError:
            time.sleep(0.002)
            continue
        threading.Thread(target=handle, args=(n, req), daemon=True).start()
        n += 1


if __name__ == "__main__":
    sys.exit(main())
