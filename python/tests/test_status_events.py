"""The status and the events (issue 15, part 2) on real nodes: Node.status() has exactly the keys
its TypedDict (craft.NodeStatus) declares, and the same as the status a client asks over the
network; the leader's view of each follower; has_quorum; follower lag events; snapshots taken
on request and installed; demotion; events for asyncio."""

import asyncio
import typing

import pytest

import craft

from conftest import KV, Cluster, cmd, wait_until


def typed_keys(td):
    return set(typing.get_type_hints(td))


def test_status_keys_are_the_typed_dicts(cluster):
    leader = cluster.nodes[cluster.leader()]
    leader.apply(cmd("set", "a", 1))
    s = leader.status()
    assert set(s) == typed_keys(craft.NodeStatus)
    assert set(s["counters"]) == typed_keys(craft.Counters)
    for p in s["peers"]:
        assert set(p) == typed_keys(craft.PeerStatus)
    # Over the network (what `craft status` shows): the same keys, less what only the node's
    # own process knows.
    with craft.Client(leader.address) as c:
        remote = c.status()
    assert set(remote) == set(s) - {"digest", "diverged"}
    assert remote["id"] == s["id"] and remote["role"] == "leader"


def test_the_leaders_view_of_its_followers(cluster):
    lid = cluster.leader()
    leader = cluster.nodes[lid]
    for k in range(10):
        leader.apply(cmd("set", f"k{k}", k))
    wait_until(lambda: all(p["lag"] == 0 for p in leader.status()["peers"]), 5, "no lag")
    s = leader.status()
    assert s["role"] == "leader" and s["has_quorum"] and s["conf_committed"]
    assert s["voters"] == [1, 2, 3] and s["learners"] == []
    assert s["uptime_ms"] > 0 and s["fsync_count_1m"] > 0
    assert 0 < s["fsync_p50_us"] <= s["fsync_p99_us"]
    for p in s["peers"]:
        if p["id"] == lid:
            assert p["state"] == "self" and p["last_contact_ms"] == 0
            continue
        assert p["state"] == "replicate" and p["match"] == s["last_index"]
        assert p["next"] == s["last_index"] + 1 and p["inflight"] == 0
        assert 0 <= p["last_contact_ms"] < 1000 and p["connected"]
    fid = next(i for i in cluster.nodes if i != lid)
    follower = cluster.nodes[fid].status()
    assert follower["has_quorum"] and 0 <= follower["leader_contact_ms"] < 1000
    # A follower tracks no one's replication: only its own entry says something ("self").
    for p in follower["peers"]:
        assert (p["state"], p["next"]) == (("self", 0) if p["id"] == fid else ("", 0))


def test_has_quorum_is_false_without_a_majority(tmp_path):
    c = Cluster(tmp_path)
    try:
        lid = c.leader()
        for i in [i for i in c.nodes if i != lid]:
            c.stop(i)
        node = c.nodes[lid]
        wait_until(lambda: not node.status()["has_quorum"], 10, "the lone node to lose its quorum")
    finally:
        c.close()


def test_follower_lagging_and_caught_up_events(tmp_path):
    c = Cluster(tmp_path, lag_threshold=5)
    try:
        lid = c.leader()
        leader = c.nodes[lid]
        slow = next(i for i in c.nodes if i != lid)
        seen = []
        leader.on("follower_lagging", lambda f, lag, match: seen.append(("lagging", f, lag)))
        leader.on("follower_caught_up", lambda f, lag, match: seen.append(("caught_up", f, lag)))
        leader.set_faults(slow, block=True)
        wait_until(lambda: True, 0.2)
        for k in range(20):
            leader.apply(cmd("set", f"k{k}", k))
        wait_until(lambda: any(e[0] == "lagging" for e in seen), 5, "the lagging event")
        kind, who, lag = seen[0]
        assert (kind, who) == ("lagging", slow) and lag > 5
        peer = next(p for p in leader.status()["peers"] if p["id"] == slow)
        assert peer["lag"] >= 20
        leader.set_faults(slow)
        wait_until(lambda: any(e[0] == "caught_up" for e in seen), 10, "the caught-up event")
        assert [e[0] for e in seen] == ["lagging", "caught_up"]  # once per episode
        assert "craft_follower_lagging_events_total 1" in leader.metrics().splitlines()
    finally:
        c.close()


def test_snapshot_on_request_demote_and_their_events(tmp_path):
    c = Cluster(tmp_path)
    try:
        lid = c.leader()
        leader = c.nodes[lid]
        taken = []
        follower_id = next(i for i in c.nodes if i != lid)
        follower = c.nodes[follower_id]
        follower.on("snapshot_taken", taken.append)
        for k in range(5):
            leader.apply(cmd("set", f"k{k}", k))
        wait_until(lambda: follower.status()["applied"] >= leader.status()["commit"], 5,
                   "the follower applied")
        index = follower.snapshot()
        assert index >= 6 and follower.status()["snapshot_index"] == index
        assert follower.status()["snapshot_size"] > 0
        wait_until(lambda: taken == [index], 5, "the snapshot_taken event")
        assert follower.snapshot() >= index  # the same one, or a later if more was applied
        # Demote the follower: a learner still replicated, not counted.
        assert leader.demote(follower_id) > 0
        s = leader.status()
        assert s["learners"] == [follower_id] and follower_id not in s["voters"]
        with pytest.raises(craft.ConfigError, match="already a learner"):
            leader.demote(follower_id)
        with pytest.raises(craft.NotMember):
            leader.demote(99)
        leader.promote(follower_id)
        assert leader.status()["learners"] == []
    finally:
        c.close()


def test_events_for_asyncio(tmp_path):
    c = Cluster(tmp_path)
    try:
        lid = c.leader()
        leader = c.nodes[lid]

        async def main():
            stream = leader.events("membership", "snapshot_taken")
            await leader.snapshot_async()
            spare = next(i for i in range(4, 9))
            await leader.add_server_async(spare, "127.0.0.1:1", auto_promote=False)
            await leader.remove_server_async(spare)
            names = []
            async for ev in stream:
                names.append(ev.name)
                if names.count("membership") == 2:
                    break
            stream.close()
            return names
        names = asyncio.run(asyncio.wait_for(main(), 30))
        assert names[0] == "snapshot_taken" and names.count("membership") == 2
        # The iteration ends when the node is closed.

        async def until_closed():
            stream = leader.events()
            got = []
            closer = asyncio.get_running_loop().run_in_executor(None, leader.close)
            async for ev in stream:
                got.append(ev)
            await closer
            return got
        asyncio.run(asyncio.wait_for(until_closed(), 30))
        c.nodes.pop(lid)
    finally:
        c.close()


def test_unknown_event_names_are_refused(cluster):
    node = cluster.nodes[1]
    with pytest.raises(ValueError, match="follower_lagging"):
        node.on("follower_lag", print)  # type: ignore[arg-type]
