"""The power-loss layer itself (lazyfs_shim.c + lazyfs.py): each test runs a real process under
the shim that writes real files and dies by SIGKILL, cuts the power, and looks at what is left.

What a power cut must lose: data not fdatasync'ed, names not made durable by an fsync of their
directory (a created file vanishes, a rename is undone, an unlinked file comes back), size
changes (truncate, O_TRUNC, fallocate). What it must keep: everything a sync covered. Through
Python's os and io (the calls a log store written in Python makes), C's stdio through Lua's io
(a log store written in Lua), and the disk store of craft itself (in test_powercut.py)."""

import os
import random
import shutil
import subprocess
import sys
import textwrap

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import lazyfs  # noqa: E402


@pytest.fixture
def box(tmp_path):
    """A root to write under, a state directory for the journal, and a runner."""
    root = tmp_path / "root"
    state = tmp_path / "state"
    root.mkdir()

    class Box:
        def __init__(self):
            self.root, self.state = str(root), str(state)

        def run(self, code, *, lua=False, expect_kill=True):
            """Runs code (Python, or Lua with lua=True) under the shim with ROOT set; the code
            ends by SIGKILLing itself, like a power cut would find it."""
            e = lazyfs.env(self.root, self.state)
            e["ROOT"] = self.root
            if lua:
                e["LUA_CPATH"] = lua_cpath()
                cmd = ["lua5.4", "-e", LUA_PRELUDE + code + LUA_KILL]
            else:
                cmd = [sys.executable, "-c", PY_PRELUDE + textwrap.dedent(code) + PY_KILL]
            r = subprocess.run(cmd, env=e, capture_output=True, text=True, timeout=60)
            if expect_kill:
                assert r.returncode == -9, (r.returncode, r.stdout, r.stderr)
            return r

        def cut(self, mode="all", seed=0):
            return lazyfs.power_cut(self.state, self.root, mode, random.Random(seed))

        def path(self, *p):
            return os.path.join(self.root, *p)

        def read(self, *p):
            with open(self.path(*p), "rb") as f:
                return f.read()

    return Box()


PY_PRELUDE = "import os, signal\nR = os.environ['ROOT']\n" \
             "def dsync(p):\n    fd = os.open(p, os.O_RDONLY)\n    os.fsync(fd)\n" \
             "    os.close(fd)\n"
PY_KILL = "\nos.kill(os.getpid(), signal.SIGKILL)\n"
LUA_PRELUDE = "local R = os.getenv('ROOT')\nlocal durable = require 'durable'\n"
# A Lua process cannot signal itself without a library: its parent shell kills it.
LUA_KILL = "\nlocal f = io.open('/proc/self/stat'); local pid = f:read('l'):match('^%d+'); " \
           "f:close()\nos.execute('kill -9 ' .. pid)\n"


def lua_cpath():
    so = os.path.join(os.path.dirname(lazyfs.shim_path()), "lua", "durable.so")
    if not os.path.exists(so):
        pytest.fail(f"{so} is not built: `make build-default` builds it (Lua 5.4 headers "
                    "needed, liblua5.4-dev)")
    return os.path.join(os.path.dirname(so), "?.so") + ";;"


def test_a_write_without_sync_is_lost_and_a_synced_one_kept(box):
    os.makedirs(box.path("d"))
    dfd = os.open(box.path("d"), os.O_RDONLY)
    os.fsync(dfd)
    os.close(dfd)
    with open(box.path("d", "kept"), "wb") as f:
        f.write(b"old")
    with open(box.path("d", "lost"), "wb") as f:
        f.write(b"old")
    box.run("""
        for name, sync in (("kept", True), ("lost", False)):
            fd = os.open(f"{R}/d/{name}", os.O_WRONLY | os.O_APPEND)
            os.write(fd, b" new")
            os.pwrite(fd, b"OLD", 0)  # O_APPEND: Linux appends this too
            if sync:
                os.fdatasync(fd)
            os.close(fd)
    """)
    assert box.read("d", "kept") == b"old newOLD"
    assert box.read("d", "lost") == b"old new" + b"OLD"  # nothing undone before the cut
    out = box.cut()
    assert box.read("d", "kept") == b"old newOLD"
    assert box.read("d", "lost") == b"old", out


def test_overwrites_in_place_are_undone_to_the_last_sync(box):
    with open(box.path("f"), "wb") as f:
        f.write(bytes(4096))
    box.run("""
        fd = os.open(f"{R}/f", os.O_RDWR)
        os.pwrite(fd, b"A" * 100, 0)
        os.fdatasync(fd)
        os.pwrite(fd, b"B" * 100, 50)        # over the synced bytes and the zeros after them
        os.pwrite(fd, b"C" * 10, 4090)       # past the end: the file grows
        os.pwritev(fd, [b"D" * 5, b"E" * 5], 1000)
    """)
    box.cut()
    data = box.read("f")
    assert data == b"A" * 100 + bytes(3996)


