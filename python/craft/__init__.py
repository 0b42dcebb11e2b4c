"""craft: Raft consensus for Python. Write a state machine in Python; craft replicates it.

    import craft

    class Counter(craft.StateMachine):
        def __init__(self):
            self.value = 0
        def apply(self, command, index):
            self.value += int(command)
            return str(self.value).encode()

    peers = {1: "127.0.0.1:7001", 2: "127.0.0.1:7002", 3: "127.0.0.1:7003"}
    with craft.Node(1, peers[1], "/var/lib/counter/1", Counter(), peers=peers) as node:
        print(node.apply(b"5", timeout=5))

The protocol core, the storage, the network and the simulator are C (craft._craft); this
package holds the Python side: StateMachine, Node, sessions, log stores, craft.codec and
craft.sim. docs/python.md is the guide.
"""

import asyncio
import atexit
import itertools
import os
import pickle
import threading
import time
from typing import (Any, AsyncIterator, Awaitable, Callable, Dict, Generic, Iterable, List,
                    Literal, Mapping, NamedTuple, NoReturn, Optional, Set, Tuple, TypeVar, Union,
                    cast)

from . import _craft
from ._errors import (AddressInUse, AlreadyMember, ApplyError, Busy, Closed, ConfigError,
                      Dropped, Error, Forked, LogCompacted, NoQuorum, NotMember, Removed,
                      LogUnavailable, NoConnection, NotLeader, SessionError, StorageError,
                      Timeout, TooLarge, Violation)
from . import _config, codec
from ._fsm import Adapter as _Adapter, Diverged, decode_error, encode_error
from .security import TLS, Secret, generate_secret
from . import security as _security
from .store import MemoryLogStore
from ._types import (EVENT_NAMES, Counters, EventName, NodeStatus, PeerRole, PeerStatus,
                     ReplicationState, Role, Status)
from .client import Client, OutcomeUnknown

__version__ = _craft.VERSION

__all__ = [
    "StateMachine", "Node", "Session", "MemoryLogStore", "codec", "TLS", "Secret",
    "generate_secret",
    "Error", "NotLeader", "Timeout", "NoQuorum", "Closed", "Forked", "ConfigError",
    "AddressInUse", "AlreadyMember", "NotMember", "Removed",
    "StorageError", "ApplyError",
    "Dropped", "NoConnection", "Busy", "SessionError", "Violation", "Diverged", "LogCompacted",
    "LogUnavailable", "TooLarge", "SEGMENT_SIZE_MIN", "SEGMENT_SIZE_MAX", "MAX_FRAME_MIN",
    "max_command_size", "__version__", "Client", "OutcomeUnknown", "Event", "EventName",
    "NodeStatus", "Status", "PeerStatus", "Counters", "Role", "PeerRole", "ReplicationState",
    "LogLevel",
]

#: The state machine type of a Node (Node[MyMachine].read(fn) passes fn a MyMachine).
F = TypeVar("F", bound="StateMachine")
T = TypeVar("T")
LogLevel = Literal["debug", "info", "warn", "warning", "error"]
ReadMode = Literal["linearizable", "lease", "stale"]

Bytes = Union[bytes, bytearray, memoryview]


class StateMachine:
    """The replicated state machine: subclass it.

    apply(command, index) is called with every committed command, in log order, on every
    node, on the node's state machine thread; its return value (bytes, or None for b"") goes
    back to the proposer. Override apply_batch too to take runs of commands at once. It must be
    deterministic: the same commands in the same order give the same state on every node.
    An exception it raises is deterministic behaviour too: the proposer gets ApplyError and
    the entry counts as applied everywhere.

    snapshot() returns the whole state as bytes, or an iterable of byte chunks (a large state
    then streams without being held twice in memory); restore(reader) replaces the state from
    a file-like object over a snapshot (reader.read(n)). The defaults pickle the instance's
    __dict__: override both for a state that is large or not picklable.
    """

    def apply(self, command: bytes, index: int) -> Optional[bytes]:
        raise NotImplementedError("StateMachine subclasses implement apply(command, index)")

    def apply_batch(self, commands: List[bytes], first_index: int) -> List[Any]:
        """Optional: applies consecutive committed commands at once (commands[k] is the entry
        at first_index + k) and returns one result per command, in order: bytes or None, or
        an Exception instance for a command that failed (its proposer gets ApplyError, exactly
        as if apply had raised it). Override it when a batch is cheaper than its commands one
        by one (one transaction, one lock, one vectorized update). The runtime calls it with
        whatever is ready, so batch boundaries differ from node to node: the state after a
        batch must be the state after its commands one by one. An exception raised by
        apply_batch itself (rather than returned) cannot say which commands took effect: the
        node stops. This default calls apply for each command."""
        out: List[Any] = []
        for k, command in enumerate(commands):
            try:
                out.append(self.apply(command, first_index + k))
            except Exception as e:
                out.append(e)
        return out

    apply_batch._craft_default = True  # type: ignore[attr-defined]

    def snapshot(self) -> Union[bytes, Iterable[bytes]]:
        return pickle.dumps(self.__dict__, protocol=pickle.HIGHEST_PROTOCOL)

    def restore(self, reader: Any) -> None:
        state = pickle.loads(reader.read())
        self.__dict__.clear()
        self.__dict__.update(state)


# ---- the adapter between the runtime and the user's state machine -----------------------------

# The adapter between the runtime and the user's state machine, and the formats it shares with
# the Lua rock (sessions, the snapshot envelope, state digests) are in craft/_fsm.py.
_encode_error, _decode_error = encode_error, decode_error


# ---- nodes ------------------------------------------------------------------------------------

_live_nodes: "set[Node[Any]]" = set()
_live_lock = threading.Lock()
_started_any = False  # a node was started in this process (libuv's thread pool runs)


@atexit.register
def _close_all() -> None:
    with _live_lock:
        nodes = list(_live_nodes)
    for n in nodes:
        try:
            n.close()
        except Exception:
            pass


def _after_fork_in_child() -> None:
    # A forked child has no loop thread: every node started before the fork is the parent's.
    # They refuse every call from now on (Forked), close() does nothing, and nothing waits for
    # a thread or a lock that will never come back. The child runs alone here, under the GIL:
    # the set is read without its lock, which another thread may have held at the fork.
    global _live_lock
    nodes = list(_live_nodes)
    _live_nodes.clear()
    _live_lock = threading.Lock()
    for n in nodes:
        n._forked = True
        n._c._forked()
    if _started_any:
        _craft.after_fork_child()  # libuv's thread pool, for its exit-time cleanup


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


