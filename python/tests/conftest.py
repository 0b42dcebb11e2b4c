"""Shared fixtures: free loopback ports, a cluster of real nodes, a bounded wait helper.

Every test here is bounded in time: nodes get short timeouts, waits have deadlines, and the
pytest-level watchdog below fails (rather than hangs) a test that runs far too long."""

import faulthandler
import os
import sys
import time

import pytest

import craft

# Test ports come from below the kernel's ephemeral range: tests/free_ports.py says why.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "tests"))
from free_ports import free_ports, free_range  # noqa: E402,F401

# WAL segments of test nodes: 1 MiB instead of the 64 MiB a node preallocates by default, so a
# suite of clusters does not take hundreds of MB of disk (issue 18).
SEGMENT = 1 << 20

# A hung test dumps every thread's stack and the run goes on failing, never hanging CI.
WATCHDOG_S = float(os.environ.get("CRAFT_TEST_WATCHDOG", "120"))


@pytest.fixture(autouse=True)
def _watchdog():
    faulthandler.dump_traceback_later(WATCHDOG_S, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def wait_until(pred, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


class KV(craft.StateMachine):
    """A dict replicated through craft.codec commands: ["set", k, v], ["get", k], ["inc", k]."""

    def __init__(self):
        self.data = {}
        self.applied = []

    def apply(self, command, index):
        op, *args = craft.codec.loads(command)
        self.applied.append(index)
        if op == "set":
            self.data[args[0]] = args[1]
            return craft.codec.dumps(args[1])
        if op == "inc":
            self.data[args[0]] = self.data.get(args[0], 0) + args[1]
            return craft.codec.dumps(self.data[args[0]])
        if op == "get":
            return craft.codec.dumps(self.data.get(args[0]))
        if op == "fail":
            raise KeyError(args[0])
        raise ValueError(f"unknown op {op!r}")

    def snapshot(self):
        return craft.codec.dumps(self.data)

    def restore(self, reader):
        self.data = craft.codec.loads(reader.read())


def cmd(*parts):
    return craft.codec.dumps(list(parts))


class Cluster:
    """n real nodes on 127.0.0.1 in this process."""

    def __init__(self, tmp_path, n=3, fsm=KV, **options):
        self.tmp = tmp_path
        self.fsm_factory = fsm
        self.peers = {i: f"127.0.0.1:{p}" for i, p in zip(range(1, n + 1), free_ports(n))}
        self.options = dict(fsync=False, heartbeat_ms=20, election_timeout_ms=200, timeout=5.0,
                            segment_size=SEGMENT)
        self.options.update(options)
        self.nodes = {}
        for i in self.peers:
            self.start(i)

    def start(self, i, **extra):
        opts = dict(self.options, **extra)
        node = craft.Node(i, self.peers[i], str(self.tmp / f"n{i}"), self.fsm_factory(),
                          peers=self.peers, **opts)
        node.start()
        self.nodes[i] = node
        return node

    def stop(self, i):
        self.nodes.pop(i).close()

    def leader(self, timeout=10.0):
        def find():
            for i, n in self.nodes.items():
                if n.is_leader:
                    return i
            return None
        return wait_until(find, timeout, "a leader")

    def close(self):
        for n in list(self.nodes.values()):
            n.close()
        self.nodes.clear()


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path)
    yield c
    c.close()
