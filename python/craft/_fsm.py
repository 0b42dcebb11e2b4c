"""What runs between the committed log and the user's state machine, the same in Python as in
Lua (lua/raft/fsm.lua) and byte for byte compatible with it (docs/protocol.md, "The state
machine's formats"):

- entries that start with craft's reserved bytes C1 63 are craft's: client-session envelopes
  (docs/sessions.md) and state-digest entries. One this node cannot interpret (another kind,
  another version, a session command on a node without sessions) stops the node, loudly,
  instead of reaching the user's apply;
- the client-session table (sessions=True) in front of the user's apply;
- every snapshot starts with the state-machine envelope (C1 63 73 70, a version, whether a
  session table follows, the table), then the user's bytes; a snapshot without it, or with a
  table this node does not expect (or without one it does), is refused;
- state digests (digest_interval > 0): every node hashes its state where a mark entry is
  applied; the leader proposes its digest right after, and a node whose own digest differs
  raises "diverged" and stops applying.

Called by the runtime on the node's state machine thread, one at a time and in log order:
apply_batch, snapshot and restore; digests inside apply_batch.
"""

import collections
import hashlib
import logging
import struct
import threading
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Union

from . import _craft
from ._errors import Error, StorageError

RESERVED = b"\xc1c"           # 0xC1 starts no msgpack value and no UTF-8 sequence
SESSION_TAG = b"sn"           # C1 63 73 6E: a session envelope
DIGEST_MAGIC = b"\xc1cdg"     # C1 63 64 67: a state-digest entry
DIGEST_VERSION = 1
DIGEST_MARK, DIGEST_VALUE = 1, 2
SNAP_MAGIC = b"\xc1csp"       # C1 63 73 70: the state-machine snapshot envelope
SNAP_VERSION = 1
SNAP_HEAD = 14                # magic, version, flags, u64 table length
KEEP_DIGESTS = 16
REMEMBER_ERRORS = 1024

log = logging.getLogger("craft")


def encode_error(type_name: str, message: str) -> bytes:
    """An error result: "<name>\\0<message>" (docs/protocol.md)."""
    return type_name.encode("utf-8", "replace") + b"\x00" + message.encode("utf-8", "replace")


def decode_error(data: bytes) -> Tuple[str, str]:
    name, _, message = bytes(data).partition(b"\x00")
    return name.decode("utf-8", "replace"), message.decode("utf-8", "replace")


def snapshot_header(table: Optional[bytes]) -> bytes:
    """The head of the state-machine snapshot envelope, the session table included."""
    flags = 1 if table is not None else 0
    body = table or b""
    return SNAP_MAGIC + struct.pack("<BBQ", SNAP_VERSION, flags, len(body)) + body


def digest_mark() -> bytes:
    return DIGEST_MAGIC + bytes([DIGEST_VERSION, DIGEST_MARK])


def digest_value(at: int, digest: bytes) -> bytes:
    return DIGEST_MAGIC + bytes([DIGEST_VERSION, DIGEST_VALUE]) + struct.pack("<Q", at) + digest


class Diverged(Error):
    """This node's state machine differs from the leader's at the same log index (state
    digests, digest_interval=): its apply is nondeterministic, or its state was changed outside
    apply. The node stopped applying and refuses every read, stale ones too."""

    code = -21


class _Stop(Error):
    """Raised by the adapter to stop the node at stop_index (python/src/node.c reads it)."""

    def __init__(self, message: str, code: int, index: int) -> None:
        super().__init__(message, code)
        self.stop_index = index


_SESSION_REFUSALS = {
    _craft.SESSION_UNKNOWN: "the session expired or was evicted: open a new one; whether the "
                            "command was applied cannot be known",
    _craft.SESSION_STALE: "the command is older than what the session remembers: its outcome "
                          "cannot be known",
    _craft.SESSION_MALFORMED: "a malformed session envelope",
}


