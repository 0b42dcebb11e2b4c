#!/usr/bin/env python3
"""B1/B2/B3/B6 for Python: craft (state machine in Python) against PySyncObj, in the same run.

    .venv/bin/python bench/python_bench.py            # the full run (~12-15 minutes)
    .venv/bin/python bench/python_bench.py --quick    # ~1-2 minutes, 1 repetition, no B3

Every point is 3 processes on 127.0.0.1 (bench/python/worker.py, one node each), 100-byte
commands, a dict state machine written in Python, the client inside the leader's process:

  craft durable   data directory on --durable-dir (default /var/tmp), fsync on (fdatasync before
                  acknowledging, as in production)
  craft nosync    data directory on /dev/shm, fsync=False
  PySyncObj file  journalFile= (an mmap flushed only at exit: it never fsyncs), on --durable-dir
  PySyncObj mem   the default memory journal
  PySyncObj is run with appendEntriesUseBatch on and off; the better of the two is its figure.

Callers (closed loop: each caller issues its next request when the previous one completes):
  craft   window 1: one thread calling the blocking Node.apply; windows 1 and 64 (and more with
          --windows): asyncio tasks awaiting Node.apply_async; and, for windows > 1, the batch
          API: two lists of W/2 commands in flight through Node.apply_many_async
  PySyncObj  window W: W outstanding @replicated calls with callback=, each callback issuing
          the next call (PySyncObj's own way to be asynchronous)
1 s warm-up, then --duration seconds measured; --reps repetitions, interleaved (repetition r of
every configuration runs before repetition r+1 of any); median and min-max of ops/s, median of
the per-repetition p50/p99 latencies (propose to result, on the proposer).

B3 (PySyncObj's own benchmark method, benchmarks/testobj.py): every node offers R requests in a
burst at the start of each second for --b3-seconds; a rate passes when every node sees >= 90%
of its requests succeed (and no burst takes longer than its second); the highest passing R is
found by doubling then bisecting. craft durable, craft nosync, PySyncObj memory journal with
batching off (as PySyncObj's testobj.py configures it).

PySyncObj is installed from PyPI into bench/.venv-pysyncobj (created on first use; never into
the project's .venv). craft comes from the interpreter running this script (`make
python-install` puts it in .venv). Every worker is killed at the end of its point, and at exit
even on failure or Ctrl-C; each worker also has a watchdog that exits when this script goes.
"""

import argparse
import atexit
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))
from free_ports import free_ports  # noqa: E402  (below the ephemeral range: see there)
WORKER = os.path.join(HERE, "python", "worker.py")
PSO_VENV = os.path.join(HERE, ".venv-pysyncobj")
PSO_REQUIREMENT = "pysyncobj==0.3.17"

_live = []  # Popen objects of running workers


def kill_all():
    while _live:
        p = _live.pop()
        try:
            os.killpg(p.pid, signal.SIGKILL)  # its own session: the worker and nothing else
        except (ProcessLookupError, PermissionError):
            pass
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


atexit.register(kill_all)


def _on_signal(signum, frame):
    kill_all()
    sys.exit(128 + signum)


for _s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(_s, _on_signal)


def log(*args):
    print(*args, file=sys.stderr, flush=True)


# ---- environment --------------------------------------------------------------------------------

def ensure_pysyncobj():
    py = os.path.join(PSO_VENV, "bin", "python")
    ok = os.path.exists(py) and subprocess.run(
        [py, "-c", "import pysyncobj"], capture_output=True).returncode == 0
    if not ok:
        log(f"bench: creating {PSO_VENV} with {PSO_REQUIREMENT} from PyPI")
        subprocess.run([sys.executable, "-m", "venv", PSO_VENV], check=True)
        with open(os.path.join(PSO_VENV, ".gitignore"), "w") as f:
            f.write("*\n")
        subprocess.run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        PSO_REQUIREMENT], check=True)
    version = subprocess.run([py, "-c", "import importlib.metadata as m; "
                              "print(m.version('pysyncobj'))"],
                             capture_output=True, text=True).stdout.strip()
    return py, version


