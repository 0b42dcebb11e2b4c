"""The teaching lab runs, each exercise as one command; the KV example's state machine works."""

import os
import subprocess
import sys

import pytest

import craft

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("exercise", ["election", "prevote", "figure8", "snapshot"])
def test_lab_exercise_runs(exercise):
    r = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "lab", "raft_lab.py"),
                        exercise], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert r.returncode == 0, r.stderr
    assert "==" in r.stdout


def test_kv_example_state_machine_in_the_simulator():
    sys.path.insert(0, os.path.join(ROOT, "examples", "python"))
    try:
        import kv
    finally:
        sys.path.pop(0)
    from craft.sim import Cluster
    c = Cluster(3, seed=3, fsm=kv.KV)
    c.wait_for_leader()
    assert craft.codec.loads(c.apply(craft.codec.dumps(["set", "a", "1"]))) == "OK"
    assert craft.codec.loads(c.apply(craft.codec.dumps(["incr", "a"]))) == 2
    with pytest.raises(craft.ApplyError):
        c.apply(craft.codec.dumps(["bogus"]))