class Adapter:
    """The adapter of one node. propose(payload) and is_leader() reach the node (set by Node
    once its C half exists); on_diverged(index, leader_hex, our_hex) raises the event."""

    def __init__(self, fsm: Any, node_id: int, sessions: bool, session_options: Dict[str, Any],
                 digest_interval: int = 0) -> None:
        self.fsm = fsm
        self.node_id = node_id
        # The user's apply_batch(commands, first_index), when the state machine has its own
        # (StateMachine's default, which loops over apply, is marked _craft_default).
        fn = getattr(type(fsm), "apply_batch", None)
        self.batch: Optional[Callable[[List[bytes], int], Any]] = (
            fsm.apply_batch if callable(fn) and not getattr(fn, "_craft_default", False)
            else None)
        self.lock = threading.RLock()  # apply, snapshot, restore and stale reads
        self.sessions = _craft.Sessions(**session_options) if sessions else None
        self._session_options = session_options
        self.errors: "collections.OrderedDict[int, BaseException]" = collections.OrderedDict()
        self.interval = digest_interval
        self.digests: "collections.OrderedDict[int, bytes]" = collections.OrderedDict()
        self.since_mark = 0
        self.mark_pending = False
        self.diverged: Optional[Dict[str, Any]] = None
        self.last_digest: Optional[Dict[str, Any]] = None
        self.propose: Callable[[bytes, Optional[Callable[[], None]]], None] = \
            lambda payload, failed: None
        self.is_leader: Callable[[], bool] = lambda: False
        self.on_diverged: Callable[[int, str, str], None] = lambda i, a, b: None

    # ---- apply -----------------------------------------------------------------------------

    def _result(self, r: Any, index: int) -> Union[bytes, Tuple[bytes]]:
        """What apply gave for the entry at index, as the runtime carries it: bytes, or a
        1-tuple of an encoded error."""
        if r is None:
            return b""
        if isinstance(r, bytes):
            return r
        if isinstance(r, (bytearray, memoryview)):
            return bytes(r)
        if isinstance(r, Exception):
            return self._failed(r, index)
        return self._failed(TypeError(f"apply must return bytes or None, not {type(r).__name__} "
                                      f"(craft.codec.dumps turns values into bytes)"), index)

    def _failed(self, e: BaseException, index: int) -> Tuple[bytes]:
        self.errors[index] = e
        while len(self.errors) > REMEMBER_ERRORS:
            self.errors.popitem(last=False)
        return (encode_error(type(e).__name__, str(e)),)

    def _apply_one(self, data: bytes, index: int) -> Union[bytes, Tuple[bytes]]:
        if self.batch is not None:
            return self._apply_run([data], index)[0]
        try:
            r = self.fsm.apply(data, index)
        except Exception as e:
            return self._failed(e, index)
        return self._result(r, index)

    def _apply_run(self, commands: List[bytes], first: int) -> List[Union[bytes, Tuple[bytes]]]:
        """The user's apply_batch on consecutive plain commands."""
        assert self.batch is not None
        try:
            rs = self.batch(commands, first)
        except Exception as e:
            raise _Stop(f"{type(self.fsm).__name__}.apply_batch raised {type(e).__name__}: {e} "
                        f"(commands {first}..{first + len(commands) - 1}); a raised exception "
                        f"cannot say which commands took effect, so the node stops. Return the "
                        f"exception in the list, in the place of the command that failed",
                        -22, first) from e
        if not isinstance(rs, (list, tuple)) or len(rs) != len(commands):
            got = len(rs) if isinstance(rs, (list, tuple)) else type(rs).__name__
            raise _Stop(f"{type(self.fsm).__name__}.apply_batch must return a list of one result "
                        f"per command ({len(commands)}), not {got}; the node stops", -22, first)
        return [self._result(r, first + k) for k, r in enumerate(rs)]

    def _craft_entry(self, data: bytes, index: int) -> Optional[bytes]:
        """A reserved entry: the digest entries' result, or None for a session envelope (the
        table handles it). Stops the node on anything it cannot interpret."""
        tag = data[2:4]
        if tag == DIGEST_MAGIC[2:4]:
            return self._digest_entry(data, index)
        if tag != SESSION_TAG:
            raise _Stop(f"entry {index} starts with craft's reserved bytes C1 63 but is no kind "
                        f"of entry this node knows ({bytes(data[:6])!r}): a newer node or "
                        f"another program wrote it; the node stops rather than guess", -7, index)
        if self.sessions is None:
            raise _Stop(f"entry {index} is a client-session command, but this node runs "
                        f"without sessions (sessions=False): every node of a cluster must make "
                        f"the same choice", -7, index)
        return None

    def apply_batch(self, cmds: List[Tuple[int, int, bytes]]) -> List[Any]:
        out: List[Any] = []
        # Plain commands at consecutive indexes wait in run for the user's apply_batch (when
        # it has one); anything else (craft's own entries, session commands, a gap) goes
        # after them, in log order.
        run: List[bytes] = []
        run_first = 0

        def flush() -> None:
            if run:
                out.extend(self._apply_run(run, run_first))
                run.clear()

        with self.lock:
            for index, term, data in cmds:
                if self.diverged is not None:
                    flush()
                    raise _Stop(f"the state machine diverged at index {self.diverged['index']}",
                                -21, index)
                if data[:2] == RESERVED:
                    flush()
                    r = self._craft_entry(data, index)
                    if r is not None:
                        out.append(r)
                        continue
                if self.batch is None or data[:2] == RESERVED:  # one at a time
                    flush()
                    out.append(self._apply_command(index, term, data))
                else:
                    outcome = None
                    if self.sessions is not None:  # a plain command, seen by the table too
                        outcome = self.sessions.apply(index, term, _craft.ENTRY_COMMAND, data)
                    if outcome is not None and outcome[0] != _craft.SESSION_NONE:
                        flush()
                        out.append(self._session_outcome(index, data, outcome))
                    else:
                        if run and index != run_first + len(run):
                            flush()
                        if not run:
                            run_first = index
                        run.append(outcome[3] if outcome is not None and outcome[3] is not None
                                   else data)
                self._maybe_mark()
            flush()
        return out

    def _apply_command(self, index: int, term: int, data: bytes) -> Any:
        table = self.sessions
        if table is None:
            return self._apply_one(data, index)
        return self._session_outcome(index, data,
                                     table.apply(index, term, _craft.ENTRY_COMMAND, data))

    def _session_outcome(self, index: int, data: bytes, outcome: Tuple[Any, ...]) -> Any:
        table = self.sessions
        assert table is not None
        kind, client, seq, payload, _err = outcome
        if kind == _craft.SESSION_NONE:
            return self._apply_one(payload if payload is not None else data, index)
        if kind == _craft.SESSION_APPLY:
            assert payload is not None
            r = self._apply_one(payload, index)
            table.record(client, seq, b"\x01" + r[0] if isinstance(r, tuple) else b"\x00" + r)
            return r
        if kind == _craft.SESSION_DUPLICATE:
            assert payload is not None
            return (payload[1:],) if payload[:1] == b"\x01" else payload[1:]
        if kind in (_craft.SESSION_REGISTERED, _craft.SESSION_UNREGISTERED):
            return b""
        return (encode_error("craft.SessionError", _SESSION_REFUSALS.get(kind, "refused")),)

    # ---- digests ---------------------------------------------------------------------------

    def digest_now(self) -> bytes:
        """The state's digest: SHA-256 of the snapshot envelope's head with the session table,
        then the state machine's digest() bytes, or else its snapshot bytes."""
        h = hashlib.sha256(snapshot_header(self.sessions.encode() if self.sessions else None))
        fn = getattr(self.fsm, "digest", None)
        part = fn() if callable(fn) else self.fsm.snapshot()
        if isinstance(part, (bytes, bytearray, memoryview)):
            h.update(part)
        else:
            for chunk in part:
                h.update(chunk)
        return h.digest()

    def _maybe_mark(self) -> None:
        self.since_mark += 1
        if (self.interval > 0 and not self.mark_pending and self.since_mark >= self.interval
                and self.is_leader()):
            self.mark_pending = True

            def failed() -> None:
                self.mark_pending = False
            self.propose(digest_mark(), failed)

    def _digest_entry(self, data: bytes, index: int) -> bytes:
        if len(data) < 6 or data[:4] != DIGEST_MAGIC:
            raise _Stop(f"entry {index} is a malformed state-digest entry", -7, index)
        if data[4] != DIGEST_VERSION:
            raise _Stop(f"entry {index} is a state-digest entry of version {data[4]}; this "
                        f"node reads version {DIGEST_VERSION}: upgrade it", -16, index)
        kind = data[5]
        if not ((kind == DIGEST_MARK and len(data) == 6) or
                (kind == DIGEST_VALUE and len(data) == 46)):
            raise _Stop(f"entry {index} is a malformed state-digest entry", -7, index)
        if self.interval <= 0:
            return b""  # digests are off here: the entry means nothing to this node
        if kind == DIGEST_MARK:
            self.since_mark = 0
            self.mark_pending = False
            d = self.digest_now()
            self.digests[index] = d
            while len(self.digests) > KEEP_DIGESTS:
                self.digests.popitem(last=False)
            self.last_digest = {"index": index, "digest": d.hex()}
            if self.is_leader():
                self.propose(digest_value(index, d), None)
            return b""
        (at,) = struct.unpack("<Q", data[6:14])
        theirs = bytes(data[14:46])
        ours = self.digests.get(at)
        if ours is not None and ours != theirs:
            self.diverged = {"index": at, "leader": theirs.hex(), "ours": ours.hex()}
            line = (f"craft: node {self.node_id}: its state machine diverged: at index {at} the "
                    f"leader's digest is {theirs.hex()} and ours is {ours.hex()}; the node stops "
                    f"applying (a nondeterministic apply, or state changed outside apply)")
            log.error("%s", line)
            self.on_diverged(at, theirs.hex(), ours.hex())
            raise _Stop(line, -21, index)
        return b""

    # ---- snapshots -------------------------------------------------------------------------

    def snapshot(self) -> Iterable[bytes]:
        with self.lock:
            yield snapshot_header(self.sessions.encode() if self.sessions is not None else None)
            data = self.fsm.snapshot()
            if isinstance(data, (bytes, bytearray, memoryview)):
                yield bytes(data)
            else:
                for chunk in data:
                    yield chunk

    def restore(self, reader: Any) -> None:
        with self.lock:
            head = reader.read(SNAP_HEAD)
            me = f"node {self.node_id} refuses the snapshot"
            if len(head) < 5 or head[:4] != SNAP_MAGIC:
                raise StorageError(f"{me}: it does not start with craft's state-machine "
                                   f"envelope (C1 63 73 70): it was written by a node of an "
                                   f"older or foreign format, and this node will not guess "
                                   f"what it holds", -7)
            if head[4] != SNAP_VERSION:
                raise StorageError(f"{me}: its state-machine envelope has version {head[4]}; "
                                   f"this node reads version {SNAP_VERSION}: upgrade it", -16)
            if len(head) < SNAP_HEAD or head[5] & ~1:
                raise StorageError(f"{me}: its state-machine envelope is malformed", -7)
            has = bool(head[5] & 1)
            (n,) = struct.unpack("<Q", head[6:14])
            if has and self.sessions is None:
                raise StorageError(f"{me}: it carries a client-session table, but this node "
                                   f"runs without sessions (sessions=False); every node of a "
                                   f"cluster must make the same choice", -7)
            if not has and self.sessions is not None:
                raise StorageError(f"{me}: it carries no client-session table, but this node "
                                   f"runs with sessions; every node of a cluster must make "
                                   f"the same choice", -7)
            if has:
                body = reader.read(n)
                if len(body) != n:
                    raise StorageError(f"{me}: its session table is longer than the snapshot",
                                       -7)
                table = _craft.Sessions(**self._session_options)
                table.decode(body)
                self.sessions = table
            elif n != 0:
                raise StorageError(f"{me}: its state-machine envelope is malformed", -7)
            self.digests.clear()
            self.since_mark = 0
            self.fsm.restore(reader)