def fs_type(path):
    r = subprocess.run(["findmnt", "-n", "-o", "FSTYPE,SOURCE", "--target", path],
                       capture_output=True, text=True)
    if r.returncode != 0 or not r.stdout.strip():
        r = subprocess.run(["stat", "-f", "-c", "%T", path], capture_output=True, text=True)
    first = r.stdout.strip().splitlines()[:1]
    return " on ".join(first[0].split()) if first else "?"


def stat_sample():
    """(total, idle) jiffies of all CPUs."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v), v[3] + v[4]


def busy_cpu(seconds=1.0):
    """Share of all CPUs busy over `seconds` (other work on the machine adds noise)."""
    sample = stat_sample
    t0, i0 = sample()
    time.sleep(seconds)
    t1, i1 = sample()
    return 1.0 - (i1 - i0) / max(1, t1 - t0)


def fdatasync_probe(directory, n=300):
    """Raw fdatasync p50/p99 of 4 KiB appends in directory (B0's figure, for context)."""
    fd, path = tempfile.mkstemp(prefix="fsync-probe-", dir=directory)
    lat = []
    try:
        buf = b"x" * 4096
        for _ in range(n):
            os.write(fd, buf)
            t0 = time.perf_counter()
            os.fdatasync(fd)
            lat.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        os.unlink(path)
    lat.sort()
    return lat[len(lat) // 2] * 1e6, lat[int(len(lat) * 0.99)] * 1e6


def environment(args, pso_version):
    import craft
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "?"
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--", "c", "python"],
                           capture_output=True, text=True).stdout.strip()
    p50, p99 = fdatasync_probe(args.durable_dir)
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": f"{cpu} x {os.cpu_count()}",
        "kernel": platform.release(),
        "durable_dir": args.durable_dir, "durable_fs": fs_type(args.durable_dir),
        "nosync_fs": fs_type("/dev/shm"),
        "fdatasync_p50_us": p50, "fdatasync_p99_us": p99,
        "commit": commit + (" (c/ or python/ modified)" if dirty else ""),
        "python": platform.python_version(), "craft": craft.__version__,
        "pysyncobj": pso_version,
        "loadavg": os.getloadavg(), "busy_before": busy_cpu(),
    }


# ---- one cluster --------------------------------------------------------------------------------

def proc_cpu(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError):
        return 0.0





def run_cluster(cfg, mode, args, extra, wait_all, budget):
    """Starts 3 workers for cfg, waits for one result (closed: the leader's) or all three
    (rate), kills them, and returns the list of results (empty on failure)."""
    base = args.durable_dir if cfg["durable_dir"] else "/dev/shm"
    run_dir = tempfile.mkdtemp(prefix="craft-pybench-", dir=base)
    ports = free_ports(3)
    procs = []
    try:
        for i in (1, 2, 3):
            d = os.path.join(run_dir, f"n{i}")
            os.makedirs(d)
            cmd = [cfg["python"], WORKER, "--system", cfg["system"], "--id", str(i),
                   "--ports", ",".join(map(str, ports)), "--dir", d,
                   "--out", os.path.join(run_dir, f"out{i}.json"), "--mode", mode,
                   "--deadline", str(budget + 10)] + cfg["flags"] + extra
            logf = open(os.path.join(run_dir, f"log{i}.txt"), "w")
            p = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT,
                                 start_new_session=True, cwd=run_dir)
            logf.close()
            procs.append(p)
            _live.append(p)
        deadline = time.monotonic() + budget
        outs = [os.path.join(run_dir, f"out{i}.json") for i in (1, 2, 3)]
        cpu0 = t_cpu0 = None
        while time.monotonic() < deadline:
            if cpu0 is None and any(os.path.exists(o + ".start") for o in outs):
                cpu0, t_cpu0 = [proc_cpu(p.pid) for p in procs], time.monotonic()
                st0 = stat_sample()
            have = [o for o in outs if os.path.exists(o)]
            if (wait_all and len(have) == 3) or (not wait_all and have):
                break
            if any(p.poll() is not None for p in procs):
                break
            time.sleep(0.05)
        cpu1, t_cpu1 = [proc_cpu(p.pid) for p in procs], time.monotonic()
        st1 = stat_sample()
        results = []
        for i, o in enumerate(outs):
            if os.path.exists(o):
                with open(o) as f:
                    r = json.load(f)
                if cpu0 is not None and t_cpu1 > t_cpu0:
                    # CPU of every process over (about) the measured window, in cores:
                    # [this node (the leader), the two others]
                    per = [(b - a) / (t_cpu1 - t_cpu0) for a, b in zip(cpu0, cpu1)]
                    r["proc_cpu"] = [per[i]] + [x for j, x in enumerate(per) if j != i]
                    # everything else the machine ran meanwhile, in cores (noise)
                    ncpu = os.cpu_count() or 1
                    total = max(1, st1[0] - st0[0])
                    busy = (total - (st1[1] - st0[1])) / total * ncpu
                    r["other_cpu"] = max(0.0, busy - sum(per))
                results.append(r)
        if (wait_all and len(results) < 3) or not results:
            tails = []
            for i in (1, 2, 3):
                try:
                    with open(os.path.join(run_dir, f"log{i}.txt")) as f:
                        tails.append(f"node {i}: " + f.read()[-600:].strip())
                except OSError:
                    pass
            log(f"bench: {cfg['name']} {mode} {' '.join(extra)}: no result; "
                + " | ".join(t for t in tails if t.split(':', 1)[1].strip()))
            return []
        return results
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            if p in _live:
                _live.remove(p)
        shutil.rmtree(run_dir, ignore_errors=True)


