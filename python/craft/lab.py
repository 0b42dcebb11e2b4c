"""craft.lab: bring your own Raft. Write the protocol in Python and run it in craft's simulator
in place of craft's C core, over the same virtual network, disks and crashes, under the same
invariant checker, from the same seeds (docs/lab.md, docs/simulator.md "Bring your own core").

A node is a class with the same inputs and outputs as craft's core (craft.h):

    step(message)                 a message from a peer
    tick()                        one unit of time passed
    propose(data)                 a command: (index, term), or None when not the leader
    take_update()                 what to persist, send and apply, or None
    persisted(seq)                the disk made everything up to ticket seq durable
    snapshot_taken(index, size)   the state machine was saved at index: compact the log

RaftNode below is the base class of such a node. It holds the state every Raft keeps (term,
vote, log, commit index, role) and the plumbing that turns what a node does into updates:
send() and send_when_durable() queue messages, save_hard_state() and log_append() mark what
must reach the disk, take_update() gathers it all under a persistence ticket, persisted()
says which tickets are durable. The protocol itself -- elections, replication, persistence
rules, snapshots -- is the subclass's: examples/lab/raft.py is a skeleton with TODOs.

    from craft.sim import Cluster
    c = Cluster(3, seed=1, core=MyRaft)      # MyRaft(id, config, boot)
    c.wait_for_leader()
"""

import random
from typing import Any, Dict, List, Optional, Sequence, Tuple

__all__ = ["Entry", "Message", "Log", "RaftNode", "FOLLOWER", "CANDIDATE", "LEADER"]

FOLLOWER = "follower"
CANDIDATE = "candidate"
LEADER = "leader"


class Entry:
    """A log entry: index, term, type ("command", "barrier" or "config") and data."""

    __slots__ = ("index", "term", "type", "data")

    def __init__(self, index: int, term: int, data: bytes = b"", type: str = "command") -> None:
        self.index = index
        self.term = term
        self.type = type
        self.data = data

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "Entry":
        return cls(int(d["index"]), int(d["term"]), bytes(d.get("data", b"")),
                   str(d.get("type", "command")))

    def to_dict(self) -> Dict[str, Any]:
        return {"index": self.index, "term": self.term, "type": self.type, "data": self.data}

    def __repr__(self) -> str:
        return f"Entry({self.index}/{self.term} {self.type} {self.data!r})"


class Message:
    """A message: type ("RequestVote", "RequestVoteResult", "AppendEntries",
    "AppendEntriesResult", "InstallSnapshot", "InstallSnapshotResult"), sender, to, term, and the
    fields of its type (craft.h; docs/simulator.md lists them), read as attributes:

        RequestVote          last_log_index, last_log_term
        RequestVoteResult    granted
        AppendEntries        prev_index, prev_term, entries (a list of Entry), commit
        AppendEntriesResult  rejected, index (match index; or the rejected prev_index),
                             hint_index, hint_term (the follower's conflict hint), last_index
        InstallSnapshot      snapshot_index, snapshot_term, snapshot_size, conf_index, voters,
                             offset, length, done (data: filled in by the simulator)
        InstallSnapshotResult  index, offset, rejected, done

    A field the message does not carry reads as 0, False or []."""

    def __init__(self, type: str, to: int, term: int, **fields: Any) -> None:
        self.__dict__.update(fields)
        self.type = type
        self.to = to
        self.term = term
        if "sender" not in fields:
            self.sender = 0

    def __getattr__(self, name: str) -> Any:
        if name == "entries":
            return []
        if name.startswith("_"):
            raise AttributeError(name)
        return 0

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "Message":
        fields = {k: v for k, v in d.items() if k not in ("type", "from", "to", "term")}
        if "entries" in fields:
            fields["entries"] = [Entry.from_dict(e) for e in fields["entries"]]
        return cls(d["type"], int(d["to"]), int(d["term"]), sender=int(d["from"]), **fields)

    def to_dict(self) -> Dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k not in ("sender",)}
        d["from"] = self.sender
        if "entries" in d:
            d["entries"] = [e.to_dict() for e in d["entries"]]
        return d

    def __repr__(self) -> str:
        fields = " ".join(f"{k}={v!r}" for k, v in sorted(self.__dict__.items())
                          if k not in ("type", "sender", "to", "term"))
        return f"<{self.type} {self.sender}->{self.to} term={self.term} {fields}>"


