"""Power cuts for processes run under the lazyfs shim (tests/powerloss/lazyfs_shim.c).

The shim journals, before each change under a root directory, how to undo it, and marks what an
fsync/fdatasync (of the file, or of the directory for a name) made durable. A power cut here is:

    1. SIGKILL every process of the node (its process group) and wait for them;
    2. read the journal; every record that no later sync covers is volatile;
    3. undo the volatile records from the last back to the first: all of them ("all"), only
       back to a random point ("prefix": a disk that persisted some unsynced writes in the
       order they were made), or the same with the first record undone torn at 512-byte
       sectors ("torn": a write of which only some sectors reached the platter);
    4. empty the journal and the backups, so the node starts again on a clean slate.

What is left is what a disk may hold after losing power with that history. The journal's format
is described at the top of lazyfs_shim.c; `python3 lazyfs.py show STATE` prints one.

    python3 tests/powerloss/lazyfs.py cut STATE_DIR [--mode all|prefix|torn] [--seed N]

Used by test_lazyfs.py (the layer's own tests) and powercut.py (the campaign).
"""

import dataclasses
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import time
from typing import Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

MAGIC, TRAILER = 0x314A5A4C, 0x454A5A4C
HEAD = struct.Struct("<IIQQQQQQQIIIIQ")  # 88 bytes
assert HEAD.size == 88
SECTOR = 512

WRITE, TRUNC, CREATE, MKDIR, UNLINK, RMDIR, RENAME, SYNC, DIRSYNC, SYNCALL, FAIL = range(1, 12)
NAMES = {WRITE: "write", TRUNC: "trunc", CREATE: "create", MKDIR: "mkdir", UNLINK: "unlink",
         RMDIR: "rmdir", RENAME: "rename", SYNC: "sync", DIRSYNC: "dirsync",
         SYNCALL: "syncall", FAIL: "FAIL"}
MODES = ("all", "prefix", "torn")


class JournalError(Exception):
    """The shim met something it cannot model (a FAIL record): the cut cannot be trusted."""


@dataclasses.dataclass
class Record:
    offset: int   # where it lies in the journal
    type: int
    seq: int
    dev: int
    ino: int
    a: int
    b: int
    c: int
    pid: int
    p1: str
    p2: str
    data: bytes

    def __str__(self) -> str:
        return (f"#{self.seq} {NAMES.get(self.type, self.type)} {self.p1}"
                f"{' -> ' + self.p2 if self.p2 else ''} ino={self.ino} a={self.a} b={self.b} "
                f"c={self.c} data={len(self.data)}B")

    def extents(self) -> List[Tuple[int, bytes]]:
        """Old bytes of a write or truncation: (file offset, bytes) of the non-zero sectors."""
        out, p = [], 0
        while p + 16 <= len(self.data):
            off, n = struct.unpack_from("<QQ", self.data, p)
            out.append((off, self.data[p + 16:p + 16 + n]))
            p += 16 + n
        return out


def journal_path(state: str) -> str:
    return os.path.join(state, "journal")


def read_journal(state: str) -> List[Record]:
    """The journal's records in order. A torn last record (the process was killed during its
    append) is left out: its operation never started."""
    path = journal_path(state)
    if not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        b = f.read()
    out, off = [], 0
    while off + HEAD.size + 4 <= len(b):
        (magic, typ, length, seq, dev, ino, a, bb, c, pid, l1, l2, _, dl) = \
            HEAD.unpack_from(b, off)
        if (magic != MAGIC or length < HEAD.size + 4 or off + length > len(b)
                or struct.unpack_from("<I", b, off + length - 4)[0] != TRAILER
                or HEAD.size + l1 + l2 + dl + 4 != length):
            break
        p = off + HEAD.size
        p1 = b[p:p + l1].decode("utf-8", "surrogateescape")
        p2 = b[p + l1:p + l1 + l2].decode("utf-8", "surrogateescape")
        data = b[p + l1 + l2:p + l1 + l2 + dl]
        out.append(Record(off, typ, seq, dev, ino, a, bb, c, pid, p1, p2, data))
        off += length
    return out


def volatile(records: List[Record]) -> List[Record]:
    """The records that no later sync covers, in journal order. A sync covers the records of
    its file (data) or directory (names: the directory holding the name, for a rename the new
    name's) with a lower sequence number; a sync of everything covers all of them."""
    fails = [r for r in records if r.type == FAIL]
    if fails:
        raise JournalError("the shim could not model: " + "; ".join(r.p1 for r in fails))
    covered: Dict[Tuple[int, int], int] = {}
    everything = 0
    for r in records:
        if r.type in (SYNC, DIRSYNC):
            covered[(r.dev, r.ino)] = max(covered.get((r.dev, r.ino), 0), r.a)
        elif r.type == SYNCALL:
            everything = max(everything, r.a)
    return [r for r in records if r.type not in (SYNC, DIRSYNC, SYNCALL)
            and r.seq >= everything and r.seq >= covered.get((r.dev, r.ino), 0)]


