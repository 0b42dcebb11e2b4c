"""craft.sim for test authors (issue 16): message control, events as values, apply and restore
hooks, status with progress and configuration, non-blocking reads, campaigns, clocks, link
counters and the durable store."""

import pytest

import craft
from craft.sim import Cluster


def test_applied_after_a_restart_without_fsm_is_since_the_last_restore():
    # Regression (issue 16): without fsm= the list kept the entries applied before the crash and
    # appended the replay to them ([3, 4, 5, 3, 4, 5]).
    c = Cluster(3, seed=5)
    leader = c.wait_for_leader()
    for k in range(3):
        c.apply(b"v%d" % k)
    c.run_until(lambda c: c.converged(), 200)
    follower = next(i for i in c.nodes if i != leader)
    before = [a.index for a in c.applied(follower)]
    assert before == sorted(set(before)) and len(before) == 3
    c.crash(follower)
    c.restart(follower)
    c.run_until(lambda c: c.converged(), 300)
    after = [a.index for a in c.applied(follower)]
    assert after == before


def manual(n=3, **kw):
    """A cluster whose clocks are stopped: nothing happens until the test says so."""
    c = Cluster(n, seed=7, **kw)
    c.set_clock(None, 0)
    return c


def test_campaign_elects_the_chosen_node_and_hold_deliver_reorders():
    c = manual()
    c.hold()
    c.campaign(2)
    c.run(50)
    held = c.held()
    assert [(m["type"], m["from"], m["to"], m["pre_vote"]) for m in held] == [
        ("RequestVote", 2, 1, True), ("RequestVote", 2, 3, True)]
    assert c.deliver(to=3) == 1
    answers = c.held(types="RequestVoteResult")
    assert len(answers) == 1 and answers[0]["granted"] and answers[0]["from"] == 3
    assert c.discard(to=1) == 1
    for _ in range(20):
        if c.leader():
            break
        c.deliver()
        c.run(10)
    assert c.leader() == 2
    st = c.status(2)
    assert st["role"] == "leader" and st["voters"] == [1, 2, 3] and st["boots"] == 1
    assert set(st["progress"]) == {1, 2, 3}
    assert st["progress"][2]["state"] in ("probe", "replicate")
    assert c.link_stats(2, 1)["dropped"] >= 1 and c.link_stats(2, 3)["held"] >= 1
    with pytest.raises(craft.Error):
        c.campaign(2)  # leads already
    c.check()


def test_rules_by_type_link_and_predicate_with_counts():
    c = Cluster(3, seed=3)
    leader = c.wait_for_leader()
    f = next(i for i in c.nodes if i != leader)
    rule = c.drop(types="AppendEntries", to=f, where=lambda m: len(m["entries"]) > 0, count=1)
    before = c.link_stats(leader, f)["dropped"]
    index, _ = c.propose(b"x")
    c.run(30)
    assert c.link_stats(leader, f)["dropped"] == before + 1
    assert not rule.remove()  # used up
    c.run_until(lambda c: c.applied_index(f) >= index, 200)
    slow = c.delay(300, from_=leader, to=f)
    dup = c.duplicate(types=["AppendEntries"], from_=leader)
    index, _ = c.propose(b"y")
    c.run(100)
    assert c.applied_index(f) < index
    c.run(400)
    assert c.applied_index(f) >= index
    assert slow.remove() and dup.remove()
    assert c.stats()["messages"]["AppendEntries"]["duplicated"] > 0
    with pytest.raises(ValueError):
        c.hold(types="Appendentries")
    c.check()


def test_a_predicate_that_raises_stops_the_run_with_its_exception():
    c = Cluster(3, seed=3)
    c.wait_for_leader()

    def bad(m):
        raise KeyError("no such field")

    c.hold(where=bad)
    with pytest.raises(KeyError):
        c.tick(5)


def test_inject_a_hand_built_message():
    c = Cluster(3, seed=5, pre_vote=False, check_quorum=False)
    leader = c.wait_for_leader()
    other = next(i for i in c.nodes if i != leader)
    term = c.status(leader)["term"]
    c.inject({"type": "RequestVote", "from": other, "to": leader, "term": term + 3,
              "last_log_index": 0, "last_log_term": 0, "transfer": True})
    c.run(0)
    assert c.status(leader)["term"] == term + 3
    assert c.status(leader)["role"] != "leader"
    with pytest.raises(ValueError):
        c.inject({"type": "RequestVote", "from": 1, "to": 1, "term": 9})
    with pytest.raises(ValueError):
        c.inject({"type": "Nope", "from": 1, "to": 2})
    c.wait_for_leader()
    c.check()