SEGMENT_SIZE_MIN = _config.SEGMENT_SIZE_MIN
SEGMENT_SIZE_MAX = _config.SEGMENT_SIZE_MAX
MAX_FRAME_MIN = _config.MAX_FRAME_MIN
MAX_FRAME_DEFAULT = _config.MAX_FRAME_DEFAULT


def max_command_size(max_frame: Optional[int] = None) -> int:
    """The largest command (bytes) a cluster whose nodes use this max_frame can replicate: one
    entry must fit in one frame. Node.apply refuses a larger one at once with TooLarge."""
    return int(_craft.max_command(MAX_FRAME_DEFAULT if max_frame is None else max_frame))


def _check_command(command: Bytes) -> None:
    if not isinstance(command, (bytes, bytearray, memoryview)):
        raise TypeError(f"a command is bytes, not {type(command).__name__} (encode text with "
                        f".encode(), values with craft.codec.dumps)")
    if bytes(command[:2]) == b"\xc1c":
        raise ValueError("a command may not start with the bytes C1 63: they mark craft's own "
                         "entries (sessions, state digests; docs/protocol.md)")


_ROLE_NAMES = {1: "follower", 2: "pre-candidate", 3: "candidate", 4: "leader"}
_EVENTS = EVENT_NAMES


class Event(NamedTuple):
    """One event, as Node.events() yields it: its name and the arguments a callback of
    Node.on(name, ...) receives."""
    name: EventName
    args: Tuple[Any, ...]


class _EventStream:
    """The async iterator of Node.events(): subscribed when made, so that no event between
    the call and the first `async for` step is lost. Events are queued without bound; the
    iteration ends once the node is closed (or stopped by a fatal error, after the "stopped"
    event)."""

    def __init__(self, node: "Node[Any]", names: Set[str]) -> None:
        self._node = node
        self._names = names
        self._loop = asyncio.get_running_loop()
        self._queue: "asyncio.Queue[Optional[Event]]" = asyncio.Queue()
        self._done = False
        node._subscribers.append(self)

    def _push(self, ev: Optional[Event]) -> None:  # any thread
        if ev is not None and self._names and ev.name not in self._names:
            return
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, ev)
        except RuntimeError:
            pass  # the event loop is closed: nobody is listening any more

    def __aiter__(self) -> "_EventStream":
        return self

    async def __anext__(self) -> Event:
        if self._done:
            raise StopAsyncIteration
        ev = await self._queue.get()
        if ev is None:
            self.close()
            raise StopAsyncIteration
        return ev

    def close(self) -> None:
        """Stops the subscription (the iteration ends)."""
        self._done = True
        try:
            self._node._subscribers.remove(self)
        except ValueError:
            pass

    async def aclose(self) -> None:
        self.close()


def _in_thread(loop: "asyncio.AbstractEventLoop", fn: Callable[[], T]) -> "asyncio.Future[T]":
    """Runs a call that blocks on a thread of its own, not one of the default executor's, and
    gives its outcome to a future of loop."""
    fut: "asyncio.Future[T]" = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if fut.done():
            return
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)

    def body() -> None:
        try:
            result = fn()
            outcome: Tuple[bool, Any] = (True, result)
        except BaseException as e:  # handed to the awaiting task
            outcome = (False, e)
        try:
            loop.call_soon_threadsafe(settle, *outcome)
        except RuntimeError:
            pass
    threading.Thread(target=body, name="craft-async-call", daemon=True).start()
    return fut


