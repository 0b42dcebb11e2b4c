"""The durable log stores the power-loss campaign runs on (file_store.py, file_store.lua): a
random walk of every call against the in-memory stores (craft.MemoryLogStore,
raft.memory_store(), which follow c/include/craft/store.h), reopening the store from its
directory at random points; a torn last append is cut on open; and the two stores read each
other's directory (one format)."""

import os
import random
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import lazyfs  # noqa: E402

craft = pytest.importorskip("craft")
import file_store  # noqa: E402


def E(i, t, data=b"x"):
    return (i, t, 1, data)


def snapshot(store, meta, data):
    w = store.snapshot_begin(meta)
    w.write(data)
    store.snapshot_commit(w)


def same(a, b):
    assert a.bounds() == b.bounds()
    first, last = a.bounds()
    assert a.load_hard_state() == b.load_hard_state()
    if last >= first:
        assert a.entries(first, last) == b.entries(first, last)
    for i in range(max(0, first - 1), last + 1):
        assert a.term(i) == b.term(i), i
    ma, mb = a.snapshot_meta(), b.snapshot_meta()
    assert (ma is None) == (mb is None)
    if ma is not None:
        assert tuple(ma) == tuple(mb)
        ra, rb = a.snapshot_open(), b.snapshot_open()
        assert ra.read(0, 1 << 20) == rb.read(0, 1 << 20)
        ra.close()
        rb.close()


def test_python_file_store_against_the_memory_store(tmp_path):
    rng = random.Random(7)
    path = str(tmp_path / "s")
    s, m = file_store.FileLogStore(path), craft.MemoryLogStore()
    term = 1
    for step in range(400):
        first, last = m.bounds()
        x = rng.random()
        if x < 0.45:
            if rng.random() < 0.2:
                term += 1
            es = [E(last + 1 + k, term, os.urandom(rng.randrange(40))) for k in
                  range(rng.randrange(1, 4))]
            s.append(es)
            m.append(es)
        elif x < 0.55 and last >= first:
            # Raft never truncates committed entries, so never below a snapshot: the stores'
            # open-time repair of an unfinished snapshot commit counts on it.
            snap = m.snapshot_meta()
            frm = rng.randrange(min(max(first, snap[0] + 1 if snap else 1), last + 1), last + 2)
            s.truncate(frm)
            m.truncate(frm)
        elif x < 0.65:
            upto = rng.randrange(max(0, first - 1), last + 2)
            s.compact(upto)
            m.compact(upto)
        elif x < 0.8:
            snap = m.snapshot_meta()
            lo = max(snap[0] if snap else 0, first - 1, 1)
            idx = rng.randrange(lo, last + 3)
            t = m.term(idx) if first - 1 <= idx <= last else term + 1
            term = max(term, t)
            data = os.urandom(rng.randrange(100))
            meta = (idx, t, 1, 0, b"conf")
            snapshot(s, meta, data)
            snapshot(m, meta, data)
        else:
            hs = (term, rng.randrange(4), rng.randrange(last + 1))
            s.save_hard_state(*hs)
            m.save_hard_state(*hs)
        if rng.random() < 0.3:
            s.close()
            s = file_store.FileLogStore(path)
        same(s, m)
    # A reader keeps reading the snapshot it opened after a newer one replaces it.
    old = s.snapshot_open()
    before = old.read(0, 1 << 20)
    first, last = s.bounds()
    snapshot(s, (last + 5, term + 1, 1, 0, b"c"), b"newer")
    assert old.read(0, 1 << 20) == before
    old.close()


def test_python_file_store_cuts_a_torn_last_append(tmp_path):
    path = str(tmp_path / "s")
    s = file_store.FileLogStore(path)
    s.append([E(1, 1, b"a" * 50), E(2, 1, b"b" * 50)])
    s.append([E(3, 1, b"c" * 50)])
    s.close()
    log = os.path.join(path, "log")
    size = os.path.getsize(log)
    for cut in (1, 10, 60):
        shutil.copy(log, log + ".orig")
        os.truncate(log, size - cut)
        s = file_store.FileLogStore(path)
        assert s.bounds() == (1, 2)
        s.append([E(3, 2, b"d")])
        s.close()
        s = file_store.FileLogStore(path)
        assert s.entries(3, 3) == [E(3, 2, b"d")]
        s.close()
        os.replace(log + ".orig", log)


