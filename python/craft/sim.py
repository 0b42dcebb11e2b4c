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

For test authors (docs/simulator.md, "Scripting a scenario"): rules that hold, drop, duplicate or
delay messages selected by type, link or predicate (hold, drop, duplicate, delay), the held
messages delivered in any order (held, deliver, discard), messages built by hand (inject), a node
made to campaign, clocks stopped, sped up or ticked by hand (set_clock, tick(node=)), options for
a node's next boot (configure), every event as a dict (on_event=, recent_events), hooks for apply
and restore (on_apply=, on_restore=), status with the configuration in effect and the leader's
progress, non-blocking reads (read_start, read_result), per-link counters (link_stats) and what a
node's disk holds (durable). A Raft written in Python runs in place of craft's core with core=
(craft.lab).
"""

import io
import itertools
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from . import _craft
from ._errors import ApplyError, Error, NotLeader, Timeout, from_code

__all__ = ["Cluster", "Applied", "Rule", "MESSAGE_TYPES", "Transcript", "run_transcript",
           "run_transcript_text"]

#: The message types, as the dicts name them (craft.h, enum craft_message_type).
MESSAGE_TYPES = ("RequestVote", "RequestVoteResult", "AppendEntries", "AppendEntriesResult",
                 "InstallSnapshot", "InstallSnapshotResult", "TimeoutNow")

_ENTRY_TYPES = {1: "command", 2: "barrier", 3: "config"}
_ESTATE = -20


class Rule:
    """A message rule made by Cluster.hold, drop, duplicate or delay. remove() takes it away
    (False when it was gone already: a rule with a count goes by itself)."""

    __slots__ = ("id", "action", "_sim")

    def __init__(self, sim: Any, id: int, action: str) -> None:
        self._sim = sim
        self.id = id
        self.action = action

    def remove(self) -> bool:
        return bool(self._sim.rule_remove(self.id))

    def __repr__(self) -> str:
        return f"Rule({self.action} #{self.id})"


def _selection(types: Any, from_: Optional[int], to: Optional[int],
               where: Optional[Callable[[Dict[str, Any]], Any]]) -> Dict[str, Any]:
    sel: Dict[str, Any] = {}
    if types is not None:
        sel["types"] = types
    if from_:
        sel["from_"] = from_
    if to:
        sel["to"] = to
    if where is not None:
        sel["where"] = where
    return sel


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

    on_event: called with every event as a dict (kind, time, node, and per kind: peer, fate and
    message for sends, deliveries and drops; role, term, leader; index; ...; line: the trace
    line). on_apply: called with {node, index, term, type ("command", "barrier", "config"),
    data, incarnation} for every entry a node applies. on_restore: called with {node, index
    (the snapshot's, 0 for an empty state machine), incarnation, data} whenever a node's state
    machine is (re)started. The incarnation is the node's boot count: 1, then + 1 per restart.

    core: a factory core(id, config, boot) of a Raft written in Python, run in place of craft's
    core (docs/simulator.md, "Bring your own core"; craft.lab gives the base class).
    """

    def __init__(self, n: int = 3, seed: int = 1, fsm: Optional[Callable[[], Any]] = None,
                 trace: Any = None, on_event: Optional[Callable[[Dict[str, Any]], Any]] = None,
                 on_apply: Optional[Callable[[Dict[str, Any]], Any]] = None,
                 on_restore: Optional[Callable[[Dict[str, Any]], Any]] = None,
                 **options: Any) -> None:
        self.n = n
        self.seed = seed
        self._factory = fsm
        self._on_apply_hook = on_apply
        self._on_restore_hook = on_restore
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
        kwargs: Dict[str, Any] = dict(opts, n_nodes=n, seed=seed, apply=self._on_apply,
                                      restore=self._on_restore)
        if fsm is not None:
            kwargs["snapshot"] = self._on_snapshot
        if trace is not None and trace is not False:
            kwargs["trace"] = self._on_trace
        if on_event is not None:
            kwargs["event"] = on_event
        try:
            self._sim = _craft.Sim(**kwargs)
        except TypeError as e:
            raise TypeError(f"{e} (see help(craft.sim.Cluster) for the options)") from None

    # ---- callbacks from the simulator --------------------------------------------------------

    def _on_apply(self, node: int, index: int, term: int, type_: int, data: bytes,
                  incarnation: int) -> None:
        if self._on_apply_hook is not None:
            self._on_apply_hook({"node": node, "index": index, "term": term,
                                 "type": _ENTRY_TYPES.get(type_, "unknown"), "data": data,
                                 "incarnation": incarnation})
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

    def _on_restore(self, node: int, data: Optional[bytes], index: int,
                    incarnation: int) -> None:
        # Every (re)start of a node's state machine, with or without fsm=: what applied()
        # reports is what the state machine holds beyond the snapshot it was restored from.
        self._applied[node] = []
        if self._factory is not None:
            fsm = self._fsms[node] = self._factory()
            if data is not None:
                fsm.restore(io.BytesIO(data))
        if self._on_restore_hook is not None:
            self._on_restore_hook({"node": node, "index": index, "incarnation": incarnation,
                                   "data": data})

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

    def tick(self, n: int = 1, node: Optional[int] = None) -> None:
        """Lets n ticks of virtual time pass (tick_ms each, 10 ms by default). With node: ticks
        that node's core n times now, without moving the clock (craft_sim_tick); Error if it
        is down."""
        if node is None:
            self._sim.run_for(n * self._tick_ms)
        elif self._sim.tick_node(node, n) != 0:
            raise Error(f"node {node} is down", _ESTATE)

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

    # ---- scripting a scenario (docs/simulator.md, "Scripting a scenario") ------------------------
    #
    # A selection of messages takes any of: types (a name such as "AppendEntries", or a list),
    # from_ and to (server ids), where (a predicate on the message dict). Each condition given
    # must hold.

    def hold(self, types: Any = None, from_: Optional[int] = None, to: Optional[int] = None,
             where: Optional[Callable[[Dict[str, Any]], Any]] = None, count: int = 0) -> Rule:
        """Messages sent from now on that match are kept aside until deliver() or discard()
        (count: only the next count of them). held() lists them."""
        return self._rule("hold", types, from_, to, where, count)

    def drop(self, types: Any = None, from_: Optional[int] = None, to: Optional[int] = None,
             where: Optional[Callable[[Dict[str, Any]], Any]] = None, count: int = 0) -> Rule:
        """Messages sent from now on that match are lost."""
        return self._rule("drop", types, from_, to, where, count)

    def duplicate(self, types: Any = None, from_: Optional[int] = None,
                  to: Optional[int] = None, where: Optional[Callable[[Dict[str, Any]], Any]] = None,
                  count: int = 0) -> Rule:
        """Messages sent from now on that match are delivered twice."""
        return self._rule("duplicate", types, from_, to, where, count)

    def delay(self, ms: int, types: Any = None, from_: Optional[int] = None,
              to: Optional[int] = None, where: Optional[Callable[[Dict[str, Any]], Any]] = None,
              count: int = 0) -> Rule:
        """Messages sent from now on that match arrive ms later than the network would."""
        return self._rule("delay", types, from_, to, where, count, ms)

    def _rule(self, action: str, types: Any, from_: Optional[int], to: Optional[int],
              where: Optional[Callable[[Dict[str, Any]], Any]], count: int,
              delay_ms: int = 0) -> Rule:
        sel = _selection(types, from_, to, where)
        rid = self._sim.rule_add(action, delay_ms=delay_ms, count=count, **sel)
        return Rule(self._sim, int(rid), action)

    def clear_rules(self) -> None:
        """Removes every rule (held messages stay held)."""
        self._sim.rules_clear()

    def held(self, types: Any = None, from_: Optional[int] = None, to: Optional[int] = None,
             where: Optional[Callable[[Dict[str, Any]], Any]] = None) -> List[Dict[str, Any]]:
        """The held messages that match, oldest first: message dicts with id and held_at."""
        return list(self._sim.held(**_selection(types, from_, to, where)))

    def deliver(self, types: Any = None, from_: Optional[int] = None, to: Optional[int] = None,
                where: Optional[Callable[[Dict[str, Any]], Any]] = None, max: int = 0) -> int:
        """Delivers the held messages that match (at most max; 0: all), now, in the order they
        were held; each receiver reacts at once and what it sends goes through the rules and
        the network. Returns how many were delivered (a partition or a crash since may still
        lose one on arrival)."""
        return int(self._sim.deliver(max=max, **_selection(types, from_, to, where)))

    def discard(self, types: Any = None, from_: Optional[int] = None, to: Optional[int] = None,
                where: Optional[Callable[[Dict[str, Any]], Any]] = None) -> int:
        """Drops the held messages that match; returns how many."""
        return int(self._sim.discard(**_selection(types, from_, to, where)))

    def inject(self, message: Dict[str, Any], delay: int = 0) -> None:
        """Sends a message built by hand (a dict as the events show them: type, from, to, term
        and the type's fields), delay ms from now, past the rules and the network's loss."""
        self._sim.inject(message, delay)

    def campaign(self, node: int) -> None:
        """Makes node start an election now (its clock jumps to its election timeout; with
        pre-vote it polls first). Error if it is down, leads already or cannot campaign (a
        learner)."""
        if self._sim.campaign(node) != 0:
            raise Error(f"node {node} cannot campaign (down, leader, or not a voter)", _ESTATE)

    def set_clock(self, node: Optional[int], tick_ms: int) -> None:
        """Node's clock ticks every tick_ms of virtual time (node None: every node); 0 stops it:
        the node is then ticked only by tick(node=) and campaign(). A faster clock shortens its
        election timeout and heartbeat interval in virtual time."""
        self._sim.set_clock(node or 0, tick_ms)

    def clock(self, node: int) -> int:
        """Node's tick interval in ms (0: stopped)."""
        return int(self._sim.clock(node))

    def configure(self, node: int, **options: Any) -> None:
        """Protocol options for node's next boot (restart): election_ticks, heartbeat_ticks,
        pre_vote, check_quorum, max_inflight, snapshot_entries, ..."""
        self._sim.set_node_config(node, options)

    def node_config(self, node: int) -> Dict[str, Any]:
        """The protocol options node boots with."""
        return dict(self._sim.node_config(node))

    def link_stats(self, from_: int, to: int) -> Dict[str, int]:
        """Messages over the link from_ -> to: sent, bytes, delivered, dropped, held."""
        return dict(self._sim.link_stats(from_, to))

    def durable(self, node: int) -> Dict[str, Any]:
        """What node's disk holds (what it would boot from), whether it is up or down:
        hard_state {term, vote, commit}, first_index, last_index, entries (dicts), snapshot
        (None or {index, term, size, conf_index, voters})."""
        return dict(self._sim.durable(node))

    def recent_events(self) -> List[Dict[str, Any]]:
        """The last trace_depth events as dicts (see on_event)."""
        return list(self._sim.events())

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

    def read_start(self, node: Optional[int] = None, mode: str = "linearizable") -> int:
        """Starts a read at node (default: the leader) without running the simulation; returns
        its id for read_result(). NotLeader (or the core's error) if it cannot start."""
        if mode not in ("linearizable", "lease"):
            raise ValueError('mode must be "linearizable" or "lease"')
        at = node or self.leader()
        if at is None:
            raise NotLeader()
        rid = next(self._read_ids)
        rc = self._sim.read(at, rid, mode == "lease")
        if rc != 0:
            raise from_code(rc, "read", self.leader() or 0, "")
        return rid

    def read_result(self, rid: int) -> Optional[Dict[str, Any]]:
        """The record of a read: state ("pending", "ready", "served", "failed"), index, status,
        committed (the highest index committed anywhere when asked), applied, times; None for
        an unknown id."""
        r = self._sim.read_result(rid)
        return None if r is None else dict(r)

    # ---- observing ---------------------------------------------------------------------------

    def leader(self) -> Optional[int]:
        """The live leader with the highest term, or None."""
        return int(self._sim.leader()) or None

    def is_up(self, node: int) -> bool:
        return bool(self._sim.is_up(node))

    def status(self, node: int) -> Dict[str, Any]:
        """A node as the simulator sees it: up, role, term, vote, leader, commit, applied,
        first_index, last_index, last_term, boots (its incarnation), restored_index, the
        configuration in effect (voters, learners, conf_index), transfer_target and, on the
        leader, progress: {server: {role, state ("probe", "replicate", "snapshot"), match,
        next, inflight, recent_active}}. A node that is down reports up, applied, boots and
        restored_index only."""
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


