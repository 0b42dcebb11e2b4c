"""The Python artefacts work for someone who just found craft (issue 18).

One `make wheel` per run (the slow part: one compile of the C sources) into a temporary
directory gives the three artefacts these tests install:

* the sdist, built by `python -m build --sdist` from MANIFEST.in;
* the raw wheel, which pip built from that sdist in an isolated environment with no cache, the
  very build `pip install craft-X.tar.gz` performs before installing: installing it into a fresh
  venv is installing the sdist, without compiling everything a second time;
* the repaired wheel (auditwheel), with libuv bundled under craft.libs and a manylinux tag.

Each is installed into its own new venv (no access to the checkout: the scripts run from a
temporary directory, with no PYTHONPATH), imports craft, runs a cluster and the craft-dump
console script. The repaired wheel also runs in a mount namespace where the system's libuv and
msgpack-c are replaced by empty files; the same namespace makes the raw wheel fail to import,
which shows that the system libraries really cannot be loaded there.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from free_ports import free_ports  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD_TIMEOUT = 900  # make wheel: sdist, one compile from it, auditwheel (~1 min here)
RUN_TIMEOUT = 120


def craft_version():
    with open(os.path.join(ROOT, "c", "include", "craft.h")) as f:
        return re.search(r'^#define CRAFT_VERSION_STRING "([^"]+)"', f.read(), re.M).group(1)


def run(cmd, timeout=RUN_TIMEOUT, check=True, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} exited {r.returncode}\n"
                             f"--- stdout\n{r.stdout[-4000:]}\n--- stderr\n{r.stderr[-4000:]}")
    return r


def clean_env(**extra):
    """The environment of a user's shell: no PYTHONPATH, no venv of ours on PATH."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "LD_LIBRARY_PATH")}
    env.update(extra)
    return env


def make_env():
    """The environment for running make from a test that `make test` started: without the
    outer make's flags (jobserver descriptors this process does not hold)."""
    return {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory):
    dist = tmp_path_factory.mktemp("dist")
    r = run(["make", "--no-print-directory", "-C", ROOT, "wheel", f"DIST={dist}"],
            timeout=BUILD_TIMEOUT, check=False, env=make_env())
    assert r.returncode == 0, f"make wheel failed:\n{r.stdout[-6000:]}\n{r.stderr[-6000:]}"
    v = craft_version()
    sdist = dist / f"craft-{v}.tar.gz"
    raw = sorted((dist / "raw").glob(f"craft-{v}-*.whl"))
    repaired = sorted(dist.glob(f"craft-{v}-*manylinux*.whl"))
    assert sdist.is_file(), os.listdir(dist)
    assert len(raw) == 1 and len(repaired) == 1, (raw, repaired)
    return {"sdist": sdist, "raw": raw[0], "repaired": repaired[0], "dir": dist}


def make_venv(path, wheel):
    """A new venv holding only pip and the given wheel (installed offline, no dependencies)."""
    run([sys.executable, "-m", "venv", "--clear", str(path)], env=clean_env())
    py = path / "bin" / "python"
    run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-index",
         "--no-deps", str(wheel)], env=clean_env())
    return py


@pytest.fixture(scope="module")
def sdist_venv(artefacts, tmp_path_factory):
    return make_venv(tmp_path_factory.mktemp("venv-sdist"), artefacts["raw"])


@pytest.fixture(scope="module")
def wheel_venv(artefacts, tmp_path_factory):
    return make_venv(tmp_path_factory.mktemp("venv-wheel"), artefacts["repaired"])


# A cluster of n nodes in one process, on 127.0.0.1, with a bounded wait for everything; prints
# one JSON line: where craft came from, its version, and what each node applied.
CLUSTER = r"""
import json, os, sys, time
import craft
from importlib import metadata

n, root = int(sys.argv[1]), sys.argv[2]
ports = [int(p) for p in sys.argv[3].split(",")]

class Counter(craft.StateMachine):
    def __init__(self): self.n = 0
    def apply(self, command, index): self.n += int(command); return str(self.n).encode()

peers = {i + 1: "127.0.0.1:%d" % p for i, p in enumerate(ports)}
nodes = [craft.Node(i, peers[i], os.path.join(root, "n%d" % i), Counter(), peers=peers,
                    fsync=False, heartbeat_ms=20, election_timeout_ms=200, timeout=10,
                    segment_size=1 << 20, log_level="error") for i in peers]
for node in nodes: node.start()
try:
    leader, _ = nodes[0].wait_for_leader(timeout=20)
    for k in range(10):
        result = nodes[k % n].apply(b"1")      # through followers too: forwarded
    deadline = time.monotonic() + 20
    while any(node.read(lambda f: f.n, mode="stale") != 10 for node in nodes):
        assert time.monotonic() < deadline, "the nodes did not all apply the 10 commands"
        time.sleep(0.02)
    print(json.dumps({"file": craft.__file__, "version": craft.__version__,
                      "dist_version": metadata.version("craft"), "result": result.decode(),
                      "applied": [node.read(lambda f: f.n, mode="stale") for node in nodes]}))
finally:
    for node in nodes: node.close()
"""