# ---- the matrix ---------------------------------------------------------------------------------

def systems(args, pso_py):
    craft_py = sys.executable
    out = []
    if "craft" in args.systems:
        out += [
            {"name": "craft durable", "system": "craft", "python": craft_py, "durable_dir": True,
             "flags": ["--fsync", "1"] + args.craft_extra.split(), "family": "craft durable"},
            {"name": "craft nosync", "system": "craft", "python": craft_py, "durable_dir": False,
             "flags": ["--fsync", "0"] + args.craft_extra.split(), "family": "craft nosync"},
        ]
    if "craft" in args.systems and args.experiments:
        # Diagnostics, not figures of craft as shipped: what fixing the costs named in
        # docs/benchmarks.md would buy (bench/python/worker.py --pin-tstate, --sessions 0).
        for name, durable, flags in (
                ("craft durable, pinned tstate", True, ["--fsync", "1", "--pin-tstate", "1"]),
                ("craft nosync, pinned tstate", False, ["--fsync", "0", "--pin-tstate", "1"]),
                ("craft nosync, pinned tstate, sessions off", False,
                 ["--fsync", "0", "--pin-tstate", "1", "--sessions", "0"])):
            out.append({"name": name, "system": "craft", "python": craft_py,
                        "durable_dir": durable, "flags": flags, "family": "experiment",
                        "windows": [w for w in args.windows if w > 1][:1]})
    if "pysyncobj" in args.systems:
        for journal in ("file", "mem"):
            for batch in (1, 0):
                out.append({
                    "name": f"PySyncObj {journal} batch={'on' if batch else 'off'}",
                    "system": "pysyncobj", "python": pso_py, "durable_dir": journal == "file",
                    "flags": ["--journal", journal, "--batch", str(batch)],
                    "family": f"PySyncObj {journal}"})
    return out


def points(args, syss):
    """(system config, caller, window) for every point."""
    pts = []
    for s in syss:
        for w in s.get("windows", args.windows):
            if s["system"] == "craft":
                if w == 1:
                    pts.append((s, "sync", 1))
                pts.append((s, "async", w))
                if w > 1:
                    pts.append((s, "many", w))
            else:
                pts.append((s, "callback", w))
    return pts


def caller_name(caller, window):
    return {"sync": "apply (blocking), 1 thread", "async": f"apply_async, {window} in flight",
            "many": f"apply_many_async, 2 lists of {max(1, window // 2)}",
            "callback": f"@replicated callback=, {window} in flight"}[caller]


