"""craft.sim: the deterministic simulator with Python state machines."""

import pytest

import craft
from craft.sim import Cluster

from conftest import KV, cmd


class Log(craft.StateMachine):
    """Remembers every command in order: the sequence every node must agree on."""

    def __init__(self):
        self.seq = []

    def apply(self, command, index):
        if command == b"raise":
            raise RuntimeError("deterministic failure")
        self.seq.append((index, command))
        return str(len(self.seq)).encode()

    def snapshot(self):
        return craft.codec.dumps([[i, c] for i, c in self.seq])

    def restore(self, reader):
        self.seq = [(i, c) for i, c in craft.codec.loads(reader.read())]


def test_election_and_replication():
    c = Cluster(3, seed=1, fsm=KV)
    leader = c.wait_for_leader()
    assert c.status(leader)["role"] == "leader"
    assert craft.codec.loads(c.apply(cmd("set", "x", 1))) == 1
    assert craft.codec.loads(c.apply(cmd("inc", "x", 2))) == 3
    assert c.run_until(lambda c: c.converged(), 200)
    assert all(c.fsm(i).data == {"x": 3} for i in c.nodes)
    c.check()


def test_same_seed_same_run():
    def run(seed):
        lines = []
        c = Cluster(3, seed=seed, fsm=Log, trace=lines.append, drop_rate=0.1)
        c.wait_for_leader()
        for k in range(5):
            try:
                c.propose(b"c%d" % k)
            except craft.NotLeader:
                pass
            c.tick(3)
        return lines
    a, b = run(42), run(42)
    assert a == b and len(a) > 50
    assert run(43) != a


def test_apply_exception_is_deterministic_and_reaches_the_proposer():
    c = Cluster(3, seed=3, fsm=Log)
    c.wait_for_leader()
    with pytest.raises(craft.ApplyError) as info:
        c.apply(b"raise")
    assert info.value.type_name == "RuntimeError"
    assert isinstance(info.value.original, RuntimeError)
    assert c.apply(b"after") == b"1"
    c.run_until(lambda c: c.converged(), 200)
    # The failing entry counts as applied everywhere, with the same outcome.
    for i in c.nodes:
        kinds = [type(a.result).__name__ for a in c.applied(i)]
        assert kinds == ["ApplyError", "bytes"]


def test_leader_crash_reelection_and_restart_catches_up():
    c = Cluster(5, seed=11, fsm=Log)
    first = c.wait_for_leader()
    for k in range(5):
        c.apply(b"a%d" % k)
    c.crash(first)
    assert not c.is_up(first) and c.fsm(first) is None
    c.run_until(lambda c: c.leader() not in (None, first), 500)
    second = c.leader()
    assert second not in (None, first)
    for k in range(5):
        c.apply(b"b%d" % k)
    c.restart(first)
    assert c.run_until(lambda c: c.converged(), 1000)
    seqs = {i: [cm for _, cm in c.fsm(i).seq] for i in c.nodes}
    assert all(s == seqs[second] for s in seqs.values()), seqs
    assert len(seqs[second]) == 10
    c.check()


def test_partition_minority_cannot_commit_and_heal_converges():
    c = Cluster(5, seed=5, fsm=Log)
    old = c.wait_for_leader()
    others = [i for i in c.nodes if i != old]
    c.partition([old, others[0]], others[1:])
    index, term = c.propose(b"lost?", node=old)
    c.run_until(lambda c: any(c.status(i).get("role") == "leader" for i in others[1:]), 500)
    new = next(i for i in others[1:] if c.status(i).get("role") == "leader")
    c.apply(b"majority", node=new)
    assert c.status(old)["commit"] < index
    c.heal()
    assert c.run_until(lambda c: c.converged(), 1000)
    seqs = [[cm for _, cm in c.fsm(i).seq] for i in c.nodes]
    assert all(s == seqs[0] for s in seqs)
    assert b"majority" in seqs[0] and b"lost?" not in seqs[0]


def test_cut_network_and_stats():
    c = Cluster(3, seed=9, fsm=Log, trace=True)
    leader = c.wait_for_leader()
    follower = next(i for i in c.nodes if i != leader)
    c.cut(leader, follower)
    c.network(drop=0.2, duplicate=0.1, delay=(1, 30))
    for k in range(10):
        try:
            c.propose(b"m%d" % k)
        except craft.Error:
            pass
        c.tick(5)
    c.heal()
    c.network(drop=0, duplicate=0, delay=(1, 5))
    assert c.run_until(lambda c: c.leader() is not None and c.converged(), 2000)
    st = c.stats()
    assert st["messages"]["AppendEntries"]["sent"] > 0
    assert st["ticks"] > 0
    assert any("CUT" in line or "cut" in line for line in c.events)
    assert c.trace() and all(isinstance(x, str) for x in c.trace())


def test_snapshots_bring_back_a_lagging_node():
    c = Cluster(3, seed=21, fsm=Log, snapshot_entries=8, snapshot_trailing=2)
    leader = c.wait_for_leader()
    lagging = next(i for i in c.nodes if i != leader)
    c.crash(lagging)
    for k in range(40):
        c.apply(b"s%d" % k)
    c.restart(lagging)
    assert c.run_until(lambda c: c.converged(), 2000)
    assert [cm for _, cm in c.fsm(lagging).seq] == [cm for _, cm in c.fsm(leader).seq]
    assert c.status(leader)["first_index"] > 1  # the log was compacted
    c.check()