class Node(Generic[F]):
    """A Raft node on 127.0.0.1 or any address, running on a background thread.

    id: this server's id (> 0). address: "host:port" to listen on (port 0 picks one; see
    .address). data_dir: the durable store's directory (locked while open), not needed with
    log_store=. fsm: the StateMachine (give each Node its own instance).
    peers: a new cluster's initial configuration {id: "host:port"}, this node included (used
    only when the store is empty); join=True instead starts an empty node that waits for a
    leader to add it (add_server).
    sessions: True (the default) runs craft's client-session table in front of fsm so that
    Node.session() gives exactly-once retries; every node of a cluster must use the same value.
    timeout: the default timeout of requests, in seconds.
    Options (keyword arguments, each checked here: a ConfigError names the option, the value
    and the accepted range; mypy catches a misspelt one): heartbeat_ms (50), election_timeout_ms
    (500), pre_vote, check_quorum (True), snapshot_entries (16384), snapshot_trailing (1024),
    fsync (True), forward (True: followers forward proposals and reads to the leader),
    max_frame (64 MiB; commands longer than max_command_size(max_frame) are refused), cluster_id
    (0: derived from peers when the cluster is created and kept in data_dir), seed, log_level
    ("debug", "info", "warn", "error": lines go to the "craft" logger), session_options (dict:
    max_sessions, expire_after, max_cached_results), digest_interval (0: off; state digests
    every that many commands), segment_size (bytes of one WAL segment of the durable store,
    preallocated when the segment is created, so what the node takes on disk from the start:
    64 MiB by default; SEGMENT_SIZE_MIN to SEGMENT_SIZE_MAX, 4 KiB to 1 GiB), metrics_address
    ("host:port": serve GET /metrics there, docs/metrics.md; unauthenticated, so bind it where
    only the monitoring system reaches), lag_threshold (1000: a follower further behind the
    leader raises the "follower_lagging" event; 0: never).
    security: who may connect (docs/security.md): craft.TLS(cert=, key=, ca=) for mutual TLS,
    craft.Secret(file=) for a cluster secret, None for plaintext (the log says so); every node
    of a cluster uses the same mode. limits: resources per source, a dict of max_pending,
    max_clients, max_clients_per_ip, client_idle_timeout_ms, max_client_requests, read_budget
    (missing or 0: the defaults of docs/runtime.md).

    Node is generic in its state machine's type: Node(..., fsm=Counter()) is a Node[Counter],
    and read(fn) hands fn a Counter (for mypy as at run time).
    """

    def __init__(self, id: int, address: str,
                 data_dir: "Optional[Union[str, os.PathLike[str]]]" = None,
                 fsm: Optional[F] = None, *, peers: Optional[Mapping[int, str]] = None,
                 join: bool = False, log_store: Any = None, sessions: bool = True,
                 timeout: float = 10.0, session_options: Optional[Dict[str, int]] = None,
                 log_level: LogLevel = "info", digest_interval: int = 0,
                 security: "_security.Security" = None,
                 limits: Optional[Dict[str, int]] = None,
                 heartbeat_ms: Optional[int] = None,
                 election_timeout_ms: Optional[int] = None,
                 pre_vote: Optional[bool] = None, check_quorum: Optional[bool] = None,
                 snapshot_entries: Optional[int] = None,
                 snapshot_trailing: Optional[int] = None, fsync: Optional[bool] = None,
                 forward: Optional[bool] = None, max_frame: Optional[int] = None,
                 cluster_id: Optional[int] = None, seed: Optional[int] = None,
                 segment_size: Optional[int] = None, metrics_address: Optional[str] = None,
                 lag_threshold: Optional[int] = None, **unknown: NoReturn) -> None:
        # An option nobody knows is a type error for mypy (NoReturn) and a ConfigError that
        # names the closest known one here.
        given = {"heartbeat_ms": heartbeat_ms, "election_timeout_ms": election_timeout_ms,
                 "pre_vote": pre_vote, "check_quorum": check_quorum,
                 "snapshot_entries": snapshot_entries, "snapshot_trailing": snapshot_trailing,
                 "fsync": fsync, "forward": forward, "max_frame": max_frame,
                 "cluster_id": cluster_id, "seed": seed, "segment_size": segment_size,
                 "metrics_address": metrics_address, "lag_threshold": lag_threshold}
        options: Dict[str, Any] = {k: v for k, v in given.items() if v is not None}
        options.update(unknown)
        _config.check_fsm(fsm)
        if data_dir is None and log_store is None:
            raise ConfigError("give data_dir= (the durable store) or log_store=")
        if log_store is not None:
            _config.check_store(log_store)
        directory: Optional[str] = None
        if data_dir is not None:
            if not isinstance(data_dir, (str, os.PathLike)):
                raise ConfigError(f"data_dir must be a path (str or os.PathLike), not "
                                  f"{data_dir!r}")
            directory = os.fspath(data_dir)
        _config.check(id, address, peers, join, timeout, log_level, options, session_options,
                      digest_interval)
        levels = _config.LEVELS
        self.max_command = max_command_size(options.get("max_frame"))
        self.timeout = float(timeout)
        self.fsm: F = cast(F, fsm)
        self._adapter = _Adapter(fsm, id, sessions, dict(session_options or {}),
                                 digest_interval)
        self._adapter.is_leader = self._adapter_is_leader
        self._adapter.propose = self._adapter_propose
        self._adapter.on_diverged = self._on_diverged
        self._handlers: Dict[str, List[Callable[..., Any]]] = {e: [] for e in _EVENTS}
        self._subscribers: List[_EventStream] = []
        self._last_leader: Optional[int] = None
        self._sessions_on = sessions
        try:
            self._c = _craft.Node(id, address, directory, self._adapter, events=self._on_event,
                                  peers=peers, store=log_store,
                                  default_timeout_ms=int(self.timeout * 1000),
                                  log_level=levels[log_level],
                                  security=_security._to_c(security), limits=limits, **options)
        except (TypeError, OverflowError, ValueError) as e:
            raise ConfigError(str(e)) from None
        self._started = False
        self._forked = False

    # ---- life cycle ------------------------------------------------------------------------

    def start(self) -> "Node[F]":
        """Opens the store, restores the state machine from the latest snapshot, binds the
        address and starts the loop thread. Raises ConfigError, StorageError (e.g. the data
        directory is locked by another process) or Error."""
        if self._started:
            raise Error("start() was already called")
        global _started_any
        self._started = True
        _started_any = True
        try:
            self._c.start()
        except AddressInUse as e:
            self._started = False  # nothing was left open: start() may be called again
            e.address = self._c.address
            raise
        except BaseException:
            self._started = False
            raise
        with _live_lock:
            _live_nodes.add(self)
        return self

    def close(self) -> None:
        """Stops gracefully: pending requests fail with Closed, writes in progress are flushed,
        connections and the store are closed. Idempotent. Raises RuntimeError on the node's own
        loop thread (in an event callback, a read function or apply): close it from another
        thread. In a process forked from the one that started the node it does nothing (the
        node is the parent's)."""
        self._c.close()
        with _live_lock:
            _live_nodes.discard(self)
        for sub in list(self._subscribers):
            sub._push(None)  # the iterations of events() end

    stop = close

    async def start_async(self) -> "Node[F]":
        """start() for asyncio: opening the store and restoring the state machine run on a
        thread of their own (not one of the default executor's) while the event loop goes
        on."""
        return await _in_thread(asyncio.get_running_loop(), self.start)

    async def close_async(self) -> None:
        """close() for asyncio, on a thread of its own: the event loop goes on while the node
        flushes and stops."""
        await _in_thread(asyncio.get_running_loop(), self.close)

    async def __aenter__(self) -> "Node[F]":
        if not self._started:
            await self.start_async()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close_async()

    def __enter__(self) -> "Node[F]":
        if not self._started:
            self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def id(self) -> int:
        return int(self._c.id)

    @property
    def address(self) -> str:
        """The address actually bound (useful with port 0)."""
        return str(self._c.address)

    @property
    def running(self) -> bool:
        return bool(self._c.running)

    # ---- errors ----------------------------------------------------------------------------

    # ---- what the adapter needs (on the loop thread) -------------------------------------------

    def _adapter_is_leader(self) -> bool:
        try:
            return bool(self._c.status()["role"] == "leader")
        except Error:
            return False  # still starting (replaying its log) or stopping

    def _adapter_propose(self, payload: bytes, failed: Optional[Callable[[], None]]) -> None:
        def done(status: int, *rest: Any) -> None:
            if status != 0 and failed is not None:
                failed()
        try:
            self._c.submit_async(_craft.OP_PROPOSE, payload, done, self.timeout)
        except Error:
            if failed is not None:
                failed()

    def _on_diverged(self, index: int, leader: str, ours: str) -> None:
        for cb in list(self._handlers["diverged"]):
            try:
                cb(index, leader, ours)
            except Exception:
                import logging
                logging.getLogger("craft").exception("craft: a 'diverged' callback raised")
        for sub in list(self._subscribers):
            sub._push(Event("diverged", (index, leader, ours)))

    def _usable(self) -> None:
        if self._forked:
            raise Forked(f"node {self.id}: this process is a fork of the one that started the "
                         f"node, whose loop thread does not exist here: start nodes after "
                         f"forking (in the child), or use multiprocessing's \"spawn\" start "
                         f"method; the parent's node is not affected", -5)

    def _check_thread(self) -> None:
        self._usable()
        if self._c._on_runtime_thread():
            raise RuntimeError("this call would block one of the node's own threads (from "
                               "apply, a read function or an event callback): it would deadlock")

    def _apply_error(self, index: int, data: bytes) -> Error:
        name, message = _decode_error(data)
        if name == "craft.SessionError":
            return SessionError(message)
        original = self._adapter.errors.pop(index, None)
        err = ApplyError(name, message, original, index)
        if original is not None:
            err.__cause__ = original
        return err

    def _translate(self, e: Error) -> Error:
        if e.code == -22:
            index, data = getattr(e, "apply_payload", (0, b""))
            return self._apply_error(index, data)
        if isinstance(e, (Timeout, NotLeader)) and self._removed():
            return Removed(f"node {self.id} was removed from the cluster's configuration: it "
                           f"serves nothing. Stop it; to bring it back, move its data directory "
                           f"aside and add it again from the leader (add_server)", -5)
        if isinstance(e, Timeout) or (isinstance(e, NotLeader) and e.leader_id is None):
            return self._no_quorum() or e
        return e

    def _removed(self) -> bool:
        try:
            return bool(self._c.status()["removed"])
        except Error:
            return False

    def _no_quorum(self) -> Optional[NoQuorum]:
        """NoQuorum when this node cannot reach a majority of the voters, else None."""
        try:
            peers = self._c.status()["peers"]
        except Error:
            return None
        voters = [p for p in peers if p["role"] == "voter"]
        reachable = sum(1 for p in voters if p["connected"])
        need = len(voters) // 2 + 1
        if not voters or reachable >= need:
            return None
        down = ", ".join(f"{p['id']} ({p['address']})" for p in voters if not p["connected"])
        return NoQuorum(f"no quorum: node {self.id} reaches {reachable} of the {len(voters)} "
                        f"voters (itself included) and a majority needs {need}; unreachable: "
                        f"{down}. Start them or repair the network; the outcome of a command "
                        f"sent meanwhile is unknown", reachable, len(voters))

    def _timeout(self, timeout: Optional[float]) -> float:
        t = self.timeout if timeout is None else float(timeout)
        if t <= 0:
            raise ValueError("timeout must be > 0 seconds")
        return t

    # ---- requests --------------------------------------------------------------------------

    def _apply_raw(self, command: Bytes, timeout: Optional[float]) -> Tuple[int, bytes]:
        self._check_thread()
        try:
            return self._c.apply(command, self._timeout(timeout))
        except Error as e:
            raise self._translate(e) from None

    def apply(self, command: Bytes, timeout: Optional[float] = None) -> bytes:
        """Proposes command and returns the state machine's result once the entry is committed
        and applied on this node (the GIL is released while waiting). On a follower the
        proposal is forwarded to the leader. Raises ApplyError (apply raised), NotLeader (no
        leader known, or forwarding off), Timeout (outcome unknown), Dropped (lost to a leader
        change, not applied), NoConnection (outcome unknown), Closed."""
        _check_command(command)
        return self._apply_raw(command, timeout)[1]

    def _request_future(self, op: int, payload: bytes, timeout: Optional[float],
                        convert: Callable[[int, bytes], T], server: int = 0,
                        address: Optional[str] = None, auto_promote: bool = False,
                        error: Optional[Callable[[Error], Error]] = None) -> "asyncio.Future[T]":
        """Submits a request whose answer completes a future of the running event loop. The
        answer comes through the runtime's completion (on the node's loop thread), handed to
        the event loop with call_soon_threadsafe: no thread waits for it, the default
        executor's included. A future cancelled meanwhile just drops the answer."""
        self._usable()
        loop = asyncio.get_running_loop()
        fut: "asyncio.Future[T]" = loop.create_future()

        def settle(status: int, index: int, data: bytes, leader_id: int,
                   leader_address: str) -> None:
            if fut.done():
                return  # cancelled: the request went on without a listener
            if status == 0:
                try:
                    fut.set_result(convert(index, data))
                except Exception as e:
                    fut.set_exception(e)
            elif status == -22:
                fut.set_exception(self._apply_error(index, data))
            else:
                err = self._translate(_craft_error(status, data, leader_id, leader_address))
                fut.set_exception(error(err) if error is not None else err)

        # settle runs on this event loop: the node hands the completions of one batch to an
        # event loop with one call_soon_threadsafe (a closed event loop just drops them).
        self._c.submit_async(op, payload, settle, self._timeout(timeout), server, address,
                             auto_promote, loop)
        return fut

    async def _request_async(self, op: int, payload: bytes, timeout: Optional[float],
                             convert: Callable[[int, bytes], T], server: int = 0,
                             address: Optional[str] = None, auto_promote: bool = False,
                             error: Optional[Callable[[Error], Error]] = None) -> T:
        return await self._request_future(op, payload, timeout, convert, server, address,
                                          auto_promote, error)

    def _apply_raw_async(self, command: bytes,
                         timeout: Optional[float]) -> "asyncio.Future[Tuple[int, bytes]]":
        return self._request_future(_craft.OP_PROPOSE, command, timeout,
                                    lambda index, data: (index, data))

    def apply_async(self, command: Bytes,
                    timeout: Optional[float] = None) -> "asyncio.Future[bytes]":
        """apply() for asyncio: returns a future of the result, completed on the event loop
        that called this (which must be running); await it. Cancelling it does not withdraw the
        command: it may still be committed and applied (as after a Timeout). Retry through a
        session (Session.apply_async) to have it applied exactly once."""
        _check_command(command)
        return self._request_future(_craft.OP_PROPOSE, bytes(command), timeout,
                                    lambda index, data: data)

    def apply_many(self, commands: Iterable[Bytes], timeout: Optional[float] = None,
                   return_exceptions: bool = False) -> List[Any]:
        """Proposes every command at once and returns their results in order, once each has an
        outcome: a batch costs one wait instead of one per command, and the commands share
        disk writes and messages. The commands are independent proposals: each may succeed or
        fail on its own, and their order in the log is the order given only while this node
        stays leader. With return_exceptions=True the list holds the error (an Error) of each
        command that failed; otherwise the first failure, in the order of the commands, is
        raised once all of them finished (the others may have been applied: use a session's
        apply for commands that must be retried)."""
        cmds = _commands(commands)
        self._check_thread()
        t = self._timeout(timeout)
        results: List[Any] = [None] * len(cmds)
        left = [len(cmds)]
        lock = threading.Lock()
        finished = threading.Event()

        def answer(k: int) -> Callable[[int, int, bytes, int, str], None]:
            def done(status: int, index: int, data: bytes, leader_id: int,
                     leader_address: str) -> None:  # on one of the node's threads
                results[k] = self._outcome(status, index, data, leader_id, leader_address)
                with lock:
                    left[0] -= 1
                    if left[0] == 0:
                        finished.set()
            return done

        for k, c in enumerate(cmds):
            try:
                self._c.submit_async(_craft.OP_PROPOSE, c, answer(k), t)
            except Error as e:
                with lock:  # this one and the rest were never submitted
                    for j in range(k, len(cmds)):
                        results[j] = self._translate(e)
                    left[0] -= len(cmds) - k
                    if left[0] == 0:
                        finished.set()
                break
        # Each request ends by its own timeout; the margin covers a node that stops meanwhile.
        if not finished.wait(t + 5.0):
            with lock:
                for j, r in enumerate(results):
                    if r is None:
                        results[j] = Timeout("timeout: no answer in time; the command may or "
                                             "may not have been applied")
        return _settle_many(results, return_exceptions)

    async def apply_many_async(self, commands: Iterable[Bytes], timeout: Optional[float] = None,
                               return_exceptions: bool = False) -> List[Any]:
        """apply_many() for asyncio: the answers of a batch reach the event loop together,
        without a thread. Cancelling it leaves the commands to their fate (each may still be
        applied)."""
        cmds = _commands(commands)
        futs = [self._request_future(_craft.OP_PROPOSE, c, timeout, lambda index, data: data)
                for c in cmds]
        results = await asyncio.gather(*futs, return_exceptions=True)
        return _settle_many(list(results), return_exceptions)

    def _outcome(self, status: int, index: int, data: bytes, leader_id: int,
                 leader_address: str) -> Any:
        if status == 0:
            return data
        if status == -22:
            return self._apply_error(index, data)
        return self._translate(_craft_error(status, data, leader_id, leader_address))

    def read(self, fn: Callable[[F], T], timeout: Optional[float] = None,
             mode: ReadMode = "linearizable") -> T:
        """Runs fn(fsm) after a read barrier and returns its value.

        "linearizable": fn sees every write committed before the call (ReadIndex; on a
        follower the barrier is forwarded to the leader). "lease": the same without a
        heartbeat round while the leader's lease holds (relies on bounded clock drift).
        "stale": fn runs at once on this node's current state, which may lag. fn runs on the
        node's state machine thread (barrier modes) or the caller's (stale), never at the same
        time as apply; it must not call blocking Node methods."""
        self._readable()
        if mode == "stale":
            with self._adapter.lock:
                return fn(self.fsm)
        if mode not in ("linearizable", "lease"):
            raise ValueError('mode must be "linearizable", "lease" or "stale"')
        self._check_thread()
        try:
            return cast(T, self._c.read(fn, self.fsm, mode == "lease", self._timeout(timeout)))
        except Error as e:
            raise self._translate(e) from None

    def _readable(self) -> None:
        self._usable()
        d = self._adapter.diverged
        if d is not None:
            raise Diverged(f"node {self.id}: its state machine differs from the leader's (at "
                           f"index {d['index']}): it stopped applying and serves no reads")

    async def read_async(self, fn: Callable[[F], T], timeout: Optional[float] = None,
                         mode: ReadMode = "linearizable") -> T:
        """read() for asyncio: awaits the read barrier without blocking the event loop or
        taking a thread, then runs fn(fsm) on the event loop's thread, holding the state
        machine's lock (never at the same time as apply: keep fn short). Cancelling the
        awaiting task abandons the read (nothing else happens)."""
        self._readable()
        if mode == "stale":
            with self._adapter.lock:
                return fn(self.fsm)
        if mode not in ("linearizable", "lease"):
            raise ValueError('mode must be "linearizable", "lease" or "stale"')
        op = _craft.OP_READ_LEASE if mode == "lease" else _craft.OP_READ
        await self._request_async(op, b"", timeout, lambda index, data: index)
        # The state machine has applied at least up to the read index (the runtime answers
        # once it has): what fn sees now includes every write committed before the call.
        with self._adapter.lock:
            return fn(self.fsm)

    def session(self, timeout: Optional[float] = None) -> "Session":
        """Opens a client session: its apply() retries safely and applies a command exactly
        once. Needs sessions=True (the default) on every node."""
        self._usable()
        if not self._sessions_on:
            raise ConfigError("this node runs without sessions (sessions=False)")
        return Session(self, timeout)

    async def session_async(self, timeout: Optional[float] = None) -> "Session":
        """session() for asyncio: the session's registration is awaited, not waited for."""
        self._usable()
        if not self._sessions_on:
            raise ConfigError("this node runs without sessions (sessions=False)")
        s = Session(self, timeout, _register=False)
        await s._register_async()
        return s

    @staticmethod
    def _check_change(op: int, server: int, address: Optional[str]) -> None:
        if not isinstance(server, int) or isinstance(server, bool) or server < 0:
            raise TypeError(f"a server id is an int > 0, not {server!r}")
        if op == _craft.OP_ADD:
            _config.check_address("address", address, port_zero=False)

    def _change(self, op: int, server: int, address: Optional[str] = None,
                auto_promote: bool = False, timeout: Optional[float] = None) -> int:
        self._check_thread()
        self._check_change(op, server, address)
        try:
            return int(self._c.change(op, server, address, auto_promote, self._timeout(timeout)))
        except Error as e:
            raise self._change_error(op, server, e) from None

    def _change_error(self, op: int, server: int, e: Error) -> Error:
        try:
            members = {p["id"]: p for p in self._c.status()["peers"]}
        except Error:
            return self._translate(e)
        listing = ", ".join(f"{i} ({p['role']} at {p['address']})"
                            for i, p in sorted(members.items()))
        if e.code == -17 and op == _craft.OP_ADD:
            p = members.get(server)
            where = f" as a {p['role']} at {p['address']}" if p else ""
            return AlreadyMember(f"server {server} is already a member{where}: to give it another "
                                 f"address, remove_server({server}) and add it again once its "
                                 f"data directory is moved aside; members: {listing}")
        if e.code == -10 and op in (_craft.OP_PROMOTE, _craft.OP_REMOVE, _craft.OP_DEMOTE):
            return NotMember(f"server {server} is not a member of the configuration; members: "
                             f"{listing}")
        if e.code == -2 and op == _craft.OP_DEMOTE:
            p = members.get(server)
            why = "already a learner" if p is not None and p["role"] == "learner" else \
                "the last voter: a cluster without voters could never elect a leader again"
            return ConfigError(f"server {server} is {why}; members: {listing}")
        if e.code == -2 and op == _craft.OP_SNAPSHOT:
            return ConfigError(f"node {self.id}'s state machine takes no snapshots")
        if e.code == -2 and op == _craft.OP_PROMOTE:
            return ConfigError(f"server {server} is already a voter: promote() makes a learner "
                               f"a voter")
        if e.code == -2 and op == _craft.OP_REMOVE:
            return ConfigError(f"server {server} is the last voter: a cluster without voters "
                               f"could never elect a leader again")
        if e.code == -2 and op == _craft.OP_TRANSFER:
            p = members.get(server)
            what = f"a {p['role']}" if p is not None else "not a member"
            return ConfigError(f"server {server} is {what}: only a voter can lead; members: "
                               f"{listing}")
        if e.code == -20 and op == _craft.OP_PROMOTE:
            return Busy(f"server {server} has not caught up with the leader yet: promote it once "
                        f"it has (or add it with auto_promote=True)", -20)
        return self._translate(e)

    def add_server(self, id: int, address: str, auto_promote: bool = True,
                   timeout: Optional[float] = None) -> int:
        """Adds a server (started with join=True) as a learner; with auto_promote the leader
        makes it a voter once it has caught up. Returns the configuration entry's index."""
        return self._change(_craft.OP_ADD, id, address, auto_promote, timeout)

    def promote(self, id: int, timeout: Optional[float] = None) -> int:
        """Makes a caught-up learner a voter."""
        return self._change(_craft.OP_PROMOTE, id, None, False, timeout)

    def remove_server(self, id: int, timeout: Optional[float] = None) -> int:
        """Removes a server from the configuration."""
        return self._change(_craft.OP_REMOVE, id, None, False, timeout)

    def demote(self, id: int, timeout: Optional[float] = None) -> int:
        """Makes a voter a learner (it keeps its log and goes on receiving entries, but no
        longer votes nor counts toward commits; a demoted leader steps down once the change is
        committed). Returns the configuration entry's index."""
        return self._change(_craft.OP_DEMOTE, id, None, False, timeout)

    def snapshot(self, timeout: Optional[float] = None) -> int:
        """Takes a snapshot of this node's state machine now, whatever snapshot_entries says,
        and returns the index it covers once it is stored (at once when the latest snapshot
        covers everything applied already). The log before it is then compacted."""
        return self._change(_craft.OP_SNAPSHOT, 0, None, False, timeout)

    # ---- membership, transfer and snapshots for asyncio: awaited, never a thread -----------

    async def _change_async(self, op: int, server: int, address: Optional[str] = None,
                            auto_promote: bool = False, timeout: Optional[float] = None) -> int:
        self._check_change(op, server, address)
        return await self._request_async(op, b"", timeout, lambda index, data: index, server,
                                          address, auto_promote,
                                          lambda e: self._change_error(op, server, e))

    async def add_server_async(self, id: int, address: str, auto_promote: bool = True,
                               timeout: Optional[float] = None) -> int:
        """add_server() for asyncio. Cancelling the awaiting task does not withdraw the change:
        it may still be applied (look at status())."""
        return await self._change_async(_craft.OP_ADD, id, address, auto_promote, timeout)

    async def promote_async(self, id: int, timeout: Optional[float] = None) -> int:
        return await self._change_async(_craft.OP_PROMOTE, id, None, False, timeout)

    async def demote_async(self, id: int, timeout: Optional[float] = None) -> int:
        return await self._change_async(_craft.OP_DEMOTE, id, None, False, timeout)

    async def remove_server_async(self, id: int, timeout: Optional[float] = None) -> int:
        return await self._change_async(_craft.OP_REMOVE, id, None, False, timeout)

    async def transfer_leadership_async(self, id: int = 0,
                                        timeout: Optional[float] = None) -> None:
        await self._change_async(_craft.OP_TRANSFER, id, None, False, timeout)

    async def snapshot_async(self, timeout: Optional[float] = None) -> int:
        return await self._change_async(_craft.OP_SNAPSHOT, 0, None, False, timeout)

    def transfer_leadership(self, id: int = 0, timeout: Optional[float] = None) -> None:
        """Hands leadership to server id (0: the most up-to-date voter); returns once this node
        no longer leads, or at once when id is this node, the leader (nothing to hand over)."""
        self._change(_craft.OP_TRANSFER, id, None, False, timeout)

    def set_faults(self, to: int, drop: float = 0.0, delay: Tuple[int, int] = (0, 0),
                   block: bool = False) -> None:
        """Fault injection for tests and fault campaigns (craft_uv_set_faults): every message
        this node sends to server `to` is dropped with probability `drop` and delayed by a
        uniform random time in delay = (min_ms, max_ms), which reorders; block=True drops
        everything sent to `to` (a one-way cut). set_faults(to) clears them. Thread-safe."""
        self._usable()
        lo, hi = delay
        try:
            self._c.set_faults(int(to), float(drop), int(lo), int(hi), bool(block))
        except (TypeError, OverflowError) as e:
            raise ValueError(str(e)) from None

    # ---- observing -------------------------------------------------------------------------

    def set_security(self, security: "_security.Security") -> None:
        """Replaces the security settings of the running node, to rotate a certificate, a CA or
        the cluster secret without downtime (docs/security.md gives the steps). The files are
        read and the keys derived now (ConfigError if they cannot work; the node keeps its
        settings). New connections use the new settings at once; established ones whose
        credentials are no longer accepted are closed and made again; a change of mode
        closes every connection."""
        self._c.set_security(_security._to_c(security))

    def status(self) -> NodeStatus:
        """This node's state, a dict typed by craft.NodeStatus (docs/python.md, "Status"): id,
        role, term, leader, commit, applied, log and snapshot indexes, the configuration in
        effect (voters, learners, conf_index, conf_committed), has_quorum, per peer its
        connection and last contact and, on the leader, match, next, lag, inflight and
        replication state; stopped and stop_reason, removed, uptime, snapshot size, log write
        latency p50/p99 over the last minute, queue depths, counters. The same keys as the
        status `craft status` asks over the network, plus digest and diverged."""
        self._usable()
        s: Any = codec.loads(self._c.status_packed())
        s["digest"] = self._adapter.last_digest
        s["diverged"] = self._adapter.diverged
        return cast(NodeStatus, s)

    def metrics(self, openmetrics: bool = False) -> str:
        """The node's metrics as Prometheus text (format 0.0.4), or OpenMetrics 1.0 with
        openmetrics=True: counters, gauges and histograms, each documented in
        docs/metrics.md. With metrics_address= the node also serves them at GET /metrics."""
        self._usable()
        return self._c.metrics(bool(openmetrics))

    @property
    def metrics_address(self) -> Optional[str]:
        """Where GET /metrics is served (the port bound, with port 0), None without."""
        where = self.status()["metrics_address"]
        return where or None

    @property
    def leader(self) -> Optional[Tuple[int, str]]:
        """(id, address) of the leader this node knows, or None."""
        self._usable()
        s = self._c.status()
        if not s["leader"]:
            return None
        address = s["leader_address"] or (self.address if s["leader"] == self.id else "")
        return int(s["leader"]), str(address)

    @property
    def is_leader(self) -> bool:
        self._usable()
        return bool(self._c.status()["role"] == "leader")

    async def wait_for_leader_async(self, timeout: Optional[float] = None) -> Tuple[int, str]:
        """wait_for_leader() for asyncio: polls this node's status every 20 ms with
        asyncio.sleep (no thread is held). Raises Timeout (NoQuorum when a majority cannot be
        reached)."""
        deadline = time.monotonic() + self._timeout(timeout)
        while True:
            leader = self.leader
            if leader is not None:
                return leader
            if time.monotonic() >= deadline:
                raise self._no_quorum() or Timeout("no leader known yet: are a majority of "
                                                   "the peers running and reachable?")
            await asyncio.sleep(0.02)

    def wait_for_leader(self, timeout: Optional[float] = None) -> Tuple[int, str]:
        """Waits until this node knows a leader; returns (id, address). Raises Timeout."""
        deadline = time.monotonic() + self._timeout(timeout)
        while True:
            leader = self.leader
            if leader is not None:
                return leader
            if time.monotonic() >= deadline:
                raise self._no_quorum() or Timeout("no leader known yet: are a majority of "
                                                   "the peers running and reachable?")
            time.sleep(0.02)

    def on(self, event: EventName, callback: Callable[..., Any]) -> None:
        """Registers callback for an event. Callbacks run on the node's loop thread: keep them
        short and do not call blocking Node methods from them. (events() gives the same to
        asyncio code.)

        "role": callback(role, term, leader_id) on every role, term or leader change;
        "leader": callback(leader_id or None, term) when the known leader changes;
        "membership": callback(index) when a configuration entry was applied;
        "snapshot": callback(index, installed) when a snapshot was taken or installed, and
        "snapshot_taken": callback(index) / "snapshot_installed": callback(index) for each;
        "snapshot_failed": callback(index, message) when the state machine's snapshot() raised
        (the node keeps serving and tries again after a backoff: 1 s, doubling to 60 s);
        "follower_lagging": callback(follower_id, lag, match) on the leader when a follower
        falls more than lag_threshold entries behind (once per episode), and
        "follower_caught_up": callback(follower_id, lag, match) when it is back within half
        of it (or left the configuration: match 0);
        "stopped": callback(error_code, message) when a fatal error stopped the node;
        "follower_log_lost": callback(follower_id, acknowledged, last_index) on the leader
        when a follower's data directory lost entries it had acknowledged (docs/core.md);
        "peers_differ": callback(message) at start() when peers= differs from the configuration
        the node keeps (message names each server that differs);
        "removed": callback(by, index) when server `by` says that its configuration (of that
        index) no longer has this node;
        "diverged": callback(index, leader_digest, our_digest) when state digests
        (digest_interval=) show that this node's state differs from the leader's at index; the
        node then stops (and "stopped" follows)."""
        if event not in self._handlers:
            raise ValueError(f"unknown event {event!r}; events: {', '.join(_EVENTS)}")
        if not callable(callback):
            raise TypeError("callback must be callable")
        self._handlers[event].append(callback)

    def events(self, *names: EventName) -> AsyncIterator[Event]:
        """The node's events for asyncio, as Event(name, args) with the arguments on() gives
        callbacks, in order; only those named, if names are given:

            async for ev in node.events("leader", "stopped"):
                print(ev.name, ev.args)

        Call it from a running event loop. The subscription starts at the call (nothing
        between the call and the first step is lost); events are queued without bound until
        read; the iteration ends when the node is closed. Leave it early with break (or
        aclose())."""
        for n in names:
            if n not in self._handlers:
                raise ValueError(f"unknown event {n!r}; events: {', '.join(_EVENTS)}")
        return _EventStream(self, set(names))

    def _on_event(self, kind: int, role: int, term: int, leader: int, index: int,
                  installed: bool, error: int, message: str, match: int = 0) -> None:
        calls: List[Tuple[str, Tuple[Any, ...]]] = []
        if kind == _craft.EVENT_ROLE:
            calls.append(("role", (_ROLE_NAMES.get(role, str(role)), term, leader or None)))
            if (leader or None) != self._last_leader:
                self._last_leader = leader or None
                calls.append(("leader", (leader or None, term)))
        elif kind == _craft.EVENT_MEMBERSHIP:
            calls.append(("membership", (index,)))
        elif kind == _craft.EVENT_SNAPSHOT:
            calls.append(("snapshot", (index, bool(installed))))
            calls.append(("snapshot_installed" if installed else "snapshot_taken", (index,)))
        elif kind == _craft.EVENT_FOLLOWER_LAGGING:
            calls.append(("follower_lagging", (leader, max(index - match, 0), match)))
        elif kind == _craft.EVENT_FOLLOWER_CAUGHT_UP:
            calls.append(("follower_caught_up", (leader, max(index - match, 0) if match else 0,
                                                 match)))
        elif kind == _craft.EVENT_STOPPED:
            calls.append(("stopped", (error, message)))
        elif kind == _craft.EVENT_FOLLOWER_LOG_LOST:
            calls.append(("follower_log_lost", (leader, match, index)))
        elif kind == _craft.EVENT_SNAPSHOT_FAILED:
            calls.append(("snapshot_failed", (index, message)))
        elif kind == _craft.EVENT_REMOVED:
            calls.append(("removed", (leader, index)))
        elif kind == _craft.EVENT_PEERS_DIFFER:
            calls.append(("peers_differ", (message,)))
        for name, args in calls:
            for cb in list(self._handlers[name]):
                try:
                    cb(*args)
                except Exception:
                    import logging
                    logging.getLogger("craft").exception("craft: a %r callback raised", name)
            for sub in list(self._subscribers):
                sub._push(Event(cast(EventName, name), args))