def run_cluster(py, n, work, cmd_prefix=(), env=None):
    script = work / "cluster.py"
    script.write_text(CLUSTER)
    data = work / f"data{n}"
    # Ports from below the ephemeral range, chosen here (tests/free_ports.py says why).
    ports = ",".join(str(p) for p in free_ports(n))
    r = run([*cmd_prefix, str(py), str(script), str(n), str(data), ports], cwd=str(work),
            env=env or clean_env())
    return json.loads(r.stdout.strip().splitlines()[-1]), data, r


def test_sdist_carries_what_the_build_needs(artefacts):
    v = craft_version()
    with tarfile.open(artefacts["sdist"]) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    tracked = run(["git", "ls-files", "c/include", "c/src", "python/src", "python/craft"],
                  cwd=ROOT).stdout.split()
    needed = [f for f in tracked if f.endswith((".c", ".h", ".py", ".pyi", "py.typed"))]
    assert len(needed) > 80
    missing = [f for f in needed + ["setup.py", "pyproject.toml", "MANIFEST.in",
                                    "c/tools/craft_dump.c", "docs/python.md"] if f not in names]
    assert not missing, f"the sdist craft-{v}.tar.gz lacks {missing}"
    stray = [n for n in names if n.endswith((".o", ".so", ".a", ".pyc")) or "/bin/" in n]
    assert not stray, stray


def test_the_sdist_installs_in_a_fresh_venv_and_applies(artefacts, sdist_venv, tmp_path):
    out, data, _ = run_cluster(sdist_venv, 1, tmp_path)
    assert out["applied"] == [10] and out["result"] == "10"
    assert out["file"].startswith(str(sdist_venv.parent.parent)), out["file"]
    assert out["version"] == out["dist_version"] == craft_version()
    # The console script: craft-dump reads the node's data directory.
    r = run([str(sdist_venv.parent / "craft-dump"), str(data / "n1")], env=clean_env())
    assert "result: ok" in r.stdout and "wal-" in r.stdout, r.stdout
    bad = run([str(sdist_venv.parent / "craft-dump")], check=False, env=clean_env())
    assert bad.returncode == 2 and "usage: craft-dump DIR" in bad.stderr


def test_auditwheel_bundles_libuv(artefacts):
    aw = os.path.join(os.path.dirname(sys.executable), "auditwheel")

    def show(wheel):
        return json.loads(run([aw, "show", "--json", str(wheel)]).stdout)

    raw, repaired = show(artefacts["raw"]), show(artefacts["repaired"])
    # Before: libuv is an external library, so the wheel is for this machine only.
    assert raw["overall_tag"].startswith("linux_"), raw["overall_tag"]
    assert "libuv.so.1" in raw["external_libs"], raw["external_libs"]
    # After: nothing outside the manylinux policy is needed from the system any more.
    assert repaired["external_libs"] == {}, repaired["external_libs"]
    tag = repaired["overall_tag"]
    m = re.fullmatch(r"manylinux_(\d+)_(\d+)_x86_64", tag)
    assert m, tag
    glibc = tuple(int(x) for x in os.confstr("CS_GNU_LIBC_VERSION").split()[1].split(".")[:2])
    assert (int(m.group(1)), int(m.group(2))) <= glibc, f"{tag} needs a newer glibc than {glibc}"
    assert tag in artefacts["repaired"].name
    text = run([aw, "show", str(artefacts["repaired"])]).stdout
    assert f'consistent with the following platform tag: "{tag}"' in " ".join(text.split())

    with zipfile.ZipFile(artefacts["repaired"]) as z:
        names = z.namelist()
    bundled = [n for n in names if n.startswith("craft.libs/")]
    assert any(re.fullmatch(r"craft\.libs/libuv-[0-9a-f]+\.so[.\d]*", n) for n in bundled), names
    # msgpack-c is used through its headers only (our own decoder reads frames): if a build
    # ever links libmsgpackc, it must be bundled like libuv.
    with zipfile.ZipFile(artefacts["raw"]) as z:
        ext = next(n for n in z.namelist() if n.startswith("craft/_craft") and n.endswith(".so"))
        needed = needed_libs(z.read(ext))
    if any(lib.startswith("libmsgpackc") for lib in needed):
        assert any(n.startswith("craft.libs/libmsgpackc-") for n in bundled), bundled
    assert "craft/bin/craft-dump" in names


def needed_libs(elf_bytes):
    import io

    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile

    elf = ELFFile(io.BytesIO(elf_bytes))
    out = []
    for section in elf.iter_sections():
        if isinstance(section, DynamicSection):
            out += [t.needed for t in section.iter_tags() if t.entry.d_tag == "DT_NEEDED"]
    return out