def test_membership_transfer_and_reads():
    c = Cluster(4, seed=8, fsm=KV, n_voters=3)
    leader = c.wait_for_leader()
    c.apply(cmd("set", "k", "v"))
    c.add_server(4, auto_promote=True)
    assert c.run_until(lambda c: c.converged([1, 2, 3, 4]) and c.fsm(4).data == {"k": "v"}, 1000)
    assert c.read(lambda fsm: fsm.data["k"]) == "v"
    target = next(i for i in (1, 2, 3) if i != leader)
    c.run_until(lambda c: False, 30)  # let the learner get promoted
    c.transfer_leadership(target)
    assert c.run_until(lambda c: c.leader() == target, 500)
    with pytest.raises(craft.NotLeader):
        c.read(node=leader)  # the old leader is a follower now: ReadIndex refuses
    c.check()


def test_errors_and_bad_options():
    with pytest.raises(TypeError):
        Cluster(3, bogus=1)
    with pytest.raises(craft.ConfigError):
        Cluster(0)
    c = Cluster(3, seed=2)
    with pytest.raises(craft.NotLeader):
        c.propose(b"x")  # no leader yet at t=0
    with pytest.raises(ValueError):
        c.crash(9)
    c.crash(1)
    with pytest.raises(ValueError):
        c.crash(1)
    with pytest.raises(ValueError):
        c.network(drop=2.0)


def test_violation_exception_carries_seed_and_trace():
    v = craft.Violation("election safety: two leaders in term 3", seed=77, trace=["a", "b"])
    assert v.seed == 77 and v.trace == ["a", "b"] and "seed 77" in str(v)
    assert isinstance(v, craft.Error)


def test_callback_exception_surfaces():
    class Bad(craft.StateMachine):
        def apply(self, command, index):
            return b""

        def snapshot(self):
            raise OSError("disk full")

    c = Cluster(3, seed=4, fsm=Bad, snapshot_entries=2, snapshot_trailing=0)
    c.wait_for_leader()
    with pytest.raises((OSError, craft.Error)):
        for k in range(10):
            c.apply(b"x")


# ---- property tests: every node applies the same sequence, whatever the faults ------------------

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st  # noqa: E402

fault = st.one_of(
    st.tuples(st.just("propose"), st.integers(0, 1000)),
    st.tuples(st.just("crash"), st.integers(1, 5)),
    st.tuples(st.just("restart"), st.integers(1, 5)),
    st.tuples(st.just("partition"), st.lists(st.integers(1, 5), min_size=1, max_size=4)),
    st.tuples(st.just("cut"), st.tuples(st.integers(1, 5), st.integers(1, 5))),
    st.tuples(st.just("heal"), st.none()),
    st.tuples(st.just("network"), st.tuples(st.floats(0, 0.3), st.floats(0, 0.2))),
    st.tuples(st.just("run"), st.integers(1, 50)),
)


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(1, 2**32), n=st.sampled_from([3, 5]), schedule=st.lists(fault, max_size=30),
       pre_vote=st.booleans(), snap=st.sampled_from([0, 4, 16]))
def test_property_every_node_applies_the_same_sequence(seed, n, schedule, pre_vote, snap):
    c = Cluster(n, seed=seed, fsm=Log, pre_vote=pre_vote, snapshot_entries=snap,
                snapshot_trailing=2)
    for op, arg in schedule:
        if op == "propose":
            try:
                c.propose(b"p%d" % arg)
            except craft.Error:
                pass
        elif op == "crash" and arg <= n and c.is_up(arg):
            c.crash(arg)
        elif op == "restart" and arg <= n and not c.is_up(arg):
            c.restart(arg)
        elif op == "partition":
            c.partition(sorted({x for x in arg if x <= n}))
        elif op == "cut" and arg[0] != arg[1] and max(arg) <= n:
            c.cut(*arg)
        elif op == "heal":
            c.heal()
        elif op == "network":
            c.network(drop=arg[0], duplicate=arg[1])
        elif op == "run":
            c.tick(arg)
    # Heal everything; the cluster must converge and agree.
    c.heal()
    c.network(drop=0, duplicate=0)
    for i in c.nodes:
        if not c.is_up(i):
            c.restart(i)
    for attempt in range(10):  # a final proposal may be lost to a last leader change
        c.wait_for_leader(max_ticks=3000)
        try:
            c.apply(b"final", max_ticks=3000)
            break
        except (craft.Dropped, craft.NotLeader):
            continue
    else:
        raise AssertionError(f"seed {seed}: the final proposal was never applied")
    assert c.run_until(lambda c: c.converged(), 3000), f"no convergence, seed {seed}"
    c.check()
    # Each node's state machine holds a prefix-consistent sequence, identical at the end.
    seqs = {i: c.fsm(i).seq for i in c.nodes}
    ref = max(seqs.values(), key=len)
    for s in seqs.values():
        assert s == ref, f"seed {seed}: {s} != {ref}"
