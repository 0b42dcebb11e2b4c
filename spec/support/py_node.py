"""One craft node in Python, driven by a spec through files (spec/support/procs.lua).

    .venv/bin/python spec/support/py_node.py ID PEERS DATA_DIR CTL_DIR [key=value ...]

PEERS is "1=127.0.0.1:7001,2=...". Options tls_dir=DIR (mutual TLS with the certificates
tests/tls/make-certs.sh made in DIR) and secret_file=FILE (a cluster secret) set security=. The state machine is the same key-value store as the Lua
specs' (spec/support.lua, kv()): commands "set k v" and "inc k n" as plain strings, snapshots
as sorted "k=v\\n" lines, so a Lua node and this one replicate one state machine. Sessions are
on (the default of both bindings: every node of a cluster must agree).

Control: the spec writes CTL_DIR/req.N (N = 1, 2, ...; written under another name and renamed
into place); the first line is the operation, the rest its argument. Each request is answered
in CTL_DIR/resp.N: "ok\\n<value>" or "err\\n<message>". Operations: apply <command>, state (the
store's "k=v" lines after a linearizable read), stale (the same, no barrier), status
("role leader applied commit"), transfer <id>, sapply <command> (through one client session of
this process), digest ("<index> <hex>" of the last state digest, "none" before one, "diverged"
once the state was found to differ), installed (snapshots installed from a leader), quit.
"""

import os
import re
import sys
import threading
import time

try:
    import craft
except ImportError as e:  # procs.lua checks this first; say it plainly anyway
    sys.stderr.write("py_node: cannot import craft (%s): run `make python-install`\n" % e)
    sys.exit(3)

CMD = re.compile(r"^(\S+)\s*(\S*)\s*(.*)$", re.S)


class KV(craft.StateMachine):
    def __init__(self):
        self.data = {}

    def apply(self, command, index):
        m = CMD.match(command.decode())
        if not m:
            raise ValueError("unknown command " + command.decode())
        op, k, v = m.groups()
        if op == "set":
            self.data[k] = v
            return v.encode()
        if op == "inc":
            n = int(self.data.get(k, "0")) + (int(v) if v else 1)
            self.data[k] = str(n)
            return self.data[k].encode()
        if op == "get":
            return self.data.get(k, "").encode()
        if op == "fail":
            raise ValueError(k)
        raise ValueError("unknown command " + command.decode())

    def dump(self):
        return "".join(sorted("%s=%s\n" % kv for kv in self.data.items()))

    def snapshot(self):
        return self.dump().encode()

    def restore(self, reader):
        self.data = {}
        for k, v in re.findall(r"([^=\n]+)=([^\n]*)\n", reader.read().decode()):
            self.data[k] = v


def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def main():
    node_id, peers_arg, data_dir, ctl = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    peers = {int(k): v for k, v in (p.split("=", 1) for p in peers_arg.split(","))}
    opts = {"heartbeat_ms": 50, "election_timeout_ms": 500, "fsync": False,
            "segment_size": 1 << 20}
    for kv in sys.argv[5:]:
        k, v = kv.split("=", 1)
        if k == "tls_dir":  # certificates of tests/tls/make-certs.sh: server-ID.pem, ca.pem
            opts["security"] = craft.TLS(cert=f"{v}/server-{node_id}.pem",
                                         key=f"{v}/server-{node_id}.key", ca=f"{v}/ca.pem")
        elif k == "secret_file":
            opts["security"] = craft.Secret(file=v)
        else:
            opts[k] = v == "true" if v in ("true", "false") else int(v)
    fsm = KV()
    node = craft.Node(node_id, peers[node_id], data_dir, fsm, peers=peers,
                      timeout=5.0, log_level="warn", **opts)
    installed = []
    node.on("snapshot", lambda index, inst: installed.append(index) if inst else None)
    node.start()
    session_lock = threading.Lock()
    session = []
    write_atomic(os.path.join(ctl, "ready"), str(os.getpid()))
    stop = threading.Event()

    def handle(n, op, arg):
        try:
            if op == "apply":
                value = "ok\n" + node.apply(arg.encode()).decode()
            elif op == "state":
                value = "ok\n" + node.read(lambda f: f.dump())
            elif op == "stale":
                value = "ok\n" + node.read(lambda f: f.dump(), mode="stale")
            elif op == "status":
                s = node.status()
                value = "ok\n%s %d %d %d" % (s["role"], s["leader"], s["applied"], s["commit"])
            elif op == "transfer":
                node.transfer_leadership(int(arg))
                value = "ok\n"
            elif op == "sapply":
                with session_lock:
                    if not session:
                        session.append(node.session())
                value = "ok\n" + session[0].apply(arg.encode()).decode()
            elif op == "digest":
                s = node.status()
                d = s["digest"]
                value = "ok\n" + ("diverged" if s["diverged"] else
                                   "%d %s" % (d["index"], d["digest"]) if d else "none")
            elif op == "installed":
                value = "ok\n%d" % len(installed)
            elif op == "quit":
                stop.set()
                value = "ok\n"
            else:
                value = "err\nunknown operation " + op
        except craft.Error as e:
            value = "err\n%s: %s" % (type(e).__name__, e)
        write_atomic(os.path.join(ctl, "resp.%d" % n), value)

    n = 1
    while not stop.is_set():
        path = os.path.join(ctl, "req.%d" % n)
        if not os.path.exists(path):
            time.sleep(0.005)
            continue
        with open(path) as f:
            op, _, arg = f.read().partition("\n")
        threading.Thread(target=handle, args=(n, op, arg), daemon=True).start()
        n += 1
    node.close()


if __name__ == "__main__":
    main()
