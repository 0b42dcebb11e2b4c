"""The lab's test harness (the role of 6.5840's config.go): a simulated cluster running your Raft
(raft.py) in craft's simulator, with the helpers the tests are written with.

Which Raft runs: LAB_RAFT="module:Class" (default "raft:Raft", your raft.py; "craft" runs
craft's own C core, which passes every test). Which seeds: LAB_SEEDS=N runs each test with
seeds 1..N (default 3); LAB_SEED=S runs seed S only -- the way to replay a failure. Every run
is deterministic: the same Raft, test and seed give the same events.

Time is virtual: a tick is 10 ms, an election timeout 100 to 200 ms. The simulator checks
Raft's safety properties after every event; a violation stops the test with craft.Violation,
the seed and the last events.
"""

import importlib
import os
import random
from typing import Any, Dict, List, Optional, Set

import craft
from craft.sim import Cluster

TICK_MS = 10


def load_raft() -> Any:
    """The Raft class to test (None: craft's own core)."""
    spec = os.environ.get("LAB_RAFT", "raft:Raft")
    if spec == "craft":
        return None
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name or "Raft")


def seeds() -> List[int]:
    if os.environ.get("LAB_SEED"):
        return [int(os.environ["LAB_SEED"])]
    return list(range(1, int(os.environ.get("LAB_SEEDS", "3")) + 1))


class Register(craft.StateMachine):
    """Remembers the command applied at each index."""

    def __init__(self) -> None:
        self.entries: Dict[int, bytes] = {}

    def apply(self, command: bytes, index: int) -> bytes:
        self.entries[index] = command
        return command


#: The cluster of the test running now, for the report of a failure (conftest.py).
current: Optional["Lab"] = None


class LabError(AssertionError):
    pass


