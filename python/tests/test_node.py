"""Real nodes on 127.0.0.1 in this process: replication, errors, failover, snapshots, asyncio,
sessions, reads, membership."""

import asyncio
import os
import threading
import time

import pytest

import craft

from conftest import SEGMENT, KV, Cluster, cmd, free_ports, wait_until

loads = craft.codec.loads


def test_three_nodes_replicate_a_dict(cluster):
    leader = cluster.leader()
    for i, node in cluster.nodes.items():  # the leader and both followers (forwarded)
        assert loads(node.apply(cmd("set", f"k{i}", i))) == i
    want = {f"k{i}": i for i in cluster.nodes}
    for node in cluster.nodes.values():
        assert node.read(lambda fsm: dict(fsm.data)) == want
    wait_until(lambda: all(n.read(lambda f: dict(f.data), mode="stale") == want
                           for n in cluster.nodes.values()), 5, "stale reads to catch up")
    st = cluster.nodes[leader].status()
    assert st["role"] == "leader" and st["commit"] >= 4 and len(st["peers"]) == 3
    assert cluster.nodes[leader].leader == (leader, cluster.peers[leader])


def test_apply_error_reaches_the_proposer_and_counts_as_applied(cluster):
    leader = cluster.leader()
    follower = next(i for i in cluster.nodes if i != leader)
    with pytest.raises(craft.ApplyError) as on_leader:
        cluster.nodes[leader].apply(cmd("fail", "a"))
    assert on_leader.value.type_name == "KeyError"
    assert isinstance(on_leader.value.original, KeyError)  # the proposer's own state machine
    with pytest.raises(craft.ApplyError) as forwarded:
        cluster.nodes[follower].apply(cmd("fail", "b"))
    assert forwarded.value.type_name == "KeyError" and "b" in forwarded.value.message
    # Both entries count as applied everywhere; the state machine goes on.
    cluster.nodes[follower].apply(cmd("set", "after", 1))
    for n in cluster.nodes.values():
        assert n.read(lambda f: f.data) == {"after": 1}
        assert len(n.fsm.applied) == 3


def test_not_leader_names_the_leader(tmp_path):
    c = Cluster(tmp_path, forward=False)
    try:
        leader = c.leader()
        follower = next(i for i in c.nodes if i != leader)
        wait_until(lambda: c.nodes[follower].leader is not None, 5, "the follower to know")
        with pytest.raises(craft.NotLeader) as info:
            c.nodes[follower].apply(cmd("set", "x", 1))
        assert info.value.leader_id == leader
        assert info.value.leader_address == c.peers[leader]
        assert str(leader) in str(info.value)
    finally:
        c.close()


def test_timeout_without_a_quorum(tmp_path):
    c = Cluster(tmp_path, check_quorum=False)
    try:
        leader = c.leader()
        c.nodes[leader].apply(cmd("set", "x", 1))
        for i in [i for i in c.nodes if i != leader]:
            c.stop(i)
        t0 = time.monotonic()
        with pytest.raises(craft.Timeout):
            c.nodes[leader].apply(cmd("set", "y", 2), timeout=0.3)
        assert time.monotonic() - t0 < 3
    finally:
        c.close()


def test_leader_killed_new_leader_nothing_acknowledged_lost(tmp_path):
    c = Cluster(tmp_path)
    try:
        acked = {}
        old = c.leader()
        for k in range(20):
            node = c.nodes[1 + k % 3]
            node.apply(cmd("set", f"a{k}", k))
            acked[f"a{k}"] = k
        c.stop(old)
        new = c.leader()
        assert new != old
        for k in range(20):
            node = list(c.nodes.values())[k % 2]
            node.apply(cmd("set", f"b{k}", k))
            acked[f"b{k}"] = k
        c.start(old)  # back from its data directory
        wait_until(lambda: c.nodes[old].read(lambda f: dict(f.data), mode="stale") == acked, 10,
                   "the old leader to catch up")
        for n in c.nodes.values():
            assert n.read(lambda f: dict(f.data)) == acked
    finally:
        c.close()


def test_restarted_node_catches_up_by_snapshot(tmp_path):
    c = Cluster(tmp_path, snapshot_entries=16, snapshot_trailing=2)
    try:
        leader = c.leader()
        taken = threading.Event()
        c.nodes[leader].on("snapshot", lambda index, installed: installed or taken.set())
        lagging = next(i for i in c.nodes if i != leader)
        c.stop(lagging)
        for k in range(100):
            c.nodes[leader].apply(cmd("inc", "n", 1))
        assert taken.wait(10), "the leader took no snapshot"
        wait_until(lambda: c.nodes[leader].status()["first_index"] > 2, 10, "log compaction")
        installed = threading.Event()
        node = craft.Node(lagging, c.peers[lagging], str(tmp_path / f"n{lagging}"), KV(),
                          peers=c.peers, **c.options)
        node.on("snapshot", lambda index, inst: inst and installed.set())
        node.start()
        c.nodes[lagging] = node
        wait_until(lambda: node.read(lambda f: f.data.get("n"), mode="stale") == 100, 10,
                   "the lagging node to catch up")
        assert installed.is_set(), "the node caught up without installing a snapshot"
    finally:
        c.close()


