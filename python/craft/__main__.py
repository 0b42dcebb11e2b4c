"""craft: the command line of a craft cluster (installed by pip; also `python -m craft`).

It talks to live nodes over the network, through the client protocol of the Raft port (with
the cluster's TLS or secret), and never reads their files; only `craft dump` reads a data
directory, offline. docs/operations.md is the operator's guide; `craft COMMAND --help` the
reference.

    craft status ADDR...              one line per node, then the leader's view of each follower
    craft add ID ADDRESS -s SERVERS   add a server (started empty with join) as a learner
    craft remove ID -s SERVERS        remove a server from the configuration
    craft promote ID -s SERVERS       learner -> voter (once caught up)
    craft demote ID -s SERVERS        voter -> learner
    craft transfer [ID] -s SERVERS    hand leadership to ID (none: the most up-to-date voter);
                                      when ID already leads, it says so and exits 0
    craft snapshot ADDR               that node takes a snapshot now
    craft metrics ADDR                that node's metrics (Prometheus text)
    craft dump DATA_DIR               what a data directory holds (offline; --decode msgpack)

Exit status, for scripts:
    0  done (status: every node answered, and a leader with a quorum is known)
    1  refused: the cluster said no, and nothing changed (the message says why)
    2  usage: bad arguments or options, unreadable security files
    3  unreachable: no node answered (status: at least one did not); nothing was sent
    4  unknown outcome: sent, and no answer came back in time; check with `craft status`
    5  no leader: none found in time (nothing was changed); status: no leader with a quorum
`craft dump` keeps craft-dump's: 0 all checks passed, 1 corrupt, 2 usage or I/O error.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from . import codec, tools
from ._errors import (AlreadyMember, Busy, ConfigError, Error, NotLeader, NotMember, Timeout)
from .client import Client, OutcomeUnknown
from .security import TLS, Secret, Security

OK, REFUSED, USAGE, UNREACHABLE, UNKNOWN, NO_LEADER = 0, 1, 2, 3, 4, 5

ADMIN_HELP = "SERVERS: any members, host:port, comma-separated (or $CRAFT_SERVERS)"


class Usage(Exception):
    """A mistake in the command line (exit status 2)."""


def _say(*parts: Any) -> None:
    print(*parts, file=sys.stderr)


# ---- options shared by the network commands ----------------------------------------------------

def _add_net_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("connection (as the cluster is configured, docs/security.md)")
    g.add_argument("--secret-file", metavar="FILE",
                   default=os.environ.get("CRAFT_SECRET_FILE"),
                   help="the cluster secret (or $CRAFT_SECRET_FILE)")
    g.add_argument("--tls-cert", metavar="PEM", help="mutual TLS: a client certificate ...")
    g.add_argument("--tls-key", metavar="PEM", help="... its private key ...")
    g.add_argument("--tls-ca", metavar="PEM", help="... and the cluster's CA certificate(s)")
    g.add_argument("--tls-no-verify-id", action="store_true",
                   help="do not require a server's certificate to name its server id")
    g.add_argument("--cluster-id", type=int, default=0,
                   help="the cluster id, when the cluster was given one (0: accept any)")
    g.add_argument("--timeout", type=float, default=10.0,
                   help="seconds to wait for an answer (default 10)")


def _security(a: argparse.Namespace) -> Security:
    tls = [a.tls_cert, a.tls_key, a.tls_ca]
    if any(x is not None for x in tls):
        if not all(x is not None for x in tls):
            raise Usage("TLS needs --tls-cert, --tls-key and --tls-ca together")
        if a.secret_file:
            raise Usage("give either --secret-file or --tls-*, not both")
        for path in tls:
            if not os.access(path, os.R_OK):
                raise Usage(f"cannot read {path}")
        return TLS(cert=a.tls_cert, key=a.tls_key, ca=a.tls_ca,
                   verify_id=not a.tls_no_verify_id)
    if a.secret_file:
        if not os.access(a.secret_file, os.R_OK):
            raise Usage(f"cannot read the secret file {a.secret_file}")
        return Secret(file=a.secret_file)
    return None


def _client(a: argparse.Namespace, servers: Sequence[str]) -> Client:
    if a.timeout <= 0:
        raise Usage("--timeout must be > 0")
    try:
        return Client(list(servers), cluster_id=a.cluster_id, timeout=a.timeout,
                      security=_security(a))
    except ConfigError as e:
        raise Usage(str(e)) from None


def _servers(a: argparse.Namespace) -> List[str]:
    raw = a.servers or ([os.environ["CRAFT_SERVERS"]] if os.environ.get("CRAFT_SERVERS") else [])
    out = [s.strip() for item in raw for s in item.split(",") if s.strip()]
    if not out:
        raise Usage("which cluster? give -s HOST:PORT[,HOST:PORT...] (or set $CRAFT_SERVERS)")
    for s in out:
        _check_address(s)
    return out


def _check_address(s: str) -> None:
    host, sep, port = s.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise Usage(f"{s!r} is not an address HOST:PORT")


def _failure(e: Error) -> int:
    """The exit status and message for a failed request."""
    if isinstance(e, OutcomeUnknown):
        _say(f"craft: unknown outcome: {e}")
        return UNKNOWN
    if isinstance(e, NotLeader):
        _say(f"craft: no leader: {e}")
        return NO_LEADER
    if isinstance(e, Timeout) or e.code in (-18, -6):
        _say(f"craft: unreachable: {e}")
        return UNREACHABLE
    _say(f"craft: refused: {e}")
    return REFUSED


# ---- status ----------------------------------------------------------------------------------

def _ask_status(a: argparse.Namespace, address: str) -> Dict[str, Any]:
    """{"address", "status"} or {"address", "error", "exit"} for one node."""
    try:
        with _client(a, [address]) as c:
            return {"address": address, "status": c.status()}
    except Usage:
        raise
    except Error as e:
        why = str(e)
        return {"address": address, "error": why,
                "exit": UNKNOWN if isinstance(e, OutcomeUnknown) else UNREACHABLE}


def _ago(ms: int) -> str:
    if ms < 0:
        return "never"
    if ms < 10000:
        return f"{ms}ms"
    if ms < 600000:
        return f"{ms // 1000}s"
    return f"{ms // 60000}m"


def _ids(xs: Sequence[int]) -> str:
    return ",".join(str(x) for x in xs) or "-"


def _table(rows: List[List[str]]) -> str:
    widths = [max(len(r[k]) for r in rows if k < len(r)) for k in range(max(map(len, rows)))]
    return "\n".join("  ".join(c.ljust(widths[k]) for k, c in enumerate(r)).rstrip()
                     for r in rows)


def _snapshot_of_cluster(a: argparse.Namespace, addresses: Sequence[str]) -> Dict[str, Any]:
    nodes = [_ask_status(a, addr) for addr in addresses]
    # The leader's view: from the node that says it leads with the highest term, asked
    # separately when none of the addresses given is the leader.
    leaders = [n for n in nodes if "status" in n and n["status"]["role"] == "leader"]
    leader = max(leaders, key=lambda n: n["status"]["term"]) if leaders else None
    fetched_from = None
    if leader is None:
        hints = sorted({(n["status"]["term"], n["status"]["leader_address"]) for n in nodes
                        if "status" in n and n["status"]["leader_address"]}, reverse=True)
        for _term, where in hints:
            extra = _ask_status(a, where)
            if "status" in extra and extra["status"]["role"] == "leader":
                leader, fetched_from = extra, where
                break
    out: Dict[str, Any] = {"nodes": nodes, "leader": None}
    if leader is not None:
        s = leader["status"]
        out["leader"] = {"id": s["id"], "address": s["address"], "term": s["term"],
                         "has_quorum": s["has_quorum"], "fetched": fetched_from is not None,
                         "followers": [p for p in s["peers"] if p["id"] != s["id"]]}
    return out


def _status_exit(snap: Dict[str, Any]) -> int:
    if all("error" in n for n in snap["nodes"]):
        return UNREACHABLE
    if any("error" in n for n in snap["nodes"]):
        return UNREACHABLE
    lead = snap["leader"]
    if lead is None or not lead["has_quorum"]:
        return NO_LEADER
    return OK


def _print_status(snap: Dict[str, Any]) -> None:
    rows = [["ID", "ADDRESS", "ROLE", "TERM", "LEADER", "COMMIT", "APPLIED", "LAST", "SNAPSHOT",
             "QUORUM", "VOTERS", "LEARNERS"]]
    notes = []
    for n in snap["nodes"]:
        if "error" in n:
            rows.append(["-", n["address"], "unreachable"])
            notes.append(f"{n['address']}: {n['error']}")
            continue
        s = n["status"]
        rows.append([str(s["id"]), s["address"], s["role"] + (" (removed)" if s["removed"] else ""),
                     str(s["term"]), str(s["leader"] or "-"), str(s["commit"]),
                     str(s["applied"]), str(s["last_index"]), str(s["snapshot_index"]),
                     "yes" if s["has_quorum"] else "NO", _ids(s["voters"]), _ids(s["learners"])])
        if s["stopped"]:
            notes.append(f"node {s['id']} stopped: {s['stop_reason']}")
        if s["snapshot_failures"]:
            notes.append(f"node {s['id']}: {s['snapshot_failures']} snapshot(s) failed in a "
                         f"row: {s['snapshot_error']}")
        if not s["conf_committed"]:
            notes.append(f"node {s['id']}: a membership change is in progress (configuration "
                         f"entry {s['conf_index']} not committed yet)")
    print(_table(rows))
    lead = snap["leader"]
    if lead is None:
        print("\nno leader known: an election is under way, or a majority of the voters is down")
    else:
        where = f", asked at {lead['address']}" if lead["fetched"] else ""
        print(f"\nfollowers of leader {lead['id']} (term {lead['term']}{where}):")
        frows = [["ID", "ADDRESS", "ROLE", "MATCH", "NEXT", "LAG", "INFLIGHT", "LAST CONTACT",
                  "STATE", "CONNECTED"]]
        for p in lead["followers"]:
            frows.append([str(p["id"]), p["address"], p["role"], str(p["match"]),
                          str(p["next"]), str(p["lag"]), str(p["inflight"]),
                          _ago(p["last_contact_ms"]), p["state"] or "-",
                          "yes" if p["connected"] else "NO"])
        print(_table(frows) if len(frows) > 1 else "(none: a cluster of one)")
    for note in notes:
        print(note)


def cmd_status(a: argparse.Namespace) -> int:
    for addr in a.addresses:
        _check_address(addr)
    _security(a)  # usage errors first, before any network wait
    rounds = 0
    code = OK
    try:
        while True:
            snap = _snapshot_of_cluster(a, a.addresses)
            code = _status_exit(snap)
            if a.json:
                print(json.dumps(snap, sort_keys=True))
            else:
                if a.watch is not None and sys.stdout.isatty():
                    print("\x1b[H\x1b[2J", end="")
                elif rounds > 0:
                    print()
                if a.watch is not None:
                    print(time.strftime("%Y-%m-%d %H:%M:%S"))
                _print_status(snap)
            sys.stdout.flush()
            rounds += 1
            if a.watch is None or (a.count is not None and rounds >= a.count):
                return code
            time.sleep(a.watch)
    except KeyboardInterrupt:
        return code


# ---- changes -----------------------------------------------------------------------------------

def _id(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a server id is a positive integer, not {text!r}")
    if v <= 0:
        raise argparse.ArgumentTypeError(f"a server id is a positive integer, not {text!r}")
    return v


def _members(c: Client, command: str = "", target: int = 0) -> str:
    """Why a change was refused, when the configuration says, and the configuration as the
    server the client talks to sees it ("" if it cannot say)."""
    try:
        s = c.status()
    except Error:
        return ""
    peers = {p["id"]: p for p in s["peers"]}
    p = peers.get(target)
    why = ""
    if command == "demote" and p is not None and p["role"] == "learner":
        why = f"server {target} is already a learner. "
    elif command in ("demote", "remove") and p is not None and s["voters"] == [target]:
        why = f"server {target} is the last voter: a cluster without voters could never elect " \
              f"a leader again. "
    elif command == "promote" and p is not None and p["role"] == "voter":
        why = f"server {target} is already a voter. "
    elif command == "transfer" and target and (p is None or p["role"] != "voter"):
        why = f"server {target} is not a voter: only a voter can lead. "
    listing = ", ".join(f"{q['id']} ({q['role']} at {q['address']})" for q in s["peers"])
    return f"{why}members (as server {s['id']} sees them): {listing}"


def _change(a: argparse.Namespace, what: str, fn: Callable[[Client], Any],
            retry_busy: bool = False) -> int:
    servers = _servers(a)
    deadline = time.monotonic() + a.timeout
    with _client(a, servers) as c:
        while True:
            try:
                result = fn(c)
                break
            except Busy as e:
                # A learner not caught up yet (promote) or another change in flight: both
                # pass; try again until the deadline.
                if not retry_busy or time.monotonic() + 0.1 >= deadline:
                    code = _failure(e)
                    _say(_members(c, a.command, a.id))
                    return code
                time.sleep(0.1)
            except (AlreadyMember, NotMember, ConfigError) as e:
                _say(f"craft: refused: {e}; nothing was changed")
                _say(_members(c, a.command, a.id))
                return REFUSED
            except Error as e:
                return _failure(e)
    if a.json:
        print(json.dumps({"done": what, "index": result if isinstance(result, int) else None}))
    else:
        print(what + (f" (configuration entry {result})" if isinstance(result, int) else ""))
    return OK


def cmd_add(a: argparse.Namespace) -> int:
    _check_address(a.address)
    how = "a learner" + ("; the leader promotes it once it has caught up" if a.auto_promote
                         else "; promote it with `craft promote` once it has caught up")
    return _change(a, f"added server {a.id} at {a.address} as {how}",
                   lambda c: c.add_server(a.id, a.address, a.auto_promote))


def cmd_remove(a: argparse.Namespace) -> int:
    return _change(a, f"removed server {a.id}", lambda c: c.remove_server(a.id))


def cmd_promote(a: argparse.Namespace) -> int:
    return _change(a, f"promoted server {a.id} to voter", lambda c: c.promote(a.id),
                   retry_busy=True)


def cmd_demote(a: argparse.Namespace) -> int:
    return _change(a, f"demoted server {a.id} to learner", lambda c: c.demote(a.id),
                   retry_busy=True)


def cmd_transfer(a: argparse.Namespace) -> int:
    if a.id:
        with _client(a, _servers(a)) as c:
            try:
                leader = c.status()["leader"]
            except Error:
                leader = 0  # let the transfer itself say what is wrong
        if leader == a.id:
            what = f"server {a.id} already leads; nothing was changed"
            print(json.dumps({"done": what, "index": None}) if a.json else what)
            return OK
    target = f"server {a.id}" if a.id else "the most up-to-date voter"
    return _change(a, f"leadership handed to {target}",
                   lambda c: c.transfer_leadership(a.id or 0), retry_busy=True)


def cmd_snapshot(a: argparse.Namespace) -> int:
    _check_address(a.address)
    with _client(a, [a.address]) as c:
        try:
            index = c.snapshot()
        except Error as e:
            return _failure(e)
    if a.json:
        print(json.dumps({"done": "snapshot", "index": index}))
    else:
        print(f"snapshot taken at {a.address}: it covers the log up to index {index}")
    return OK


def cmd_metrics(a: argparse.Namespace) -> int:
    _check_address(a.address)
    with _client(a, [a.address]) as c:
        try:
            text = c.metrics()
        except Error as e:
            return _failure(e)
    sys.stdout.write(text)
    return OK


# ---- dump (offline) --------------------------------------------------------------------------------

def _decoder(name: str) -> Callable[[bytes], str]:
    """The user's decoder of a command's bytes."""
    if name == "hex":
        return lambda b: b.hex()
    if name == "text":
        return lambda b: repr(b.decode("utf-8", "backslashreplace"))
    if name == "json":
        return lambda b: json.dumps(json.loads(b.decode("utf-8")), sort_keys=True)
    if name == "msgpack":
        return lambda b: json.dumps(codec.loads(b), default=_json_default, sort_keys=True)
    module, sep, attr = name.partition(":")
    if not sep:
        raise Usage(f"--decode: msgpack, json, text, hex or MODULE:FUNCTION, not {name!r}")
    import importlib
    sys.path.insert(0, os.getcwd())
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise Usage(f"--decode {name}: {e}") from None
    return lambda b: str(fn(b))


def _craft_entry(b: bytes, user: Callable[[bytes], str]) -> str:
    """A command entry: craft's own envelopes (docs/protocol.md, docs/sessions.md) decoded,
    the user's command inside a session envelope given to the user's decoder."""
    if b[:4] == b"\xc1csn" and len(b) >= 6:
        kind = b[5]
        if kind == 0:
            return f"{user(b[6:])}"
        if kind == 1 and len(b) == 6:
            return "session register"
        if kind == 2 and len(b) >= 30:
            client, seq, ack = (int.from_bytes(b[k:k + 8], "little") for k in (6, 14, 22))
            return f"session client={client} seq={seq} ack={ack}: {user(b[30:])}"
        if kind == 3 and len(b) == 14:
            return f"session unregister client={int.from_bytes(b[6:14], 'little')}"
        return f"<malformed session envelope> 0x{b.hex()}"
    if b[:4] == b"\xc1cdg" and len(b) >= 6:
        if b[5] == 1 and len(b) == 6:
            return "state digest mark"
        if b[5] == 2 and len(b) == 46:
            return f"state digest of index {int.from_bytes(b[6:14], 'little')}: {b[14:].hex()}"
        return f"<malformed state digest> 0x{b.hex()}"
    return user(b)


def _json_default(o: Any) -> Any:
    if isinstance(o, (bytes, bytearray)):
        try:
            return o.decode("utf-8")
        except UnicodeDecodeError:
            return "0x" + o.hex()
    return repr(o)


def cmd_dump(a: argparse.Namespace) -> int:
    decode = _decoder(a.decode) if a.decode else None
    try:
        exe = tools.tool_path("craft-dump")
    except FileNotFoundError as e:
        _say(f"craft: {e}")
        return USAGE
    args = [exe] + (["--entries"] if a.entries or decode else []) + [a.data_dir]
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sys.stderr.write(p.stderr)
    for line in p.stdout.splitlines():
        if decode is not None and line.startswith("entry "):
            _, index, term, kind, size, *rest = line.split(" ")
            data = bytes.fromhex(rest[0]) if rest and kind != "config" else b""
            if kind == "command":
                try:
                    shown = _craft_entry(data, decode)
                except Exception as e:  # a user's decoder, or bytes that are not its format
                    shown = f"<not decoded: {type(e).__name__}: {e}> 0x{data.hex()}"
            elif kind == "config":
                shown = " ".join(rest[1:])  # craft-dump decodes configurations itself
            else:
                shown = ""
            print(f"entry {index} term={term} {kind}: {shown}".rstrip(": "))
        else:
            print(line)
    return p.returncode


# ---- the parser --------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="craft", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="The command line of a craft cluster: ask live nodes over the network "
                    "(the client protocol of their Raft port), change the membership, take "
                    "snapshots; read a data directory offline.",
        epilog="exit status: 0 done, 1 refused (nothing changed), 2 usage, 3 unreachable, "
               "4 unknown outcome (check with craft status), 5 no leader. docs/operations.md "
               "is the guide.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser("status", help="each node's state, and the leader's view of followers",
                       description="One line per node (id, role, term, leader, commit, "
                                   "applied, last log index, snapshot index, quorum, voters, "
                                   "learners), then the leader's view of each follower (match, "
                                   "next, lag, in-flight, last contact, replication state).")
    s.add_argument("addresses", nargs="+", metavar="ADDR", help="nodes to ask, host:port")
    s.add_argument("--json", action="store_true", help="one JSON object per refresh")
    s.add_argument("--watch", type=float, metavar="SECONDS", nargs="?", const=2.0,
                   help="refresh every SECONDS (default 2) until interrupted")
    s.add_argument("--count", type=int, help="with --watch: stop after this many refreshes")
    _add_net_options(s)
    s.set_defaults(fn=cmd_status)

    def admin(name: str, help_: str, fn: Callable[[argparse.Namespace], int],
              optional_id: bool = False) -> argparse.ArgumentParser:
        q = sub.add_parser(name, help=help_, description=help_ + ". Sent to the leader "
                           "(found through any server given); waits until the change is "
                           "applied there.", epilog=ADMIN_HELP)
        if optional_id:
            q.add_argument("id", type=_id, nargs="?", default=0, help="server id")
        else:
            q.add_argument("id", type=_id, help="server id")
        q.add_argument("-s", "--servers", action="append", metavar="SERVERS",
                       help="members to contact, host:port[,host:port...]")
        q.add_argument("--json", action="store_true", help="print the result as JSON")
        _add_net_options(q)
        q.set_defaults(fn=fn)
        return q

    q = admin("add", "add a server as a learner (it must run, started empty in join mode)",
              cmd_add)
    q.add_argument("address", help="its Raft address, host:port")
    q.add_argument("--no-auto-promote", dest="auto_promote", action="store_false",
                   help="keep it a learner until `craft promote`")
    admin("remove", "remove a server from the configuration", cmd_remove)
    admin("promote", "make a learner a voter (waits until it has caught up)", cmd_promote)
    admin("demote", "make a voter a learner (it keeps its log, stops voting)", cmd_demote)
    admin("transfer", "hand leadership to a voter (none: the most up-to-date one)",
          cmd_transfer, optional_id=True)

    for name, fn, help_ in (("snapshot", cmd_snapshot, "have a node take a snapshot now"),
                            ("metrics", cmd_metrics, "a node's metrics, Prometheus text")):
        q = sub.add_parser(name, help=help_, description=help_ + " (that node only).")
        q.add_argument("address", metavar="ADDR", help="the node, host:port")
        if name == "snapshot":
            q.add_argument("--json", action="store_true", help="print the result as JSON")
        _add_net_options(q)
        q.set_defaults(fn=fn)

    d = sub.add_parser("dump", help="what a data directory holds (offline, read-only)",
                       description="The hard state, every log segment and snapshot, every "
                                   "CRC checked (craft-dump); with --entries or --decode, "
                                   "every entry. Reads only, takes no lock: run it on a copy "
                                   "or a stopped node's directory.",
                       epilog="exit status: 0 all checks passed, 1 corrupt, 2 usage or I/O")
    d.add_argument("data_dir", metavar="DATA_DIR")
    d.add_argument("--entries", action="store_true", help="list every entry (hex)")
    d.add_argument("--decode", metavar="FORMAT",
                   help="decode commands: msgpack, json, text, hex, or MODULE:FUNCTION (a "
                        "function of your own, bytes -> str)")
    d.set_defaults(fn=cmd_dump)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    parser = _parser()
    try:
        a = parser.parse_args(argv)
    except SystemExit as e:  # argparse: usage errors exit 2, --help 0
        return int(e.code) if isinstance(e.code, int) else USAGE
    if a.command is None:
        parser.print_help(sys.stderr)
        return USAGE
    try:
        code: int = a.fn(a)
        return code
    except Usage as e:
        _say(f"craft {a.command}: {e}")
        return USAGE
    except BrokenPipeError:
        return OK  # `craft status | head`


if __name__ == "__main__":
    sys.exit(main())
