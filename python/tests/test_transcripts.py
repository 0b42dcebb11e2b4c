"""Scenario transcripts (docs/simulator.md, "Transcripts"): the corpus in tests/transcripts
runs from Python, from the command line (python -m craft.sim run) and rewrites itself
unchanged; a changed output is reported with its line and recorded by --rewrite."""

import glob
import os
import subprocess
import sys

import pytest

from craft.sim import run_transcript, run_transcript_text

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = sorted(glob.glob(os.path.join(ROOT, "tests", "transcripts", "*.txt")))


def test_the_corpus_holds_the_paper_scenarios():
    names = {os.path.basename(p) for p in CORPUS}
    assert {"figure7.txt", "figure8.txt", "membership-2015.txt", "prevote.txt",
            "check-quorum.txt", "removed-server.txt", "read-index-new-leader.txt",
            "leader-removes-itself.txt", "log-went-backwards.txt"} <= names


@pytest.mark.parametrize("path", CORPUS, ids=os.path.basename)
def test_transcript(path):
    r = run_transcript(path)
    assert r.ok, f"{path}:\n{r.report}"
    assert r.commands > 0
    with open(path, encoding="utf-8") as f:
        assert r.output == f.read()  # a passing file rewrites to itself


def test_command_line_runs_and_rewrites(tmp_path):
    src = os.path.join(ROOT, "tests", "transcripts", "election.txt")
    out = subprocess.run([sys.executable, "-m", "craft.sim", "run", src],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "ok (" in out.stdout
    # Change one expected line: the run fails, names the line; --rewrite puts it back.
    text = open(src, encoding="utf-8").read()
    broken = tmp_path / "election.txt"
    broken.write_text(text.replace("every invariant holds", "all fine"), encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "craft.sim", "run", str(broken)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert "check" in out.stdout and "all fine" in out.stdout and "--rewrite" in out.stdout
    out = subprocess.run([sys.executable, "-m", "craft.sim", "run", "--rewrite", str(broken)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0
    assert broken.read_text(encoding="utf-8") == text


def test_script_errors_are_outputs():
    r = run_transcript_text("add-nodes 3 nonsense=1\n----\n\nstatus 1\n----\n")
    assert r.mismatches == 2
    assert "error: add-nodes: unknown option nonsense=1" in r.output
    assert "error: no cluster yet" in r.output