def test_asyncio_many_concurrent_applies(cluster):
    leader = cluster.leader()
    follower = next(i for i in cluster.nodes if i != leader)

    async def main():
        futs = [cluster.nodes[leader if k % 2 else follower].apply_async(cmd("inc", "c", 1))
                for k in range(300)]
        results = await asyncio.wait_for(asyncio.gather(*futs), 20)
        return sorted(loads(r) for r in results)

    assert asyncio.run(main()) == list(range(1, 301))

    async def failing():
        return await cluster.nodes[leader].apply_async(cmd("fail", "z"))

    with pytest.raises(craft.ApplyError):
        asyncio.run(failing())


def test_session_applies_exactly_once_despite_retries(cluster):
    leader = cluster.leader()
    follower = next(i for i in cluster.nodes if i != leader)
    node = cluster.nodes[follower]
    with node.session() as s:
        assert loads(s.apply(cmd("inc", "n", 1))) == 1
        # A retry of the same command (the same envelope, as after a lost answer) is answered
        # from the first application's result and not applied again.
        env = craft._craft.session_command(s.client_id, 2, 1, cmd("inc", "n", 10))
        _, first = node._apply_raw(env, 5)
        _, again = cluster.nodes[leader]._apply_raw(env, 5)
        assert loads(first) == loads(again) == 11
        assert cluster.nodes[leader].read(lambda f: f.data["n"]) == 11
        # An error is a result too: the duplicate reports the same error.
        env = craft._craft.session_command(s.client_id, 3, 2, cmd("fail", "k"))
        for _ in range(2):
            with pytest.raises(craft.ApplyError):
                node._apply_raw(env, 5)
    # After unregistering, the session's commands are refused, never applied.
    with pytest.raises(craft.SessionError):
        node._apply_raw(craft._craft.session_command(s.client_id, 4, 3, cmd("inc", "n", 1)), 5)
    assert node.read(lambda f: f.data["n"]) == 11


def test_session_survives_a_leader_change(tmp_path):
    c = Cluster(tmp_path)
    try:
        old = c.leader()
        keep = next(i for i in c.nodes if i != old)
        s = c.nodes[keep].session()
        for k in range(5):
            s.apply(cmd("inc", "n", 1))
        c.stop(old)
        for k in range(5):
            s.apply(cmd("inc", "n", 1), timeout=10)
        assert c.nodes[keep].read(lambda f: f.data["n"]) == 10
    finally:
        c.close()


def test_reads(cluster):
    leader = cluster.leader()
    follower = next(i for i in cluster.nodes if i != leader)
    cluster.nodes[leader].apply(cmd("set", "x", 1))
    assert cluster.nodes[follower].read(lambda f: f.data["x"]) == 1  # barrier via the leader
    assert cluster.nodes[leader].read(lambda f: f.data["x"], mode="lease") == 1
    with pytest.raises(KeyError):
        cluster.nodes[follower].read(lambda f: f.data["missing"])
    with pytest.raises(ValueError):
        cluster.nodes[leader].read(lambda f: 1, mode="eventual")


def test_events_status_and_leader(tmp_path):
    ports = free_ports(1)
    seen = []
    node = craft.Node(1, f"127.0.0.1:{ports[0]}", str(tmp_path / "solo"), KV(),
                      peers={1: f"127.0.0.1:{ports[0]}"}, fsync=False, heartbeat_ms=20,
                      election_timeout_ms=100, segment_size=SEGMENT)
    node.on("leader", lambda leader, term: seen.append(("leader", leader, term)))
    node.on("role", lambda role, term, leader: seen.append(("role", role)))
    with pytest.raises(ValueError):
        node.on("nope", print)
    with node:
        wait_until(lambda: node.is_leader, 5, "the single node to lead")
        assert node.apply(cmd("set", "a", 1))
        wait_until(lambda: ("role", "leader") in seen, 5, "the role event")
        assert ("leader", 1, node.status()["term"]) in seen
        st = node.status()
        for key in ("id", "role", "term", "leader", "commit", "applied", "first_index",
                    "last_index", "snapshot_index", "peers", "counters", "stopped"):
            assert key in st
        wait_until(lambda: node.status()["counters"]["entries_applied"] >= 1, 5, "counters")
        assert node.leader == (1, node.address)
    assert not node.running
    with pytest.raises(craft.Closed):
        node.apply(cmd("set", "a", 2))
    node.close()  # idempotent


