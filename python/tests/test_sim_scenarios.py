"""Scenarios of the Raft paper and thesis, etcd's tests and MIT 6.5840, written only against the
public craft.sim API, over several seeds each, with every invariant checked after every event.
They are what a course's or an auditor's suite would run against craft.sim (issue 11)."""

import pytest

import craft
from craft.sim import Cluster

SEEDS = range(1, 9)


def leaders(c):
    return [i for i in c.nodes if c.is_up(i) and c.status(i)["role"] == "leader"]


def converge(c, nodes=None, ticks=2000):
    assert c.run_until(lambda c: c.converged(nodes), ticks), c.trace()[-20:]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", [1, 3, 5])
def test_initial_election_one_leader_and_terms_agree(seed, n):
    c = Cluster(n, seed=seed)
    leader = c.wait_for_leader()
    c.tick(50)
    assert leaders(c) == [leader]
    terms = {c.status(i)["term"] for i in c.nodes}
    assert len(terms) == 1
    c.check()


@pytest.mark.parametrize("seed", SEEDS)
def test_reelection_after_the_leader_fails_and_no_disruption_when_it_returns(seed):
    c = Cluster(3, seed=seed)
    old = c.wait_for_leader()
    c.crash(old)
    new = c.wait_for_leader()
    assert new != old
    term = c.status(new)["term"]
    c.restart(old)
    c.tick(100)
    assert c.leader() == new and c.status(new)["term"] == term
    c.apply(b"after")
    c.check()


@pytest.mark.parametrize("seed", SEEDS)
def test_no_agreement_without_a_majority_then_agreement_once_back(seed):
    c = Cluster(5, seed=seed)
    leader = c.wait_for_leader()
    c.apply(b"one")
    others = [i for i in c.nodes if i != leader]
    for i in others[:3]:
        c.crash(i)
    index, _ = c.propose(b"two", leader)
    c.tick(100)
    assert c.status(leader)["commit"] < index
    for i in others[:3]:
        c.restart(i)
    leader = c.wait_for_leader()
    c.apply(b"three")
    converge(c)
    c.check()


@pytest.mark.parametrize("seed", SEEDS)
def test_persistence_whole_cluster_restarts(seed):
    c = Cluster(3, seed=seed)
    c.wait_for_leader()
    for k in range(10):
        c.apply(b"x%d" % k)
    for i in c.nodes:
        c.crash(i)
    for i in c.nodes:
        c.restart(i)
    c.wait_for_leader()
    c.apply(b"after")
    converge(c)
    datas = [a.data for a in c.applied(1)]
    assert datas[-1] == b"after" and b"x9" in datas
    c.check()


@pytest.mark.parametrize("seed", SEEDS)
def test_figure_8_unreliable(seed):
    c = Cluster(5, seed=seed, drop_rate=0.1, max_delay_ms=30, disk_max_ms=40)
    rng = __import__("random").Random(seed)
    for step in range(60):
        leader = c.leader()
        if leader is not None:
            try:
                c.propose(b"s%d" % step, leader)
            except craft.Error:
                pass
            if rng.random() < 0.3:
                c.crash(leader)
        down = [i for i in c.nodes if not c.is_up(i)]
        if down and (len(down) > 2 or rng.random() < 0.5):
            c.restart(rng.choice(down))
        c.run(rng.randint(10, 200))
    for i in c.nodes:
        if not c.is_up(i):
            c.restart(i)
    c.network(drop=0.0)
    c.wait_for_leader(3000)
    c.apply(b"final", max_ticks=3000)
    converge(c, ticks=5000)
    c.check()


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("crash", [False, True])
def test_a_leader_that_removes_itself_and_loses_leadership_before_it_commits(seed, crash):
    """Thesis 4.2.2: {1, 2}; the leader appends its own removal while the other cannot hear
    it, then crashes (or steps down by check-quorum). The other server still counts the old
    leader as a voter and needs its vote: the removed server must campaign until its removal
    commits."""
    c = Cluster(2, seed=seed)
    leader = c.wait_for_leader()
    other = 2 if leader == 1 else 1
    c.apply(b"before")
    c.cut(leader, other)
    c.remove_server(leader)
    if crash:
        c.run(5)
        c.crash(leader)
        c.run(50)
        c.restart(leader)
    else:
        c.tick(40)
    c.heal()
    assert c.run_until(lambda c: c.leader() == other, 3000), c.trace()[-30:]
    c.apply(b"after", node=other)
    c.check()


@pytest.mark.parametrize("seed", SEEDS)
def test_membership_down_to_one_voter_and_back(seed):
    c = Cluster(3, seed=seed)
    leader = c.wait_for_leader()
    c.apply(b"first")  # a change needs an entry of the leader's term committed (2015 fix)
    for victim in [i for i in c.nodes if i != leader]:
        c.remove_server(victim)
        assert c.run_until(lambda c: c.status(leader)["commit"] >= c.status(leader)["last_index"],
                           500)
        c.tick(5)
    c.apply(b"alone")
    for back in [i for i in c.nodes if i != leader]:
        c.add_server(back, auto_promote=True)
        c.tick(50)
    c.apply(b"together")
    converge(c, ticks=3000)
    c.check()


@pytest.mark.parametrize("seed", SEEDS)
def test_lagging_follower_catches_up_by_snapshot(seed):
    c = Cluster(3, seed=seed, snapshot_entries=8, snapshot_trailing=2, snapshot_chunk_bytes=16)
    leader = c.wait_for_leader()
    lagging = [i for i in c.nodes if i != leader][0]
    c.crash(lagging)
    for k in range(40):
        c.apply(b"k%d" % k)
    c.restart(lagging)
    converge(c, ticks=3000)
    assert c.stats()["messages"]["InstallSnapshot"]["delivered"] > 0
    c.check()


@pytest.mark.parametrize("seed", SEEDS)
def test_read_on_a_new_leader_sees_every_committed_write(seed):
    c = Cluster(3, seed=seed, fsm=None)
    leader = c.wait_for_leader()
    index, _ = c.propose(b"w", leader)
    c.run_until(lambda c: c.status(leader)["commit"] >= index, 200)
    c.crash(leader)
    new = c.wait_for_leader()
    record = c.read(node=new)
    assert record["index"] >= index
    c.check()


@pytest.mark.parametrize("seed", SEEDS)
def test_partitioned_old_leader_cannot_commit_or_serve_reads(seed):
    c = Cluster(5, seed=seed)
    old = c.wait_for_leader()
    c.apply(b"x")
    c.partition([old], [i for i in c.nodes if i != old])
    index, _ = c.propose(b"lost", old)
    c.tick(60)
    new = c.leader()
    assert new is not None and new != old
    assert c.status(old)["commit"] < index
    with pytest.raises(craft.Error):
        c.read(node=old, max_ticks=100)
    c.heal()
    converge(c, ticks=2000)
    assert all(a.data != b"lost" for a in c.applied(new))
    c.check()
