"""One node of a Python benchmark cluster: craft or PySyncObj, started by bench/python_bench.py.

    worker.py --system craft|pysyncobj --id I --ports P1,P2,P3 --dir DIR --out OUT.json
              --mode closed --caller sync|async|many|callback --window W --warmup S --duration S
              --mode rate --rate R --duration S --drain S

Every node runs a dict state machine written in Python (command = 100 bytes: an 8-byte key and
the value); `closed`: the node that is the leader runs a closed loop of W outstanding requests
(the others only replicate) and writes OUT.json; `rate` (B3, PySyncObj's own method): every
node offers R requests in a burst at the start of each second and writes OUT.json with what
succeeded. The worker never exits by itself after writing: the orchestrator kills the cluster
(and a watchdog kills the worker if the orchestrator disappears or the deadline passes).

Runs under the project's .venv (craft) or bench/.venv-pysyncobj (pysyncobj): it imports only the
system it drives.
"""

import argparse
import json
import os
import sys
import threading
import time

perf = time.perf_counter
KEYS = 1024


def commands(size):
    """KEYS distinct commands of `size` bytes: b"k0000001" + padding; built once, shared by
    both systems, so neither pays for building bytes in the loop."""
    out = []
    for i in range(KEYS):
        key = b"k%07d" % i
        out.append(key + (b"v%d-" % i) * 40)
    return [c[:size].ljust(size, b".") for c in out]


def write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


def watchdog(deadline):
    parent = os.getppid()

    def run():
        while True:
            time.sleep(0.2)
            if os.getppid() != parent or time.monotonic() > deadline:
                os._exit(3)
    threading.Thread(target=run, daemon=True).start()


