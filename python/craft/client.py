"""craft.Client: a client of a running cluster over the network, for programs that are not
nodes: operators' tools (the `craft` command line is built on it), scripts, load generators.

    import craft

    with craft.Client(["10.0.0.1:7001", "10.0.0.2:7001"],
                      security=craft.Secret(file="/etc/kv/cluster.secret")) as c:
        print(c.status()["role"])          # the status of the server it reached
        c.add_server(4, "10.0.0.4:7001")   # sent to the leader, returns once applied
        c.apply(b"...")                    # a command, committed and applied

It speaks the client protocol (craft/client.h, docs/wire.md): it connects to one of the
servers given, follows leader hints for what only the leader does, and never reads a node's
files. status(), snapshot() and metrics() are answered by the server the client reaches:
give a Client one address to ask that server. Every call blocks (the GIL released) until the
answer or the timeout; one call at a time per client (thread-safe, calls are serialized).
"""

from typing import Any, List, Optional, Sequence, Type, Union, cast

from . import _craft, codec
from . import security as _security
from ._errors import (AlreadyMember, ApplyError, Busy, ConfigError, Error, NotLeader, NotMember,
                      NoConnection, Timeout)
from ._fsm import decode_error
from ._types import Status

__all__ = ["Client", "OutcomeUnknown"]


class OutcomeUnknown(Error):
    """The request was sent and no answer came back in time (or the connection was lost): it
    may or may not have taken effect. Look at the cluster's status before trying again."""


class Client:
    """A client of the cluster whose members listen at servers ("host:port", or a list).

    cluster_id: the cluster's id when it was given one (0, the default, accepts any).
    timeout: seconds a call may take, leader search and retries included. security:
    craft.Secret(...) or craft.TLS(...) as the cluster uses (docs/security.md), None for
    plaintext."""

    def __init__(self, servers: Union[str, Sequence[str]], *, cluster_id: int = 0,
                 timeout: float = 10.0, security: "_security.Security" = None) -> None:
        addresses: List[str] = [servers] if isinstance(servers, str) else list(servers)
        if not addresses:
            raise ConfigError("give at least one server address (host:port)")
        self.servers = addresses
        self.timeout = float(timeout)
        try:
            self._c = _craft.Client(addresses, int(cluster_id), self.timeout,
                                    _security._to_c(security))
        except (TypeError, ValueError) as e:
            raise ConfigError(str(e)) from None

    # ---- requests -------------------------------------------------------------------------

    def _error(self, e: Error, what: str) -> Error:
        """The exception a caller should see for a failed request, its message saying what
        happened to it and why."""
        why = self._c.error
        where = self._c.server or ", ".join(self.servers)
        if self._c.outcome_unknown:
            return OutcomeUnknown(f"{what}: sent to {where}, and no answer came back in time"
                                  f"{': ' + why if why else ''}; it may or may not have taken "
                                  f"effect: check the status", e.code)
        if isinstance(e, NotLeader):
            return NotLeader(f"{what}: no leader found in time through {', '.join(self.servers)} "
                             f"(an election may be under way, or a majority of the voters is "
                             f"down); nothing was done")
        if isinstance(e, (Timeout, NoConnection)):
            cls: Type[Error] = type(e)
            return cls(f"{what}: could not reach {', '.join(self.servers)}"
                       f"{': ' + why if why else ''}; nothing was sent", e.code)
        reasons = {-17: (AlreadyMember, "already a member of the configuration"),
                   -10: (NotMember, "not a member of the configuration"),
                   -20: (Busy, "not caught up with the leader yet"),
                   -4: (Busy, "the leader is busy with another change or a leadership "
                              "transfer, or has not committed an entry of its term yet"),
                   -2: (ConfigError, "refused: a learner cannot be demoted, nor the last voter "
                                     "removed or demoted, and a server id must be > 0")}
        if e.code in reasons:
            cls, text = reasons[e.code]
            return cls(f"{what}: {why or text}", e.code)
        return type(e)(f"{what}: {why or e}", e.code)

    def apply(self, command: Union[bytes, bytearray, memoryview]) -> bytes:
        """Commits and applies command; returns the state machine's result. ApplyError when
        the state machine raised; OutcomeUnknown when no answer came back."""
        try:
            status, index, result = self._c.propose(bytes(command))
        except Error as e:
            raise self._error(e, "apply") from None
        if status != 0:
            name, message = decode_error(result)
            raise ApplyError(name, message, None, index)
        return result

    def read_index(self) -> int:
        """A linearizable read barrier: the index the leader confirmed."""
        try:
            return self._c.read()
        except Error as e:
            raise self._error(e, "read") from None

    def status(self) -> Status:
        """The status of the server this client reaches (the first one it connects to)."""
        try:
            raw = self._c.status()
        except Error as e:
            raise self._error(e, "status") from None
        value: Any = codec.loads(raw)
        if not isinstance(value, dict) or "id" not in value:
            raise Error("the server answered a status that is not a status map", -7)
        return cast(Status, value)

    def metrics(self) -> str:
        """The metrics of the server this client reaches, as Prometheus text."""
        try:
            return self._c.metrics()
        except Error as e:
            raise self._error(e, "metrics") from None

    def _change(self, what: str, kind: int, server: int, address: Optional[str] = None,
                auto_promote: bool = False) -> int:
        if not isinstance(server, int) or isinstance(server, bool) or server < 0:
            raise TypeError(f"a server id is an int >= 0, not {server!r}")
        try:
            return self._c.change(kind, server, address, auto_promote)
        except Error as e:
            raise self._error(e, what) from None

    def add_server(self, id: int, address: str, auto_promote: bool = True) -> int:
        """Adds server id (started empty, in join mode) at address as a learner; with
        auto_promote the leader makes it a voter once it has caught up. Returns the
        configuration entry's index once applied on the leader."""
        return self._change(f"add server {id}", _craft.CLIENT_ADD, id, address, auto_promote)

    def remove_server(self, id: int) -> int:
        return self._change(f"remove server {id}", _craft.CLIENT_REMOVE, id)

    def promote(self, id: int) -> int:
        """Makes learner id a voter (Busy until it has caught up)."""
        return self._change(f"promote server {id}", _craft.CLIENT_PROMOTE, id)

    def demote(self, id: int) -> int:
        """Makes voter id a learner: it keeps its copy of the log, no longer votes."""
        return self._change(f"demote server {id}", _craft.CLIENT_DEMOTE, id)

    def transfer_leadership(self, id: int = 0) -> None:
        """Hands leadership to voter id (0: the most up-to-date voter); returns once the old
        leader stepped down, or at once when id already leads (nothing changes)."""
        self._change(f"transfer leadership to {f'server {id}' if id else 'a voter'}",
                     _craft.CLIENT_TRANSFER, id)

    def snapshot(self) -> int:
        """Has the server this client reaches take a snapshot now; returns the index it
        covers."""
        try:
            return self._c.snapshot()
        except Error as e:
            raise self._error(e, "snapshot") from None

    # ---- life cycle -------------------------------------------------------------------------

    @property
    def server(self) -> str:
        """The server the client is connected to ("" if none)."""
        return self._c.server

    def close(self) -> None:
        self._c.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