def test_events_as_dicts_and_hooks_for_apply_and_restore():
    events, applies, restores = [], [], []
    c = Cluster(3, seed=2, on_event=events.append, on_apply=applies.append,
                on_restore=restores.append, snapshot_entries=4, snapshot_trailing=0)
    leader = c.wait_for_leader()
    kinds = {e["kind"] for e in events}
    assert {"send", "deliver", "role", "persist"} <= kinds
    send = next(e for e in events if e["kind"] == "send")
    assert send["message"]["type"] in ("RequestVote", "AppendEntries")
    assert send["line"].startswith("t=")
    role = next(e for e in events if e["kind"] == "role" and e["role"] == "leader")
    assert role["node"] == leader and role["term"] >= 1
    for k in range(10):
        c.apply(b"c%d" % k)
    c.run_until(lambda c: c.converged(), 200)
    cmds = [a for a in applies if a["type"] == "command" and a["node"] == leader]
    assert [a["data"] for a in cmds] == [b"c%d" % k for k in range(10)]
    assert all(a["incarnation"] == 1 for a in applies)
    assert {r["index"] for r in restores} == {0}  # every boot: an empty state machine
    f = next(i for i in c.nodes if i != leader)
    c.crash(f)
    c.restart(f)
    c.run_until(lambda c: c.converged(), 300)
    mine = [r for r in restores if r["node"] == f]
    assert mine[-1]["incarnation"] == 2 and mine[-1]["index"] > 0  # from its snapshot
    assert c.status(f)["restored_index"] == mine[-1]["index"]
    assert all(a["index"] > mine[-1]["index"] for a in applies
               if a["node"] == f and a["incarnation"] == 2)
    recent = c.recent_events()
    assert recent and all("kind" in e for e in recent)


def test_non_blocking_read():
    c = Cluster(3, seed=4)
    c.wait_for_leader()
    c.apply(b"x")
    rid = c.read_start()
    r = c.read_result(rid)
    assert r is not None and r["state"] == "pending"
    assert c.run_until(lambda c: c.read_result(rid)["state"] == "served", 100)
    assert c.read_result(rid)["index"] >= 2
    assert c.read_result(12345) is None
    follower = next(i for i in c.nodes if i != c.leader())
    with pytest.raises(craft.NotLeader):
        c.read_start(node=follower)


def test_clocks_and_options_for_the_next_boot():
    c = Cluster(3, seed=9)
    c.set_clock(3, 2)  # five times faster: times out first
    assert c.clock(3) == 2
    assert c.wait_for_leader() == 3
    with pytest.raises(ValueError):
        c.set_clock(3, 1)  # not above the jitter
    c.configure(1, election_ticks=40)
    assert c.node_config(1)["election_ticks"] == 40
    with pytest.raises(TypeError):
        c.configure(1, nonsense=1)
    with pytest.raises(ValueError):
        c.configure(1, heartbeat_ticks=50)
    c.set_clock(None, 0)
    t = c.status(3)["term"]
    c.run(5000)
    assert c.status(3)["term"] == t  # no clock, no timeouts
    c.tick(5, node=3)  # the leader's heartbeats
    c.run(20)
    c.check()


def test_durable_store_of_a_node_up_or_down():
    c = Cluster(3, seed=4, snapshot_entries=5, snapshot_trailing=1)
    leader = c.wait_for_leader()
    for k in range(8):
        c.apply(b"v%d" % k)
    c.run(100)
    f = next(i for i in c.nodes if i != leader)
    c.crash(f)
    d = c.durable(f)
    assert d["hard_state"]["term"] == c.status(leader)["term"]
    assert d["snapshot"] is not None and d["snapshot"]["voters"] == [1, 2, 3]
    assert d["entries"][-1]["index"] == d["last_index"]
    assert d["entries"][-1]["data"] == b"v7"
    assert d["first_index"] <= d["snapshot"]["index"] + 1
    with pytest.raises(ValueError):
        c.durable(9)
