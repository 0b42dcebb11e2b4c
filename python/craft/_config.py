"""Checks craft.Node's arguments before anything is opened: each mistake gets a ConfigError that
names the argument, the value given and the accepted range, in one sentence (the C runtime's
own checks would otherwise answer "invalid argument", or an OverflowError that names nothing).
"""

import ipaddress
import re
from typing import Any, Dict, Mapping, Optional

from ._errors import ConfigError

# The WAL segment sizes a node accepts (segment_size=): the store's minimum, and the largest
# size it preallocates (docs/storage.md). The default, 64 MiB, is the store's.
SEGMENT_SIZE_MIN = 4096
SEGMENT_SIZE_MAX = 1 << 30
# The smallest max_frame a node accepts (CRAFT_UV_MAX_FRAME_MIN), and the default (64 MiB).
MAX_FRAME_MIN = 64 * 1024
MAX_FRAME_DEFAULT = 64 * 1024 * 1024
U64 = (1 << 64) - 1

# option: (lowest, highest, unit and what it means)
INTS = {
    "heartbeat_ms": (1, 60_000, "milliseconds between heartbeats (the tick)"),
    "election_timeout_ms": (2, 3_600_000, "milliseconds, at least twice heartbeat_ms"),
    "snapshot_entries": (0, U64, "entries between snapshots (0: never by count)"),
    "snapshot_trailing": (0, U64, "entries kept after a snapshot"),
    "max_frame": (MAX_FRAME_MIN, 0xFFFFFFFF, "bytes (64 KiB to 4 GiB - 1; the same on every "
                                            "node)"),
    "cluster_id": (0, U64, "(0: derived from the bootstrap configuration)"),
    "seed": (0, U64, "(0: from the id and the clock)"),
    "segment_size": (SEGMENT_SIZE_MIN, SEGMENT_SIZE_MAX, "bytes (4 KiB to 1 GiB)"),
    "lag_threshold": (0, U64, "entries a follower may fall behind before the "
                              "\"follower_lagging\" event (0: never)"),
}
STRS = ("metrics_address",)
BOOLS = ("pre_vote", "check_quorum", "fsync", "forward")
SESSION_OPTIONS = {
    "max_sessions": (1, 0xFFFFFFFF),
    "expire_after": (0, U64),
    "max_cached_results": (1, 0xFFFFFFFF),
}
LEVELS = {"debug": 0, "info": 1, "warn": 2, "warning": 2, "error": 3}
ADDRESS = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[^:\s\[\]]+):(\d{1,5})$")
ADDRESS_MAX = 63  # CRAFT_ADDRESS_MAX - 1


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _host_ok(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        if host.startswith("["):
            return isinstance(ipaddress.ip_address(host[1:-1]), ipaddress.IPv6Address)
        return isinstance(ipaddress.ip_address(host), ipaddress.IPv4Address)
    except ValueError:
        return False


def check_address(what: str, address: Any, port_zero: bool) -> None:
    if not isinstance(address, str):
        raise ConfigError(f"{what} must be a string \"host:port\", not {address!r}")
    m = ADDRESS.match(address)
    ok = (m is not None and len(address) <= ADDRESS_MAX and int(m.group(2)) <= 65535
          and _host_ok(m.group(1)))
    if ok and not port_zero and m is not None and int(m.group(2)) == 0:
        raise ConfigError(f"{what} {address!r} has port 0: a peer's address needs its real port "
                          f"(port 0 only lets this node's own address pick one)")
    if not ok:
        raise ConfigError(f"{what} must be \"host:port\" with a numeric IPv4 address, "
                          f"localhost or [IPv6] (names are not resolved) and a port from 0 to "
                          f"65535, at most {ADDRESS_MAX} characters; not {address!r}")


STORE_METHODS = ("load_hard_state", "save_hard_state", "bounds", "append", "truncate", "compact",
                 "entries", "term", "snapshot_begin", "snapshot_commit", "snapshot_abort",
                 "snapshot_meta", "snapshot_open")


def check_fsm(fsm: Any) -> None:
    if fsm is None:
        raise ConfigError("fsm= is required: an instance of a craft.StateMachine subclass")
    if isinstance(fsm, type):
        raise ConfigError(f"fsm must be an instance, {fsm.__name__}(), not the class "
                          f"{fsm.__name__} itself (give each Node its own instance)")
    for name in ("apply", "snapshot", "restore"):
        if not callable(getattr(fsm, name, None)):
            raise ConfigError(f"fsm has no method {name}(): subclass craft.StateMachine (its "
                              f"apply(command, index) is yours to write)")


def check_store(store: Any) -> None:
    missing = [m for m in STORE_METHODS if not callable(getattr(store, m, None))]
    if missing:
        raise ConfigError(f"log_store lacks the method(s) {', '.join(missing)}() (a log store "
                          f"implements {', '.join(STORE_METHODS)}: see docs/python.md, \"Log "
                          f"stores in Python\", and craft.MemoryLogStore)")


def check(id: Any, address: Any, peers: Optional[Mapping[Any, Any]], join: bool,
          timeout: Any, log_level: Any, options: Dict[str, Any],
          session_options: Optional[Mapping[str, Any]], digest_interval: Any) -> None:
    if not _is_int(id) or not 0 < id <= U64:
        raise ConfigError(f"id must be an int from 1 to {U64}, not {id!r}")
    check_address("address", address, port_zero=True)
    if peers is None and not join:
        raise ConfigError("give peers={id: 'host:port', ...} for a new cluster (this node "
                          "included), or join=True for a node a leader will add")
    if peers is not None and join:
        raise ConfigError("peers= and join=True exclude each other")
    if peers is not None:
        if not isinstance(peers, Mapping) or not peers:
            raise ConfigError(f"peers must be a dict {{id: 'host:port'}} with this node in it, "
                              f"not {peers!r}")
        for pid, paddr in peers.items():
            if not _is_int(pid) or not 0 < pid <= U64:
                raise ConfigError(f"peers: ids must be ints from 1 to {U64}, not {pid!r}")
            check_address(f"peers[{pid}]", paddr, port_zero=pid == id)
        if id not in peers:
            raise ConfigError(f"peers must include this node ({id}): {dict(peers)!r}")
        seen: Dict[str, Any] = {}
        for pid, paddr in peers.items():
            if paddr in seen and not paddr.endswith(":0"):
                raise ConfigError(f"peers {seen[paddr]} and {pid} have the same address "
                                  f"{paddr!r}: every server needs its own")
            seen[paddr] = pid
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or \
            not 0 < timeout <= 86400:
        raise ConfigError(f"timeout must be a number of seconds above 0 and at most 86400, "
                          f"not {timeout!r}")
    if log_level not in LEVELS:
        raise ConfigError(f"log_level must be one of {', '.join(sorted(LEVELS))}, not "
                          f"{log_level!r}")
    unknown = set(options) - set(INTS) - set(BOOLS) - set(STRS)
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(sorted(unknown))}; known: "
                          f"{', '.join(sorted(set(INTS) | set(BOOLS) | set(STRS)))}")
    for k, v in options.items():
        if k in STRS:
            check_address(k, v, port_zero=True)
            continue
        if k in BOOLS:
            if not isinstance(v, bool):
                raise ConfigError(f"{k} must be True or False, not {v!r}")
            continue
        lo, hi, what = INTS[k]
        if not _is_int(v) or not lo <= v <= hi:
            raise ConfigError(f"{k} must be an int from {lo} to {hi}: {what}; not {v!r} (leave "
                              f"it out for the default)")
    hb = options.get("heartbeat_ms", 50)
    et = options.get("election_timeout_ms", 500)
    if et < 2 * hb:
        raise ConfigError(f"election_timeout_ms ({et}) must be at least twice heartbeat_ms "
                          f"({hb}): a follower would start elections between heartbeats")
    for k, v in (session_options or {}).items():
        if k not in SESSION_OPTIONS:
            raise ConfigError(f"session_options: unknown option {k!r}; known: "
                              f"{', '.join(sorted(SESSION_OPTIONS))}")
        lo, hi = SESSION_OPTIONS[k]
        if not _is_int(v) or not lo <= v <= hi:
            raise ConfigError(f"session_options[{k!r}] must be an int from {lo} to {hi}, not "
                              f"{v!r} (the same on every node)")
    if not _is_int(digest_interval) or not 0 <= digest_interval <= U64:
        raise ConfigError(f"digest_interval must be an int from 0 (off) to {U64}: commands "
                          f"between state digests; not {digest_interval!r}")
