"""craft's exceptions. Every error craft raises is a craft.Error; its message says what to do.

The C extension builds them through from_code(), so that the mapping from the C runtime's
CRAFT_E* codes to exception classes lives in one place.
"""

import errno as _errno
from typing import List, Optional

__all__ = [
    "Error", "NotLeader", "Timeout", "Closed", "Forked", "ConfigError", "StorageError", "ApplyError",
    "Dropped", "NoConnection", "Busy", "SessionError", "Violation", "LogCompacted",
    "LogUnavailable", "TooLarge", "AddressInUse", "NoQuorum", "Removed", "AlreadyMember",
    "NotMember",
]


class Error(Exception):
    """The root of craft's exceptions. code is the C runtime's CRAFT_E* code (negative), or 0."""

    code = 0

    def __init__(self, message: str = "", code: Optional[int] = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class NotLeader(Error):
    """This node is not the leader (and forwarding is off, or no leader is known).

    leader_id and leader_address name the leader when this node knows it (else None)."""

    code = -3

    def __init__(self, message: str = "", leader_id: Optional[int] = None,
                 leader_address: Optional[str] = None, code: Optional[int] = None) -> None:
        if not message:
            if leader_id:
                where = f" at {leader_address}" if leader_address else ""
                message = (f"this node is not the leader: send the request to node {leader_id}"
                           f"{where}")
            else:
                message = ("this node is not the leader and knows of none: retry once a leader "
                           "is elected (Node.leader tells)")
        super().__init__(message, code)
        self.leader_id = leader_id or None
        self.leader_address = leader_address or None


class Timeout(Error):
    """The request did not complete in time. A command may or may not have been applied: use
    a session (Node.session()) to retry it safely."""

    code = -6


class NoQuorum(Timeout):
    """No answer in time because this node cannot reach a majority of the voters: no leader
    can be elected or can commit. reachable and voters count them (this node included). As
    with any Timeout, a command may or may not have been applied."""

    def __init__(self, message: str = "", reachable: int = 0, voters: int = 0) -> None:
        super().__init__(message, -6)
        self.reachable = reachable
        self.voters = voters


class Closed(Error):
    """The node is closed or was stopped by a fatal error; create a new Node to go on."""

    code = -5


class Forked(Closed):
    """This process is a fork of the one that started the node: the node's loop thread does
    not exist here, so the node cannot serve in this process. Start nodes after forking (in
    the child), or use multiprocessing's "spawn" start method. The parent's node is not
    affected."""


class Removed(Closed):
    """This node was removed from the cluster's configuration (a member said so): it serves
    nothing. Stop it; to bring it back, move its data directory aside and add it again from the
    leader (Node.add_server)."""


class ConfigError(Error, ValueError):
    """A bad option or configuration; the message names it."""

    code = -2


class AddressInUse(ConfigError):
    """The node's address is already in use by another node or program (EADDRINUSE). Nothing
    was changed: free the address or choose another, then call start() again. errno is
    errno.EADDRINUSE, as on an OSError; address names the address."""

    code = -23
    errno = _errno.EADDRINUSE

    def __init__(self, message: str = "", code: Optional[int] = None,
                 address: Optional[str] = None) -> None:
        super().__init__(message, code)
        self.address = address


class AlreadyMember(Error, ValueError):
    """add_server() of a server that is already in the configuration."""

    code = -17


class NotMember(Error, ValueError):
    """promote() or remove_server() of a server that is not in the configuration."""

    code = -10


class StorageError(Error):
    """The log store failed (I/O error, corrupt data, locked directory, a log-store hook that
    raised). The node that hit it has stopped: fix the cause and start it again."""

    code = -9


class ApplyError(Error):
    """The state machine's apply raised while applying this command. The entry still counts as
    applied on every node (it is deterministic behaviour), so retrying it re-runs the failure.

    type_name and message are the original exception's class name and str(); on the node whose
    state machine raised, original is the exception object itself (and __cause__ too); on a
    node that forwarded the proposal it is None."""

    code = -22

    def __init__(self, type_name: str, message: str,
                 original: Optional[BaseException] = None, index: int = 0) -> None:
        super().__init__(f"the state machine raised {type_name}: {message}")
        self.type_name = type_name
        self.message = message
        self.original = original
        self.index = index


class TooLarge(Error, ValueError):
    """A command larger than one frame can carry (max_frame, the same on every node): refused
    at once, before anything was proposed. Split it, or raise max_frame on every node."""

    code = -11


class Dropped(Error):
    """The proposal was lost to a leader change and was NOT applied: it is safe to retry."""

    code = -12


class NoConnection(Error):
    """The connection to the leader dropped while it handled a forwarded request: the outcome
    is unknown. Use a session to retry safely."""

    code = -18


class Busy(Error):
    """A leadership transfer or a membership change is in progress: retry shortly."""

    code = -4


class SessionError(Error):
    """A session command was refused: the session expired or was evicted, or the command is
    older than what the session still remembers. Whether it was applied cannot be known; open
    a new session (Node.session())."""

    code = -10


class Violation(Error):
    """The simulator found a Raft safety violation. seed replays the run; trace holds the last
    events (print them, one per line)."""

    code = -21

    def __init__(self, message: str, seed: int = 0, trace: Optional[List[str]] = None) -> None:
        lines = list(trace or [])
        text = message
        if seed:
            text += f" (seed {seed}: the same seed and calls replay it)"
        super().__init__(text)
        self.seed = seed
        self.trace = lines


class LogCompacted(Error):
    """Raised by a log store's entries() or term() for an index below its first entry."""

    code = -13


class LogUnavailable(Error):
    """Raised by a log store's entries() or term() for an index past its last entry."""

    code = -14


_HINTS = {
    -1: "out of memory",
    -2: "invalid argument: check the value named",
    -4: "busy: a leadership transfer or a membership change is in progress; retry shortly",
    -5: "the node is closed or shutting down; create a new Node to go on",
    -6: "timed out; the outcome is unknown: retry through a session for exactly-once",
    -7: "malformed data",
    -8: "corrupt data in storage: do not put back a backup or start it empty in place (it "
        "may vote again and the cluster may lose acknowledged writes); remove this server "
        "from the cluster on the leader, move its data directory aside, and add it back as a "
        "new member so that it catches up from the others (docs/core.md)",
    -9: "I/O error in the log store; the node stopped: fix the disk and restart it",
    -10: "not found",
    -11: "too large for one frame (max_frame): split it, or raise max_frame on every node",
    -12: "the proposal was lost to a leader change and was not applied: retry it",
    -13: "compacted into a snapshot",
    -14: "not available yet",
    -15: "the data directory is locked by another process: stop it or use another data_dir",
    -16: "unsupported format or protocol version: upgrade this node",
    -17: "already exists",
    -18: "the connection to the leader was lost: the outcome is unknown; retry through a "
         "session for exactly-once",
    -19: "canceled",
    -20: "the call is not valid in the node's current state (e.g. promoting a learner that has "
         "not caught up): retry later",
    -21: "a Raft safety invariant was violated",
    -23: "the address is already in use: free it or choose another, then start again",
}

_BY_CODE = {
    -2: ConfigError, -3: NotLeader, -4: Busy, -5: Closed, -6: Timeout, -8: StorageError,
    -11: TooLarge, -23: AddressInUse,
    -9: StorageError, -12: Dropped, -13: LogCompacted, -14: LogUnavailable, -15: StorageError,
    -16: StorageError, -18: NoConnection, -21: Violation,
}


# Codes whose detail, when there is one, already says the cause and what to do.
_COMPLETE = {-2, -5, -11, -23}


def from_code(code: int, detail: str = "", leader_id: int = 0,
              leader_address: str = "") -> Error:
    """The exception for a CRAFT_E* code; detail is the runtime's own message, if any."""
    if code == -3:
        return NotLeader("", leader_id, leader_address)
    hint = _HINTS.get(code, f"error {code}")
    if not detail or detail in hint:
        message = hint
    elif code in _COMPLETE:
        message = detail
    else:
        message = f"{detail}: {hint}"
    cls = _BY_CODE.get(code, Error)
    if cls is Violation:
        return Violation(message)
    err: Error = cls(message, code)
    return err