class Log:
    """The log: entries offset+1 .. last, after a snapshot that ends at offset/offset_term."""

    def __init__(self) -> None:
        self.entries: List[Entry] = []
        self.offset = 0
        self.offset_term = 0

    def last_index(self) -> int:
        return self.offset + len(self.entries)

    def last_term(self) -> int:
        return self.entries[-1].term if self.entries else self.offset_term

    def first_index(self) -> int:
        return self.offset + 1

    def term_at(self, index: int) -> int:
        """The term of the entry at index (also at the snapshot's index); 0 if not held."""
        if index == self.offset:
            return self.offset_term
        e = self.entry(index)
        return e.term if e is not None else 0

    def entry(self, index: int) -> Optional[Entry]:
        if self.offset < index <= self.last_index():
            return self.entries[index - self.offset - 1]
        return None

    def slice(self, lo: int, hi: int) -> List[Entry]:
        """Entries lo..hi inclusive that the log holds."""
        lo = max(lo, self.offset + 1)
        hi = min(hi, self.last_index())
        return self.entries[lo - self.offset - 1:hi - self.offset] if lo <= hi else []


class RaftNode:
    """Base class of a Raft written in Python for craft's simulator.

    State (read and change it freely): id, voters (every voter's id), peers (the others),
    term, voted_for, leader (0 if unknown), role (FOLLOWER, CANDIDATE, LEADER), log (a Log),
    commit, applied, snapshot (None or a dict: index, term, size, voters, conf_index).
    Settings from the simulator: election_ticks, heartbeat_ticks, max_batch, snapshot_entries,
    rng (a random.Random seeded by the simulator: use it, never the random module, so that runs
    replay from their seed).

    Plumbing:
      send(m)                  send m with the next update
      send_when_durable(m)     send m once everything changed so far is on disk (an answer that
                               promises something: a vote, entries stored), and only if the
                               term has not changed meanwhile
      save_hard_state()        term and voted_for must reach the disk with the next update
      log_append(entries)      put entries in the log from entries[0].index on (removing what
                               is there from that index), to reach the disk with the next update
      durable(seq)             whether ticket seq is on disk; pending_seq() is the ticket the
                               changes made so far will get
      majority()               how many voters make a majority

    Subclasses implement step, tick and propose (and, for snapshots, the InstallSnapshot
    messages). on_persisted() is called after each persisted(): a place to act on durability.
    """

    def __init__(self, id: int, config: Dict[str, Any], boot: Dict[str, Any]) -> None:
        self.id = id
        self.config = config
        self.election_ticks = int(config["election_ticks"])
        self.heartbeat_ticks = int(config["heartbeat_ticks"])
        self.max_batch = int(config.get("max_batch_entries", 64))
        self.snapshot_entries = int(config.get("snapshot_entries", 0))
        self.rng = random.Random(int(config["seed"]))
        self.voters: List[int] = sorted(int(v) for v in boot["voters"])
        self.peers: List[int] = [v for v in self.voters if v != id]
        self.role = FOLLOWER
        self.leader = 0
        self.term = 0
        self.voted_for = 0
        self.log = Log()
        self.commit = 0
        self.applied = 0
        self.snapshot: Optional[Dict[str, Any]] = None
        self._outbox: List[Message] = []
        self._deferred: List[Tuple[int, Message]] = []
        self._hs_dirty = False
        self._unstable_from = 0
        self._seq = 0
        self._persisted_seq = 0
        self._writes: List[Tuple[int, int, int]] = []  # (seq, first changed index, last)
        self.persisted_index = 0
        self._want: Optional[Dict[str, Any]] = None
        self._chunk: Optional[Dict[str, Any]] = None
        self._discard = False
        self._conf_index = 0
        if not boot["entries"] and boot["snapshot"] is None and boot["bootstrap"] is not None:
            self._bootstrap(boot)
        else:
            self.restore(boot)
        self.persisted_index = self.log.last_index() if not self._unstable_from else \
            self._unstable_from - 1
        if self.commit < 1 and self.log.term_at(1) == 1:
            self.commit = 1  # the bootstrap entry (term 1 has no leader: it is never another)
        if not self._conf_index:
            confs = [e.index for e in self.log.entries if e.type == "config"]
            self._conf_index = confs[-1] if confs else \
                int(self.snapshot["conf_index"]) if self.snapshot else 0

    def _bootstrap(self, boot: Dict[str, Any]) -> None:
        """A new cluster: the configuration is entry 1, of term 1 (craft's core does the same),
        written with the hard state in the first update."""
        hs = boot["hard_state"]
        self.term = max(int(hs["term"]), 1)
        self.voted_for = int(hs["vote"])
        self.log_append([Entry(1, 1, bytes(boot["bootstrap"]["data"]), "config")])
        self._conf_index = 1
        # Every founding voter writes this same entry: it is committed by construction (as
        # etcd-io/raft's bootstrap does), so no leader has to commit an entry of term 1.
        self.commit = 1
        self.save_hard_state()

    def restore(self, boot: Dict[str, Any]) -> None:
        """Boot from what the disk holds: boot["hard_state"] (term, vote, commit),
        boot["snapshot"] (None or {index, term, size, voters, conf_index}) and boot["entries"]
        (dicts). Subclasses implement it (part C)."""
        raise NotImplementedError("restore(boot): part C")

    # ---- the plumbing -----------------------------------------------------------------------

    def majority(self) -> int:
        return len(self.voters) // 2 + 1

    def send(self, m: Message) -> None:
        m.sender = self.id
        self._outbox.append(m)

    def pending_seq(self) -> int:
        """The ticket that what has changed so far will be written under."""
        return self._seq + 1 if self._dirty() else self._seq

    def durable(self, seq: int) -> bool:
        return seq <= self._persisted_seq

    def send_when_durable(self, m: Message) -> None:
        m.sender = self.id
        need = self.pending_seq()
        if need <= self._persisted_seq:
            self._outbox.append(m)
        else:
            self._deferred.append((need, m))

    def save_hard_state(self) -> None:
        self._hs_dirty = True

    def log_append(self, entries: Sequence[Entry]) -> None:
        if not entries:
            return
        first = entries[0].index
        if first > self.log.last_index() + 1 or first <= self.log.offset:
            raise ValueError(f"log_append: entry {first} does not follow the log "
                             f"({self.log.offset + 1}..{self.log.last_index()})")
        del self.log.entries[first - self.log.offset - 1:]
        for k, e in enumerate(entries):
            if e.index != first + k:
                raise ValueError("log_append: entries must have consecutive indexes")
            self.log.entries.append(e)
        if self._unstable_from == 0 or first < self._unstable_from:
            self._unstable_from = first
        if self.persisted_index >= first:
            self.persisted_index = first - 1

    def _dirty(self) -> bool:
        return self._hs_dirty or self._unstable_from != 0 or self._chunk is not None

    def adopt_snapshot(self, m: Message) -> None:
        """Replace the state machine with the snapshot m carries (its data was filled in by the
        simulator) and the log up to it (paper Figure 13, steps 6-7): if the log holds the
        snapshot's last entry, the entries after it stay; otherwise none can be trusted and
        the log is emptied. Commit and applied move up to the snapshot. The next update stores
        it before anything else."""
        d = m.to_dict()
        index = int(m.snapshot_index)
        self._chunk = d
        matches = self.log.offset < index <= self.log.last_index() and \
            self.log.term_at(index) == int(m.snapshot_term)
        self._discard = not matches
        self.log.entries = self.log.slice(index + 1, self.log.last_index()) if matches else []
        self.log.offset = index
        self.log.offset_term = int(m.snapshot_term)
        self.snapshot = {"index": int(m.snapshot_index), "term": int(m.snapshot_term),
                         "size": int(m.snapshot_size), "voters": list(m.voters),
                         "conf_index": int(m.conf_index)}
        self.commit = max(self.commit, self.log.offset)
        self.applied = max(self.applied, self.log.offset)
        if self._unstable_from and self._unstable_from <= index:
            # Unwritten entries under the snapshot: those after it are written again.
            self._unstable_from = index + 1 if self.log.entries else 0
        if not matches:
            self._unstable_from = 0
        self.persisted_index = min(self.persisted_index, index) if matches else index

    # ---- what craft's simulator calls (the core's interface) ---------------------------------

    def step(self, m: Dict[str, Any]) -> None:
        """A message from the simulator (a dict): handed to receive() as a Message."""
        self.receive(Message.from_dict(m))

    def receive(self, m: Message) -> None:
        raise NotImplementedError

    def tick(self) -> None:
        raise NotImplementedError

    def propose(self, data: bytes) -> Optional[Tuple[int, int]]:
        raise NotImplementedError

    def on_persisted(self) -> None:
        """Called after every persisted(): durable(seq) may have changed."""

    def wants_snapshot(self) -> bool:
        """Whether to ask for a snapshot now (the applied log is long enough)."""
        return self.snapshot_entries > 0 and \
            self.applied - self.log.offset >= self.snapshot_entries

    def take_update(self) -> Optional[Dict[str, Any]]:
        u: Dict[str, Any] = {}
        last = self.log.last_index()
        if self._dirty():
            self._seq += 1
            u["seq"] = self._seq
            first = self._unstable_from
            self._writes.append((self._seq, first, last))
            if self._hs_dirty:
                u["hard_state"] = {"term": self.term, "vote": self.voted_for,
                                   "commit": self.commit}
            if first:
                u["entries"] = [e.to_dict() for e in self.log.slice(first, last)]
            if self._chunk is not None:
                u["snapshot_chunk"] = self._chunk
                u["snapshot_discard_log"] = self._discard
                self._chunk = None
            self._hs_dirty = False
            self._unstable_from = 0
        kept = []
        for need, m in self._deferred:
            if need > self._persisted_seq:
                kept.append((need, m))
            elif m.term == self.term:
                self._outbox.append(m)
        self._deferred = kept
        if self._outbox:
            u["messages"] = [m.to_dict() for m in self._outbox]
            self._outbox = []
        # Committed entries the local disk holds, in order (a state machine never runs ahead
        # of its own log).
        upto = min(self.commit, self.persisted_index)
        if upto > self.applied:
            u["committed"] = [e.to_dict() for e in self.log.slice(self.applied + 1, upto)]
            self.applied = upto
        if self._want is None and self.wants_snapshot() and self.log.term_at(self.applied):
            self._want = {"index": self.applied, "term": self.log.term_at(self.applied),
                          "voters": self.voters, "conf_index": self._conf_index}
            u["snapshot_wanted"] = self._want
        return u or None

    def persisted(self, seq: int) -> None:
        if seq <= self._persisted_seq:
            return
        self._persisted_seq = seq
        done = [w for w in self._writes if w[0] <= seq]
        self._writes = [w for w in self._writes if w[0] > seq]
        if done:
            # The disk holds the log as it was when the last of these tickets was taken, minus
            # what later tickets or pending changes rewrite.
            p = done[-1][2]
            for _, first, _ in self._writes:
                if first and first - 1 < p:
                    p = first - 1
            if self._unstable_from and self._unstable_from - 1 < p:
                p = self._unstable_from - 1
            self.persisted_index = min(p, self.log.last_index())
        self.on_persisted()

    def snapshot_taken(self, index: int, size: int) -> int:
        """The simulator saved the state machine at index (size bytes): remember the snapshot,
        drop the log up to it (compact_log), and let the store do the same."""
        self._want = None
        self.snapshot = {"index": index, "term": self.log.term_at(index), "size": size,
                         "voters": list(self.voters), "conf_index": self._conf_index}
        return self.compact_log(index)

    def compact_log(self, index: int) -> int:
        """Drops the entries up to index (they are in the snapshot); returns the index up to
        which the store may drop them too. Part D."""
        return 0

    def status(self) -> Dict[str, Any]:
        return {"role": self.role, "term": self.term, "vote": self.voted_for,
                "leader": self.leader, "commit": self.commit,
                "first_index": self.log.first_index(), "last_index": self.log.last_index(),
                "last_term": self.log.last_term(), "voters": self.voters}

    def term_at(self, index: int) -> int:
        return self.log.term_at(index)
