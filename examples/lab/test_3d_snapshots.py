"""Part D: log compaction (6.5840's 3D). Run: python -m pytest test_3d_snapshots.py

The simulator asks each server for a snapshot of its state machine every 10 applied entries
(snapshot_entries); the server keeps only the log after it. A follower that falls behind the
leader's log then needs the snapshot itself (InstallSnapshot), sent by the leader and installed
in place of its log. The simulator checks that every snapshot installed holds exactly the
committed entries up to its index, and that no state machine goes back."""

import pytest

from harness import Lab, seeds

EVERY = 10


def snapshots_sent(lab):
    return lab.c.stats()["messages"]["InstallSnapshot"]["sent"]


@pytest.mark.parametrize("seed", seeds())
def test_snapshot_basic(seed):
    lab = Lab(3, seed, snapshot_entries=EVERY)
    for k in range(40):
        lab.one(b"s%d" % k, 3)
    # Every server compacted its log.
    for i in range(1, 4):
        st = lab.c.status(i)
        assert st["first_index"] > EVERY, f"server {i} still holds its log from {st['first_index']}"
    lab.finish()


@pytest.mark.parametrize("seed", seeds())
def test_snapshot_install(seed):
    lab = Lab(3, seed, snapshot_entries=EVERY)
    lab.one(b"first", 3)
    leader = lab.check_one_leader()
    behind = leader % 3 + 1
    lab.disconnect(behind)
    for k in range(40):
        lab.one(b"i%d" % k, 2)
    lab.connect(behind)
    index = lab.one(b"last", 3)
    lab.wait(index, 3)
    assert snapshots_sent(lab) > 0, "the follower caught up without a snapshot"
    lab.finish()


@pytest.mark.parametrize("seed", seeds())
def test_snapshot_install_unreliable(seed):
    lab = Lab(5, seed, reliable=False, snapshot_entries=EVERY)
    lab.one(b"first", 5)
    for it in range(4):
        victim = lab.rng.randint(1, 5)
        lab.disconnect(victim)
        for k in range(15):
            lab.propose_at_leader(b"u%d.%d" % (it, k))
            lab.run(30)
        lab.one(b"checkpoint%d" % it, 3)
        lab.connect(victim)
    lab.c.network(drop=0.0, duplicate=0.0, delay=(1, 10))
    index = lab.one(b"last", 5)
    lab.wait(index, 5)
    lab.finish()


@pytest.mark.parametrize("seed", seeds())
def test_snapshot_install_crash(seed):
    """Servers crash and restart from their snapshot and the log after it."""
    lab = Lab(5, seed, slow_disks=True, snapshot_entries=EVERY)
    lab.one(b"first", 5)
    for it in range(5):
        victim = lab.rng.randint(1, 5)
        lab.crash(victim)
        for k in range(12):
            lab.propose_at_leader(b"c%d.%d" % (it, k))
            lab.run(30)
        lab.one(b"checkpoint%d" % it, 4)
        lab.restart(victim)
    index = lab.one(b"last", 5)
    lab.wait(index, 5)
    lab.finish()


@pytest.mark.parametrize("seed", seeds())
def test_snapshot_all_crash(seed):
    lab = Lab(3, seed, slow_disks=True, snapshot_entries=EVERY)
    for it in range(3):
        for k in range(EVERY + 3):
            lab.one(b"a%d.%d" % (it, k), 3)
        for i in range(1, 4):
            lab.crash(i)
        for i in range(1, 4):
            lab.restart(i)
    lab.one(b"last", 3)
    lab.finish()
