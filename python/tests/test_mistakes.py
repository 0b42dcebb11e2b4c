"""First-week mistakes, made on purpose: each gets a clear error and never a crash, a hang or a
silent loss (issue 14). Real nodes on 127.0.0.1; processes where the mistake is about
processes."""

import os
import time
import subprocess
import sys
import textwrap

import pytest

import craft

from conftest import SEGMENT, KV, Cluster, cmd, free_ports, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))


def run_script(tmp_path, body, timeout=60):
    """Runs body as a Python script (with this interpreter and tests' conftest importable):
    returns (exit status, output)."""
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(body))
    env = dict(os.environ, PYTHONPATH=HERE + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run([sys.executable, str(path)], cwd=str(tmp_path), env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace")


# ---- fork after start() -------------------------------------------------------------------------

def test_a_process_forked_after_start_gets_clear_errors_and_exits_cleanly(tmp_path):
    rc, out = run_script(tmp_path, f"""
        import os, sys, time
        import craft
        from conftest import KV, cmd, free_ports

        port = free_ports(1)[0]
        peers = {{1: f"127.0.0.1:{{port}}"}}
        node = craft.Node(1, peers[1], "data", KV(), peers=peers, fsync=False,
                          segment_size={SEGMENT}, timeout=2.0)
        node.start()
        node.wait_for_leader(5)
        node.apply(cmd("set", "x", 1))
        pid = os.fork()
        if pid == 0:
            calls = {{
                "status": lambda: node.status(),
                "apply": lambda: node.apply(cmd("set", "y", 2)),
                "read": lambda: node.read(lambda f: f.data),
                "stale read": lambda: node.read(lambda f: f.data, mode="stale"),
                "leader": lambda: node.leader,
                "session": lambda: node.session(),
                "add_server": lambda: node.add_server(2, "127.0.0.1:1"),
            }}
            for name, call in calls.items():
                t0 = time.monotonic()
                try:
                    call()
                    print("child:", name, "did not raise")
                except craft.Error as e:
                    print("child:", name, type(e).__name__, "after %.1fs" % (time.monotonic() - t0), e)
            node.close()      # nothing to close here: no error
            print("child: done")
            sys.exit(0)       # atexit closes the nodes it knows: must not crash
        _, status = os.waitpid(pid, 0)
        print("child status", status)
        # The parent's node is untouched by the child.
        print("parent:", craft.codec.loads(node.apply(cmd("set", "z", 3))))
        node.close()
    """)
    assert "child status 0" in out, out
    assert "did not raise" not in out, out
    for name in ("status", "apply", "read", "stale read", "leader", "session", "add_server"):
        line = next((l for l in out.splitlines() if l.startswith(f"child: {name} ")), "")
        assert "Forked" in line and "after 0.0s" in line, out
        assert "start nodes after forking" in line, out
    assert "child: done" in out and "parent: 3" in out, out
    assert rc == 0, out


def test_a_process_forked_after_a_node_closed_exits_cleanly(tmp_path):
    # libuv's thread pool outlives the node; the child must not crash joining the parent's
    # threads at exit, and may start nodes of its own.
    rc, out = run_script(tmp_path, f"""
        import os, sys
        import craft
        from conftest import KV, cmd, free_ports

        def one_node(dir):
            port = free_ports(1)[0]
            peers = {{1: f"127.0.0.1:{{port}}"}}
            node = craft.Node(1, peers[1], dir, KV(), peers=peers, fsync=False,
                              segment_size={SEGMENT}, timeout=2.0)
            node.start()
            node.wait_for_leader(5)
            return node

        with one_node("parent"):
            pass
        pid = os.fork()
        if pid == 0:
            with one_node("child") as node:
                print("child:", craft.codec.loads(node.apply(cmd("set", "x", 7))))
            sys.exit(0)
        _, status = os.waitpid(pid, 0)
        print("child status", status)
    """)
    assert "child: 7" in out and "child status 0" in out, out
    assert rc == 0, out


# ---- a command larger than a frame ----------------------------------------------------------------

FRAME = 256 * 1024


def test_a_command_too_large_for_a_frame_is_refused_at_once(tmp_path):
    c = Cluster(tmp_path, max_frame=FRAME)
    try:
        leader = c.leader()
        follower = next(i for i in c.nodes if i != leader)
        term = c.nodes[leader].status()["term"]
        limit = craft.max_command_size(FRAME)
        assert FRAME - 256 < limit < FRAME
        for node in (c.nodes[leader], c.nodes[follower]):
            t0 = time.monotonic()
            with pytest.raises(craft.TooLarge) as info:
                node.apply(b"x" * (limit + 1))
            assert time.monotonic() - t0 < 1.0
            msg = str(info.value)
            assert str(limit + 1) in msg and str(limit) in msg and "max_frame" in msg, msg
            assert isinstance(info.value, ValueError)
        # The largest command that fits is replicated, through a follower.
        size = limit - (len(cmd("set", "b", b"y" * 70000)) - 70000)
        largest = cmd("set", "b", b"y" * size)
        assert len(largest) == limit
        c.nodes[follower].apply(largest)
        wait_until(lambda: all(len(n.read(lambda f: f.data.get("b", b""), mode="stale")) ==
                               size for n in c.nodes.values()), 10,
                   "the largest command everywhere")
        st = c.nodes[leader].status()
        assert st["role"] == "leader" and st["term"] == term  # nobody was deposed
        for n in c.nodes.values():
            assert n.status()["counters"]["bad_frames"] == 0
    finally:
        c.close()


def test_a_backlog_of_large_commands_is_sent_in_frames_a_follower_accepts(tmp_path):
    # A follower that missed many large commands gets them in AppendEntries split by bytes: a
    # batch never exceeds the frame a follower accepts (before, batches of up to 1 MiB of
    # payload went to followers whose max_frame was smaller, which refused them forever).
    c = Cluster(tmp_path, max_frame=FRAME)
    try:
        leader = c.leader()
        behind = next(i for i in c.nodes if i != leader)
        term = c.nodes[leader].status()["term"]
        c.nodes[leader].set_faults(behind, block=True)
        chunk = craft.max_command_size(FRAME) // 3
        for i in range(12):
            c.nodes[leader].apply(cmd("set", f"k{i}", "z" * (chunk - 40)))
        c.nodes[leader].set_faults(behind)
        want = c.nodes[leader].read(lambda f: dict(f.data))
        wait_until(lambda: c.nodes[behind].read(lambda f: dict(f.data), mode="stale") == want,
                   15, "the lagging follower to catch up")
        for n in c.nodes.values():
            assert n.status()["counters"]["bad_frames"] == 0
        assert c.nodes[leader].status()["term"] == term
    finally:
        c.close()


# ---- what a node cannot interpret ---------------------------------------------------------------

def test_commands_are_bytes_and_may_not_start_with_crafts_reserved_bytes(cluster):
    node = cluster.nodes[cluster.leader()]
    with pytest.raises(TypeError, match="bytes, not str"):
        node.apply("set x 1")
    with pytest.raises(ValueError, match="C1 63"):
        node.apply(b"\xc1cXY anything")
    with node.session() as s:
        with pytest.raises(ValueError, match="C1 63"):
            s.apply(b"\xc1csn")


def test_every_node_must_make_the_same_sessions_choice(tmp_path):
    # A snapshot with a session table is refused by a node without sessions (and the other way
    # round), naming the setting, instead of being read as the state machine's own bytes.
    port = free_ports(1)[0]
    peers = {1: f"127.0.0.1:{port}"}
    opts = dict(fsync=False, segment_size=SEGMENT, snapshot_entries=8, snapshot_trailing=2)
    d = str(tmp_path / "n1")
    with craft.Node(1, peers[1], d, KV(), peers=peers, **opts) as node:
        node.wait_for_leader(5)
        for i in range(20):
            node.apply(cmd("set", f"k{i}", i))
        wait_until(lambda: node.status()["snapshot_index"] > 0, 10, "a snapshot")
    with pytest.raises(craft.Error, match="sessions") as info:
        craft.Node(1, peers[1], d, KV(), peers=peers, sessions=False, **opts).start()
    assert "refuses the snapshot" in str(info.value)
    with craft.Node(1, peers[1], d, KV(), peers=peers, **opts) as node:  # the same again: fine
        node.wait_for_leader(5)
        assert node.read(lambda f: f.data["k19"]) == 19


def test_a_session_command_stops_a_node_without_sessions(tmp_path):
    c = Cluster(tmp_path)
    try:
        c.stop(3)
        stopped = []
        node3 = c.start(3, sessions=False)
        node3.on("stopped", lambda code, msg: stopped.append((code, msg)))
        c.leader()
        s = c.nodes[1].session()  # a node with sessions; its commands reach node 3 too
        s.apply(cmd("set", "x", 1))
        wait_until(lambda: stopped, 10, "the node without sessions to stop")
        assert "without sessions" in stopped[0][1], stopped
        assert node3.status()["stopped"]
        assert "x" not in node3.read(lambda f: f.data, mode="stale")  # never applied as data
    finally:
        c.close()


def test_an_entry_of_an_unknown_kind_stops_every_node_loudly(tmp_path):
    c = Cluster(tmp_path)
    try:
        leader = c.leader()
        stopped = {i: [] for i in c.nodes}
        for i, n in c.nodes.items():
            n.on("stopped", lambda code, msg, i=i: stopped[i].append(msg))
        # As a newer node (or another program) would write it: past the public apply's check.
        with pytest.raises(craft.Error):
            c.nodes[leader]._apply_raw(b"\xc1cZZ\x01\x00", 5)
        wait_until(lambda: all(stopped.values()), 10, "every node to stop")
        for msgs in stopped.values():
            assert "reserved bytes C1 63" in msgs[0] and "rather than guess" in msgs[0]
    finally:
        c.close()


# ---- the user's snapshot() and restore() raising --------------------------------------------------

class Flaky(KV):
    fail_snapshots = True
    snapshot_calls = 0
    fail_restore = False

    def snapshot(self):
        type(self).snapshot_calls += 1
        if type(self).fail_snapshots:
            raise RuntimeError("snapshot bug")
        return super().snapshot()

    def restore(self, reader):
        if type(self).fail_restore:
            raise ValueError("restore bug")
        super().restore(reader)


def test_a_failing_snapshot_is_retried_with_backoff_and_the_node_keeps_serving(tmp_path, caplog):
    port = free_ports(1)[0]
    peers = {1: f"127.0.0.1:{port}"}
    failed = []
    node = craft.Node(1, peers[1], str(tmp_path / "n1"), Flaky(), peers=peers, fsync=False,
                      segment_size=SEGMENT, snapshot_entries=5, snapshot_trailing=1)
    node.on("snapshot_failed", lambda index, msg: failed.append((index, msg)))
    try:
        node.start()
        node.wait_for_leader(5)
        for i in range(60):
            node.apply(cmd("set", f"k{i}", i))  # it keeps serving
        # One attempt, then the backoff (1 s) holds the next: not one per entry.
        assert 1 <= Flaky.snapshot_calls <= 2, Flaky.snapshot_calls
        wait_until(lambda: failed, 5, "the snapshot_failed event")
        assert "RuntimeError: snapshot bug" in failed[0][1]
        st = node.status()
        assert st["snapshot_failures"] >= 1 and "snapshot bug" in st["snapshot_error"]
        assert not st["stopped"] and st["role"] == "leader"
        # One log record per attempt: the runtime's line, with the user's traceback.
        lines = [r for r in caplog.records if "snapshot" in r.getMessage()
                 and r.levelno >= 30]
        assert len(lines) == Flaky.snapshot_calls, [r.getMessage() for r in lines]
        assert lines[0].exc_info and lines[0].exc_info[0] is RuntimeError
        assert "event=snapshot_failed" in lines[0].getMessage()
        # Fixed: the next attempt (after the backoff) succeeds and compacts the log.
        # (The core asks again when it next has something to do: a heartbeat in a cluster, a
        # write here, where the node is alone.)
        Flaky.fail_snapshots = False
        for i in range(100):
            node.apply(cmd("set", "after", i))
            if node.status()["snapshot_index"] > 0:
                break
            time.sleep(0.05)
        assert node.status()["snapshot_index"] > 0
        assert node.status()["snapshot_failures"] == 0
    finally:
        Flaky.fail_snapshots, Flaky.snapshot_calls = True, 0
        node.close()


def test_restore_raising_at_start_is_the_users_exception_not_a_disk_error(tmp_path):
    port = free_ports(1)[0]
    peers = {1: f"127.0.0.1:{port}"}
    opts = dict(fsync=False, segment_size=SEGMENT, snapshot_entries=5, snapshot_trailing=1)
    d = str(tmp_path / "n1")
    Flaky.fail_snapshots = False
    try:
        with craft.Node(1, peers[1], d, Flaky(), peers=peers, **opts) as node:
            node.wait_for_leader(5)
            for i in range(12):
                node.apply(cmd("set", f"k{i}", i))
            wait_until(lambda: node.status()["snapshot_index"] > 0, 10, "a snapshot")
        Flaky.fail_restore = True
        with pytest.raises(ValueError, match="restore bug") as info:
            craft.Node(1, peers[1], d, Flaky(), peers=peers, **opts).start()
        assert any("restore()" in n for n in getattr(info.value, "__notes__", []))
        assert "disk" not in str(info.value)
        # The traceback points into the user's restore.
        assert info.traceback[-1].name == "restore"
        # And the directory is intact: fixed, the node starts.
        Flaky.fail_restore = False
        with craft.Node(1, peers[1], d, Flaky(), peers=peers, **opts) as node:
            node.wait_for_leader(5)
            assert node.read(lambda f: f.data["k11"]) == 11
    finally:
        Flaky.fail_snapshots, Flaky.fail_restore, Flaky.snapshot_calls = True, False, 0


# ---- errors that say what went wrong ----------------------------------------------------------------

def test_port_in_use_is_its_own_error_and_start_can_be_retried(tmp_path):
    import errno
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    addr = f"127.0.0.1:{s.getsockname()[1]}"
    node = craft.Node(1, addr, str(tmp_path / "n1"), KV(), peers={1: addr}, fsync=False,
                      segment_size=SEGMENT)
    try:
        with pytest.raises(craft.AddressInUse) as info:
            node.start()
        assert isinstance(info.value, craft.ConfigError) and info.value.errno == errno.EADDRINUSE
        assert addr in str(info.value) and info.value.address == addr
        assert "disk" not in str(info.value)
        s.close()
        node.start()  # the address is free now: the same node starts
        node.wait_for_leader(5)
        assert craft.codec.loads(node.apply(cmd("set", "x", 1))) == 1
    finally:
        s.close()
        node.close()


def test_no_quorum_is_a_timeout_that_says_how_many_voters_are_reachable(tmp_path):
    c = Cluster(tmp_path)
    try:
        leader = c.leader()
        for i in [i for i in c.nodes if i != leader]:
            c.stop(i)
        node = c.nodes[leader]
        for call in (lambda: node.apply(cmd("set", "y", 2), timeout=1.5),
                     lambda: node.read(lambda f: f.data, timeout=1.5)):
            with pytest.raises(craft.NoQuorum) as info:
                call()
            assert isinstance(info.value, craft.Timeout)
            assert info.value.reachable == 1 and info.value.voters == 3
            assert "1 of the 3 voters" in str(info.value), str(info.value)
    finally:
        c.close()


@pytest.mark.parametrize("kwargs, words", [
    (dict(heartbeat_ms=-1), ["heartbeat_ms", "1", "60000"]),
    (dict(heartbeat_ms=500), ["election_timeout_ms", "twice heartbeat_ms"]),
    (dict(election_timeout_ms=10**10), ["election_timeout_ms", "3600000"]),
    (dict(snapshot_entries=-5), ["snapshot_entries", "0", "18446744073709551615"]),
    (dict(cluster_id="abc"), ["cluster_id", "0", "18446744073709551615"]),
    (dict(fsync="yes"), ["fsync", "True or False"]),
    (dict(max_frame=10), ["max_frame", "65536"]),
    (dict(timeout=0), ["timeout", "above 0"]),
    (dict(log_level="loud"), ["log_level", "debug", "error"]),
    (dict(session_options={"max_sessions": 0}), ["max_sessions", "1", "4294967295"]),
    (dict(session_options={"ttl": 5}), ["session_options", "ttl", "expire_after"]),
    (dict(digest_interval=-1), ["digest_interval", "0"]),
    (dict(heartbeats_ms=50), ["unknown option", "heartbeats_ms", "heartbeat_ms"]),
])
def test_every_config_error_names_the_option_and_the_accepted_range(tmp_path, kwargs, words):
    with pytest.raises(craft.ConfigError) as info:
        craft.Node(1, "127.0.0.1:0", str(tmp_path), KV(), peers={1: "127.0.0.1:0"}, **kwargs)
    msg = str(info.value)
    for w in words:
        assert w in msg, msg
    assert "invalid argument" not in msg and "check the value named" not in msg, msg
    assert msg.count(":") <= 3, msg  # one sentence, not a chain of prefixes


@pytest.mark.parametrize("peers, words", [
    ({1: "127.0.0.1"}, ["peers[1]", "host:port"]),
    ({1: "127.0.0.1:0", 2: "db.example.com:7002"}, ["peers[2]", "not resolved"]),
    ({1: "127.0.0.1:0", 2: "127.0.0.1:0"}, ["peers[2]", "port 0"]),
    ({1: "127.0.0.1:0", 2: "127.0.0.1:7002", 3: "127.0.0.1:7002"}, ["same address"]),
    ({2: "127.0.0.1:7002"}, ["peers must include this node (1)"]),
    ({"1": "127.0.0.1:0"}, ["peers: ids must be ints"]),
])
def test_peer_maps_are_checked(tmp_path, peers, words):
    with pytest.raises(craft.ConfigError) as info:
        craft.Node(1, "127.0.0.1:0", str(tmp_path), KV(), peers=peers)
    for w in words:
        assert w in str(info.value), str(info.value)


# ---- membership mistakes ------------------------------------------------------------------------

def test_membership_mistakes_get_their_own_errors(cluster):
    leader = cluster.leader()
    follower, other = [i for i in cluster.nodes if i != leader]
    wait_until(lambda: cluster.nodes[follower].leader is not None, 5, "the follower to know")
    # Through a follower: NotLeader naming the leader.
    with pytest.raises(craft.NotLeader) as info:
        cluster.nodes[follower].add_server(9, "127.0.0.1:1")
    assert info.value.leader_id == leader
    assert info.value.leader_address == cluster.peers[leader]
    lead = cluster.nodes[leader]
    with pytest.raises(craft.AlreadyMember) as exists:
        lead.add_server(follower, "127.0.0.1:5")
    assert f"server {follower} is already a member" in str(exists.value)
    assert cluster.peers[follower] in str(exists.value)
    for call in (lambda: lead.remove_server(42), lambda: lead.promote(42)):
        with pytest.raises(craft.NotMember) as missing:
            call()
        assert "server 42 is not a member" in str(missing.value)
    with pytest.raises(craft.ConfigError, match="already a voter"):
        lead.promote(follower)
    with pytest.raises(craft.ConfigError, match="address"):
        lead.add_server(9, "nowhere")


def test_a_removed_node_says_it_was_removed_and_a_stopped_one_does_not_lead(tmp_path):
    c = Cluster(tmp_path)
    try:
        leader = c.leader()
        gone = next(i for i in c.nodes if i != leader)
        seen = []
        c.nodes[gone].on("removed", lambda by, index: seen.append((by, index)))
        c.nodes[leader].remove_server(gone)
        wait_until(lambda: c.nodes[gone].status()["removed"], 10, "the removed node to know")
        assert seen and seen[0][1] > 0
        st = c.nodes[gone].status()
        assert st["leader"] == 0 and st["role"] != "leader"
        with pytest.raises(craft.Removed, match="removed from the cluster"):
            c.nodes[gone].apply(cmd("set", "x", 1), timeout=1)
        # The others go on.
        assert craft.codec.loads(c.nodes[leader].apply(cmd("set", "y", 2))) == 2
    finally:
        c.close()


def test_a_leader_stopped_by_a_fatal_error_does_not_say_leader(tmp_path):
    c = Cluster(tmp_path)
    try:
        leader = c.leader()
        # A craft entry of an unknown kind stops every node; the leader among them.
        with pytest.raises(craft.Error):
            c.nodes[leader]._apply_raw(b"\xc1cZZ\x01\x00", 5)
        wait_until(lambda: c.nodes[leader].status()["stopped"], 10, "the leader to stop")
        st = c.nodes[leader].status()
        assert st["role"] == "stopped" and st["leader"] == 0 and not c.nodes[leader].is_leader
        assert "reserved bytes" in st["stop_reason"]
        assert c.nodes[leader].leader is None
    finally:
        c.close()


# ---- configuration mistakes ----------------------------------------------------------------------

def test_nodes_bootstrapped_with_different_peer_maps_refuse_each_other(tmp_path):
    a, b, c3 = (f"127.0.0.1:{p}" for p in free_ports(3))
    opts = dict(fsync=False, segment_size=SEGMENT, heartbeat_ms=20, election_timeout_ms=200)
    n1 = craft.Node(1, a, str(tmp_path / "n1"), KV(), peers={1: a, 2: b}, **opts)
    n2 = craft.Node(2, b, str(tmp_path / "n2"), KV(), peers={1: a, 2: b, 3: c3}, **opts)
    try:
        n1.start()
        n2.start()
        # Before, node 2 voted for node 1 and the two formed one cluster, each believing in
        # its own configuration. Now each refuses the other's handshake.
        wait_until(lambda: n1.status()["counters"]["refused_handshakes"] > 0 and
                   n2.status()["counters"]["refused_handshakes"] > 0, 10, "both to refuse")
        time.sleep(0.5)
        assert n1.leader is None and n2.leader is None
        assert n1.status()["cluster_id"] != n2.status()["cluster_id"] != 0
    finally:
        n1.close()
        n2.close()


def test_a_restart_with_other_peers_keeps_the_stored_configuration_and_says_so(tmp_path):
    c = Cluster(tmp_path)
    try:
        leader = c.leader()
        c.nodes[leader].apply(cmd("set", "x", 1))
        back = next(i for i in c.nodes if i != leader)
        other = next(i for i in c.nodes if i not in (leader, back))
        cid = c.nodes[back].status()["cluster_id"]
        assert cid != 0 and (tmp_path / f"n{back}" / "CLUSTER").exists()
        c.stop(back)
        wrong = dict(c.peers)
        wrong[other] = "127.0.0.1:1"   # an address typo, or a map edited for a later restart
        wrong[9] = "127.0.0.1:2"
        said = []
        node = craft.Node(back, c.peers[back], str(tmp_path / f"n{back}"), KV(), peers=wrong,
                          **c.options)
        node.on("peers_differ", said.append)
        node.start()
        c.nodes[back] = node
        assert said, "no peers_differ event"
        msg = said[0]
        assert (f"server {other} is {c.peers[other]} in the configuration but 127.0.0.1:1 in "
                f"peers") in msg, msg
        assert "server 9 (127.0.0.1:2) is in peers but not in the configuration" in msg, msg
        assert "remove_server" in msg and "add_server" in msg
        # The same cluster id (kept in the data directory), the stored configuration: it rejoins.
        assert node.status()["cluster_id"] == cid
        wait_until(lambda: node.read(lambda f: f.data.get("x"), mode="stale") == 1, 10,
                   "the restarted node to catch up")
        assert craft.codec.loads(node.apply(cmd("set", "y", 2))) == 2
    finally:
        c.close()


class NoStore:
    def append(self, entries):
        pass


@pytest.mark.parametrize("make, words", [
    (lambda d: craft.Node(1, "127.0.0.1:0", d, KV, peers={1: "127.0.0.1:0"}),
     ["fsm must be an instance", "KV()"]),
    (lambda d: craft.Node(1, "127.0.0.1:0", d, object(), peers={1: "127.0.0.1:0"}),
     ["fsm has no method apply()"]),
    (lambda d: craft.Node(1, "127.0.0.1:0", None, KV(), peers={1: "127.0.0.1:0"},
                          log_store=NoStore()),
     ["log_store lacks", "load_hard_state", "MemoryLogStore"]),
    (lambda d: craft.Node(1, "127.0.0.1:0", 42, KV(), peers={1: "127.0.0.1:0"}),
     ["data_dir must be a path"]),
])
def test_the_wrong_kind_of_argument_is_named(tmp_path, make, words):
    with pytest.raises(craft.ConfigError) as info:
        make(str(tmp_path))
    for w in words:
        assert w in str(info.value), str(info.value)


def test_a_path_object_is_a_data_dir_and_early_calls_say_what_to_do(tmp_path):
    node = craft.Node(1, "127.0.0.1:0", tmp_path / "n1", KV(), peers={1: "127.0.0.1:0"},
                      fsync=False, segment_size=SEGMENT)
    for call in (lambda: node.apply(b"x"), lambda: node.status()):
        with pytest.raises(craft.Closed) as info:
            call()
        assert str(info.value) == ("the node is not started: call start() first (or use it in "
                                   "a with block)")
    with node:
        node.wait_for_leader(5)
    with pytest.raises(craft.Closed, match="closed: create a new Node"):
        node.apply(cmd("set", "x", 1))