def test_membership_add_and_remove(tmp_path):
    c = Cluster(tmp_path)
    try:
        leader = c.leader()
        port = free_ports(1)[0]
        joiner = craft.Node(4, f"127.0.0.1:{port}", str(tmp_path / "n4"), KV(), join=True,
                            **c.options)
        joiner.start()
        c.nodes[4] = joiner
        c.nodes[leader].apply(cmd("set", "x", 1))
        c.nodes[leader].add_server(4, f"127.0.0.1:{port}", auto_promote=True)
        wait_until(lambda: joiner.read(lambda f: f.data, mode="stale") == {"x": 1}, 10,
                   "the new server to catch up")
        wait_until(lambda: any(p["id"] == 4 and p["role"] == "voter"
                               for p in c.nodes[leader].status()["peers"]), 10, "promotion")
        c.nodes[leader].remove_server(4)
        assert all(p["id"] != 4 for p in c.nodes[leader].status()["peers"])
    finally:
        c.close()


def test_transfer_leadership(cluster):
    leader = cluster.leader()
    target = next(i for i in cluster.nodes if i != leader)
    cluster.nodes[leader].apply(cmd("set", "x", 1))
    cluster.nodes[leader].transfer_leadership(target)
    wait_until(lambda: cluster.nodes[target].is_leader, 5, "the target to lead")
    # To itself: nothing to hand over, no error, and it goes on leading (not a refusal that
    # blames learners or the last voter, as it once was).
    term = cluster.nodes[target].status()["term"]
    cluster.nodes[target].transfer_leadership(target)
    assert cluster.nodes[target].is_leader and cluster.nodes[target].status()["term"] == term
    with pytest.raises(craft.ConfigError, match="server 9 is not a member: only a voter can lead"):
        cluster.nodes[target].transfer_leadership(9)


def test_config_errors(tmp_path):
    with pytest.raises(craft.ConfigError):
        craft.Node(1, "127.0.0.1:0", str(tmp_path), KV())  # neither peers nor join
    with pytest.raises(craft.ConfigError):
        craft.Node(1, "127.0.0.1:0", str(tmp_path), KV(), peers={2: "127.0.0.1:1"})
    with pytest.raises(craft.ConfigError):
        craft.Node(1, "127.0.0.1:0", None, KV(), join=True)
    with pytest.raises(craft.ConfigError):
        craft.Node(1, "127.0.0.1:0", str(tmp_path), KV(), join=True, bogus=3)
    port = free_ports(2)
    a = craft.Node(1, f"127.0.0.1:{port[0]}", str(tmp_path / "d"), KV(), join=True, fsync=False,
                   segment_size=SEGMENT)
    b = craft.Node(2, f"127.0.0.1:{port[1]}", str(tmp_path / "d"), KV(), join=True, fsync=False,
                   segment_size=SEGMENT)
    with a:
        with pytest.raises(craft.StorageError) as info:
            b.start()
        assert "lock" in str(info.value)


def test_blocking_call_from_the_loop_thread_is_refused(tmp_path):
    port = free_ports(1)[0]
    errors = []
    node = craft.Node(1, f"127.0.0.1:{port}", str(tmp_path / "s"), KV(),
                      peers={1: f"127.0.0.1:{port}"}, fsync=False, election_timeout_ms=100,
                      segment_size=SEGMENT)

    def on_leader(leader, term):
        try:
            node.apply(cmd("set", "x", 1))
        except RuntimeError as e:
            errors.append(e)

    node.on("leader", on_leader)
    with node:
        wait_until(lambda: errors, 5, "the callback")
    assert "deadlock" in str(errors[0])


def test_apply_loop_memory_does_not_grow(tmp_path):
    port = free_ports(1)[0]
    with craft.Node(1, f"127.0.0.1:{port}", str(tmp_path / "m"), KV(),
                    peers={1: f"127.0.0.1:{port}"}, fsync=False, election_timeout_ms=100,
                    snapshot_entries=2048, snapshot_trailing=64, segment_size=SEGMENT) as node:
        wait_until(lambda: node.is_leader, 5, "leadership")

        def rss():
            with open(f"/proc/{os.getpid()}/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

        payload = cmd("set", "k", "v" * 100)
        for _ in range(3000):  # warm up: allocator pools, snapshots, caches
            node.apply(payload)
        before = rss()
        for _ in range(10000):
            node.apply(payload)
        grown = rss() - before
        assert grown < 8 * 1024 * 1024, f"memory grew by {grown} bytes over 10,000 applies"
