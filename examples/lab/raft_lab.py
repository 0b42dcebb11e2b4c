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


class ExerciseFailed(RuntimeError):
    """A step of an exercise did not happen as the exercise needs: say so, never go on."""


def require(cond: bool, what: str, c: Cluster) -> None:
    if not cond:
        raise ExerciseFailed(f"figure 8 exercise (seed {c.seed}): {what}\n" +
                             "\n".join(c.trace()[-30:]))


def figure8(seed: int) -> None:
    print("== 3. Figure 8: a leader must not commit an entry of an older term by counting")
    print("   replicas. craft's leaders commit only entries of their own term.")
    # Every clock is stopped and every message held: the exercise takes each step of the
    # figure by hand (no seed can skip one), and checks that it happened.
    c = Cluster(5, seed=seed, fsm=Register, max_batch_entries=1, disk_min_ms=0, disk_max_ms=0,
                trace_depth=200)
    c.set_clock(None, 0)
    c.hold()

    def settle() -> None:
        for _ in range(100):
            if c.deliver() == 0 and not c.held():
                return
            c.run(0)

    def elect(node: int) -> None:
        """node campaigns (again if its first poll is refused) until it leads."""
        for _ in range(3):
            c.campaign(node)
            for _ in range(8):
                c.deliver(types=["RequestVote", "RequestVoteResult"])
                c.run(0)
                if c.status(node)["role"] == "leader":
                    return
            c.discard(types=["RequestVote", "RequestVoteResult"])
        require(False, f"n{node} could not be elected", c)

    def idle(*nodes: int) -> None:
        """Time passes for these servers: they stop believing in the old leader."""
        for n in nodes:
            c.tick(c.node_config(n)["election_ticks"], node=n)
        # One of them may have timed out too and started a pre-vote: its poll is lost, so it
        # changes nothing (a pre-candidate keeps its term and grants the next candidate).
        c.discard()

    def term_at(node: int, index: int) -> int:
        return next((t for i, t, _, _ in c.log(node) if i == index), 0)

    s1, s2, s3, s4, s5 = 1, 2, 3, 4, 5
    c.note("-- (a) S1 leads and replicates an entry of its term to S2 only --")
    elect(s1)
    settle()
    index, term_a = c.propose(b"term-a", node=s1)
    c.deliver(from_=s1, to=s2)
    c.run(0)
    c.discard()
    require(term_at(s2, index) == term_a, "S2 did not store S1's entry", c)
    print(f"   (a) S1 leads term {term_a}; its entry {index}/{term_a} reached S2 only")

    c.note("-- (b) S1 crashes; S5 is elected by S3, S4 and itself, and its entry reaches nobody --")
    c.crash(s1)
    c.partition([s2], [s3, s4, s5])
    idle(s3, s4)
    elect(s5)
    c.discard()
    term_b = c.status(s5)["term"]
    require(term_at(s5, index) == term_b, "S5 holds no entry of its own term at the index", c)
    print(f"   (b) S5 leads term {term_b} and writes a different entry at {index}")

    c.note("-- (c) S5 crashes; S1 restarts, is elected, and brings S3 up to its log --")
    c.crash(s5)
    c.heal()
    c.restart(s1)
    idle(s2, s3, s4)
    elect(s1)
    term_c = c.status(s1)["term"]
    # S2 holds the entry already and takes S1's no-op of its term after it.
    c.deliver(from_=s1, to=s2)
    c.run(0)
    c.deliver(from_=s2, to=s1)
    c.run(0)
    # S3 gets the entry of term a -- and not yet what follows it.
    for _ in range(6):
        if term_at(s3, index) == term_a:
            break
        c.deliver(from_=s1, to=s3)
        c.run(0)
        c.deliver(from_=s3, to=s1)
        c.run(0)
    holders = [n for n in (s1, s2, s3) if term_at(n, index) == term_a]
    require(len(holders) == 3, f"the entry of term {term_a} is on {holders}, not a majority", c)
    commit = c.status(s1)["commit"]
    require(commit < index, f"S1 committed index {index} of term {term_a}: Figure 8's mistake", c)
    print(f"   (c) S1 leads term {term_c}; entry {index}/{term_a} is on S1, S2, S3 -- on a "
          f"majority but not committed (S1's commit index: {commit})")

    c.note("-- (d) S1 crashes; S5 restarts, is elected, and overwrites the entry --")
    c.discard()
    c.crash(s1)
    c.restart(s5)
    idle(s2, s3, s4)
    elect(s5)
    settle()
    kept = [n for n in (s2, s3, s4, s5) if term_at(n, index) == term_a]
    require(not kept, f"S5 did not replace the entry on {kept}", c)
    c.check()  # raises craft.Violation if a safety property broke
    print(f"   (d) S5 leads term {c.status(s5)['term']} and overwrote it on every server: "
          "nothing committed was lost.")
    print("   craft.sim checked election safety, log matching, leader completeness, the commit")
    print("   rule and state machine safety after every event: no violation.\n")


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