# ----------------------------------------------------------------------------------------------
# Undo
# ----------------------------------------------------------------------------------------------


def _lstat(path: str) -> Optional[os.stat_result]:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


class Undoer:
    def __init__(self, root: str):
        self.root = os.path.realpath(root)
        self.notes: List[str] = []

    def find(self, r: Record) -> Optional[str]:
        """The file a data record was about, by inode: at its recorded path, or wherever a
        rename that stayed durable moved it."""
        st = _lstat(r.p1)
        if st is not None and st.st_ino == r.ino and st.st_dev == r.dev:
            return r.p1
        for d, dirs, files in os.walk(self.root):
            for name in files:
                p = os.path.join(d, name)
                st = _lstat(p)
                if st is not None and st.st_ino == r.ino and st.st_dev == r.dev:
                    return p
        return None

    def restore_bytes(self, fd: int, r: Record, lo: int, hi: int) -> None:
        """Puts back the old bytes of [lo, hi): zeros, then the recorded non-zero sectors."""
        if hi <= lo:
            return
        zeros = bytes(min(hi - lo, 1 << 20))
        p = lo
        while p < hi:
            n = min(len(zeros), hi - p)
            os.pwrite(fd, zeros[:n], p)
            p += n
        for off, data in r.extents():
            s, e = max(off, lo), min(off + len(data), hi)
            if e > s:
                os.pwrite(fd, data[s - off:e - off], s)

    def undo(self, r: Record, sectors: Optional[List[Tuple[int, int]]] = None) -> None:
        if r.type == WRITE:
            path = self.find(r)
            if path is None:
                self.notes.append(f"{r}: the file is gone, nothing to undo")
                return
            fd = os.open(path, os.O_WRONLY)
            try:
                off, old_size, n = r.a, r.b, r.c
                for lo, hi in sectors or [(off, off + n)]:
                    self.restore_bytes(fd, r, lo, min(hi, old_size))
                    if sectors is not None and hi > max(lo, old_size):
                        # Torn past the old end: the new size reached the disk, these sectors
                        # did not and read as zeros.
                        os.pwrite(fd, bytes(hi - max(lo, old_size)), max(lo, old_size))
                if sectors is None and off + n > old_size and os.fstat(fd).st_size > old_size:
                    os.ftruncate(fd, old_size)
            finally:
                os.close(fd)
        elif r.type == TRUNC:
            path = self.find(r)
            if path is None:
                self.notes.append(f"{r}: the file is gone, nothing to undo")
                return
            fd = os.open(path, os.O_WRONLY)
            try:
                new_size, old_size = r.a, r.b
                os.ftruncate(fd, old_size)
                if new_size < old_size:
                    self.restore_bytes(fd, r, new_size, old_size)
            finally:
                os.close(fd)
        elif r.type == CREATE:
            st = _lstat(r.p1)
            if st is not None:
                if os.path.isdir(r.p1) and not os.path.islink(r.p1):
                    shutil.rmtree(r.p1)
                else:
                    os.unlink(r.p1)
        elif r.type == MKDIR:
            if _lstat(r.p1) is not None:
                # Whatever was made durable inside a directory whose own name was not is lost
                # with it (a real file system would leave it in lost+found).
                shutil.rmtree(r.p1)
        elif r.type == UNLINK:
            backup = r.p2
            if _lstat(r.p1) is None and _lstat(backup) is not None:
                os.rename(backup, r.p1)
        elif r.type == RMDIR:
            if _lstat(r.p1) is None:
                os.mkdir(r.p1)
        elif r.type == RENAME:
            old, new, backup = r.p1, r.p2, r.data.decode("utf-8", "surrogateescape")
            st = _lstat(new)
            if st is not None and st.st_ino == r.a and _lstat(old) is None:
                os.rename(new, old)
                if backup and _lstat(backup) is not None:
                    os.rename(backup, new)
            # else the rename never happened (killed before it, or it failed)
        else:
            raise JournalError(f"unknown record type {r.type} at offset {r.offset}")


def clear(state: str) -> None:
    """Empties the journal and the backups: the next run starts from what is on disk."""
    os.makedirs(state, exist_ok=True)
    with open(journal_path(state), "wb"):
        pass
    for extra in ("journal.new",):
        p = os.path.join(state, extra)
        if os.path.exists(p):
            os.unlink(p)
    shutil.rmtree(os.path.join(state, "backup"), ignore_errors=True)
    os.makedirs(os.path.join(state, "backup"))


