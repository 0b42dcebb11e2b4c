"""Part B: log replication (6.5840's 3B). Run: python -m pytest test_3b_replication.py

Commands proposed at the leader are applied on every server in the same order; a follower
that was away catches up; a leader without a majority commits nothing; an old leader's
uncommitted entries are replaced; a follower far behind on a divergent log is brought back in
a few round trips (conflict backtracking). The simulator checks log matching, leader
completeness, the commit rule and state machine safety after every event."""

import pytest

from harness import Lab, LabError, seeds


@pytest.mark.parametrize("seed", seeds())
def test_basic_agree(seed):
    lab = Lab(3, seed)
    lab.check_one_leader()
    last = 0
    for k in range(3):
        count, _ = lab.n_committed(last + 1)
        assert count == 0, "a command was applied before it was proposed"
        index = lab.one(b"cmd%d" % k, 3)
        assert index > last, f"index {index} after {last}"
        last = index
    lab.finish()


@pytest.mark.parametrize("seed", seeds())
def test_fail_agree(seed):
    lab = Lab(3, seed)
    lab.one(b"101", 3)
    leader = lab.check_one_leader()
    follower = leader % 3 + 1
    lab.disconnect(follower)
    # The other two agree without it.
    for k in range(102, 106):
        lab.one(b"%d" % k, 2)
    lab.connect(follower)
    # It catches up, and takes part again.
    lab.one(b"106", 3)
    lab.one(b"107", 3)
    lab.finish()


@pytest.mark.parametrize("seed", seeds())
def test_fail_no_agree(seed):
    lab = Lab(5, seed)
    lab.one(b"10", 5)
    leader = lab.check_one_leader()
    for k in (1, 2, 3):
        lab.disconnect((leader + k - 1) % 5 + 1)
    got = lab.propose_at_leader(b"20")
    assert got is not None, "the leader refused a proposal"
    index = got[0]
    lab.run(2000)
    count, _ = lab.n_committed(index)
    assert count == 0, f"{count} servers applied index {index} without a majority"
    for k in (1, 2, 3):
        lab.connect((leader + k - 1) % 5 + 1)
    lab.check_one_leader()
    lab.one(b"1000", 5)
    lab.finish()


@pytest.mark.parametrize("seed", seeds())
def test_concurrent_starts(seed):
    lab = Lab(3, seed)
    lab.check_one_leader()
    got = [lab.propose_at_leader(b"c%d" % k) for k in range(5)]
    assert all(g is not None for g in got), "the leader refused a proposal"
    indexes = sorted(g[0] for g in got)
    assert len(set(indexes)) == 5, f"two commands got one index: {indexes}"
    for index in indexes:
        lab.wait(index, 3)
    lab.finish()


@pytest.mark.parametrize("seed", seeds())
def test_rejoin(seed):
    lab = Lab(3, seed)
    lab.one(b"101", 3)
    leader1 = lab.check_one_leader()
    # The leader is cut off with entries nobody else has.
    lab.disconnect(leader1)
    for k in (102, 103, 104):
        lab.c.propose(b"%d" % k, node=leader1)
    # The other two elect a new leader and commit without it.
    lab.one(b"103", 2)
    leader2 = lab.check_one_leader()
    lab.disconnect(leader2)
    # The old leader comes back: its stale entries must not win.
    lab.connect(leader1)
    lab.one(b"104", 2)
    lab.connect(leader2)
    lab.one(b"105", 3)
    lab.finish()


@pytest.mark.parametrize("seed", seeds())
def test_backup(seed):
    """A leader and a follower cut off with 50 entries that will never commit; the other three
    move on with 50 entries of their own; the isolated pair comes back. Bringing a follower's
    divergent log back must take a few round trips per term, not one per entry."""
    lab = Lab(5, seed)
    lab.one(b"start", 5)
    leader1 = lab.check_one_leader()
    others = [i for i in range(1, 6) if i != leader1]
    partner = others[0]
    for i in others[1:]:
        lab.disconnect(i)
    for k in range(50):
        lab.c.propose(b"lost%d" % k, node=leader1)
    lab.run(500)
    lab.disconnect(leader1)
    lab.disconnect(partner)
    for i in others[1:]:
        lab.connect(i)
    for k in range(50):
        lab.one(b"kept%d" % k, 3)
    # Everyone back: the two stale logs are repaired.
    lab.rejections = 0
    lab.connect(leader1)
    lab.connect(partner)
    lab.one(b"end", 5)
    # With conflict hints a divergent follower costs a few rejections per term it holds; one
    # per entry would be about 50 for each of the two.
    if lab.rejections > 30:
        raise LabError(f"{lab.rejections} rejected AppendEntries to repair two followers 50 "
                       "entries apart: back up a whole term per round trip (the conflict "
                       "hint), not one entry")
    lab.finish()