class Lab:
    """A cluster of n servers (1..n) running the Raft under test.

    reliable=False: messages are lost (10%), duplicated (5%) and delayed up to 40 ms.
    slow_disks=True: a write takes 5 to 40 ms, often longer than a message: what a Raft that
    answers or counts before its disk holds the answer gets caught by. Otherwise a write is
    done the moment it is queued (parts A and B need not care about durability yet).
    """

    def __init__(self, n: int, seed: int, reliable: bool = True, slow_disks: bool = False,
                 snapshot_entries: int = 0, **options: Any) -> None:
        global current
        self.n = n
        self.seed = seed
        self.rng = random.Random(seed * 7919 + n)
        self.rejections = 0
        raft = load_raft()
        kw: Dict[str, Any] = dict(fsm=Register, trace_depth=120, election_ticks=10,
                                  heartbeat_ticks=2, on_event=self._event,
                                  snapshot_entries=snapshot_entries, snapshot_trailing=0,
                                  max_batch_entries=8)
        if raft is not None:
            kw["core"] = raft
        if not reliable:
            kw.update(drop_rate=0.1, dup_rate=0.05, min_delay_ms=1, max_delay_ms=40)
        if slow_disks:
            kw.update(disk_min_ms=5, disk_max_ms=40)
        else:
            kw.update(disk_min_ms=0, disk_max_ms=0)  # parts A and B: every write is instant
        kw.update(options)
        self.c = Cluster(n, seed=seed, **kw)
        self.connected: Set[int] = set(range(1, n + 1))
        current = self

    def _event(self, e: Dict[str, Any]) -> None:
        if e["kind"] == "deliver" and e["message"]["type"] == "AppendEntriesResult" and \
                e["message"].get("rejected"):
            self.rejections += 1

    # ---- time and faults -------------------------------------------------------------------

    def run(self, ms: int) -> None:
        self.c.run(ms)

    def _network(self) -> None:
        if len(self.connected) == self.n:
            self.c.heal()
        else:
            alone = [[i] for i in range(1, self.n + 1) if i not in self.connected]
            self.c.partition(sorted(self.connected), *alone)

    def disconnect(self, i: int) -> None:
        self.connected.discard(i)
        self._network()

    def connect(self, i: int) -> None:
        self.connected.add(i)
        self._network()

    def crash(self, i: int) -> None:
        if self.c.is_up(i):
            self.c.crash(i)

    def restart(self, i: int) -> None:
        if not self.c.is_up(i):
            self.c.restart(i)

    def up(self) -> List[int]:
        return [i for i in range(1, self.n + 1) if self.c.is_up(i)]

    # ---- checks ------------------------------------------------------------------------------

    def leaders(self) -> Dict[int, List[int]]:
        """term -> the connected live servers that believe they lead in it."""
        by_term: Dict[int, List[int]] = {}
        for i in self.up():
            st = self.c.status(i)
            if i in self.connected and st["role"] == "leader":
                by_term.setdefault(st["term"], []).append(i)
        return by_term

    def check_one_leader(self) -> int:
        """A leader among the connected servers, within 5 election timeouts; its id."""
        for _ in range(10):
            self.run(500)
            by_term = self.leaders()
            for term, who in by_term.items():
                if len(who) > 1:
                    raise LabError(f"term {term} has {len(who)} leaders: {who}")
            if by_term:
                return by_term[max(by_term)][0]
        raise LabError("expected one leader, got none in 5 s of virtual time")

    def check_no_leader(self) -> None:
        for i in self.up():
            if i in self.connected and self.c.status(i)["role"] == "leader":
                raise LabError(f"expected no leader among the connected servers, but {i} "
                               "claims to be one")

    def check_terms(self) -> int:
        """The term every connected live server agrees on."""
        terms = {self.c.status(i)["term"] for i in self.up() if i in self.connected}
        if len(terms) != 1:
            raise LabError(f"servers disagree on the term: {sorted(terms)}")
        return terms.pop()

    def n_committed(self, index: int) -> tuple:
        """How many live servers applied index, and the command there."""
        count, cmd = 0, None
        for i in self.up():
            fsm = self.c.fsm(i)
            if fsm is None or index not in fsm.entries:
                continue
            got = fsm.entries[index]
            if count > 0 and got != cmd:
                raise LabError(f"committed values differ at index {index}: {cmd!r} and {got!r}")
            count, cmd = count + 1, got
        return count, cmd

    def propose_at_leader(self, cmd: bytes) -> Optional[tuple]:
        """Proposes at a connected leader, if there is one: (index, term, leader) or None."""
        for i in self.up():
            if i not in self.connected or self.c.status(i)["role"] != "leader":
                continue
            try:
                index, term = self.c.propose(cmd, node=i)
            except craft.Error:
                continue
            return index, term, i
        return None

    def one(self, cmd: bytes, expected: int, retry: bool = True) -> int:
        """Proposes cmd and waits until expected servers applied it (the heart of most tests,
        as in 6.5840): retries with whichever server leads, for up to 10 s of virtual time.
        Returns the index."""
        deadline = self.c.now + 10_000
        while self.c.now < deadline:
            got = self.propose_at_leader(cmd)
            if got is None:
                self.run(50)
                continue
            index = got[0]
            end = self.c.now + 2_000
            while self.c.now < end:
                count, value = self.n_committed(index)
                if count >= expected and value == cmd:
                    return index
                self.run(20)
            if not retry:
                raise LabError(f"one({cmd!r}) failed to reach agreement on {expected} servers")
        raise LabError(f"one({cmd!r}) failed to reach agreement on {expected} servers in 10 s "
                       "of virtual time")

    def wait(self, index: int, n: int, max_ms: int = 5_000) -> bytes:
        """Waits until n servers applied index; the command."""
        end = self.c.now + max_ms
        while True:
            count, cmd = self.n_committed(index)
            if count >= n:
                return cmd
            if self.c.now >= end:
                raise LabError(f"only {count} servers applied index {index}, wanted {n}")
            self.run(20)

    def finish(self) -> None:
        """Every invariant over every server, once more."""
        self.c.check()
