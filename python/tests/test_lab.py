"""The teaching lab (examples/lab, docs/lab.md) is sound: craft's own core passes every part
through the tester; the reference solution kept here (lab_reference.py) passes every part; the
skeleton as shipped fails part A with its TODO; a student who writes only part A passes part A;
and each planted mistake (lab_planted.py) fails the part that tests its rule, with the seed, the
last events of the run and the command that replays it."""

import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
LAB = os.path.join(ROOT, "examples", "lab")
PARTS = {"A": "test_3a_election.py", "B": "test_3b_replication.py",
         "C": "test_3c_persistence.py", "D": "test_3d_snapshots.py"}


def run_tester(raft, *files, seeds=3):
    env = dict(os.environ, LAB_RAFT=raft, LAB_SEEDS=str(seeds),
               PYTHONPATH=os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")]))
    env.pop("LAB_SEED", None)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           *files], cwd=LAB, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.parametrize("raft", ["craft", "lab_reference:Raft"])
def test_passes_every_part(raft):
    r = run_tester(raft, *PARTS.values())
    assert r.returncode == 0, r.stdout[-4000:]
    assert " passed" in r.stdout and "failed" not in r.stdout


def test_the_skeleton_fails_part_a_at_its_first_todo():
    r = run_tester("raft:Raft", PARTS["A"], seeds=1)
    assert r.returncode == 1
    assert "NotImplementedError: TODO (part A): tick" in r.stdout


def test_a_student_who_writes_part_a_passes_part_a():
    assert run_tester("lab_student_a:Raft", PARTS["A"]).returncode == 0
    r = run_tester("lab_student_a:Raft", PARTS["B"], seeds=1)
    assert r.returncode == 1  # replication is part B's work


@pytest.mark.parametrize("mistake, part, expect", [
    ("NoElectionRestriction", "B", "leader completeness"),
    ("NoBacktracking", "B", "rejected AppendEntries"),
    ("CommitOldTerms", "C", "commit rule (Figure 8)"),
    ("VoteBeforeDurable", "C", "election safety"),
])
def test_a_planted_mistake_fails_its_part_with_a_replayable_report(mistake, part, expect):
    raft = f"lab_planted:{mistake}"
    r = run_tester(raft, PARTS[part])
    assert r.returncode == 1, f"{mistake} passed part {part}:\n{r.stdout[-3000:]}"
    out = r.stdout
    assert expect in out
    assert f"seed " in out and "last events:" in out
    assert f"replay: LAB_SEED=" in out and f"LAB_RAFT={raft}" in out
    # The earlier parts do not test this rule: the mistake passes them.
    for earlier in "ABCD"[:"ABCD".index(part)]:
        assert run_tester(raft, PARTS[earlier], seeds=1).returncode == 0, \
            f"{mistake} failed part {earlier}, before the part that tests its rule"


def test_a_failure_replays_from_its_seed():
    raft = "lab_planted:CommitOldTerms"
    first = run_tester(raft, PARTS["C"], seeds=1)
    replay = next(ln for ln in first.stdout.splitlines() if ln.startswith("replay: "))
    seed = replay.split("LAB_SEED=")[1].split()[0]
    name = replay.split(" -k ")[1].strip()
    env = dict(os.environ, LAB_RAFT=raft, LAB_SEED=seed,
               PYTHONPATH=os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")]))
    again = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            PARTS["C"], "-k", name], cwd=LAB, env=env, capture_output=True,
                           text=True, timeout=600)
    assert again.returncode == 1
    violation = next(ln for ln in first.stdout.splitlines() if ln.startswith("E ") and
                     "commit rule" in ln)
    assert violation in again.stdout  # the same violation, at the same event


def test_grade_summary():
    env = dict(os.environ, LAB_RAFT="lab_reference:Raft", LAB_SEEDS="1",
               PYTHONPATH=os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "grade.py"], cwd=LAB, env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:]
    assert "100.0 / 100" in r.stdout
