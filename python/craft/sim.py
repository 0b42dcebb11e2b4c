"""craft.sim: the deterministic simulator with Python state machines.

N Raft nodes in one process, a virtual clock, a seeded network that can delay, drop, duplicate
and reorder messages, partitions, crashes and restarts, and the Raft safety properties checked
after every event. The same seed and the same calls give the same run, event for event.

    from craft.sim import Cluster

    c = Cluster(3, seed=7, fsm=Counter)
    leader = c.wait_for_leader()
    c.apply(b"inc")                      # propose at the leader and run until applied
    c.crash(leader)
    c.partition([1], [2, 3])
    c.run_until(lambda c: c.leader() not in (None, leader), max_ticks=500)
    print("\\n".join(c.trace()))

A safety violation raises craft.Violation with the seed and the last events.
"""

import io
import itertools
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from . import _craft
from ._errors import ApplyError, Error, NotLeader, Timeout, from_code

__all__ = ["Cluster", "Applied"]


class Applied:
    """One command a node's state machine applied: index, term, data, and result (bytes, or
    the ApplyError when apply raised)."""

    __slots__ = ("index", "term", "data", "result")

    def __init__(self, index: int, term: int, data: bytes, result: Any) -> None:
        self.index = index
        self.term = term
        self.data = data
        self.result = result

    def __repr__(self) -> str:
        return f"Applied(index={self.index}, term={self.term}, data={self.data!r}, " \
               f"result={self.result!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Applied):
            return NotImplemented
        return (self.index, self.term, self.data) == (other.index, other.term, other.data)

    def __hash__(self) -> int:
        return hash((self.index, self.term, self.data))


def _snapshot_bytes(fsm: Any) -> bytes:
    data = fsm.snapshot()
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    return b"".join(bytes(chunk) for chunk in data)