def test_a_created_file_vanishes_without_a_directory_sync_even_if_its_data_was_synced(box):
    box.run("""
        with open(f"{R}/synced-data-only", "wb") as f:
            f.write(b"x"); f.flush(); os.fdatasync(f.fileno())
        with open(f"{R}/both", "wb") as f:
            f.write(b"y"); f.flush(); os.fsync(f.fileno())
        dsync(R)
        with open(f"{R}/after", "wb") as f:
            f.write(b"z"); f.flush(); os.fsync(f.fileno())
    """)
    assert sorted(os.listdir(box.root)) == ["after", "both", "synced-data-only"]
    box.cut()
    assert sorted(os.listdir(box.root)) == ["both", "synced-data-only"]
    assert box.read("both") == b"y" and box.read("synced-data-only") == b"x"


def test_a_rename_without_a_directory_sync_is_undone(box):
    with open(box.path("state"), "wb") as f:
        f.write(b"old state")
    box.run("""
        with open(f"{R}/state.tmp", "wb") as f:
            f.write(b"new state"); f.flush(); os.fsync(f.fileno())
        os.rename(f"{R}/state.tmp", f"{R}/state")   # replaces the old file
        with open(f"{R}/other.tmp", "wb") as f:
            f.write(b"other"); f.flush(); os.fsync(f.fileno())
        dsync(R)                                     # both names durable from here
        os.replace(f"{R}/other.tmp", f"{R}/other")   # this rename is not
    """)
    assert box.read("state") == b"new state"
    box.cut()
    assert box.read("state") == b"new state"
    assert sorted(os.listdir(box.root)) == ["other.tmp", "state"]
    assert box.read("other.tmp") == b"other"


def test_a_rename_over_an_old_file_undone_brings_the_old_file_back(box):
    with open(box.path("state"), "wb") as f:
        f.write(b"old state")
    box.run("""
        with open(f"{R}/state.tmp", "wb") as f:
            f.write(b"new state"); f.flush(); os.fsync(f.fileno())
        dsync(R)
        os.rename(f"{R}/state.tmp", f"{R}/state")
    """)
    box.cut()
    assert box.read("state") == b"old state"
    assert box.read("state.tmp") == b"new state"


def test_an_unlink_without_a_directory_sync_comes_back_with_its_durable_bytes(box):
    with open(box.path("seg"), "wb") as f:
        f.write(b"durable")
    box.run("""
        fd = os.open(f"{R}/seg", os.O_WRONLY | os.O_APPEND)
        os.write(fd, b" volatile")
        os.close(fd)
        os.unlink(f"{R}/seg")
        os.mkdir(f"{R}/dir")
        os.rmdir(f"{R}/dir")
    """)
    assert not os.path.exists(box.path("seg"))
    box.cut()
    assert box.read("seg") == b"durable"
    assert os.listdir(box.root) == ["seg"]


def test_truncations_and_preallocation_are_undone(box):
    with open(box.path("t"), "wb") as f:
        f.write(b"0123456789" * 100)
    with open(box.path("o"), "wb") as f:
        f.write(b"keep me")
    box.run("""
        fd = os.open(f"{R}/t", os.O_RDWR)
        os.ftruncate(fd, 10)
        os.posix_fallocate(fd, 0, 1 << 20)
        os.truncate(f"{R}/t", 5)
        with open(f"{R}/o", "wb") as f:     # O_TRUNC
            f.write(b"replaced")
    """)
    box.cut()
    assert box.read("t") == b"0123456789" * 100
    assert box.read("o") == b"keep me"


def test_a_directory_whose_name_was_not_synced_is_lost_with_what_it_held(box):
    box.run("""
        os.mkdir(f"{R}/data")
        with open(f"{R}/data/file", "wb") as f:
            f.write(b"x"); f.flush(); os.fsync(f.fileno())
        dsync(f"{R}/data")   # the file's name is durable in data/, data/ is not in R
    """)
    box.cut()
    assert os.listdir(box.root) == []


