"""One node of a multi-process security test cluster (test_security.py), driven by lines on stdin:

    apply KEY VALUE      -> "ok <n>" | "err <ExceptionName> <message>"
    get                  -> "data <json>"     a linearizable read of the whole dict
    local                -> "data <json>"     this node's own state (a stale read)
    leader               -> "leader <id>"     (0 when none is known)
    status               -> "status <json>"   Node.status()
    security <json>      -> "ok" | "err ..."  Node.set_security (the json of settings())
    load start           -> "ok"              a thread writes load-<i> keys, one after the other
    load stop            -> "acked <json>"    the keys whose write was acknowledged
    quit

Usage: secure_proc.py ID DATA_DIR PEERS_JSON SECURITY_JSON LOG_FILE [LIMITS_JSON]
SECURITY_JSON: null, {"tls": {"cert":..., "key":..., "ca":..., "verify_id": true}} or
{"secret": {"file":..., "accept_file":...}}. Log lines (the node's, at info) go to LOG_FILE."""

import json
import logging
import sys
import threading

import craft


class KV(craft.StateMachine):
    def __init__(self):
        self.data = {}

    def apply(self, command, index):
        key, value = craft.codec.loads(command)
        self.data[key] = value
        return craft.codec.dumps(len(self.data))


def settings(spec):
    if spec is None:
        return None
    if "tls" in spec:
        return craft.TLS(**spec["tls"])
    return craft.Secret(**spec["secret"])


class Load:
    """A writer inside the node's process: what it was told succeeded is what must survive."""

    def __init__(self, node):
        self.node = node
        self.acked = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        i = 0
        while not self.stop.is_set():
            key = f"load-{i}"
            i += 1
            try:
                self.node.apply(craft.codec.dumps([key, "x"]), timeout=5)
                self.acked.append(key)
            except craft.Error:
                pass  # not acknowledged: it may or may not be there

    def finish(self):
        self.stop.set()
        self.thread.join(30)
        return self.acked


def main():
    node_id, data_dir = int(sys.argv[1]), sys.argv[2]
    peers = {int(k): v for k, v in json.loads(sys.argv[3]).items()}
    security = settings(json.loads(sys.argv[4]))
    logging.basicConfig(filename=sys.argv[5], level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s")
    limits = json.loads(sys.argv[6]) if len(sys.argv) > 6 else None
    # Long election timeouts: the tests check that an attack did not move leadership, and a
    # loaded machine must not do it either.
    node = craft.Node(node_id, peers[node_id], data_dir, KV(), peers=peers, heartbeat_ms=50,
                      election_timeout_ms=1500, timeout=5, log_level="info", cluster_id=7,
                      security=security, limits=limits)
    node.start()
    print("ready", flush=True)
    load = None
    for line in sys.stdin:
        parts = line.split(maxsplit=1)
        if not parts:
            continue
        cmd, rest = parts[0], parts[1].strip() if len(parts) > 1 else ""
        try:
            if cmd == "apply":
                key, value = rest.split()
                r = node.apply(craft.codec.dumps([key, value]))
                print("ok", craft.codec.loads(r), flush=True)
            elif cmd == "get":
                print("data", json.dumps(node.read(lambda f: dict(f.data))), flush=True)
            elif cmd == "local":
                print("data", json.dumps(node.read(lambda f: dict(f.data), mode="stale")),
                      flush=True)
            elif cmd == "leader":
                leader = node.leader
                print("leader", leader[0] if leader else 0, flush=True)
            elif cmd == "status":
                print("status", json.dumps(node.status()), flush=True)
            elif cmd == "security":
                node.set_security(settings(json.loads(rest)))
                print("ok", flush=True)
            elif cmd == "load" and rest == "start":
                load = Load(node)
                print("ok", flush=True)
            elif cmd == "load" and rest == "stop":
                acked = load.finish() if load is not None else []
                print("acked", json.dumps(acked), flush=True)
            elif cmd == "quit":
                break
            else:
                print("err Usage", line.strip(), flush=True)
        except craft.Error as e:
            print("err", type(e).__name__, str(e).replace("\n", " "), flush=True)
    node.close()


if __name__ == "__main__":
    main()