def torn_sectors(r: Record, rng: random.Random) -> Optional[List[Tuple[int, int]]]:
    """For a write that spans more than one sector: a random non-empty proper subset of its
    sectors, the ones that did NOT reach the disk (the others did, and so did the file's new
    size if the write extended it)."""
    if r.type != WRITE or r.a > r.b:
        return None
    lo, hi = r.a, r.a + r.c
    pieces = []
    p = lo
    while p < hi:
        e = min(hi, (p // SECTOR + 1) * SECTOR)
        pieces.append((p, e))
        p = e
    if len(pieces) < 2:
        return None
    lost = [x for x in pieces if rng.random() < 0.5]
    if not lost or len(lost) == len(pieces):
        lost = rng.sample(pieces, rng.randrange(1, len(pieces)))
        lost.sort()
    return lost


def power_cut(state: str, root: str, mode: str = "all",
              rng: Optional[random.Random] = None) -> Dict[str, object]:
    """Undoes what a power cut loses (the node's processes must be dead). Returns what it did:
    {"records", "volatile", "kept", "undone", "torn", "notes", "lost": [str]}."""
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: one of {MODES}")
    rng = rng or random.Random()
    records = read_journal(state)
    vol = volatile(records)
    keep = 0 if mode == "all" else rng.randrange(len(vol) + 1)
    u = Undoer(root)
    torn = None
    lost = vol[keep:]
    for i, r in enumerate(reversed(lost)):
        first_undone = i == len(lost) - 1
        sectors = torn_sectors(r, rng) if mode == "torn" and first_undone else None
        if sectors:
            torn = f"{r} torn: sectors lost {sectors}"
        u.undo(r, sectors)
    clear(state)
    return {"records": len(records), "volatile": len(vol), "kept": keep, "undone": len(lost),
            "torn": torn, "notes": u.notes, "lost": [str(r) for r in lost]}


# ----------------------------------------------------------------------------------------------
# Running programs under the shim
# ----------------------------------------------------------------------------------------------


def shim_path() -> str:
    """The built shim: $CRAFT_LAZYFS_SO, else cbuild/default/powerloss/craft_lazyfs.so (built
    there first if the tree is configured but the library is missing)."""
    p = os.environ.get("CRAFT_LAZYFS_SO")
    if p:
        if not os.path.exists(p):
            raise FileNotFoundError(f"CRAFT_LAZYFS_SO={p} does not exist: build it with `make "
                                    f"build-default` (CMake target craft-lazyfs)")
        return p
    build = os.path.join(ROOT, "cbuild", "default")
    p = os.path.join(build, "powerloss", "craft_lazyfs.so")
    if not os.path.exists(p) and os.path.exists(os.path.join(build, "CMakeCache.txt")):
        subprocess.run(["cmake", "--build", build, "--target", "craft-lazyfs"], check=False,
                       capture_output=True, timeout=300)
    if not os.path.exists(p):
        raise FileNotFoundError(f"{p} is not built: run `make build-default` (the CMake target "
                                f"craft-lazyfs, tests/powerloss/CMakeLists.txt)")
    return p


def env(root: str, state: str, base: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """The environment of a process whose writes under root may be lost (state holds the
    journal; it is created empty if missing)."""
    e = dict(os.environ if base is None else base)
    os.makedirs(root, exist_ok=True)
    if not os.path.exists(journal_path(state)):
        clear(state)
    preload = shim_path()
    if e.get("LD_PRELOAD"):
        preload += ":" + e["LD_PRELOAD"]
    e.update(LD_PRELOAD=preload, CRAFT_LAZYFS_ROOT=root, CRAFT_LAZYFS_STATE=state)
    return e


def kill_group(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGKILL the process group proc leads (started with start_new_session=True) and wait
    until every process of it is gone."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"pid {proc.pid} did not die after SIGKILL") from None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.01)
    raise RuntimeError(f"process group {proc.pid} survived SIGKILL")


def main(argv: Optional[List[str]] = None) -> int:
    import argparse
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("cut", help="undo what a power cut loses (the processes must be dead)")
    c.add_argument("state")
    c.add_argument("--root", required=True)
    c.add_argument("--mode", choices=MODES, default="all")
    c.add_argument("--seed", type=int)
    s = sub.add_parser("show", help="print the journal and which records are volatile")
    s.add_argument("state")
    a = p.parse_args(argv)
    if a.cmd == "show":
        recs = read_journal(a.state)
        vol = {r.seq for r in volatile(recs)}
        for r in recs:
            print(("V " if r.seq in vol else "  ") + str(r))
        return 0
    out = power_cut(a.state, a.root, a.mode, random.Random(a.seed))
    for k, v in out.items():
        print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