def test_prefix_cuts_keep_an_ordered_prefix_of_the_unsynced_appends(box):
    box.run("""
        fd = os.open(f"{R}/log", os.O_WRONLY | os.O_CREAT, 0o644)
        os.fsync(fd); dsync(R)
        for i in range(40):
            os.write(fd, b"%03d;" % i)
    """)
    kept = set()
    for seed in range(12):
        shutil.copytree(box.state, box.state + ".bak", dirs_exist_ok=True)
        shutil.copy(box.path("log"), box.path("..", "log.bak"))
        out = box.cut("prefix", seed)
        data = box.read("log")
        assert data == b"".join(b"%03d;" % i for i in range(len(data) // 4)), data
        assert out["kept"] == len(data) // 4
        kept.add(len(data) // 4)
        shutil.rmtree(box.state)
        os.rename(box.state + ".bak", box.state)
        shutil.copy(box.path("..", "log.bak"), box.path("log"))
    assert len(kept) > 3, kept  # the cut point moves with the seed


def test_torn_writes_lose_whole_sectors_of_one_write(box):
    with open(box.path("seg"), "wb") as f:
        f.write(bytes(8 * 512))
    box.run("""
        fd = os.open(f"{R}/seg", os.O_WRONLY)
        os.pwrite(fd, b"\\xaa" * (8 * 512), 0)
    """)
    out = box.cut("torn", seed=3)
    data = box.read("seg")
    assert out["torn"], out
    sectors = [data[i:i + 512] for i in range(0, len(data), 512)]
    assert all(s in (bytes(512), b"\xaa" * 512) for s in sectors)
    assert bytes(512) in sectors and b"\xaa" * 512 in sectors, "torn: some sectors of each"


def test_lua_io_through_stdio_is_tracked(box):
    if shutil.which("lua5.4") is None:
        pytest.fail("lua5.4 is not installed (make deps)")
    box.run("""
        local f = assert(io.open(R .. "/lost", "w")); f:write("volatile"); f:close()
        local g = assert(io.open(R .. "/kept", "w")); g:write("durable ", 42)
        assert(durable.fdatasync(g)); g:close()
        assert(durable.fsync_dir(R))
        local h = assert(io.open(R .. "/kept", "a")); h:write(" more"); h:flush(); h:close()
        local t = assert(io.open(R .. "/x.tmp", "w")); t:write("x"); t:close()
        assert(durable.fsync(R .. "/x.tmp"))
        assert(os.rename(R .. "/x.tmp", R .. "/x"))
    """, lua=True)
    assert box.read("kept") == b"durable 42 more"
    box.cut()
    # "lost" was named before the directory sync: its name stays, its bytes do not; x.tmp was
    # created after it and its rename never made durable: gone.
    assert sorted(os.listdir(box.root)) == ["kept", "lost"]
    assert box.read("kept") == b"durable 42"
    assert box.read("lost") == b""


def test_a_restart_without_a_cut_carries_the_journal_on(box):
    """A process killed and started again keeps the page cache: what the first one left
    unsynced is still volatile for the second, and a later power cut loses it."""
    box.run("""
        with open(f"{R}/first", "wb") as f:
            f.write(b"unsynced")
    """)
    box.run("""
        with open(f"{R}/second", "wb") as f:
            f.write(b"synced"); f.flush(); os.fsync(f.fileno())
        dsync(R)
    """)
    assert sorted(os.listdir(box.root)) == ["first", "second"]
    box.cut()
    assert sorted(os.listdir(box.root)) == ["first", "second"]  # both names were synced
    assert box.read("first") == b"" and box.read("second") == b"synced"


def test_the_journal_stays_small_over_many_synced_writes(box):
    box.run("""
        fd = os.open(f"{R}/wal", os.O_RDWR | os.O_CREAT, 0o644)
        os.posix_fallocate(fd, 0, 1 << 20)
        os.fsync(fd); dsync(R)
        with open(f"{R}/never-synced", "wb") as f:   # pending for ever
            f.write(b"n")
        for i in range(2000):
            os.pwrite(fd, os.urandom(512), (i % 2048) * 512)
            os.fdatasync(fd)
    """, expect_kill=True)
    size = os.path.getsize(lazyfs.journal_path(box.state))
    # 2000 writes with 512 old bytes each would be over 1 MiB; the shim rewrote the journal
    # down to the records still pending (CRAFT_LAZYFS_COMPACT_BYTES is 64 KiB here).
    assert size < 200_000, size
    box.cut()
    assert not os.path.exists(box.path("never-synced"))
    assert os.path.getsize(box.path("wal")) == 1 << 20


@pytest.fixture(autouse=True)
def small_compaction(monkeypatch):
    monkeypatch.setenv("CRAFT_LAZYFS_COMPACT_BYTES", str(64 * 1024))


def test_what_the_shim_cannot_model_makes_the_cut_refuse(box):
    box.run("""
        import mmap
        with open(f"{R}/m", "wb") as f:
            f.write(bytes(4096))
        fd = os.open(f"{R}/m", os.O_RDWR)
        m = mmap.mmap(fd, 4096, mmap.MAP_SHARED, mmap.PROT_WRITE | mmap.PROT_READ)
        m[0:1] = b"x"
    """)
    with pytest.raises(lazyfs.JournalError, match="mmap"):
        box.cut()


def test_outside_the_root_nothing_is_journaled(box, tmp_path):
    out = tmp_path / "outside"
    box.run(f"""
        with open({str(out)!r}, "wb") as f:
            f.write(b"kept")
    """)
    assert lazyfs.read_journal(box.state) == []
    box.cut()
    assert out.read_bytes() == b"kept"