LUA_WALK = r"""
local raft = require "raft"
local fs = require "file_store"
local path, seed = arg[1], tonumber(arg[2])
math.randomseed(seed)
local s, m = fs.open(path), raft.memory_store()
local function same()
    local f1, l1 = s:bounds()
    local f2, l2 = m:bounds()
    assert(f1 == f2 and l1 == l2, ("bounds %d..%d vs %d..%d"):format(f1, l1, f2, l2))
    local a, b = { s:load_hard_state() }, { m:load_hard_state() }
    assert(a[1] == b[1] and a[2] == b[2] and a[3] == b[3], "hard state")
    if l1 >= f1 then
        local ea, eb = s:entries(f1, l1), m:entries(f1, l1)
        for i = 1, #eb do
            assert(ea[i].index == eb[i].index and ea[i].term == eb[i].term and
                   ea[i].data == eb[i].data and ea[i].type == eb[i].type, "entry " .. eb[i].index)
        end
    end
    for i = math.max(0, f1 - 1), l1 do assert(s:term(i) == m:term(i), "term " .. i) end
    local ma, mb = s:snapshot_meta(), m:snapshot_meta()
    assert((ma == nil) == (mb == nil), "snapshot presence")
    if ma then
        for _, k in ipairs({ "index", "term", "conf_index", "size", "conf" }) do
            assert(ma[k] == mb[k], "snapshot " .. k)
        end
        local ra, rb = s:snapshot_open(), m:snapshot_open()
        assert(ra:read(0, 1 << 20) == rb:read(0, 1 << 20), "snapshot data")
        ra:close()
    end
end
local function rand_data(n)
    local t = {}
    for i = 1, n do t[i] = string.char(math.random(0, 255)) end
    return table.concat(t)
end
local term = 1
for step = 1, 300 do
    local first, last = m:bounds()
    local x = math.random()
    if x < 0.45 then
        if math.random() < 0.2 then term = term + 1 end
        local es = {}
        for k = 1, math.random(1, 3) do
            es[k] = { index = last + k, term = term, type = 1, data = rand_data(math.random(0, 40)) }
        end
        s:append(es); m:append(es)
    elseif x < 0.55 and last >= first then
        local snap = m:snapshot_meta()
        local frm = math.random(math.min(math.max(first, snap and snap.index + 1 or 1), last + 1), last + 1)
        s:truncate(frm); m:truncate(frm)
    elseif x < 0.65 then
        local upto = math.random(math.max(0, first - 1), last + 1)
        s:compact(upto); m:compact(upto)
    elseif x < 0.8 then
        local snap = m:snapshot_meta()
        local lo = math.max(snap and snap.index or 0, first - 1, 1)
        local idx = math.random(lo, last + 2)
        local t = (idx >= first - 1 and idx <= last) and m:term(idx) or term + 1
        term = math.max(term, t)
        local data = rand_data(math.random(0, 99))
        for _, st in ipairs({ s, m }) do
            local w = st:snapshot_begin({ index = idx, term = t, conf_index = 1, size = 0, conf = "conf" })
            w:write(data)
            st:snapshot_commit(w)
        end
    else
        local a, b, c = term, math.random(0, 3), math.random(0, last)
        s:save_hard_state(a, b, c); m:save_hard_state(a, b, c)
    end
    if math.random() < 0.3 then
        s:close()
        s = fs.open(path)
    end
    same()
end
print("ok")
"""

LUA_READ = r"""
local fs = require "file_store"
local s = fs.open(arg[1])
local f, l = s:bounds()
local t, v, c = s:load_hard_state()
local parts = { ("%d %d %d %d %d"):format(f, l, t, v, c) }
for _, e in ipairs(s:entries(f, l)) do parts[#parts + 1] = ("%d/%d/%s"):format(e.index, e.term, e.data) end
local m = s:snapshot_meta()
parts[#parts + 1] = ("snap %d %d %s"):format(m.index, m.term, s:snapshot_open():read(0, 100))
print(table.concat(parts, " "))
"""


def lua(tmp_path, code, *args):
    if shutil.which("lua5.4") is None:
        pytest.fail("lua5.4 is not installed (make deps)")
    tree = os.path.join(ROOT, "lua_modules")
    if not os.path.isdir(os.path.join(tree, "lib", "lua", "5.4")):
        pytest.fail("the Lua rock is not built into ./lua_modules: run `make lua-install`")
    durable = os.path.join(os.path.dirname(lazyfs.shim_path()), "lua")
    e = dict(os.environ)
    e["LUA_PATH"] = (f"{tree}/share/lua/5.4/?.lua;{tree}/share/lua/5.4/?/init.lua;"
                     f"{HERE}/?.lua;;")
    e["LUA_CPATH"] = f"{tree}/lib/lua/5.4/?.so;{durable}/?.so;;"
    script = tmp_path / "script.lua"
    script.write_text(code)
    r = subprocess.run(["lua5.4", str(script), *args], env=e, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_lua_file_store_against_the_memory_store(tmp_path):
    assert lua(tmp_path, LUA_WALK, str(tmp_path / "s"), "11") == "ok"


def test_the_lua_store_reads_what_the_python_store_wrote(tmp_path):
    path = str(tmp_path / "s")
    s = file_store.FileLogStore(path)
    s.save_hard_state(3, 2, 1)
    s.append([E(1, 1, b"a"), E(2, 2, b"b"), E(3, 3, b"c")])
    snapshot(s, (2, 2, 1, 0, b"conf"), b"snapdata")
    s.compact(1)
    s.close()
    assert lua(tmp_path, LUA_READ, path) == "2 3 3 2 1 2/2/b 3/3/c snap 2 2 snapdata"
