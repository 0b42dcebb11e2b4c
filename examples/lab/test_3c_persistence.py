"""Part C: persistence (6.5840's 3C). Run: python -m pytest test_3c_persistence.py

Servers crash and restart from what their disks hold; disks are slow (a write takes longer
than a message), so a server that answers, votes or counts before its disk holds what it
promises is caught: a crash takes the promise back. Figure 8 and Figure 8 (unreliable) crash
leaders at random while commands flow; churn mixes crashes, restarts and partitions. The
simulator checks every invariant after every event, on every server's disk as well."""

import pytest

from harness import Lab, seeds


@pytest.mark.parametrize("seed", seeds())
def test_persist1(seed):
    lab = Lab(3, seed, slow_disks=True)
    lab.one(b"11", 3)
    # Everyone crashes and restarts.
    for i in range(1, 4):
        lab.crash(i)
    for i in range(1, 4):
        lab.restart(i)
    lab.one(b"12", 3)
    leader1 = lab.check_one_leader()
    lab.crash(leader1)
    lab.restart(leader1)
    lab.one(b"13", 3)
    leader2 = lab.check_one_leader()
    lab.crash(leader2)
    lab.one(b"14", 2)
    lab.restart(leader2)
    index = lab.one(b"15", 3)
    lab.wait(index, 3)
    lab.finish()


@pytest.mark.parametrize("seed", seeds())
def test_persist2(seed):
    lab = Lab(5, seed, slow_disks=True)
    index = 1
    for it in range(5):
        lab.one(b"a%d" % it, 5)
        leader1 = lab.check_one_leader()
        # Two followers crash; the other three go on.
        down = [(leader1 + 1) % 5 + 1, (leader1 + 2) % 5 + 1]
        for i in down:
            lab.crash(i)
        lab.one(b"b%d" % it, 3)
        # Now three others crash: with the first two back there is no majority of the
        # up-to-date servers, yet what was committed must survive.
        up = [i for i in range(1, 6) if i not in down]
        for i in up[:3]:
            lab.crash(i)
        for i in down:
            lab.restart(i)
        lab.run(300)
        lab.restart(up[0])
        index = lab.one(b"c%d" % it, 3)
        for i in up[1:3]:
            lab.restart(i)
    lab.wait(index, 5)
    lab.finish()


@pytest.mark.parametrize("seed", seeds())
def test_persist3(seed):
    """A partitioned leader and a crashed follower."""
    lab = Lab(3, seed, slow_disks=True)
    lab.one(b"101", 3)
    leader = lab.check_one_leader()
    lab.disconnect((leader + 1) % 3 + 1)
    lab.one(b"102", 2)
    lab.crash(leader % 3 + 1)
    lab.crash(leader)
    lab.connect((leader + 1) % 3 + 1)
    lab.restart(leader)
    lab.one(b"103", 2)
    lab.restart(leader % 3 + 1)
    lab.one(b"104", 3)
    lab.finish()


def figure8(lab, iterations):
    """Leaders crash at random moments while commands are proposed (6.5840's Figure 8 test):
    a leader that commits an older term's entry by counting replicas, or forgets a vote,
    breaks safety here sooner or later."""
    n = lab.n
    lab.one(b"start", 1)
    for it in range(iterations):
        lab.propose_at_leader(b"f%d" % it)
        lab.run(lab.rng.randint(0, 13) * 10 if lab.rng.random() < 0.9 else
                lab.rng.randint(0, 50) * 10)
        got = lab.leaders()
        if got:
            victim = got[max(got)][0]
            if lab.rng.random() < 0.5 or len(lab.up()) == n:
                lab.crash(victim)
        if len(lab.up()) < 3:
            down = [i for i in range(1, n + 1) if not lab.c.is_up(i)]
            lab.restart(lab.rng.choice(down))
    for i in range(1, n + 1):
        lab.restart(i)
    lab.one(b"end", n)


@pytest.mark.parametrize("seed", seeds())
def test_figure8(seed):
    lab = Lab(5, seed, slow_disks=True)
    figure8(lab, 60)
    lab.finish()


@pytest.mark.parametrize("seed", seeds())
def test_figure8_unreliable(seed):
    lab = Lab(5, seed, reliable=False, slow_disks=True)
    figure8(lab, 60)
    lab.c.network(drop=0.0, duplicate=0.0, delay=(1, 10))
    lab.one(b"reliable again", 5)
    lab.finish()


@pytest.mark.parametrize("seed", seeds())
def test_unreliable_agree(seed):
    lab = Lab(5, seed, reliable=False)
    for it in range(10):
        for k in range(4):
            lab.propose_at_leader(b"u%d.%d" % (it, k))
        lab.one(b"u%d" % it, 1)
    lab.c.network(drop=0.0, duplicate=0.0, delay=(1, 10))
    lab.one(b"last", 5)
    lab.finish()


@pytest.mark.parametrize("seed", seeds())
def test_churn(seed):
    """Crashes, restarts, partitions and proposals at random, on an unreliable network."""
    lab = Lab(5, seed, reliable=False, slow_disks=True)
    for it in range(80):
        r = lab.rng.random()
        i = lab.rng.randint(1, 5)
        if r < 0.2:
            lab.crash(i)
        elif r < 0.5:
            lab.restart(i)
        elif r < 0.6:
            lab.disconnect(i)
        elif r < 0.8:
            lab.connect(i)
        for k in range(lab.rng.randint(0, 3)):
            lab.propose_at_leader(b"ch%d.%d" % (it, k))
        lab.run(lab.rng.randint(1, 20) * 10)
    for i in range(1, 6):
        lab.restart(i)
        lab.connect(i)
    lab.c.network(drop=0.0, duplicate=0.0, delay=(1, 10))
    index = lab.one(b"after churn", 5)
    lab.wait(index, 5)
    lab.finish()


@pytest.mark.parametrize("seed", seeds())
def test_vote_survives_a_crash(seed):
    """Two candidates in one term and a voter that crashes right after voting: a server that
    sends its vote before its disk holds it comes back without that vote and votes again in
    the same term -- and the term has two leaders. Clocks are stopped so that the test decides
    who campaigns; the second candidate's request reaches the voter only after its restart (a
    message the network held up)."""
    # A crash loses the write in progress whole (no torn prefix that might hold the vote).
    lab = Lab(3, seed, slow_disks=True, disk_min_ms=20, disk_max_ms=60, torn_writes=False)
    lab.c.set_clock(None, 0)
    lab.run(100)  # the bootstrap writes
    a, b, v = lab.rng.sample([1, 2, 3], 3)
    lost = lab.c.drop(types="RequestVote", from_=b, to=v)
    # a and b do not hear from each other: neither learns that the other won.
    unheard = [lab.c.drop(from_=a, to=b), lab.c.drop(from_=b, to=a)]
    lab.c.campaign(a)
    lab.c.campaign(b)
    # v grants a's request (with pre-vote, as craft's core does, b may have won a's vote
    # first: then there is nothing to crash for) ...
    if lab.c.run_until(lambda c: c.status(v)["vote"] == a, 100):
        # ... and crashes before its disk finished writing that vote; it restarts at once.
        lab.crash(v)
        lab.restart(v)
        st = lab.c.status(b)
        if st["role"] == "candidate":
            lab.c.inject({"type": "RequestVote", "from": b, "to": v, "term": st["term"],
                          "last_log_index": st["last_index"], "last_log_term": st["last_term"]})
    lost.remove()
    lab.run(400)
    for rule in unheard:
        rule.remove()
    lab.c.set_clock(None, 10)
    lab.one(b"after", 3)
    lab.finish()
