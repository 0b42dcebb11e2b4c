"""asyncio without gaps (issue 15, part 4): every blocking call of Node and Session has an async
twin that never occupies a thread of the default executor (the event loops here have one that
fails any use), and a stream of session commands from asyncio goes on, exactly once, while the
leader of a 3-node cluster is killed with SIGKILL in the middle of it."""

import asyncio
import concurrent.futures
import importlib.util
import os
import signal
import subprocess
import sys

import pytest

import craft
from craft import codec

from conftest import Cluster, KV, cmd, free_ports, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
KV_PATH = os.path.join(ROOT, "examples", "python", "kv.py")


class NoExecutor(concurrent.futures.ThreadPoolExecutor):
    """A default executor that refuses work: an async twin that used a thread of it fails."""

    used = 0

    def submit(self, fn, /, *args, **kwargs):
        NoExecutor.used += 1
        raise AssertionError(f"the default executor was used for {fn!r}")


def run(coro, timeout=120):
    async def main():
        asyncio.get_running_loop().set_default_executor(NoExecutor())
        return await asyncio.wait_for(coro, timeout)
    NoExecutor.used = 0
    result = asyncio.run(main())
    assert NoExecutor.used == 0
    return result


def test_every_async_twin_in_one_process(tmp_path):
    async def main():
        peers = {i: f"127.0.0.1:{p}" for i, p in zip((1, 2, 3, 4), free_ports(4))}
        opts = dict(fsync=False, heartbeat_ms=20, election_timeout_ms=200, timeout=5.0,
                    segment_size=1 << 20)
        three = {i: peers[i] for i in (1, 2, 3)}
        nodes = {i: craft.Node(i, peers[i], str(tmp_path / f"n{i}"), KV(), peers=three, **opts)
                 for i in (1, 2, 3)}
        for n in nodes.values():
            await n.start_async()
        spare = craft.Node(4, peers[4], str(tmp_path / "n4"), KV(), join=True, **opts)
        await spare.start_async()
        try:
            node = nodes[1]
            lid, _ = await node.wait_for_leader_async()
            leader = nodes[lid]
            assert await node.apply_async(cmd("set", "a", 1)) == codec.dumps(1)
            assert await node.read_async(lambda fsm: fsm.data["a"]) == 1
            assert await node.read_async(lambda fsm: fsm.data["a"], mode="lease") == 1
            assert await node.read_async(lambda fsm: fsm.data.get("a"), mode="stale") in (1, None)
            async with await node.session_async() as s:
                assert await s.apply_async(cmd("inc", "n", 1)) == codec.dumps(1)
                assert await s.apply_async(cmd("inc", "n", 1)) == codec.dumps(2)
            with pytest.raises(craft.ApplyError):
                await node.apply_async(cmd("fail", "x"))
            # Membership and transfer.
            index = await leader.add_server_async(4, peers[4], auto_promote=False)
            assert index > 0
            for _ in range(100):
                try:
                    await leader.promote_async(4)
                    break
                except craft.Busy:  # not caught up yet
                    await asyncio.sleep(0.05)
            assert leader.status()["voters"] == [1, 2, 3, 4]
            await leader.demote_async(4)
            assert leader.status()["learners"] == [4]
            with pytest.raises(craft.AlreadyMember):
                await leader.add_server_async(4, peers[4])
            await leader.remove_server_async(4)
            with pytest.raises(craft.NotMember):
                await leader.remove_server_async(4)
            target = next(i for i in nodes if i != lid)
            await leader.transfer_leadership_async(target)
            new, _ = await nodes[target].wait_for_leader_async()
            assert new == target
            assert await nodes[target].snapshot_async() > 0
            # A follower's membership call names the leader.
            with pytest.raises(craft.NotLeader):
                await leader.add_server_async(4, peers[4])
        finally:
            for n in (*nodes.values(), spare):
                await n.close_async()
    run(main())


def test_a_cancelled_apply_retried_through_its_session_is_applied_once(tmp_path):
    c = Cluster(tmp_path)
    try:
        leader = c.nodes[c.leader()]

        async def main():
            s = await leader.session_async()
            command = cmd("inc", "n", 1)
            for round in range(20):
                task = asyncio.ensure_future(s.apply_async(command))
                await asyncio.sleep(0.001 * (round % 4))  # cancelled at various points
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    # Unfinished: the same bytes again are its retry, never a second increment.
                    await s.apply_async(command)
            return await leader.read_async(lambda fsm: fsm.data["n"])
        assert run(main()) == 20
    finally:
        c.close()


def load_kv_module():
    spec = importlib.util.spec_from_file_location("kv_example", KV_PATH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_a_stream_survives_its_leader_killed(tmp_path):
    """Servers 1 and 2 are kv.py processes; server 3, in this process, is the asyncio user's
    node. Four workers send 200 distinct increments through one session; a third of the way in,
    the leader (a process, never this one) is killed with SIGKILL. Every increment is applied
    exactly once: the counter ends at 200."""
    kv = load_kv_module()
    ports = free_ports(5)
    peers = {i: f"127.0.0.1:{ports[i - 1]}" for i in (1, 2, 3)}
    peer_arg = ",".join(f"{i}={a}" for i, a in peers.items())
    procs = {}
    for i in (1, 2):
        log = open(tmp_path / f"kv{i}.log", "w")
        procs[i] = subprocess.Popen(
            [sys.executable, KV_PATH, "serve", str(i), "--peers", peer_arg, "--data",
             str(tmp_path), "--client-base", str(ports[3 + i - 1] - i), "--plaintext",
             "--wait-leader", "0"], stdout=log, stderr=subprocess.STDOUT)
        log.close()
    node = craft.Node(3, peers[3], str(tmp_path / "kv3"), kv.KV(), peers=peers, timeout=5.0,
                      segment_size=1 << 20)
    total, workers = 200, 4

    async def main():
        await node.start_async()
        leaders = node.events("leader")
        lid, _ = await node.wait_for_leader_async(timeout=30)
        if lid == 3:
            await node.transfer_leadership_async(1)
            lid, _ = await node.wait_for_leader_async()
            while lid == 3:
                await asyncio.sleep(0.05)
                lid, _ = await node.wait_for_leader_async()
        session = await node.session_async(timeout=30)
        done = 0
        killed = asyncio.Event()

        async def worker(w):
            nonlocal done
            for k in range(total // workers):
                command = codec.dumps(["incr", "c", f"{w}-{k}"])
                while True:
                    try:
                        await session.apply_async(command)
                        break
                    except (craft.Timeout, craft.NoConnection, craft.NotLeader, craft.Busy):
                        await asyncio.sleep(0.05)  # the same bytes: its retry
                done += 1
                if done == total // 3 and not killed.is_set():
                    killed.set()
                    victim, _ = node.leader or (lid, "")
                    assert victim != 3
                    procs.pop(victim).send_signal(signal.SIGKILL)

        await asyncio.gather(*(worker(w) for w in range(workers)))
        assert killed.is_set()
        value = await node.read_async(lambda fsm: fsm.data.get("c"))
        # A leader change was seen on the way.
        seen = []
        while not leaders._queue.empty():
            seen.append((await leaders.__anext__()).args[0])
        leaders.close()
        await session.close_async()
        return value, seen, lid

    try:
        value, seen, first = run(main(), timeout=240)
        assert value == str(total)
        assert any(s is not None and s != first for s in seen), seen
    finally:
        node.close()
        for p in procs.values():
            p.send_signal(signal.SIGKILL)
            p.wait(30)
