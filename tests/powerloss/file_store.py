"""A durable log store written in Python (craft's log_store= interface, python/craft/store.py):
what a user who wants their own store would write with os and io, and the one the power-loss
campaign runs Python nodes on (powercut.py --store python). The Lua twin is file_store.lua.

Files in its directory:

    hard      term, vote, commit + CRC32; replaced whole: hard.tmp, fsync, rename, fsync dir
    log       a 24-byte header (magic, first index, term of the entry before it), then one
              record per entry: length u32, CRC32 u32 of the body, body = index u64, term u64,
              type u8, data. Appended with one write and one fdatasync; truncated with
              ftruncate and fdatasync; compacted by writing log.tmp whole and renaming it over
    snap      the latest snapshot: a header (index, term, conf_index, size, conf, CRC32) and
              the data, its CRC32 last; written as snap.tmp, fsynced, renamed, dir fsynced

Every method is durable when it returns. On open: *.tmp files are removed (never renamed:
never promised), the log's last record is cut off if it is torn (an append the power cut
interrupted, never acknowledged), and a log that does not hold the snapshot's last entry with
its term is dropped (a crash between a snapshot's rename and the log's rewrite: Raft paper,
Figure 13, steps 6 and 7).

sync=False skips every fsync: the campaign's negative control (it must lose writes).
"""

import os
import struct
import threading
import zlib
from typing import List, Optional, Tuple

import craft

Entry = Tuple[int, int, int, bytes]
Meta = Tuple[int, int, int, int, bytes]

LOG_MAGIC = b"PYLOG1\0\0"
LOG_HEAD = struct.Struct("<8sQQ")     # magic, first index, term of first - 1
REC_HEAD = struct.Struct("<II")       # body length, crc32(body)
REC_BODY = struct.Struct("<QQB")      # index, term, type (then data)
HARD = struct.Struct("<QQQ")          # term, vote, commit (then crc32)
SNAP_HEAD = struct.Struct("<QQQQI")   # index, term, conf_index, size, conf length (then conf,
                                      # crc32 of all that, data, crc32 of data)


class StoreError(Exception):
    pass


def _crc(b: bytes) -> int:
    return zlib.crc32(b) & 0xFFFFFFFF


class _Writer:
    def __init__(self, store: "FileLogStore", meta: Meta) -> None:
        self.meta = meta
        self.path = os.path.join(store.dir, "snap.tmp")
        self.f = open(self.path, "wb")
        conf = bytes(meta[4])
        # The header's size and data CRC are known at commit: room is left for it now.
        self.head_len = SNAP_HEAD.size + len(conf) + 4
        self.f.write(bytes(self.head_len))
        self.size = 0
        self.crc = 0

    def write(self, data: bytes) -> None:
        self.f.write(data)
        self.size += len(data)
        self.crc = zlib.crc32(data, self.crc)


class _Reader:
    def __init__(self, f, offset: int, size: int) -> None:
        self.f, self.offset, self.size = f, offset, size

    def read(self, offset: int, n: int) -> bytes:
        n = max(0, min(n, self.size - offset))
        return os.pread(self.f.fileno(), n, self.offset + offset) if n else b""

    def close(self) -> None:
        self.f.close()


