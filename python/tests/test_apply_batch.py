"""Batches (issue 17, part 4): Node.apply_many / apply_many_async propose many commands with
one wait, and a state machine's own apply_batch(commands, first_index) takes runs of committed
commands at once. A batch must leave every node in the state its commands give one by one,
whatever the batch boundaries (which differ from node to node), and a command that fails inside
a batch fails alone."""

import asyncio

import pytest

import craft

from conftest import KV, Cluster, cmd, free_ports, wait_until


class BatchKV(KV):
    """KV with an apply_batch of its own: records the batches, returns failures in place."""

    def __init__(self):
        super().__init__()
        self.batches = []

    def apply_batch(self, commands, first_index):
        self.batches.append((first_index, len(commands)))
        out = []
        for k, c in enumerate(commands):
            try:
                out.append(self.apply(c, first_index + k))
            except Exception as e:
                out.append(e)
        return out


def test_apply_many_returns_each_result_in_order(cluster):
    leader = cluster.nodes[cluster.leader()]
    results = leader.apply_many([cmd("inc", "n", 1) for _ in range(200)])
    assert [craft.codec.loads(r) for r in results] == list(range(1, 201))
    assert leader.apply_many([]) == []


def test_apply_many_failures_in_place_or_raised_after_all(cluster):
    leader = cluster.nodes[cluster.leader()]
    batch = [cmd("set", "a", 1), cmd("fail", "x"), cmd("set", "b", 2)]
    got = leader.apply_many(batch, return_exceptions=True)
    assert craft.codec.loads(got[0]) == 1 and craft.codec.loads(got[2]) == 2
    assert isinstance(got[1], craft.ApplyError) and got[1].type_name == "KeyError"
    with pytest.raises(craft.ApplyError):
        leader.apply_many([cmd("set", "c", 3), cmd("fail", "y"), cmd("set", "d", 4)])
    # The others were applied all the same.
    assert leader.read(lambda kv: (kv.data.get("c"), kv.data.get("d"))) == (3, 4)


def test_apply_many_refuses_bad_input_and_a_closed_node(tmp_path):
    c = Cluster(tmp_path)
    try:
        leader = c.nodes[c.leader()]
        with pytest.raises(TypeError, match="iterable of commands"):
            leader.apply_many(b"one command")
        with pytest.raises(TypeError, match="a command is bytes"):
            leader.apply_many([b"ok", "text"])
        leader.close()
        with pytest.raises(craft.Closed):
            leader.apply_many([cmd("set", "a", 1)])
    finally:
        c.close()


def test_apply_many_async(cluster):
    leader = cluster.nodes[cluster.leader()]

    async def main():
        rs = await leader.apply_many_async([cmd("inc", "m", 2) for _ in range(100)])
        mixed = await leader.apply_many_async([cmd("fail", "z"), cmd("inc", "m", 1)],
                                              return_exceptions=True)
        return rs, mixed

    rs, mixed = asyncio.run(main())
    assert [craft.codec.loads(r) for r in rs] == list(range(2, 202, 2))
    assert isinstance(mixed[0], craft.ApplyError) and craft.codec.loads(mixed[1]) == 201


def test_a_state_machines_apply_batch_takes_runs_of_commands(tmp_path):
    c = Cluster(tmp_path, fsm=BatchKV)
    try:
        lid = c.leader()
        leader = c.nodes[lid]
        # Plain commands, session commands and a failing one, interleaved.
        s = leader.session()
        for round_ in range(5):
            leader.apply_many([cmd("inc", "n", 1) for _ in range(50)])
            assert craft.codec.loads(s.apply(cmd("inc", "s", 1))) == round_ + 1
        with pytest.raises(craft.ApplyError, match="KeyError"):
            leader.apply(cmd("fail", "k"))
        want = {"n": 250, "s": 5}
        for n in c.nodes.values():
            wait_until(lambda n=n: n.read(lambda kv: dict(kv.data), mode="stale") == want, 10,
                       "every node applied everything")
            fsm = n.fsm
            # Batches cover consecutive indexes, in order, and every command exactly once.
            covered = [i for first, k in fsm.batches for i in range(first, first + k)]
            assert covered == sorted(set(covered))
            assert sorted(covered) == sorted(fsm.applied)
        # Some batch held more than one command: the runtime hands over what is ready.
        assert max(k for _, k in leader.fsm.batches) > 1
    finally:
        c.close()


class RaisingBatch(KV):
    def apply_batch(self, commands, first_index):
        if any(craft.codec.loads(c)[0] == "boom" for c in commands):
            raise RuntimeError("the batch blew up")
        return [self.apply(c, first_index + k) for k, c in enumerate(commands)]


class ShortBatch(KV):
    def apply_batch(self, commands, first_index):
        return []  # no result at all


@pytest.mark.parametrize("fsm,why", [(RaisingBatch, "apply_batch raised RuntimeError"),
                                     (ShortBatch, "one result per command")])
def test_an_apply_batch_that_cannot_say_what_it_did_stops_the_node(tmp_path, fsm, why):
    address = f"127.0.0.1:{free_ports(1)[0]}"
    node = craft.Node(1, address, str(tmp_path / "n1"), fsm(), peers={1: address}, fsync=False,
                      heartbeat_ms=20, election_timeout_ms=200, timeout=3.0)
    node.start()
    try:
        node.wait_for_leader(10)
        if fsm is RaisingBatch:
            node.apply(cmd("set", "a", 1))
            with pytest.raises(craft.Error):
                node.apply(cmd("boom"))
        else:
            with pytest.raises(craft.Error):
                node.apply(cmd("set", "a", 1))
        wait_until(lambda: node.status()["stopped"], 10, "the node stopped")
        assert why in node.status()["stop_reason"]
    finally:
        node.close()
