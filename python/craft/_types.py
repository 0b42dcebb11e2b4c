"""The typed shapes of craft's Python API: the status dicts (Node.status(), Client.status()),
the event names, the roles. mypy --strict catches a misspelt key or event name with them.

The status keys are those of the status map of docs/wire.md: a node's status() and the status
a `craft status` asks over the network are the same dict (plus digest and diverged, which only
the node itself knows)."""

import sys
from typing import Any, Dict, List, Optional

if sys.version_info >= (3, 8):
    from typing import Literal, TypedDict
else:  # pragma: no cover - craft needs 3.9
    raise ImportError("craft needs Python 3.9 or later")

__all__ = ["Role", "PeerRole", "ReplicationState", "EventName", "PeerStatus", "Counters",
           "Status", "NodeStatus", "EVENT_NAMES"]

#: A node's role; "stopped" once a fatal error stopped it, "none" before it knows one.
Role = Literal["follower", "pre-candidate", "candidate", "leader", "stopped", "none"]
PeerRole = Literal["voter", "learner"]
#: The leader's replication state for a follower ("" on a follower, which tracks no one).
ReplicationState = Literal["probe", "replicate", "snapshot", "self", ""]

#: Every event Node.on() and Node.events() know (docs/python.md, "Events").
EventName = Literal["role", "leader", "membership", "snapshot", "snapshot_taken",
                    "snapshot_installed", "snapshot_failed", "follower_lagging",
                    "follower_caught_up", "stopped", "follower_log_lost", "diverged", "removed",
                    "peers_differ"]
EVENT_NAMES = ("role", "leader", "membership", "snapshot", "snapshot_taken",
               "snapshot_installed", "snapshot_failed", "follower_lagging", "follower_caught_up",
               "stopped", "follower_log_lost", "diverged", "removed", "peers_differ")


class PeerStatus(TypedDict):
    """One server of the configuration in effect, as this node sees it."""
    id: int
    role: PeerRole
    address: str
    connected: bool        #: this node's connection to it is up (always True for itself)
    last_contact_ms: int   #: ms since a message from it arrived; -1: never; 0 for itself
    # The leader's view of its replication (0 and "" on other nodes):
    match: int             #: its last index known to match the leader's log
    next: int              #: the next index the leader sends it
    lag: int               #: the leader's last index minus match
    inflight: int          #: AppendEntries sent to it and not answered yet
    state: ReplicationState


class Counters(TypedDict):
    """Counters since the node started (docs/metrics.md has them as metrics)."""
    msgs_sent: int
    msgs_received: int
    bytes_sent: int
    bytes_received: int
    entries_appended: int
    entries_applied: int
    entries_committed: int
    proposals: int
    fsyncs: int
    elections: int
    elections_won: int
    leader_changes: int
    snapshots: int
    snapshots_installed: int
    snapshots_failed: int
    bad_frames: int
    refused_handshakes: int
    forwarded: int
    send_dropped: int
    fault_dropped: int
    connects: int
    disconnects: int


class Status(TypedDict):
    """A node's status (Node.status(), Client.status(), `craft status --json`)."""
    id: int
    role: Role
    term: int
    leader: int                 #: 0 when no leader is known
    leader_address: str
    address: str                #: the address this node listens on
    metrics_address: str        #: where GET /metrics is served ("" if not)
    cluster_id: int
    commit: int
    applied: int
    first_index: int
    last_index: int
    snapshot_index: int         #: the latest snapshot taken or installed (0: none)
    snapshot_term: int
    snapshot_size: int          #: its bytes
    snapshot_failures: int      #: snapshots that failed in a row
    snapshot_error: str
    stopped: bool               #: a fatal error stopped the node
    stop_reason: str            #: why
    removed: bool               #: a member said this node left the configuration
    has_quorum: bool            #: leader: a majority heard from lately; follower: the leader was
    leader_contact_ms: int      #: follower: ms since the leader was heard from; -1 otherwise
    conf_index: int             #: the configuration in effect: its entry's index ...
    conf_committed: bool        #: ... and whether that entry is committed
    voters: List[int]
    learners: List[int]
    uptime_ms: int
    fsync_p50_us: int           #: log write (append + fdatasync) latency over the last minute
    fsync_p99_us: int
    fsync_count_1m: int
    pending_requests: int       #: requests waiting in the node (the request queue's depth)
    pending_jobs: int           #: disk jobs queued
    peers: List[PeerStatus]
    counters: Counters


class NodeStatus(Status):
    """Node.status(): the status plus what only the node's own process knows."""
    digest: Optional[Dict[str, Any]]    #: the last state digest (digest_interval=)
    diverged: Optional[Dict[str, Any]]  #: set once digests showed a divergence