class FileLogStore:
    def __init__(self, path: str, sync: bool = True) -> None:
        self.dir = path
        self.sync = sync
        self._lock = threading.Lock()
        self._fsync_dir_entry()
        for name in os.listdir(self.dir):
            if name.endswith(".tmp"):
                os.unlink(os.path.join(self.dir, name))
        self._hard = self._load_hard()
        self._snap: Optional[Meta] = None
        self._snap_data_at = 0
        self._load_snapshot()
        self._entries: List[Entry] = []
        self._offsets: List[int] = []  # where each entry's record starts in the log
        self._first = 1
        self._prev_term = 0
        self._end = LOG_HEAD.size
        self._log = None
        self._load_log()

    # -- files -------------------------------------------------------------------------------
    def _path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def _fsync(self, fd: int) -> None:
        if self.sync:
            os.fsync(fd)

    def _fdatasync(self, fd: int) -> None:
        if self.sync:
            os.fdatasync(fd)

    def _fsync_dir(self, path: Optional[str] = None) -> None:
        if not self.sync:
            return
        fd = os.open(path or self.dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _fsync_dir_entry(self) -> None:
        """Creates the directory if needed; its name in the parent is made durable too, or a
        power cut could take the whole store away after it was used."""
        os.makedirs(self.dir, exist_ok=True)
        self._fsync_dir(os.path.dirname(os.path.abspath(self.dir)))

    def _replace(self, name: str, data: bytes) -> None:
        """Writes name whole: name.tmp, fsync, rename over name, fsync the directory."""
        tmp = self._path(name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            self._fsync(f.fileno())
        os.replace(tmp, self._path(name))
        self._fsync_dir()

    # -- hard state --------------------------------------------------------------------------
    def _load_hard(self) -> Tuple[int, int, int]:
        try:
            with open(self._path("hard"), "rb") as f:
                b = f.read()
        except FileNotFoundError:
            return (0, 0, 0)
        if len(b) != HARD.size + 4 or _crc(b[:HARD.size]) != struct.unpack("<I", b[-4:])[0]:
            raise StoreError(f"{self._path('hard')}: bad checksum (it is written whole and "
                             f"renamed into place, so this is corruption)")
        return HARD.unpack(b[:HARD.size])

    def load_hard_state(self) -> Tuple[int, int, int]:
        return self._hard

    def save_hard_state(self, term: int, vote: int, commit: int) -> None:
        b = HARD.pack(term, vote, commit)
        self._replace("hard", b + struct.pack("<I", _crc(b)))
        self._hard = (term, vote, commit)

    # -- snapshot ----------------------------------------------------------------------------
    def _load_snapshot(self) -> None:
        try:
            f = open(self._path("snap"), "rb")
        except FileNotFoundError:
            return
        with f:
            b = f.read()
        if len(b) < SNAP_HEAD.size:
            raise StoreError(f"{self._path('snap')}: short header")
        index, term, conf_index, size, conf_len = SNAP_HEAD.unpack_from(b)
        head_len = SNAP_HEAD.size + conf_len + 4
        ok = (len(b) == head_len + size + 4
              and _crc(b[:head_len - 4]) == struct.unpack_from("<I", b, head_len - 4)[0]
              and _crc(b[head_len:head_len + size]) == struct.unpack_from("<I", b, len(b) - 4)[0])
        if not ok:
            raise StoreError(f"{self._path('snap')}: bad checksum (it is fsynced before it is "
                             f"renamed into place, so this is corruption)")
        conf = b[SNAP_HEAD.size:SNAP_HEAD.size + conf_len]
        self._snap = (index, term, conf_index, size, conf)
        self._snap_data_at = head_len

    def snapshot_begin(self, meta: Meta) -> _Writer:
        if self._snap is not None and meta[0] < self._snap[0]:
            raise ValueError("snapshot_begin: older than the latest snapshot")
        return _Writer(self, tuple(meta))  # type: ignore[arg-type]

    def snapshot_commit(self, w: _Writer) -> None:
        index, term, conf_index, size, conf = w.meta
        conf = bytes(conf)
        if size and size != w.size:
            self.snapshot_abort(w)
            raise ValueError(f"snapshot_commit: {w.size} bytes written, {size} announced")
        w.f.write(struct.pack("<I", w.crc & 0xFFFFFFFF))
        head = SNAP_HEAD.pack(index, term, conf_index, w.size, len(conf)) + conf
        w.f.flush()
        os.pwrite(w.f.fileno(), head + struct.pack("<I", _crc(head)), 0)
        self._fsync(w.f.fileno())
        w.f.close()
        os.replace(w.path, self._path("snap"))
        self._fsync_dir()
        with self._lock:
            self._snap = (index, term, conf_index, w.size, conf)
            self._snap_data_at = w.head_len
            # Raft paper, Figure 13, steps 6 and 7: keep the log only if it holds the
            # snapshot's last entry with the snapshot's term.
            if not self._holds(index, term):
                self._rewrite_log(index + 1, term, [])

    def snapshot_abort(self, w: _Writer) -> None:
        w.f.close()
        try:
            os.unlink(w.path)
        except FileNotFoundError:
            pass

    def snapshot_meta(self) -> Optional[Meta]:
        return self._snap

    def snapshot_open(self) -> Optional[_Reader]:
        if self._snap is None:
            return None
        return _Reader(open(self._path("snap"), "rb"), self._snap_data_at, self._snap[3])

    # -- the log -----------------------------------------------------------------------------
    def _holds(self, index: int, term: int) -> bool:
        if index == self._first - 1:
            return self._prev_term == term
        if self._first <= index <= self._last():
            return self._entries[index - self._first][1] == term
        return False

    def _last(self) -> int:
        return self._first + len(self._entries) - 1

    def _load_log(self) -> None:
        path = self._path("log")
        if not os.path.exists(path):
            self._rewrite_log(1, 0, [])
        else:
            self._log = open(path, "r+b")
            b = self._log.read()
            if len(b) < LOG_HEAD.size or b[:8] != LOG_MAGIC:
                raise StoreError(f"{path}: bad header (it is written whole and renamed into "
                                 f"place, so this is corruption)")
            _, self._first, self._prev_term = LOG_HEAD.unpack_from(b)
            p = LOG_HEAD.size
            expect = self._first
            while p + REC_HEAD.size <= len(b):
                n, crc = REC_HEAD.unpack_from(b, p)
                body = b[p + REC_HEAD.size:p + REC_HEAD.size + n]
                if n < REC_BODY.size or len(body) != n or _crc(body) != crc:
                    break
                index, term, typ = REC_BODY.unpack_from(body)
                if index != expect:
                    raise StoreError(f"{path}: entry {index} at offset {p}, expected {expect}")
                self._entries.append((index, term, typ, body[REC_BODY.size:]))
                self._offsets.append(p)
                expect += 1
                p += REC_HEAD.size + n
            self._end = p
            if p < len(b):
                # A torn last append: it never returned, so nobody was told it was durable.
                self._log.truncate(p)
                self._log.flush()
                self._fdatasync(self._log.fileno())
        snap = self._snap
        if snap is not None and snap[0] >= self._first - 1 and not self._holds(snap[0], snap[1]):
            # A crash after a snapshot's rename and before the log's rewrite: finish it. (A
            # snapshot behind the compaction point is older than the log: nothing to do.)
            self._rewrite_log(snap[0] + 1, snap[1], [])

    def _rewrite_log(self, first: int, prev_term: int, entries: List[Entry]) -> None:
        """The log replaced whole, atomically: log.tmp, fsync, rename, fsync the directory."""
        parts = [LOG_HEAD.pack(LOG_MAGIC, first, prev_term)]
        offsets = []
        at = LOG_HEAD.size
        for e in entries:
            rec = self._record(e)
            offsets.append(at)
            at += len(rec)
            parts.append(rec)
        self._replace("log", b"".join(parts))
        if self._log is not None:
            self._log.close()
        self._log = open(self._path("log"), "r+b")
        self._first, self._prev_term = first, prev_term
        self._entries, self._offsets, self._end = list(entries), offsets, at

    @staticmethod
    def _record(e: Entry) -> bytes:
        body = REC_BODY.pack(e[0], e[1], e[2]) + bytes(e[3])
        return REC_HEAD.pack(len(body), _crc(body)) + body

    def bounds(self) -> Tuple[int, int]:
        return self._first, self._last()

    def append(self, entries: List[Entry]) -> None:
        with self._lock:
            expect = self._last() + 1
            prev = self._entries[-1][1] if self._entries else self._prev_term
            for e in entries:
                if e[0] != expect or e[1] == 0 or e[1] < prev:
                    raise ValueError(f"append: entry {e[0]}/{e[1]} does not follow "
                                     f"{expect - 1}/{prev}")
                expect += 1
                prev = e[1]
            recs = [self._record(e) for e in entries]
            os.pwrite(self._log.fileno(), b"".join(recs), self._end)
            self._fdatasync(self._log.fileno())
            for e, r in zip(entries, recs):
                self._entries.append((int(e[0]), int(e[1]), int(e[2]), bytes(e[3])))
                self._offsets.append(self._end)
                self._end += len(r)

    def truncate(self, from_index: int) -> None:
        with self._lock:
            if from_index == 0:
                raise ValueError("truncate(0)")
            if from_index > self._last():
                return
            if from_index < self._first:
                raise craft.LogCompacted(f"truncate({from_index}) below the compaction point")
            k = from_index - self._first
            self._end = self._offsets[k]
            os.ftruncate(self._log.fileno(), self._end)
            self._fdatasync(self._log.fileno())
            del self._entries[k:]
            del self._offsets[k:]

    def compact(self, upto: int) -> None:
        with self._lock:
            if upto < self._first:
                return
            if upto > self._last():
                snap = self._snap
                prev = snap[1] if snap is not None and snap[0] == upto else 0
                self._rewrite_log(upto + 1, prev, [])
            else:
                prev = self._entries[upto - self._first][1]
                self._rewrite_log(upto + 1, prev, self._entries[upto - self._first + 1:])

    def entries(self, lo: int, hi: int) -> List[Entry]:
        with self._lock:
            if lo < self._first:
                raise craft.LogCompacted(f"entries from {lo}: the log starts at {self._first}")
            if hi > self._last():
                raise craft.LogUnavailable(f"entries to {hi}: the log ends at {self._last()}")
            return self._entries[lo - self._first:hi - self._first + 1]

    def term(self, index: int) -> int:
        with self._lock:
            if index == 0:
                return 0
            if index == self._first - 1:
                return self._prev_term
            if index < self._first:
                raise craft.LogCompacted(f"term({index}): compacted")
            if index > self._last():
                raise craft.LogUnavailable(f"term({index}): the log ends at {self._last()}")
            return self._entries[index - self._first][1]

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
