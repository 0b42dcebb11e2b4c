"""The state machine off the node's loop (docs/python.md, "Threads"): a slow apply in Python
must not stop heartbeats, reads must still see every write committed before them and run with
no apply in progress, and snapshots must still be taken while applies are slow.

The slow apply sleeps 2 s (the GIL is released meanwhile, as it is in most real slow applies:
I/O, a C extension), and does not return before the test lets it, so nothing here depends on
the machine's speed: while it blocks, the test waits (bounded) for the loops to commit more
writes. Before the state machine had a thread of its own that wait could only time out, and a
1 s apply deposed the leader (the term went 2 -> 4)."""

import threading
import time

import craft
from craft import _craft

from conftest import Cluster, wait_until

SLOW = b"slow"


class Gate:
    """Shared by the state machines of one test: slow applies block on it."""

    def __init__(self):
        self.cv = threading.Condition()
        self.inside = 0
        self.released = False

    def enter(self):
        with self.cv:
            self.inside += 1
            self.cv.notify_all()
        time.sleep(2.0)
        with self.cv:
            self.cv.wait_for(lambda: self.released, timeout=30)
            self.inside -= 1

    def count_inside(self):
        with self.cv:
            return self.inside

    def release(self):
        with self.cv:
            self.released = True
            self.cv.notify_all()


def counter_factory(gate, per_apply_s=0.0):
    class Counter(craft.StateMachine):
        def __init__(self):
            self.value = 0
            self.slow_done = False
            self.last = 0
            self.out_of_order = 0
            self.threads = set()

        def apply(self, command, index):
            self.threads.add(threading.get_ident())
            if index <= self.last:
                self.out_of_order += 1
            self.last = index
            if per_apply_s:
                time.sleep(per_apply_s)
            if command == SLOW:
                gate.enter()
                self.slow_done = True
            else:
                self.value += int(command)
            return str(self.value).encode()

        def snapshot(self):
            return str(self.value).encode()

        def restore(self, reader):
            self.value = int(reader.read())

    return Counter


def submit(node, command, answers):
    """Proposes without waiting: the answer lands in answers (on the state machine's thread)."""
    node._c.submit_async(_craft.OP_PROPOSE, command,
                         lambda status, index, data, *rest: answers.append((status, index, data)),
                         20.0)


def test_slow_apply_causes_no_election(tmp_path):
    gate = Gate()
    c = Cluster(tmp_path, 3, fsm=counter_factory(gate), heartbeat_ms=50,
                election_timeout_ms=500, timeout=20.0)
    try:
        lid = c.leader()
        time.sleep(0.3)  # the followers learn the leader
        leader = c.nodes[lid]
        before = {i: n.status() for i, n in c.nodes.items()}
        answers = []
        submit(leader, SLOW, answers)
        wait_until(lambda: gate.count_inside() == 3, 10, "every node inside the slow apply")
        # While the state machines are busy the loops go on: these commit.
        for _ in range(20):
            submit(leader, b"1", answers)
        wait_until(lambda: leader.status()["last_index"] >= before[lid]["last_index"] + 21, 10,
                   "the proposals to be appended")
        target = leader.status()["last_index"]
        wait_until(lambda: leader.status()["commit"] >= target, 10,
                   "a commit while the state machine is busy")
        busy = leader.status()
        assert busy["applied"] < target  # committed, not applied: apply is still inside
        assert not any(n.fsm.slow_done for n in c.nodes.values())
        gate.release()
        wait_until(lambda: len(answers) == 21, 30, "every answer")
        assert all(a[0] == 0 for a in answers), answers
        wait_until(lambda: all(n.status()["applied"] >= target for n in c.nodes.values()), 10,
                   "every node to apply")
        for i, n in c.nodes.items():
            s = n.status()
            assert s["counters"]["elections"] == before[i]["counters"]["elections"], i
            assert s["term"] == before[i]["term"], i
            assert s["leader"] == lid, i
            assert n.fsm.value == 20 and n.fsm.slow_done and n.fsm.out_of_order == 0
        assert leader.is_leader
        # apply ran on a thread of its own, neither the caller's nor the loop's.
        assert threading.get_ident() not in leader.fsm.threads
    finally:
        gate.release()
        c.close()


def test_read_races_a_slow_apply(tmp_path):
    """Reads submitted while a slow apply runs are answered after it, and see its effect; the
    read function runs on the state machine's thread with no apply in progress."""
    gate = Gate()
    c = Cluster(tmp_path, 3, fsm=counter_factory(gate), heartbeat_ms=50,
                election_timeout_ms=500, timeout=20.0)
    try:
        lid = c.leader()
        time.sleep(0.3)
        leader = c.nodes[lid]
        follower = c.nodes[lid % 3 + 1]
        assert leader.apply(b"5") == b"5"
        answers = []
        submit(leader, SLOW, answers)
        wait_until(lambda: gate.count_inside() == 3, 10, "every node inside the slow apply")
        seen = {}

        def reader(name, node):
            seen[name] = node.read(lambda fsm: (fsm.slow_done, fsm.value,
                                                threading.get_ident() in fsm.threads))

        threads = [threading.Thread(target=reader, args=(name, node))
                   for name, node in (("leader", leader), ("follower", follower))]
        for t in threads:
            t.start()
        time.sleep(0.2)
        assert seen == {}  # they wait for the slow apply, which cannot end before release
        gate.release()
        for t in threads:
            t.join(30)
        assert seen == {"leader": (True, 5, True), "follower": (True, 5, True)}
        wait_until(lambda: answers, 10, "the slow command's answer")
    finally:
        gate.release()
        c.close()


def test_snapshots_are_taken_while_applies_are_slow(tmp_path):
    """Every apply takes 10 ms: snapshots still happen on every node, a node that was down
    catches up by snapshot, nobody is deposed."""
    gate = Gate()
    c = Cluster(tmp_path, 3, fsm=counter_factory(gate, per_apply_s=0.01), heartbeat_ms=50,
                election_timeout_ms=500, timeout=20.0, snapshot_entries=15,
                snapshot_trailing=3)
    try:
        lid = c.leader()
        leader = c.nodes[lid]
        down = lid % 3 + 1
        term = leader.status()["term"]
        c.stop(down)
        answers = []
        for _ in range(60):
            submit(leader, b"10", answers)
        wait_until(lambda: len(answers) == 60, 30, "every answer")
        assert all(a[0] == 0 for a in answers)
        wait_until(lambda: all(n.status()["snapshot_index"] > 0 for n in c.nodes.values()), 20,
                   "a snapshot on every node")
        c.start(down)
        target = leader.status()["applied"]
        wait_until(lambda: c.nodes[down].status()["applied"] >= target, 20, "the catch-up")
        assert c.nodes[down].status()["snapshot_index"] > 0
        for n in c.nodes.values():
            assert n.read(lambda fsm: fsm.value) == 600
            assert n.status()["term"] == term
    finally:
        gate.release()
        c.close()
