"""One node of a multi-process test cluster, driven by lines on stdin (test_process.py):
    apply <key> <value>   -> "ok <result>" | "err <ExceptionName> <message>"
    get                   -> "data <json>"   (a linearizable read)
    leader                -> "leader <id>"   (0 when none is known)
    quit
Usage: node_proc.py ID DATA_DIR PEERS_JSON"""

import json
import sys

import craft


class KV(craft.StateMachine):
    def __init__(self):
        self.data = {}

    def apply(self, command, index):
        key, value = craft.codec.loads(command)
        self.data[key] = value
        return craft.codec.dumps(len(self.data))


def main():
    node_id, data_dir, peers = int(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
    peers = {int(k): v for k, v in peers.items()}
    node = craft.Node(node_id, peers[node_id], data_dir, KV(), peers=peers, heartbeat_ms=20,
                      election_timeout_ms=200, timeout=5, log_level="error",
                      segment_size=1 << 20)
    node.start()
    print("ready", flush=True)
    for line in sys.stdin:
        parts = line.split()
        if not parts:
            continue
        try:
            if parts[0] == "apply":
                r = node.apply(craft.codec.dumps([parts[1], parts[2]]))
                print("ok", craft.codec.loads(r), flush=True)
            elif parts[0] == "get":
                print("data", json.dumps(node.read(lambda f: dict(f.data))), flush=True)
            elif parts[0] == "leader":
                leader = node.leader
                print("leader", leader[0] if leader else 0, flush=True)
            elif parts[0] == "quit":
                break
        except craft.Error as e:
            print("err", type(e).__name__, str(e).replace("\n", " "), flush=True)
    node.close()


if __name__ == "__main__":
    main()