def run_matrix(args, syss):
    pts = points(args, syss)
    results = {i: [] for i in range(len(pts))}
    per_point = args.warmup + args.duration + 3
    log(f"bench: {len(pts)} points x {args.reps} repetitions (~{per_point:.0f} s each)")
    for rep in range(args.reps):
        for i, (s, caller, w) in enumerate(pts):
            extra = ["--caller", caller, "--window", str(w), "--warmup", str(args.warmup),
                     "--duration", str(args.duration)]
            t0 = time.monotonic()
            r = run_cluster(s, "closed", args, extra, wait_all=False,
                            budget=30 + args.warmup + args.duration + 10)
            if r:
                res = r[0]
                results[i].append(res)
                th = " ".join(f"{k} {v:.2f}" for k, v in sorted(res.get("threads", {}).items()))
                pc = "/".join(f"{x:.2f}" for x in res.get("proc_cpu", []))
                pc += f" other {res.get('other_cpu', 0):.2f}"
                log(f"  rep {rep + 1} {s['name']:24s} {caller_name(caller, w):34s} "
                    f"{res['ops_per_s']:7.0f} ops/s  p50 {fmt_us(res['p50_us'])}  "
                    f"p99 {fmt_us(res['p99_us'])}  err {res['errors']}  cpu {pc} "
                    f"[leader: {th}]  ({time.monotonic() - t0:.1f} s)")
    rows = []
    for i, (s, caller, w) in enumerate(pts):
        row = {"name": s["name"], "family": s["family"], "system": s["system"],
               "caller": caller, "window": w, "runs": results[i]}
        row.update(aggregate(results[i]))
        rows.append(row)
    return rows


def aggregate(rs):
    """Median and spread over the repetitions of one point."""
    row = {"reps": len(rs)}
    if not rs:
        return row
    ops = [r["ops_per_s"] for r in rs]
    row.update({
        "ops_median": statistics.median(ops), "ops_min": min(ops), "ops_max": max(ops),
        "p50_us": statistics.median(r["p50_us"] for r in rs if r["p50_us"] is not None),
        "p99_us": statistics.median(r["p99_us"] for r in rs if r["p99_us"] is not None),
        "errors": sum(r["errors"] for r in rs),
    })
    pcs = [r["proc_cpu"] for r in rs if r.get("proc_cpu")]
    # CPU of the 3 processes per committed op: less sensitive to the machine's other load
    # than ops/s (both systems are CPU-bound on 2 shared vCPUs)
    per_op = [sum(r["proc_cpu"]) / r["ops_per_s"] * 1e6 for r in rs
              if r.get("proc_cpu") and r["ops_per_s"] > 0]
    if per_op:
        row["cpu_us_per_op"] = statistics.median(per_op)
    if pcs:
        row["cpu_leader"] = statistics.median(x[0] for x in pcs)
        row["cpu_followers"] = statistics.median(sum(x[1:]) / 2 for x in pcs)
    oth = [r["other_cpu"] for r in rs if "other_cpu" in r]
    if oth:
        row["other_cpu"] = statistics.median(oth)
    ths = [r["threads"] for r in rs if r.get("threads")]
    if ths:
        row["threads"] = {k: statistics.median(t.get(k, 0.0) for t in ths)
                          for k in ("main", "apply", "other")}
    fs = [r.get("counters", {}).get("fsyncs") for r in rs]
    fs = [(f / r["ops"]) for f, r in zip(fs, rs) if f is not None and r["ops"]]
    if fs:
        row["fsyncs_per_op"] = statistics.median(fs)
    return row


# ---- B3 -----------------------------------------------------------------------------------------

def b3_probe(s, rate, args):
    start_at = time.time() + args.b3_settle
    extra = ["--rate", str(rate), "--duration", str(args.b3_seconds), "--drain",
             str(args.b3_drain), "--start-at", f"{start_at:.3f}"]
    rs = run_cluster(s, "rate", args, extra, wait_all=True,
                     budget=30 + args.b3_settle + args.b3_seconds + args.b3_drain + 5)
    if len(rs) < 3:
        return False, None
    ok = all(r["success"] >= 0.9 and not r["late"] for r in rs)
    return ok, min(r["success"] for r in rs)


