"""Log stores written in Python, and the interface one implements.

A log store keeps a node's Raft log, its hard state (term, vote, commit hint) and its latest
snapshot. By default a Node uses craft's durable C store in data_dir; pass log_store= to use
an object of your own instead. Every method is called on one of the node's threads (never two
at once) and must be durable when it returns. An exception other than LogCompacted and
LogUnavailable (which are answers) means the store failed: the node stops, with the traceback
logged to the "craft" logger, because a store that lost a write cannot be trusted.

The methods (entries are (index, term, type, data) tuples; snapshot metadata is a tuple
(index, term, conf_index, size, conf) where conf is the configuration's encoded bytes, opaque
to the store):

    load_hard_state() -> (term, vote, commit)       zeros when there is none
    save_hard_state(term, vote, commit)
    bounds() -> (first, last)                       empty log: first == last + 1
    append(entries)                                 entries[0].index == last + 1
    truncate(from_index)                            removes every entry >= from_index
    compact(upto)                                   removes every entry <= upto
    entries(lo, hi) -> [entry, ...]                 raise LogCompacted / LogUnavailable
    term(index) -> int                              the same; also the last compacted entry
    snapshot_begin(meta) -> writer                  writer.write(bytes)
    snapshot_commit(writer)                         durable and the latest; fix up the log
    snapshot_abort(writer)
    snapshot_meta() -> meta or None
    snapshot_open() -> reader or None               reader.read(offset, n) -> bytes; close()
    close()                                         optional

The exact rules (what truncate below the compaction point does, how a snapshot commit keeps
the log consistent, ...) are those of c/include/craft/store.h; MemoryLogStore follows them and
is a good template.
"""

import threading
from typing import List, Optional, Tuple

from ._errors import LogCompacted, LogUnavailable

__all__ = ["MemoryLogStore", "Entry", "SnapshotMeta", "LogCompacted", "LogUnavailable"]

Entry = Tuple[int, int, int, bytes]
SnapshotMeta = Tuple[int, int, int, int, bytes]


class _Writer:
    def __init__(self, meta: SnapshotMeta) -> None:
        self.meta = meta
        self.chunks: List[bytes] = []

    def write(self, data: bytes) -> None:
        self.chunks.append(bytes(data))


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self, offset: int, n: int) -> bytes:
        return self.data[offset:offset + n]

    def close(self) -> None:
        pass


class MemoryLogStore:
    """A log store in memory: nothing survives the process. For tests, demos, and as the
    template of a store of your own (a node restarted with the same object keeps its log)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hard_state = (0, 0, 0)
        self._entries: List[Entry] = []
        self._first = 1           # index of the first entry held (compaction point + 1)
        self._compacted_term = 0  # term of the entry at first - 1
        self._snapshot: Optional[Tuple[SnapshotMeta, bytes]] = None
        self.calls = 0            # how many calls the node made (tests look at it)

    # -- hard state --------------------------------------------------------------------------
    def load_hard_state(self) -> Tuple[int, int, int]:
        self.calls += 1
        return self._hard_state

    def save_hard_state(self, term: int, vote: int, commit: int) -> None:
        self.calls += 1
        self._hard_state = (term, vote, commit)

    # -- the log -----------------------------------------------------------------------------
    def _last(self) -> int:
        return self._first + len(self._entries) - 1

    def bounds(self) -> Tuple[int, int]:
        self.calls += 1
        return self._first, self._last()

    def append(self, entries: List[Entry]) -> None:
        self.calls += 1
        with self._lock:
            expect = self._last() + 1
            prev_term = self._entries[-1][1] if self._entries else self._compacted_term
            for e in entries:
                if e[0] != expect or e[1] == 0 or e[1] < prev_term:
                    raise ValueError(f"append: entry {e[0]}/{e[1]} does not follow "
                                     f"{expect - 1}/{prev_term}")
                expect += 1
                prev_term = e[1]
            self._entries.extend((int(i), int(t), int(ty), bytes(d)) for i, t, ty, d in entries)

    def truncate(self, from_index: int) -> None:
        self.calls += 1
        with self._lock:
            if from_index == 0:
                raise ValueError("truncate(0)")
            if from_index > self._last():
                return
            if from_index < self._first:
                raise LogCompacted(f"truncate({from_index}) below the compaction point")
            del self._entries[from_index - self._first:]

    def compact(self, upto: int) -> None:
        self.calls += 1
        with self._lock:
            if upto < self._first:
                return
            if upto > self._last():
                snap = self._snapshot
                self._compacted_term = snap[0][1] if snap and snap[0][0] == upto else 0
                self._entries = []
            else:
                self._compacted_term = self._entries[upto - self._first][1]
                del self._entries[:upto - self._first + 1]
            self._first = upto + 1

    def entries(self, lo: int, hi: int) -> List[Entry]:
        self.calls += 1
        with self._lock:
            if lo < self._first:
                raise LogCompacted(f"entries from {lo}: the log starts at {self._first}")
            if hi > self._last():
                raise LogUnavailable(f"entries to {hi}: the log ends at {self._last()}")
            return self._entries[lo - self._first:hi - self._first + 1]

    def term(self, index: int) -> int:
        self.calls += 1
        with self._lock:
            if index == 0:
                return 0
            if index == self._first - 1:
                return self._compacted_term
            if index < self._first:
                raise LogCompacted(f"term({index}): compacted")
            if index > self._last():
                raise LogUnavailable(f"term({index}): the log ends at {self._last()}")
            return self._entries[index - self._first][1]

    # -- snapshots ---------------------------------------------------------------------------
    def snapshot_begin(self, meta: SnapshotMeta) -> _Writer:
        self.calls += 1
        if self._snapshot is not None and meta[0] < self._snapshot[0][0]:
            raise ValueError("snapshot_begin: older than the latest snapshot")
        return _Writer(tuple(meta))  # type: ignore[arg-type]

    def snapshot_commit(self, writer: _Writer) -> None:
        self.calls += 1
        data = b"".join(writer.chunks)
        index, term, conf_index, size, conf = writer.meta
        if size and size != len(data):
            raise ValueError(f"snapshot_commit: {len(data)} bytes written, {size} announced")
        with self._lock:
            self._snapshot = ((index, term, conf_index, len(data), conf), data)
            # Raft paper, Figure 13, steps 6 and 7: keep the log only if it holds the
            # snapshot's last entry with the snapshot's term.
            holds = False
            if self._first - 1 == index:
                holds = self._compacted_term == term
            elif self._first <= index <= self._last():
                holds = self._entries[index - self._first][1] == term
            if not holds:
                self._entries = []
                self._first = index + 1
                self._compacted_term = term

    def snapshot_abort(self, writer: _Writer) -> None:
        self.calls += 1

    def snapshot_meta(self) -> Optional[SnapshotMeta]:
        self.calls += 1
        return self._snapshot[0] if self._snapshot is not None else None

    def snapshot_open(self) -> Optional[_Reader]:
        self.calls += 1
        return _Reader(self._snapshot[1]) if self._snapshot is not None else None

    def close(self) -> None:
        pass
