"""A Raft teaching lab on craft.sim: each exercise is one command, deterministic from its seed.

    python examples/lab/raft_lab.py election      # watch an election and a replication round
    python examples/lab/raft_lab.py prevote       # a rejoining node with and without pre-vote
    python examples/lab/raft_lab.py figure8       # the Figure 8 scenario of the Raft paper
    python examples/lab/raft_lab.py snapshot      # a lagging node brought back by a snapshot
    python examples/lab/raft_lab.py all

Add --seed N to see another run. Read the code of each exercise: it is the guide.
"""

import argparse
import sys
from typing import List

import craft
from craft.sim import Cluster


class Register(craft.StateMachine):
    """The state machine of the lab: remembers the commands it applied."""

    def __init__(self) -> None:
        self.values: List[bytes] = []

    def apply(self, command: bytes, index: int) -> bytes:
        self.values.append(command)
        return command


def timeline(lines: List[str], keep=("is ", "commit=", "AppendEntries ", "RequestVote",
                                     "CRASH", "RESTART", "PARTITION", "HEAL", "InstallSnapshot",
                                     "note")) -> None:
    for line in lines:
        if any(k in line for k in keep):
            print("   ", line)


def election(seed: int) -> None:
    print("== 1. An election and a replication round (3 nodes)")
    lines: List[str] = []
    c = Cluster(3, seed=seed, fsm=Register, trace=lines.append)
    leader = c.wait_for_leader()
    c.note("-- a client proposes 'x=1' --")
    c.apply(b"x=1")
    c.run_until(lambda c: c.converged(), 100)
    timeline(lines)
    print(f"-> n{leader} leads term {c.status(leader)['term']}; every node applied "
          f"{[c.fsm(i).values for i in c.nodes]}")
    print("   Look for: PreVote/RequestVote, the leader's empty AppendEntries (the no-op),")
    print("   the follower's AppendEntriesResult, then commit= on every node.\n")


def prevote(seed: int) -> None:
    print("== 2. A node that was cut off rejoins: pre-vote on and off")
    for pre in (False, True):
        c = Cluster(5, seed=seed, fsm=Register, pre_vote=pre, check_quorum=pre)
        leader = c.wait_for_leader()
        c.apply(b"before")
        loner = next(i for i in c.nodes if i != leader)
        others = [i for i in c.nodes if i != loner]
        c.partition([loner], others)
        c.tick(200)  # the loner times out again and again
        term_cut = c.status(loner)["term"]
        c.heal()
        c.run_until(lambda c: c.leader() is not None and c.converged(), 500)
        new = c.leader()
        print(f"   pre_vote={pre}: the isolated n{loner} reached term {term_cut}; after healing "
              f"the leader is n{new} ({'unchanged' if new == leader else 'DISRUPTED'})")
    print("   Without pre-vote the isolated node keeps raising its term and, on return, forces")
    print("   the healthy leader to step down. With pre-vote it asks first and is refused.\n")


def figure8(seed: int) -> None:
    print("== 3. Figure 8: a leader must not commit an entry of an older term by counting")
    print("   replicas. craft's leaders commit only entries of their own term (a no-op first).")
    lines: List[str] = []
    c = Cluster(5, seed=seed, fsm=Register, trace=lines.append)
    s1 = c.wait_for_leader()
    c.note("-- (a) S1 leads; its entry reaches only S2 --")
    rest = [i for i in c.nodes if i != s1]
    s2 = rest[0]
    c.partition([s1, s2], rest[1:])
    c.propose(b"term2-entry", node=s1)
    c.tick(5)
    c.note("-- (b) S1 crashes; S5 wins an election with S3, S4 --")
    c.crash(s1)
    c.partition([s2], rest[1:])
    c.run_until(lambda c: c.leader() in rest[1:], 500)
    s5 = c.leader()
    try:
        c.propose(b"term3-entry", node=s5)
    except craft.Error:
        pass
    c.tick(2)
    c.note("-- (c) S5 crashes; S1 comes back, leads again, spreads its old entry --")
    c.crash(s5)
    c.restart(s1)
    c.partition([s1, s2] + [i for i in rest[1:] if i != s5])
    c.run_until(lambda c: c.leader() is not None, 500)
    c.heal()
    c.restart(s5)
    c.run_until(lambda c: c.leader() is not None and c.converged(), 2000)
    c.check()  # raises craft.Violation if any safety property broke
    print(f"   final applied sequence on every node: {c.fsm(c.leader() or 1).values}")
    print("   craft.sim checked election safety, log matching, leader completeness and state")
    print("   machine safety after every event: no violation.\n")


def snapshot(seed: int) -> None:
    print("== 4. A snapshot brings back a lagging node")
    c = Cluster(3, seed=seed, fsm=Register, snapshot_entries=10, snapshot_trailing=2)
    leader = c.wait_for_leader()
    lagging = next(i for i in c.nodes if i != leader)
    c.crash(lagging)
    for k in range(50):
        c.apply(b"v%d" % k)
    st = c.status(leader)
    print(f"   n{lagging} is down; n{leader} applied 50 commands and compacted its log: it now "
          f"starts at index {st['first_index']}")
    c.restart(lagging)
    c.run_until(lambda c: c.converged(), 1000)
    sent = c.stats()["messages"].get("InstallSnapshot", {}).get("sent", 0)
    print(f"   n{lagging} restarted and caught up with {len(c.fsm(lagging).values)} values; "
          f"InstallSnapshot messages sent: {sent}\n")


EXERCISES = {"election": election, "prevote": prevote, "figure8": figure8, "snapshot": snapshot}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("exercise", choices=sorted(EXERCISES) + ["all"])
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    for name, fn in EXERCISES.items():
        if a.exercise in (name, "all"):
            fn(a.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