def b3_search(s, args, start):
    lo, hi = 0, None
    rate = start
    probes = []
    while hi is None and rate <= args.b3_max:
        ok, succ = b3_probe(s, rate, args)
        probes.append((rate, ok, succ))
        log(f"  B3 {s['name']:28s} {rate:6d}/s per node: "
            f"{'pass' if ok else 'FAIL'} (worst node {succ if succ is None else f'{succ:.1%}'})")
        if ok:
            lo = rate
            rate *= 2
        else:
            hi = rate
    for _ in range(args.b3_bisect):
        if hi is None or hi - lo <= max(50, lo // 10):
            break
        mid = (lo + hi) // 2
        ok, succ = b3_probe(s, mid, args)
        probes.append((mid, ok, succ))
        log(f"  B3 {s['name']:28s} {mid:6d}/s per node: "
            f"{'pass' if ok else 'FAIL'} (worst node {succ if succ is None else f'{succ:.1%}'})")
        if ok:
            lo = mid
        else:
            hi = mid
    return {"name": s["name"], "rate_per_node": lo, "first_fail": hi, "probes": probes}


# ---- report -------------------------------------------------------------------------------------

def fmt_us(us):
    if us is None:
        return "-"
    if us >= 10000:
        return f"{us / 1000:.0f} ms"
    if us >= 1000:
        return f"{us / 1000:.1f} ms"
    return f"{us:.0f} µs"


def fmt_ops(x):
    return f"{x:,.0f}".replace(",", " ")


def report(env, rows, b3, args):
    out = []
    out.append(f"- date: {env['date']}; commit `{env['commit']}`; craft {env['craft']}, "
               f"PySyncObj {env['pysyncobj']} (PyPI), Python {env['python']}")
    out.append(f"- machine: {env['cpu']}, Linux {env['kernel']}; durable data on "
               f"{env['durable_dir']} ({env['durable_fs']}), nosync on /dev/shm "
               f"({env['nosync_fs']}); raw fdatasync of 4 KiB appends there: p50 "
               f"{fmt_us(env['fdatasync_p50_us'])}, p99 {fmt_us(env['fdatasync_p99_us'])}; "
               f"load average at start {env['loadavg'][0]:.2f}, CPUs busy before start "
               f"{env['busy_before']:.0%}")
    out.append(f"- command: `{env['command']}` ({args.reps} repetitions, {args.warmup:g} s "
               f"warm-up + {args.duration:g} s measured per point, 100-byte commands)")
    out.append("")
    out.append("| system | durability | caller | ops/s median | min-max | p50 | p99 | "
               "leader fsyncs/op | CPU leader (main+apply+other) / follower, cores | "
               "cluster CPU µs/op | other load, cores |")
    out.append("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        dur = ("durable (fdatasync)" if r["family"] == "craft durable" else
               ("durable (fdatasync)" if "durable" in r["name"] else "nosync (/dev/shm)")
               if r["family"] == "experiment" else
               "nosync (/dev/shm, fsync off)" if r["family"] == "craft nosync" else
               "nosync (file journal, never fsyncs)" if "file" in r["family"] else
               "nosync (memory journal)")
        if r["reps"] == 0:
            out.append(f"| {r['name']} | {dur} | {caller_name(r['caller'], r['window'])} | "
                       f"failed | | | | | | | |")
            continue
        fs = f"{r['fsyncs_per_op']:.2f}" if "fsyncs_per_op" in r else ""
        if r["family"] == "craft nosync" or "nosync" in r["name"]:
            fs = "(off)"
        cpu = ""
        if "cpu_leader" in r:
            t = r.get("threads", {})
            cpu = (f"{r['cpu_leader']:.2f} ({t.get('main', 0):.2f}+{t.get('apply', 0):.2f}+"
                   f"{t.get('other', 0):.2f}) / {r['cpu_followers']:.2f}")
        err = f" ({r['errors']} errors)" if r["errors"] else ""
        oc = f"{r['other_cpu']:.2f}" if "other_cpu" in r else ""
        if "cpu_us_per_op" in r:
            oc = f"{r['cpu_us_per_op']:.0f} | " + oc
        else:
            oc = " | " + oc
        out.append(f"| {r['name']} | {dur} | {caller_name(r['caller'], r['window'])} | "
                   f"{fmt_ops(r['ops_median'])}{err} | {fmt_ops(r['ops_min'])}-"
                   f"{fmt_ops(r['ops_max'])} | {fmt_us(r['p50_us'])} | {fmt_us(r['p99_us'])} | "
                   f"{fs} | {cpu} | {oc} |")
    # ratios at equal window
    out.append("")
    out.append("Ratios, same run, equal window (median ops/s; PySyncObj = the better of "
               "batching on/off for each journal; \"best\" = the better journal too):")
    out.append("")
    out.append("| window | craft caller | PySyncObj file | PySyncObj mem | craft durable / "
               "PySyncObj best | craft nosync / PySyncObj best |")
    out.append("|---|---|---:|---:|---:|---:|")

    def best(family, window, caller=None):
        c = [r for r in rows if r["family"] == family and r["window"] == window and r["reps"]
             and (caller is None or r["caller"] == caller)]
        return max(c, key=lambda r: r["ops_median"]) if c else None
    ratios = []
    for w in args.windows:
        pf, pm = best("PySyncObj file", w), best("PySyncObj mem", w)
        pb = max([x for x in (pf, pm) if x], key=lambda r: r["ops_median"], default=None)
        for caller in (["sync", "async"] if w == 1 else ["async", "many"]):
            cd, cn = best("craft durable", w, caller), best("craft nosync", w, caller)

            def ratio(c):
                return f"{c['ops_median'] / pb['ops_median']:.1f}x" if c and pb else "-"
            ratios.append({"window": w, "caller": caller,
                           "durable": cd["ops_median"] / pb["ops_median"] if cd and pb else None,
                           "nosync": cn["ops_median"] / pb["ops_median"] if cn and pb else None})
            out.append(f"| {w} | {caller_name(caller, w)} | "
                       f"{fmt_ops(pf['ops_median']) + ' (batch ' + pf['name'][-3:].strip('=') + ')' if pf else '-'} | "
                       f"{fmt_ops(pm['ops_median']) + ' (batch ' + pm['name'][-3:].strip('=') + ')' if pm else '-'} | "
                       f"{ratio(cd)} | {ratio(cn)} |")
    if b3:
        out.append("")
        out.append(f"B3 (PySyncObj's method: every node offers R requests/s in 1 s bursts for "
                   f"{args.b3_seconds:g} s; highest R with >= 90% success on every node; "
                   f"aggregate = 3R):")
        out.append("")
        out.append("| system | R per node | aggregate offered | first failing R |")
        out.append("|---|---:|---:|---:|")
        for b in b3:
            out.append(f"| {b['name']} | {fmt_ops(b['rate_per_node'])} | "
                       f"{fmt_ops(3 * b['rate_per_node'])} | "
                       f"{fmt_ops(b['first_fail']) if b['first_fail'] else '> ' + fmt_ops(args.b3_max)} |")
    return "\n".join(out), ratios


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="1 repetition, 0.5 s warm-up + 2 s measured, no B3 (~1-2 minutes)")
    p.add_argument("--reps", type=int, default=None, help="repetitions (default 3; quick 1)")
    p.add_argument("--warmup", type=float, default=None, help="seconds (default 1; quick 0.5)")
    p.add_argument("--duration", type=float, default=None,
                   help="seconds measured per point (default 5; quick 2)")
    p.add_argument("--windows", default=None,
                   help="comma-separated requests in flight (default 1,64,256; quick 1,64)")
    p.add_argument("--systems", default="craft,pysyncobj")
    p.add_argument("--durable-dir", default="/var/tmp",
                   help="where the durable runs keep their data (default /var/tmp)")
    p.add_argument("--b3", dest="b3", action="store_true", default=None, help="run B3")
    p.add_argument("--no-b3", dest="b3", action="store_false")
    p.add_argument("--b3-seconds", type=float, default=None, help="bursts per probe (default 5)")
    p.add_argument("--b3-drain", type=float, default=3.0)
    p.add_argument("--b3-settle", type=float, default=3.0,
                   help="seconds between starting the workers and the first burst")
    p.add_argument("--b3-bisect", type=int, default=None)
    p.add_argument("--b3-max", type=int, default=64000)
    p.add_argument("--experiments", dest="experiments", action="store_true", default=None,
                   help="also run diagnostic craft variants (default in the full run)")
    p.add_argument("--no-experiments", dest="experiments", action="store_false")
    p.add_argument("--craft-extra", default="",
                   help="extra worker flags for craft (experiments: '--sessions 0', "
                        "'--switch-interval 0.0005')")
    p.add_argument("--wait-quiet", type=float, default=None,
                   help="before starting, wait up to this many seconds for the machine's other "
                        "load to fall under 30%% of the CPUs (default 60; quick 0)")
    p.add_argument("--json", help="also write every figure to this file")
    p.add_argument("--report-from", metavar="JSON",
                   help="print the tables again from a file written by --json; run nothing")
    args = p.parse_args()
    if args.report_from:
        with open(args.report_from) as f:
            saved = json.load(f)
        ns = argparse.Namespace(**saved["args"])
        rows = saved["rows"]
        for r in rows:  # re-aggregate, so that new columns appear for old files
            r.update(aggregate(r["runs"]))
        print(report(saved["env"], rows, saved["b3"], ns)[0])
        return 0
    q = args.quick
    args.reps = args.reps or (1 if q else 3)
    args.warmup = args.warmup if args.warmup is not None else (0.5 if q else 1.0)
    args.duration = args.duration if args.duration is not None else (2.0 if q else 5.0)
    args.b3 = (not q) if args.b3 is None else args.b3
    args.experiments = (not q) if args.experiments is None else args.experiments
    args.b3_seconds = args.b3_seconds or (3.0 if q else 5.0)
    args.b3_bisect = args.b3_bisect if args.b3_bisect is not None else (1 if q else 3)
    args.windows = [int(x) for x in (args.windows or ("1,64" if q else "1,64,256")).split(",")]
    args.systems = args.systems.split(",")
    t_begin = time.monotonic()

    try:
        import craft  # noqa: F401
    except ImportError:
        sys.exit("bench: `import craft` failed: run `make python-install` and use .venv/bin/python")
    pso_py, pso_version = ensure_pysyncobj() if "pysyncobj" in args.systems else (None, "-")
    args.wait_quiet = args.wait_quiet if args.wait_quiet is not None else (0 if q else 60)
    t_quiet = time.monotonic() + args.wait_quiet
    while args.wait_quiet > 0:
        b = busy_cpu(2.0)
        if b < 0.3 or time.monotonic() > t_quiet:
            log(f"bench: CPUs busy {b:.0%} before starting")
            break
        log(f"bench: CPUs busy {b:.0%}: waiting for other work to finish")
    env = environment(args, pso_version)
    env["command"] = " ".join([os.path.relpath(sys.executable, ROOT)
                               if sys.executable.startswith(ROOT) else sys.executable,
                               os.path.relpath(os.path.abspath(sys.argv[0]), ROOT)]
                              + sys.argv[1:])
    log(f"bench: {env['cpu']}, Linux {env['kernel']}, {env['durable_fs']} at "
        f"{args.durable_dir}: fdatasync p50 {fmt_us(env['fdatasync_p50_us'])}")
    syss = systems(args, pso_py)
    try:
        rows = run_matrix(args, syss)
        b3 = []
        if args.b3:
            starts = {"craft durable": 1000, "craft nosync": 2000, "PySyncObj mem batch=off": 1000}
            for s in syss:
                if s["name"] in starts:
                    b3.append(b3_search(s, args, starts[s["name"]]))
    finally:
        kill_all()
    text, ratios = report(env, rows, b3, args)
    print(text)
    log(f"bench: done in {time.monotonic() - t_begin:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"env": env, "rows": rows, "b3": b3, "ratios": ratios,
                       "args": {k: getattr(args, k) for k in
                                ("reps", "warmup", "duration", "windows", "b3_seconds",
                                 "b3_max")}}, f, indent=1)
    return 0 if all(r["reps"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
