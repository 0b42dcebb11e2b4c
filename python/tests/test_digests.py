"""State digests (digest_interval=): every node hashes its state machine where a mark entry is
applied, the leader proposes its digest right after, and a node whose digest differs from the
leader's raises "diverged" and stops applying (docs/protocol.md, docs/python.md)."""

import random
import time

import pytest

import craft

from conftest import KV, Cluster, cmd, wait_until

INTERVAL = 10


class Salted(KV):
    """Nondeterministic on purpose: each instance folds a random salt into its state, as a
    state machine that reads the clock or a random number in apply would."""

    def __init__(self):
        super().__init__()
        self.salt = random.random()

    def apply(self, command, index):
        r = super().apply(command, index)
        self.data["salt"] = self.salt
        return r


def events(node):
    seen = {"diverged": [], "stopped": []}
    node.on("diverged", lambda *a: seen["diverged"].append(a))
    node.on("stopped", lambda *a: seen["stopped"].append(a))
    return seen


def test_a_nondeterministic_state_machine_is_caught_within_one_interval(tmp_path):
    c = Cluster(tmp_path, fsm=Salted, digest_interval=INTERVAL)
    try:
        leader = c.leader()
        followers = [i for i in c.nodes if i != leader]
        seen = {i: events(c.nodes[i]) for i in followers}
        written = 0
        # The first mark comes after INTERVAL commands, its digest value right after it: every
        # follower must have been caught before two intervals are written.
        for written in range(1, 2 * INTERVAL + 1):
            try:
                c.nodes[leader].apply(cmd("set", f"k{written}", written))
            except craft.Error:
                break  # the followers stopped: no quorum for more writes
            if all(seen[i]["diverged"] for i in followers):
                break
        wait_until(lambda: all(seen[i]["diverged"] for i in followers), 5,
                   "every follower to be caught")
        assert written <= 2 * INTERVAL
        for i in followers:
            index, leader_digest, ours = seen[i]["diverged"][0]
            assert index > 0 and leader_digest != ours and len(ours) == 64
            wait_until(lambda: seen[i]["stopped"], 5, "the stopped event")
            st = c.nodes[i].status()
            assert st["stopped"] and st["diverged"]["index"] == index
            assert st["role"] != "leader"
            # A state known to be wrong is never read, not even stale.
            with pytest.raises(craft.Diverged):
                c.nodes[i].read(lambda f: f.data, mode="stale")
            with pytest.raises(craft.Diverged):
                c.nodes[i].read(lambda f: f.data)
            with pytest.raises(craft.Closed):
                c.nodes[i].apply(cmd("set", "x", 1), timeout=1)
    finally:
        c.close()


def test_a_deterministic_state_machine_is_never_flagged(tmp_path):
    c = Cluster(tmp_path, digest_interval=INTERVAL, snapshot_entries=25, snapshot_trailing=5)
    try:
        leader = c.leader()
        seen = {i: events(n) for i, n in c.nodes.items()}
        with c.nodes[leader].session() as s:
            for k in range(3 * INTERVAL + 5):
                via = s.apply if k % 3 == 0 else c.nodes[1 + k % 3].apply
                via(cmd("inc", "n", 1))

        def same():
            ds = [n.status()["digest"] for n in c.nodes.values()]
            return ds[0] is not None and all(d == ds[0] for d in ds)
        wait_until(same, 10, "the same digest on every node")
        assert c.nodes[leader].status()["digest"]["index"] > 2 * INTERVAL
        for i in c.nodes:
            assert seen[i]["diverged"] == [] and seen[i]["stopped"] == []
            assert c.nodes[i].status()["diverged"] is None
    finally:
        c.close()


def test_digest_interval_is_checked(tmp_path):
    for bad in (-1, 1.5, "10", True):
        with pytest.raises(craft.ConfigError, match="digest_interval"):
            craft.Node(1, "127.0.0.1:0", str(tmp_path), KV(), peers={1: "127.0.0.1:0"},
                       digest_interval=bad)
