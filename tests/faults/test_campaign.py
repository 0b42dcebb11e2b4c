"""The bounded fault campaigns of `make test` (about two minutes together), see campaign.py and
docs/reliability.md. Each one runs kv servers as real processes, injects faults, and fails on any
violation: a non-linearizable history, a lost acknowledged write, replicas that applied different
sequences, a node that started on a corrupted log without a word. An inconclusive checker
verdict ("unknown" within its time budget) fails too: it is never counted as a pass."""

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import campaign  # noqa: E402
from free_ports import free_ports  # noqa: E402  (campaign put tests/ on the path)

craft = pytest.importorskip("craft")

SHORT = dict(hold=(0.8, 2.0), gap=(0.3, 0.8), recovery_timeout=30.0, check_budget=30.0,
             plot=False)


def describe(s):
    return (f"status {s['status']} (seed {s['seed']}, {s['network_mode']} network)\n"
            f"problems: {s['problems']}\nwarnings: {s['warnings']}\n"
            f"checker: {s['checker']['verdict']}: {s['checker']['explanation'][:2000]}")


def assert_passed(s):
    print(f"faults {s['faults']}; operations {s['operations']}; checker {s['checker']['keys']}")
    assert s["status"] == "pass", describe(s)
    assert s["checker"]["verdict"] == "ok", describe(s)
    assert s["checker"]["keys"]["unknown"] == 0, describe(s)
    assert not s["acknowledged_writes"]["lost"], describe(s)
    assert s["replicas"]["verified"] > 0, describe(s)
    final = set(tuple(v) for v in s["replicas"]["final"].values())
    assert len(final) == 1, describe(s)


def test_short_campaign_every_fault_kind(tmp_path):
    """Three servers, four clients, every kind of fault but disk ones (the next test) in turn:
    kill -9, SIGSTOP, isolated leader, minority split, one-way cuts, bridge, random loss,
    delay/reordering, membership changes, leadership transfers, several at once (combo), every
    server killed at once (kill-all)."""
    kinds = tuple(k for k in campaign.KINDS + campaign.EXTRA_KINDS if k != "disk")
    s = campaign.run(campaign.Config(duration=66, nodes=3, clients=4, seed=11, kinds=kinds,
                                     key_period=10, out=str(tmp_path / "report"), **SHORT))
    assert_passed(s)
    assert set(s["faults"]) == set(kinds), s["faults"]
    assert s["operations_total"] > 500, s["operations"]
    assert os.path.exists(tmp_path / "report" / "report.md")


def test_disk_faults_recover_or_refuse_and_cluster_keeps_serving():
    """A bit flipped in the middle of the newest WAL segment of a stopped server, then its tail
    cut: each time it either recovers (torn tail) or refuses to start naming the file and the
    offset (then it is removed, wiped and added back); nothing acknowledged is lost."""
    s = campaign.run(campaign.Config(duration=12, nodes=3, clients=3, seed=5, kinds=("disk",),
                                     **SHORT))
    assert_passed(s)
    modes = {d["mode"] for d in s["disk"]}
    assert {"bitflip", "truncate"} <= modes, s["disk"]
    for d in s["disk"]:
        assert d["outcome"].startswith(("recovered", "refused")), d
        if d["outcome"].startswith("refused"):
            assert d["file"] in d["message"] and "offset" in d["message"], d
            assert d.get("repair") == "removed, wiped, re-added", d


def test_fallback_without_namespaces_uses_the_transport_hook():
    """Where namespaces are not permitted, partitions and loss go through Node.set_faults; this
    forces that mode and checks that cutting the leader off really elects another one."""
    kinds = ("partition-leader", "partition-oneway", "partition-split", "loss")
    s = campaign.run(campaign.Config(duration=14, nodes=3, clients=3, seed=7, kinds=kinds,
                                     netns=False, **SHORT))
    assert_passed(s)
    assert s["network_mode"] == "hook" and "NO network namespaces" in s["network"]
    assert s["faults"].get("partition-leader"), s["faults"]


def test_node_set_faults_binding(tmp_path):
    from craft import codec

    class Sink(craft.StateMachine):
        def apply(self, command, index):
            return None

    port = free_ports(1)[0]
    addr = f"127.0.0.1:{port}"
    node = craft.Node(1, addr, str(tmp_path / "n1"), Sink(), peers={1: addr}, fsync=False,
                      segment_size=1 << 20)
    with node:
        node.wait_for_leader(10)
        node.set_faults(2, drop=0.5, delay=(5, 20))
        node.set_faults(2, block=True)
        node.set_faults(2)  # clears
        for bad in (dict(drop=1.5), dict(delay=(20, 5))):
            with pytest.raises(ValueError):
                node.set_faults(2, **bad)
        with pytest.raises(ValueError):
            node.set_faults(0)
        node.apply(codec.dumps("x"), timeout=5)
    with pytest.raises(craft.Error):
        node.set_faults(2, drop=0.1)


def _ack_check(records):
    from types import SimpleNamespace
    camp = object.__new__(campaign.Campaign)
    camp.problems, camp.t0 = [], 0.0
    camp.workload = SimpleNamespace(records=records)
    return camp.check_acknowledged()


def test_lost_write_detector():
    R = campaign.Record
    w1 = R(0, 0.0, 1.0, "write", "k", "v1", None, "ok", 1)
    w2 = R(1, 2.0, 3.0, "write", "k", "v2", None, "ok", 1)
    unknown_del = R(2, 2.5, None, "delete", "k", None, None, "unknown", 1)
    final = lambda v: R(-1, 10.0, 11.0, "read", "k", None, v, "ok", 2)  # noqa: E731
    assert not _ack_check([w1, w2, final("v2")])["lost"]
    assert _ack_check([w1, w2, final("v1")])["lost"]          # v2 came after v1: lost
    assert _ack_check([w1, w2, final(None)])["lost"]          # no delete at all
    assert not _ack_check([w1, w2, unknown_del, final(None)])["lost"]  # the delete may follow
    assert _ack_check([w1, final("v9")])["lost"]              # a value nobody wrote
    concurrent = R(3, 0.5, 2.5, "write", "k", "v3", None, "ok", 1)
    assert not _ack_check([w1, concurrent, final("v1")])["lost"]  # concurrent: either order