class Cluster:
    """A simulated cluster of n nodes (ids 1..n).

    fsm: a factory (e.g. a StateMachine subclass) called with no arguments for every fresh
    state machine: at each boot and before a snapshot is restored. Without it the nodes only
    run the protocol.

    options: protocol and simulation options: election_ticks (10), heartbeat_ticks (1),
    pre_vote (True), check_quorum (True), max_batch_entries, max_batch_bytes, max_inflight,
    snapshot_entries, snapshot_bytes, snapshot_trailing, snapshot_chunk_bytes,
    promote_distance, promote_rounds, lease_reads, lease_drift_ticks, tick_ms (10),
    tick_jitter_ms (1), min_delay_ms (1), max_delay_ms (10), drop_rate, dup_rate, disk_min_ms,
    disk_max_ms, bootstrap (True), n_voters (n), trace_depth (64).

    trace: True keeps every event line in .events; a callable gets every line as it happens.
    """

    def __init__(self, n: int = 3, seed: int = 1, fsm: Optional[Callable[[], Any]] = None,
                 trace: Any = None, **options: Any) -> None:
        self.n = n
        self.seed = seed
        self._factory = fsm
        self._fsms: Dict[int, Any] = {}
        self._applied: Dict[int, List[Applied]] = {i: [] for i in range(1, n + 1)}
        self.events: List[str] = []
        self._trace_cb = trace if callable(trace) else None
        self._keep_trace = trace is True
        self._read_ids = itertools.count(1)
        opts = dict(options)
        self._tick_ms = int(opts.get("tick_ms", 10))
        self._drop = float(opts.get("drop_rate", 0.0))
        self._dup = float(opts.get("dup_rate", 0.0))
        self._delay = (int(opts.get("min_delay_ms", 1)), int(opts.get("max_delay_ms", 10)))
        kwargs: Dict[str, Any] = dict(opts, n_nodes=n, seed=seed, apply=self._on_apply)
        if fsm is not None:
            kwargs["snapshot"] = self._on_snapshot
            kwargs["restore"] = self._on_restore
        if trace is not None and trace is not False:
            kwargs["trace"] = self._on_trace
        try:
            self._sim = _craft.Sim(**kwargs)
        except TypeError as e:
            raise TypeError(f"{e} (see help(craft.sim.Cluster) for the options)") from None

    # ---- callbacks from the simulator --------------------------------------------------------

    def _on_apply(self, node: int, index: int, term: int, type_: int, data: bytes) -> None:
        if type_ != _craft.ENTRY_COMMAND:
            return
        fsm = self._fsm_of(node)
        result: Any = None
        if fsm is not None:
            try:
                result = fsm.apply(data, index)
            except Exception as e:  # deterministic state machine behaviour, like a real node
                result = ApplyError(type(e).__name__, str(e), e, index)
        self._applied[node].append(Applied(index, term, data, result))

    def _fsm_of(self, node: int) -> Any:
        if self._factory is None:
            return None
        fsm = self._fsms.get(node)
        if fsm is None:
            fsm = self._fsms[node] = self._factory()
        return fsm

    def _on_snapshot(self, node: int) -> bytes:
        return _snapshot_bytes(self._fsm_of(node))

    def _on_restore(self, node: int, data: Optional[bytes]) -> None:
        assert self._factory is not None
        fsm = self._fsms[node] = self._factory()
        self._applied[node] = []
        if data is not None:
            fsm.restore(io.BytesIO(data))

    def _on_trace(self, line: str) -> None:
        if self._keep_trace:
            self.events.append(line)
        if self._trace_cb is not None:
            self._trace_cb(line)

    # ---- running -------------------------------------------------------------------------------

    @property
    def now(self) -> int:
        """Virtual time in ms."""
        return int(self._sim.now())

    @property
    def nodes(self) -> List[int]:
        return list(range(1, self.n + 1))

    def step(self) -> bool:
        """Runs the next event; False when nothing is pending."""
        return bool(self._sim.step())

    def tick(self, n: int = 1) -> None:
        """Lets n ticks of virtual time pass (tick_ms each, 10 ms by default)."""
        self._sim.run_for(n * self._tick_ms)

    def run(self, ms: int) -> None:
        """Lets ms of virtual time pass."""
        self._sim.run_for(ms)

    def run_until(self, predicate: Callable[["Cluster"], Any], max_ticks: int = 1000) -> bool:
        """Runs until predicate(cluster) is true (checked after every event): True, or False
        when max_ticks passed first."""
        return bool(self._sim.run_until(lambda: predicate(self), max_ticks * self._tick_ms))

    def wait_for_leader(self, max_ticks: int = 1000) -> int:
        """Runs until there is a leader and returns its id (craft.Timeout otherwise)."""
        if not self.run_until(lambda c: c.leader() is not None, max_ticks):
            raise Timeout(f"no leader after {max_ticks} ticks (seed {self.seed})")
        leader = self.leader()
        assert leader is not None
        return leader

    # ---- faults ------------------------------------------------------------------------------

    def crash(self, node: int) -> None:
        """Crashes a node: it loses its volatile state and unfinished disk writes."""
        self._sim.crash(node)
        self._fsms.pop(node, None)

    def restart(self, node: int) -> None:
        """Restarts a crashed node from what its disk holds."""
        self._sim.restart(node)

    def partition(self, *groups: Iterable[int]) -> None:
        """Messages pass only within a group: partition([1, 2], [3, 4, 5]). A node in no group
        is isolated."""
        group_of = [0] * self.n
        seen = set()
        for g, members in enumerate(groups, start=1):
            for m in members:
                if not 1 <= m <= self.n or m in seen:
                    raise ValueError(f"partition: node {m} is unknown or in two groups")
                seen.add(m)
                group_of[m - 1] = g
        nxt = len(groups) + 1
        for i in range(self.n):
            if group_of[i] == 0:
                group_of[i] = nxt
                nxt += 1
        self._sim.partition(group_of)

    def cut(self, a: int, b: int) -> None:
        """Messages from a to b are lost (one direction only)."""
        self._sim.cut(a, b)

    def heal(self) -> None:
        """Removes every partition and cut."""
        self._sim.heal()

    def network(self, drop: Optional[float] = None, duplicate: Optional[float] = None,
                delay: Optional[Tuple[int, int]] = None) -> None:
        """Changes the network: loss and duplication probabilities, delay range in ms."""
        drop_rate = self._drop if drop is None else float(drop)
        dup_rate = self._dup if duplicate is None else float(duplicate)
        lo, hi = self._delay if delay is None else (int(delay[0]), int(delay[1]))
        self._sim.set_network(drop_rate, dup_rate, lo, hi)
        self._drop, self._dup, self._delay = drop_rate, dup_rate, (lo, hi)

    def disk(self, lo_ms: int, hi_ms: int) -> None:
        """Changes the disk write latency range."""
        self._sim.set_disk(lo_ms, hi_ms)

    def note(self, text: str) -> None:
        """Adds a line to the trace."""
        self._sim.note(text)

    # ---- requests ------------------------------------------------------------------------------

    def propose(self, data: bytes, node: Optional[int] = None) -> Tuple[int, int]:
        """Proposes a command at node (default: the leader); returns (index, term). Raises
        NotLeader when that node does not lead, Busy during a leadership transfer."""
        index, term, rc = self._sim.propose(bytes(data), node or 0)
        if rc != 0:
            if rc == -20:
                raise Error(f"node {node} is down", rc)
            raise from_code(rc, "", self.leader() or 0, "")
        return index, term

    def apply(self, data: bytes, node: Optional[int] = None, max_ticks: int = 1000) -> Any:
        """Proposes at node (default: the leader), runs until that node applied the index, and
        returns what its state machine returned. Raises ApplyError if apply raised, Dropped
        if another entry took the index (a leader change), Timeout after max_ticks."""
        at = node or self.leader()
        if at is None:
            raise NotLeader()
        index, term = self.propose(data, at)

        def done(c: "Cluster") -> bool:
            st = c._sim.status(at)
            if not st["up"] or st.get("applied", 0) >= index:
                return True
            # Lost to a leader change: a newer term and no entry at index (yet).
            return bool(st["term"] != term and st["last_index"] < index)

        if not self.run_until(done, max_ticks):
            raise Timeout(f"index {index} was not applied on node {at} in {max_ticks} ticks")
        if self.applied_index(at) < index:
            raise from_code(-12, f"index {index} on node {at}")
        for a in reversed(self._applied[at]):
            if a.index == index:
                if a.term != term:
                    raise from_code(-12)
                if isinstance(a.result, ApplyError):
                    raise a.result
                return a.result
        raise from_code(-12, f"index {index} was not applied on node {at} (crash or snapshot)")

    def add_server(self, node: int, auto_promote: bool = False) -> int:
        """Adds a spare server as a learner (see n_voters); returns the config entry's index."""
        rc, index = self._sim.add_server(node, auto_promote)
        if rc != 0:
            raise from_code(rc, f"add_server({node})", self.leader() or 0, "")
        return int(index)

    def promote(self, node: int) -> int:
        """Makes a caught-up learner a voter."""
        rc, index = self._sim.promote(node)
        if rc != 0:
            raise from_code(rc, f"promote({node})", self.leader() or 0, "")
        return int(index)

    def remove_server(self, node: int) -> int:
        rc, index = self._sim.remove_server(node)
        if rc != 0:
            raise from_code(rc, f"remove_server({node})", self.leader() or 0, "")
        return int(index)

    def transfer_leadership(self, node: int = 0) -> None:
        """Asks the leader to hand leadership to node (0: the most up-to-date voter)."""
        rc = self._sim.transfer(node)
        if rc != 0:
            raise from_code(rc, f"transfer_leadership({node})", self.leader() or 0, "")

    def read(self, fn: Optional[Callable[[Any], Any]] = None, node: Optional[int] = None,
             mode: str = "linearizable", max_ticks: int = 1000) -> Any:
        """A linearizable (or "lease") read at node (default: the leader): runs until the read
        is served and returns fn(state machine of node), or the read's record without fn.
        Raises NotLeader when the read failed, Timeout after max_ticks."""
        if mode not in ("linearizable", "lease"):
            raise ValueError('mode must be "linearizable" or "lease"')
        at = node or self.leader()
        if at is None:
            raise NotLeader()
        rid = next(self._read_ids)
        rc = self._sim.read(at, rid, mode == "lease")
        if rc != 0:
            raise from_code(rc, "read", self.leader() or 0, "")

        def finished(c: "Cluster") -> bool:
            r = c._sim.read_result(rid)
            return r is not None and r["state"] in ("served", "failed")

        if not self.run_until(finished, max_ticks):
            raise Timeout(f"read {rid} at node {at} not served in {max_ticks} ticks")
        record = self._sim.read_result(rid)
        assert record is not None
        if record["state"] == "failed":
            raise from_code(record["status"], "read", self.leader() or 0, "")
        if fn is None:
            return record
        return fn(self._fsm_of(at))

    # ---- observing ---------------------------------------------------------------------------

    def leader(self) -> Optional[int]:
        """The live leader with the highest term, or None."""
        return int(self._sim.leader()) or None

    def is_up(self, node: int) -> bool:
        return bool(self._sim.is_up(node))

    def status(self, node: int) -> Dict[str, Any]:
        """role, term, vote, leader, commit, applied, first_index, last_index of a node."""
        return dict(self._sim.status(node))

    def log(self, node: int) -> List[Tuple[int, int, int, bytes]]:
        """The node's log as (index, term, type, data); type 1 command, 2 barrier, 3 config."""
        return list(self._sim.log(node))

    def applied(self, node: int) -> List[Applied]:
        """Commands the node's current state machine applied (since its last restore)."""
        return list(self._applied[node])

    def applied_index(self, node: int) -> int:
        return int(self._sim.status(node).get("applied", 0))

    def fsm(self, node: int) -> Any:
        """The node's state machine (None without fsm=, or while the node is down)."""
        if not self.is_up(node):
            return None
        return self._fsm_of(node)

    def committed(self) -> int:
        """The highest index known to be committed anywhere."""
        return int(self._sim.committed())

    def stats(self) -> Dict[str, Any]:
        """events, ticks, disk writes, crashes, restarts and per message type: sent, bytes,
        delivered, dropped, duplicated."""
        return dict(self._sim.stats())

    def check(self) -> None:
        """Checks every invariant over every node now; raises craft.Violation."""
        self._sim.check()

    def trace(self) -> List[str]:
        """The last trace_depth events, one line each."""
        return list(self._sim.trace_lines())

    def print_trace(self) -> None:
        for line in self.trace():
            print(line)

    def converged(self, nodes: Optional[Sequence[int]] = None) -> bool:
        """True when every live node (or those given) applied up to the cluster's commit."""
        target = self.committed()
        ids = nodes if nodes is not None else [i for i in self.nodes if self.is_up(i)]
        return all(self.applied_index(i) >= target for i in ids)