def cpu_seconds(stat_path):
    with open(stat_path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu():
    """{tid: cpu seconds} of every thread of this process."""
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            out[int(tid)] = cpu_seconds(f"/proc/self/task/{tid}/stat")
        except OSError:
            pass
    return out


def thread_split(before, after, elapsed, roles):
    """CPU (in cores) over the window, by role: main (the caller), apply (the thread where the
    state machine's apply runs: craft's state machine thread since issue 17.1, PySyncObj's tick
    thread), other (every other thread: craft's libuv loop, libuv's workers with the disk
    writes and fsyncs)."""
    split = {}
    for tid, t in after.items():
        role = roles.get(tid, "other")
        split[role] = split.get(role, 0.0) + (t - before.get(tid, 0.0)) / elapsed
    return split


def mark_start(out):
    with open(out + ".start", "w"):
        pass


def summarize(lat, elapsed, errors):
    lat.sort()
    n = len(lat)

    def q(p):
        return lat[min(n - 1, int(p * n))] * 1e6 if n else None
    return {"ops": n, "elapsed": elapsed, "ops_per_s": n / elapsed if elapsed > 0 else 0.0,
            "p50_us": q(0.50), "p90_us": q(0.90), "p99_us": q(0.99), "p999_us": q(0.999),
            "errors": errors}


# ---- craft --------------------------------------------------------------------------------------

def craft_main(a, cmds):
    import asyncio
    import craft

    class Dict(craft.StateMachine):
        def __init__(self):
            self.data = {}

        def apply(self, command, index):
            self.data[command[:8]] = command[8:]
            return None

    class Probe(Dict):
        apply_tid = 0

        def apply(self, command, index):
            Probe.apply_tid = threading.get_native_id()
            Probe.apply = Dict.apply
            if a.pin_tstate:
                # Experiment (not the default): one extra PyGILState_Ensure on craft's state
                # machine thread, never released, keeps that thread's PyThreadState alive, so the
                # runtime's per-call Ensure/Release pairs stop creating and destroying one
                # (and mmap/munmap-ing its frame stack) every time: what a persistent
                # thread state in python/src/node.c would buy.
                import ctypes
                ctypes.pythonapi.PyGILState_Ensure()
            return Dict.apply(self, command, index)

    if a.switch_interval:
        sys.setswitchinterval(a.switch_interval)
    peers = {i + 1: f"127.0.0.1:{p}" for i, p in enumerate(a.ports)}
    node = craft.Node(a.id, peers[a.id], a.dir, Probe(), peers=peers, fsync=a.fsync,
                      sessions=bool(a.sessions), timeout=30.0, log_level="warn")
    node.start()
    node.wait_for_leader(timeout=30)
    stats0 = None

    def counters():
        c = node.status().get("counters", {})
        return {k: v for k, v in c.items() if isinstance(v, (int, float))}

    if a.mode == "closed":
        while True:
            leader = node.leader
            if leader is not None:
                break
            time.sleep(0.01)
        if leader[0] != a.id:
            while True:
                time.sleep(1)
        if a.caller == "sync":
            lat = []
            errors = 0
            n = 0
            t_end_warm = perf() + a.warmup
            while perf() < t_end_warm:
                node.apply(cmds[n % KEYS])
                n += 1
            stats0 = counters()
            cpu0 = thread_cpu()
            mark_start(a.out)
            t_start = perf()
            t_stop = t_start + a.duration
            append = lat.append
            while True:
                t0 = perf()
                if t0 >= t_stop:
                    break
                try:
                    node.apply(cmds[n % KEYS])
                except craft.Error:
                    errors += 1
                n += 1
                append(perf() - t0)
            elapsed = perf() - t_start
            cpu1 = thread_cpu()
        else:
            async def run():
                nonlocal stats0, cpu0, cpu1
                lat = []
                state = {"measure": False, "stop": False, "errors": 0}

                async def caller(i):
                    n = i
                    while not state["stop"]:
                        t0 = perf()
                        try:
                            await node.apply_async(cmds[n % KEYS])
                        except craft.Error:
                            state["errors"] += 1
                        if state["measure"]:
                            lat.append(perf() - t0)
                        n += a.window
                async def many(i):
                    # apply_many_async: lists of W/2 commands, two lists in flight (so the
                    # pipeline never drains while a list's answers come back); W in flight.
                    size = max(1, a.window // 2)
                    n = i * size
                    while not state["stop"]:
                        batch = [cmds[(n + k) % KEYS] for k in range(size)]
                        t0 = perf()
                        rs = await node.apply_many_async(batch, return_exceptions=True)
                        dt = perf() - t0
                        state["errors"] += sum(1 for r in rs if isinstance(r, Exception))
                        if state["measure"]:
                            lat.extend([dt] * size)
                        n += 2 * size
                if a.caller == "many":
                    tasks = [asyncio.ensure_future(many(i)) for i in range(2)]
                else:
                    tasks = [asyncio.ensure_future(caller(i)) for i in range(a.window)]
                await asyncio.sleep(a.warmup)
                stats0 = counters()
                cpu0 = thread_cpu()
                mark_start(a.out)
                state["measure"] = True
                t_start = perf()
                await asyncio.sleep(a.duration)
                state["measure"] = False
                elapsed = perf() - t_start
                cpu1 = thread_cpu()
                state["stop"] = True
                await asyncio.gather(*tasks, return_exceptions=True)
                return lat, elapsed, state["errors"]
            cpu0 = cpu1 = None
            lat, elapsed, errors = asyncio.run(run())
        res = summarize(lat, elapsed, errors)
        res["threads"] = thread_split(cpu0, cpu1, elapsed,
                                      {os.getpid(): "main", Probe.apply_tid: "apply"})
        stats1 = counters()
        res["counters"] = {k: stats1[k] - stats0.get(k, 0) for k in stats1} if stats0 else {}
        res["leader"] = a.id
        write_json(a.out, res)
        while True:
            time.sleep(1)

    # rate (B3): every node offers a.rate requests at the start of every second
    async def offer():
        ok = [0]
        failed = [0]
        sent = 0
        late = False
        pending = set()

        def done(fut):
            pending.discard(fut)
            if fut.exception() is None:
                ok[0] += 1
            else:
                failed[0] += 1
        # start all nodes on the same wall-clock second (the orchestrator passes it)
        await asyncio.sleep(max(0.0, a.start_at - time.time()))
        t_begin = perf()
        n = a.id * 100003
        for sec in range(int(a.duration)):
            st = perf()
            for _ in range(a.rate):
                fut = node.apply_async(cmds[n % KEYS], timeout=10.0)
                fut.add_done_callback(done)
                pending.add(fut)
                n += 1
                sent += 1
                if (sent & 63) == 0:
                    await asyncio.sleep(0)  # let completions in, as PySyncObj's thread does
            delta = perf() - st
            if delta > 1.0:
                late = True
                break
            await asyncio.sleep(max(0.0, t_begin + sec + 1 - perf()))
        t_drain = perf() + a.drain
        while pending and perf() < t_drain:
            await asyncio.sleep(0.05)
        return {"sent": sent, "ok": ok[0], "failed": failed[0], "late": late,
                "success": ok[0] / sent if sent else 0.0}
    res = asyncio.run(offer())
    write_json(a.out, res)
    while True:
        time.sleep(1)


# ---- PySyncObj ----------------------------------------------------------------------------------

def pysyncobj_main(a, cmds):
    from pysyncobj import SyncObj, SyncObjConf, replicated, FAIL_REASON

    class Dict(SyncObj):
        def __init__(self, self_addr, others, conf):
            super().__init__(self_addr, others, conf)
            self.data = {}

        @replicated
        def set(self, command):
            self.data[command[:8]] = command[8:]

    addrs = [f"127.0.0.1:{p}" for p in a.ports]
    me = addrs[a.id - 1]
    others = [x for x in addrs if x != me]
    conf = SyncObjConf(appendEntriesUseBatch=a.batch,
                       journalFile=os.path.join(a.dir, "journal") if a.journal == "file" else None,
                       fullDumpFile=os.path.join(a.dir, "dump") if a.journal == "file" else None)
    obj = Dict(me, others, conf)
    while obj._getLeader() is None or not obj.isReady():
        time.sleep(0.01)

    if a.mode == "closed":
        if not obj._isLeader():
            while True:
                time.sleep(1)
        lat = []
        state = {"measure": False, "stop": False, "errors": 0, "n": 0}
        lock = threading.Lock()
        idle = threading.Event()
        outstanding = [0]
        tick_tid = [0]

        def issue():
            n = state["n"]
            state["n"] = n + 1
            t0 = perf()

            def cb(result, err):
                tick_tid[0] = threading.get_native_id()
                if err != FAIL_REASON.SUCCESS:
                    state["errors"] += 1
                if state["measure"]:
                    lat.append(perf() - t0)
                if state["stop"]:
                    with lock:
                        outstanding[0] -= 1
                        if outstanding[0] == 0:
                            idle.set()
                    return
                issue()
            obj.set(cmds[n % KEYS], callback=cb)
        with lock:
            outstanding[0] = a.window
        for _ in range(a.window):
            issue()   # callbacks run on PySyncObj's tick thread and issue the next call
        time.sleep(a.warmup)
        cpu0 = thread_cpu()
        mark_start(a.out)
        state["measure"] = True
        t_start = perf()
        time.sleep(a.duration)
        state["measure"] = False
        elapsed = perf() - t_start
        cpu1 = thread_cpu()
        state["stop"] = True
        idle.wait(5)
        res = summarize(list(lat), elapsed, state["errors"])
        res["threads"] = thread_split(cpu0, cpu1, elapsed, {os.getpid(): "main",
                                                            tick_tid[0]: "apply"})
        res["leader"] = a.id
        write_json(a.out, res)
        while True:
            time.sleep(1)

    # rate (B3): PySyncObj's benchmarks/testobj.py, for Python 3 and shorter
    counts = {"ok": 0, "failed": 0}

    def cb(result, err):
        if err == FAIL_REASON.SUCCESS:
            counts["ok"] += 1
        else:
            counts["failed"] += 1
    time.sleep(max(0.0, a.start_at - time.time()))
    sent = 0
    late = False
    t_begin = perf()
    n = a.id * 100003
    for sec in range(int(a.duration)):
        st = perf()
        for _ in range(a.rate):
            obj.set(cmds[n % KEYS], callback=cb)
            n += 1
            sent += 1
        delta = perf() - st
        if delta > 1.0:
            late = True
            break
        time.sleep(max(0.0, t_begin + sec + 1 - perf()))
    t_drain = perf() + a.drain
    while counts["ok"] + counts["failed"] < sent and perf() < t_drain:
        time.sleep(0.05)
    write_json(a.out, {"sent": sent, "ok": counts["ok"], "failed": counts["failed"],
                       "late": late, "success": counts["ok"] / sent if sent else 0.0})
    while True:
        time.sleep(1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--system", choices=["craft", "pysyncobj"], required=True)
    p.add_argument("--id", type=int, required=True)
    p.add_argument("--ports", required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--mode", choices=["closed", "rate"], default="closed")
    p.add_argument("--caller", choices=["sync", "async", "many", "callback"], default="async")
    p.add_argument("--window", type=int, default=1)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--rate", type=int, default=1000)
    p.add_argument("--drain", type=float, default=3.0)
    p.add_argument("--start-at", type=float, default=0.0)
    p.add_argument("--size", type=int, default=100)
    p.add_argument("--fsync", type=int, default=1)
    p.add_argument("--journal", choices=["mem", "file"], default="mem")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--sessions", type=int, default=1)
    p.add_argument("--pin-tstate", type=int, default=0)
    p.add_argument("--switch-interval", type=float, default=0.0)
    p.add_argument("--deadline", type=float, default=120.0)
    a = p.parse_args()
    a.ports = [int(x) for x in a.ports.split(",")]
    a.fsync = bool(a.fsync)
    a.batch = bool(a.batch)
    watchdog(time.monotonic() + a.deadline)
    cmds = commands(a.size)
    if a.system == "craft":
        craft_main(a, cmds)
    else:
        pysyncobj_main(a, cmds)


if __name__ == "__main__":
    main()
