"""Log stores written in Python: MemoryLogStore's rules, a cluster on Python stores, and a
failing store hook that stops its node loudly."""

import logging
import threading

import pytest

import craft
from craft import MemoryLogStore

from conftest import KV, cmd, free_ports, wait_until


def E(i, t, data=b"x"):
    return (i, t, 1, data)


def test_memory_store_rules():
    s = MemoryLogStore()
    assert s.load_hard_state() == (0, 0, 0)
    s.save_hard_state(3, 2, 1)
    assert s.load_hard_state() == (3, 2, 1)
    assert s.bounds() == (1, 0)
    s.append([E(1, 1), E(2, 1), E(3, 2)])
    assert s.bounds() == (1, 3) and s.term(3) == 2 and s.term(0) == 0
    with pytest.raises(ValueError):
        s.append([E(5, 2)])  # a gap
    with pytest.raises(ValueError):
        s.append([E(4, 1)])  # a term going down
    s.truncate(3)
    assert s.bounds() == (1, 2)
    s.truncate(10)  # past the end: nothing
    s.append([E(3, 3), E(4, 3)])
    s.compact(2)
    assert s.bounds() == (3, 4) and s.term(2) == 1
    with pytest.raises(craft.LogCompacted):
        s.entries(1, 3)
    with pytest.raises(craft.LogUnavailable):
        s.entries(3, 9)
    with pytest.raises(craft.LogCompacted):
        s.truncate(2)
    assert [e[0] for e in s.entries(3, 4)] == [3, 4]
    # A snapshot whose last entry the log holds keeps the log; one it does not discards it.
    w = s.snapshot_begin((4, 3, 1, 0, b"conf"))
    w.write(b"abc")
    s.snapshot_commit(w)
    assert s.bounds() == (3, 4)
    assert s.snapshot_meta() == (4, 3, 1, 3, b"conf")
    assert s.snapshot_open().read(1, 10) == b"bc"
    w = s.snapshot_begin((10, 7, 1, 0, b"conf"))
    s.snapshot_commit(w)
    assert s.bounds() == (11, 10) and s.term(10) == 7
    with pytest.raises(ValueError):
        s.snapshot_begin((5, 3, 1, 0, b""))  # older than the latest


def start_cluster(tmp_path, stores, **extra):
    peers = {i: f"127.0.0.1:{p}" for i, p in zip((1, 2, 3), free_ports(3))}
    opts = dict(heartbeat_ms=20, election_timeout_ms=200, timeout=5)
    opts.update(extra)
    nodes = {i: craft.Node(i, peers[i], None, KV(), peers=peers, log_store=stores[i], **opts)
             for i in peers}
    for n in nodes.values():
        n.start()
    return peers, nodes, opts


def test_cluster_on_python_stores_with_snapshots_and_restart(tmp_path):
    stores = {i: MemoryLogStore() for i in (1, 2, 3)}
    peers, nodes, opts = start_cluster(tmp_path, stores, snapshot_entries=8, snapshot_trailing=2)
    try:
        node = nodes[1]
        for k in range(40):
            node.apply(cmd("inc", "n", 1))
        assert all(s.calls > 0 for s in stores.values())
        leader = wait_until(lambda: next((i for i, n in nodes.items() if n.is_leader), None), 5,
                            "a leader")
        assert stores[leader].snapshot_meta() is not None
        # A node restarted on the same store object comes back with its log and snapshot.
        victim = next(i for i in nodes if i != leader)
        nodes.pop(victim).close()
        for k in range(10):
            nodes[leader].apply(cmd("inc", "n", 1))
        nodes[victim] = craft.Node(victim, peers[victim], None, KV(), peers=peers,
                                   log_store=stores[victim], **opts)
        nodes[victim].start()
        wait_until(lambda: nodes[victim].read(lambda f: f.data.get("n"), mode="stale") == 50,
                   10, "the restarted node to catch up")
    finally:
        for n in nodes.values():
            n.close()


class FailingStore(MemoryLogStore):
    """Fails every append after the first `ok` ones."""

    def __init__(self, ok):
        super().__init__()
        self.ok = ok

    def append(self, entries):
        if self.ok <= 0:
            raise OSError("simulated disk failure")
        self.ok -= 1
        super().append(entries)


def test_a_failing_store_hook_stops_the_node_loudly(tmp_path, caplog):
    stores = {1: FailingStore(2), 2: MemoryLogStore(), 3: MemoryLogStore()}
    stopped = threading.Event()
    peers, nodes, _ = start_cluster(tmp_path, stores)
    nodes[1].on("stopped", lambda code, message: stopped.set())
    try:
        with caplog.at_level(logging.ERROR, logger="craft"):
            for k in range(20):
                try:
                    nodes[2].apply(cmd("set", f"k{k}", k), timeout=2)
                except craft.Error:
                    pass
                if stopped.is_set():
                    break
            assert stopped.wait(5), "the node with the failing store did not stop"
        assert "simulated disk failure" in caplog.text and "Traceback" in caplog.text
        assert nodes[1].status()["stopped"]
        with pytest.raises(craft.Error):
            nodes[1].apply(cmd("set", "x", 1), timeout=1)
        # The other two still form a majority and go on.
        new = wait_until(lambda: next((i for i in (2, 3) if nodes[i].is_leader), None), 10,
                         "a leader among the healthy nodes")
        nodes[new].apply(cmd("set", "after", 1), timeout=5)
    finally:
        for n in nodes.values():
            n.close()


def test_a_store_missing_methods_is_refused(tmp_path):
    port = free_ports(1)[0]
    # At once, naming what is missing (before: at start(), as "invalid argument").
    with pytest.raises(craft.ConfigError, match="log_store lacks the method"):
        craft.Node(1, f"127.0.0.1:{port}", None, KV(), join=True, log_store=object())
