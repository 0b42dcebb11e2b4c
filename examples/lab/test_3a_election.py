"""Part A: leader election (6.5840's 3A). Run: python -m pytest test_3a_election.py

A leader is elected, stays leader while nothing fails, and is replaced when it is cut off; a
minority never elects one. The simulator checks after every event that no term has two
leaders and that every leader was elected by a majority whose votes are on disk."""

import pytest

from harness import Lab, seeds


@pytest.mark.parametrize("seed", seeds())
def test_initial_election(seed):
    lab = Lab(3, seed)
    lab.check_one_leader()
    term1 = lab.check_terms()
    assert term1 >= 1
    # Nothing fails: the leader stays and the term does not move.
    lab.run(2000)
    term2 = lab.check_terms()
    assert term2 == term1, f"the term changed from {term1} to {term2} with no failure"
    lab.check_one_leader()
    lab.finish()


@pytest.mark.parametrize("seed", seeds())
def test_reelection(seed):
    lab = Lab(3, seed)
    leader1 = lab.check_one_leader()
    # The leader is cut off: the other two elect a new one.
    lab.disconnect(leader1)
    leader2 = lab.check_one_leader()
    assert leader2 != leader1
    # The old leader comes back: it must not disturb the new one.
    lab.connect(leader1)
    lab.check_one_leader()
    # No majority: no leader.
    leader2 = lab.check_one_leader()
    lab.disconnect(leader2)
    lab.disconnect(leader2 % 3 + 1)
    lab.run(2000)
    lab.check_no_leader()
    # A majority again: a leader.
    lab.connect(leader2 % 3 + 1)
    lab.check_one_leader()
    lab.connect(leader2)
    lab.check_one_leader()
    lab.finish()


@pytest.mark.parametrize("seed", seeds())
def test_many_elections(seed):
    lab = Lab(7, seed)
    lab.check_one_leader()
    for _ in range(6):
        # Cut off three of seven: four still elect a leader.
        cut = lab.rng.sample(range(1, 8), 3)
        for i in cut:
            lab.disconnect(i)
        lab.check_one_leader()
        for i in cut:
            lab.connect(i)
    lab.check_one_leader()
    lab.finish()