# ---- transcripts (docs/simulator.md, "Transcripts") -----------------------------------------


class Transcript:
    """The result of running a transcript: output (the transcript with every command's actual
    output: what --rewrite writes back), report (each mismatch with its line, the command, the
    expected and the actual output), commands, mismatches; ok when nothing differed."""

    __slots__ = ("path", "output", "report", "commands", "mismatches")

    def __init__(self, path: Optional[str], output: str, report: str, commands: int,
                 mismatches: int) -> None:
        self.path = path
        self.output = output
        self.report = report
        self.commands = commands
        self.mismatches = mismatches

    @property
    def ok(self) -> bool:
        return self.mismatches == 0

    def __repr__(self) -> str:
        return f"Transcript({self.path!r}, commands={self.commands}, " \
               f"mismatches={self.mismatches})"


def run_transcript_text(text: str, path: Optional[str] = None) -> Transcript:
    """Runs a transcript given as text."""
    output, report, commands, mismatches = _craft.run_script(text.encode())
    return Transcript(path, output, report, commands, mismatches)


def run_transcript(path: str, rewrite: bool = False) -> Transcript:
    """Runs the transcript in a file; with rewrite, writes the actual outputs back into it
    (then review the change with git diff)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    result = run_transcript_text(text, path)
    if rewrite and result.output != text:
        with open(path, "w", encoding="utf-8") as f:
            f.write(result.output)
    return result


def _main(argv: Optional[Sequence[str]] = None) -> int:
    import argparse
    import sys

    p = argparse.ArgumentParser(
        prog="python -m craft.sim",
        description="Runs scenario transcripts on craft's simulator (docs/simulator.md).")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run transcripts and compare each command's output")
    run.add_argument("files", nargs="+", metavar="FILE")
    run.add_argument("--rewrite", action="store_true",
                     help="write the actual outputs into the files instead of failing")
    a = p.parse_args(argv)
    failed = 0
    for path in a.files:
        try:
            r = run_transcript(path, rewrite=a.rewrite)
        except OSError as e:
            print(f"{path}: {e.strerror}", file=sys.stderr)
            failed += 1
            continue
        if a.rewrite:
            print(f"{path}: {r.commands} commands, {r.mismatches} outputs rewritten")
        elif r.ok:
            print(f"{path}: ok ({r.commands} commands)")
        else:
            failed += 1
            print(f"{path}: {r.mismatches} of {r.commands} commands gave another output")
            print(r.report, end="")
            print(f"  (to record the new outputs: python -m craft.sim run --rewrite {path})")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(_main())