def _commands(commands: Iterable[Bytes]) -> List[bytes]:
    if isinstance(commands, (bytes, bytearray, memoryview, str)):
        raise TypeError("apply_many takes an iterable of commands (a list of bytes), not one "
                        "command: use apply for a single one")
    out = []
    for c in commands:
        _check_command(c)
        out.append(bytes(c))
    return out


def _settle_many(results: List[Any], return_exceptions: bool) -> List[Any]:
    if not return_exceptions:
        for r in results:
            if isinstance(r, BaseException):
                raise r
    return results


def _craft_error(status: int, data: bytes, leader_id: int, leader_address: str) -> Error:
    detail = bytes(data[:560]).decode("utf-8", "replace") if data else ""
    from ._errors import from_code
    return from_code(status, detail, leader_id, leader_address)


# ---- client sessions --------------------------------------------------------------------------

_RETRYABLE = (Timeout, Dropped, NoConnection, NotLeader, Busy)


class Session:
    """A client session (Raft thesis 6.3): commands sent through it are applied exactly once,
    however often they are retried. Opened with Node.session() (Node.session_async() from
    asyncio); thread-safe.

    apply(command) numbers the command and retries it through the node (the same bytes, so
    a copy committed twice is answered from the first application's result) until a result
    arrives or the timeout passes. A command whose call ended without a result (Timeout,
    NoConnection, or an apply_async whose task was cancelled) may still be applied: the next
    call with the same bytes through this session is taken as its retry, keeps its number, and
    so is applied at most once in all (and answers with the first application's result). A
    SessionError means the session expired or forgot the command: the outcome of that command
    is unknown; open a new session."""

    def __init__(self, node: Node[Any], timeout: Optional[float] = None,
                 _register: bool = True) -> None:
        self.node = node
        self.timeout = node.timeout if timeout is None else float(timeout)
        self._lock = threading.Lock()
        self._seq = itertools.count(1)
        self._done: "set[int]" = set()
        self._ack = 0
        # Commands whose call ended without an answer, by their bytes: their numbers, kept for
        # their retries (the oldest first).
        self._unfinished: Dict[bytes, List[int]] = {}
        self.closed = False
        self.client_id = 0
        if _register:
            self.client_id, _ = self._retry(_craft.session_register(), self.timeout)

    async def _register_async(self) -> None:
        self.client_id, _ = await self._retry_async(_craft.session_register(), self.timeout)

    def _retry(self, envelope: bytes, timeout: float) -> Tuple[int, bytes]:
        deadline = time.monotonic() + timeout
        delay = 0.02
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Timeout("the session could not get an answer in time; retrying the same "
                              "command later through this session is still safe")
            try:
                return self.node._apply_raw(envelope, left)
            except _RETRYABLE:
                if deadline - time.monotonic() <= delay:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.5)

    async def _retry_async(self, envelope: bytes, timeout: float) -> Tuple[int, bytes]:
        deadline = time.monotonic() + timeout
        delay = 0.02
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Timeout("the session could not get an answer in time; retrying the same "
                              "command later through this session is still safe")
            try:
                return await self.node._apply_raw_async(envelope, left)
            except _RETRYABLE:
                if deadline - time.monotonic() <= delay:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)

    def _begin(self, command: bytes) -> Tuple[int, int]:
        """The number of a command (that of an unfinished call with the same bytes, if any: this
        call is its retry) and the acknowledgement to send with it."""
        if self.closed:
            raise Closed("the session is closed: open a new one with Node.session()")
        with self._lock:
            waiting = self._unfinished.get(command)
            if waiting:
                seq = waiting.pop(0)
                if not waiting:
                    del self._unfinished[command]
            else:
                seq = next(self._seq)
            return seq, self._ack

    def _abandoned(self, command: bytes, seq: int) -> None:
        with self._lock:
            self._unfinished.setdefault(command, []).append(seq)

    def apply(self, command: Bytes, timeout: Optional[float] = None) -> bytes:
        """Applies command exactly once and returns the state machine's result."""
        _check_command(command)
        data = bytes(command)
        seq, ack = self._begin(data)
        envelope = _craft.session_command(self.client_id, seq, ack, data)
        try:
            _, result = self._retry(envelope, self.timeout if timeout is None else float(timeout))
        except (ApplyError, SessionError):
            self._completed(seq)
            raise
        except BaseException:
            self._abandoned(data, seq)  # it may have been applied: a retry keeps its number
            raise
        self._completed(seq)
        return result

    async def apply_async(self, command: Bytes, timeout: Optional[float] = None) -> bytes:
        """apply() for asyncio: retries are awaited (asyncio.sleep between them), never a
        thread. Cancelling the awaiting task leaves the command unfinished: it may still be
        applied, and calling apply_async (or apply) again with the same bytes retries it, so
        that it is applied once in all."""
        _check_command(command)
        data = bytes(command)
        seq, ack = self._begin(data)
        envelope = _craft.session_command(self.client_id, seq, ack, data)
        try:
            _, result = await self._retry_async(envelope,
                                                self.timeout if timeout is None else float(timeout))
        except (ApplyError, SessionError):
            self._completed(seq)
            raise
        except BaseException:  # a Timeout, a lost connection, a cancellation
            self._abandoned(data, seq)
            raise
        self._completed(seq)
        return result

    def _completed(self, seq: int) -> None:
        with self._lock:
            self._done.add(seq)
            while self._ack + 1 in self._done:
                self._ack += 1
                self._done.discard(self._ack)

    def close(self, timeout: Optional[float] = None) -> None:
        """Unregisters the session (the cluster forgets its results)."""
        if self.closed:
            return
        self.closed = True
        try:
            self._retry(_craft.session_unregister(self.client_id),
                        self.timeout if timeout is None else float(timeout))
        except SessionError:
            pass  # a retried unregistration finds the session gone: it worked

    async def close_async(self, timeout: Optional[float] = None) -> None:
        """close() for asyncio."""
        if self.closed:
            return
        self.closed = True
        try:
            await self._retry_async(_craft.session_unregister(self.client_id),
                                    self.timeout if timeout is None else float(timeout))
        except SessionError:
            pass

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    async def __aenter__(self) -> "Session":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close_async()
