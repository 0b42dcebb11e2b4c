"""Runs the lab's testers part by part and prints a grade summary.

    python grade.py            every part
    python grade.py A C        some parts
    LAB_SEEDS=10 python grade.py     more seeds per test (default 3)
    LAB_RAFT=craft python grade.py   craft's own core, for comparison

A part's points are the share of its tests that passed, over every seed; a test fails on the
first seed that breaks it. Failures are listed with the command that replays each one.
"""

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
PARTS = {
    "A": ("leader election", "test_3a_election.py", 25),
    "B": ("log replication", "test_3b_replication.py", 30),
    "C": ("persistence", "test_3c_persistence.py", 30),
    "D": ("snapshots", "test_3d_snapshots.py", 15),
}


class Collect:
    def __init__(self):
        self.passed, self.failed = [], []

    def pytest_runtest_logreport(self, report):
        if report.when == "call" or (report.when == "setup" and report.failed):
            (self.passed if report.passed else self.failed).append(report)


def main(argv):
    want = [a.upper() for a in argv] or list(PARTS)
    unknown = [p for p in want if p not in PARTS]
    if unknown:
        print(f"unknown part {unknown[0]}: A, B, C or D", file=sys.stderr)
        return 2
    os.chdir(HERE)
    rows, total, replays = [], 0.0, []
    for part in want:
        title, path, points = PARTS[part]
        c = Collect()
        pytest.main(["-q", "-p", "no:cacheprovider", "--no-header", "-rN", path], plugins=[c])
        n = len(c.passed) + len(c.failed)
        got = points * len(c.passed) / n if n else 0.0
        total += got
        rows.append((part, title, len(c.passed), n, got, points))
        for r in c.failed:
            for name, text in r.sections:
                if name == "lab":
                    replays.append(text.splitlines()[-1])
    print()
    print("Part  What                Passed      Points")
    for part, title, ok, n, got, points in rows:
        print(f"  {part}   {title:<18}  {ok:>3} / {n:<3}   {got:5.1f} / {points}")
    print(f"Total{'':>33}{total:5.1f} / {sum(PARTS[p][2] for p in want)}")
    if replays:
        print("\nReplay a failure (the same seed gives the same run):")
        for line in replays[:10]:
            print("  " + line.replace("replay: ", ""))
    return 0 if all(ok == n for _, _, ok, n, _, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