def test_the_repaired_wheel_loads_its_own_libuv(artefacts, wheel_venv, tmp_path):
    # Even where the system's libuv exists, the extension loads the copy in craft.libs.
    env = clean_env(LD_DEBUG="libs", LD_DEBUG_OUTPUT=str(tmp_path / "ld"))
    out, data, _ = run_cluster(wheel_venv, 3, tmp_path, env=env)
    assert out["applied"] == [10, 10, 10]
    assert out["file"].startswith(str(wheel_venv.parent.parent)), out["file"]
    trace = "".join(p.read_text() for p in tmp_path.glob("ld.*"))
    loaded = re.findall(r"calling init: (\S*libuv\S*)", trace)
    assert loaded, "LD_DEBUG shows no libuv being initialised"
    assert all("/craft.libs/libuv-" in p for p in loaded), loaded
    r = run([str(wheel_venv.parent / "craft-dump"), str(data / "n2")], env=clean_env())
    assert "result: ok" in r.stdout, r.stdout


def system_libraries(*stems):
    """The files of the system's copies of these libraries (real paths, no symlinks)."""
    paths = set()
    ldconfig = shutil.which("ldconfig") or "/sbin/ldconfig"
    listing = run([ldconfig, "-p"], check=False).stdout if os.path.exists(ldconfig) else ""
    for line in listing.splitlines():
        name, _, path = line.strip().partition(" => ")
        if any(name.startswith(stem + ".so") for stem in stems):
            paths.add(os.path.realpath(path))
    for d in ("/lib", "/usr/lib", "/usr/local/lib", "/lib64", "/usr/lib64",
              "/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu"):
        if os.path.isdir(d):
            for f in os.listdir(d):
                if any(f.startswith(stem + ".so") for stem in stems):
                    paths.add(os.path.realpath(os.path.join(d, f)))
    return sorted(p for p in paths if os.path.isfile(p))


# Runs "$@" in a private mount namespace where every file of $CRAFT_MASK reads as empty.
MASKED = 'for f in $CRAFT_MASK; do mount --bind /dev/null "$f" || exit 97; done; exec "$@"'


def masked_prefix():
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("no unshare(1): cannot hide the system libuv (util-linux)")
    userns = [] if os.geteuid() == 0 else ["-U", "-r"]
    prefix = [unshare, *userns, "-m", "--propagation", "private", "sh", "-c", MASKED, "masked"]
    probe = run([*prefix, "true"], check=False, env=clean_env(CRAFT_MASK=""))
    if probe.returncode != 0:
        pytest.skip(f"cannot make a mount namespace here: {probe.stderr.strip()}")
    return prefix


def test_the_repaired_wheel_runs_where_the_system_libuv_cannot_load(artefacts, sdist_venv,
                                                                     wheel_venv, tmp_path):
    prefix = masked_prefix()
    mask = system_libraries("libuv", "libmsgpackc")
    assert any("libuv" in p for p in mask), "no system libuv found to hide"
    env = clean_env(CRAFT_MASK="\n".join(mask))
    # The control: in that namespace the wheel that links the system's libuv cannot load.
    r = run([*prefix, str(sdist_venv), "-c", "import craft"], check=False, env=env,
            cwd=str(tmp_path))
    assert r.returncode != 0 and "libuv" in r.stderr, (r.returncode, r.stderr)
    # The repaired wheel runs a 3-node cluster there, and its craft-dump works.
    out, data, _ = run_cluster(wheel_venv, 3, tmp_path, cmd_prefix=prefix, env=env)
    assert out["applied"] == [10, 10, 10]
    r = run([*prefix, str(wheel_venv.parent / "craft-dump"), str(data / "n3")], env=env)
    assert "result: ok" in r.stdout, r.stdout


def test_make_demo_installs_the_package_alone(tmp_path):
    # What `make demo` would run, on a venv that does not exist yet: it must create it and
    # install craft and nothing else (no test tools: pytest, hypothesis, mypy, matplotlib...).
    venv = tmp_path / "v"
    r = run(["make", "-n", "--no-print-directory", "-C", ROOT, "demo", f"VENV={venv}"],
            env=make_env())
    lines = [line.strip() for line in r.stdout.splitlines()]
    assert f"python3 -m venv {venv}" in lines, r.stdout
    installs = [line for line in lines if " install " in line and "pip" in line]
    assert installs == [f"{venv}/bin/pip install -q --disable-pip-version-check ."], installs
    commands = r.stdout.replace(str(venv), "VENV")  # the temporary path may say "pytest"
    for tool in ("pytest", "hypothesis", "mypy", "matplotlib", "auditwheel"):
        assert tool not in commands, f"make demo would install {tool}"
    assert f"PY={venv}/bin/python bash scripts/demo.sh" in lines
