--[[ B1/B2 (B6) for Lua: the cluster benchmark driven from Lua, state machine in Lua.

    lua5.4 bench/lua_bench.lua                  # from the repository's root, after make lua-install
    luajit bench/lua_bench.lua --quick          # 1 repetition of 2 s: a smoke test, not a measurement
    lua5.4 bench/lua_bench.lua --windows 1,64,256 --reps 3 --duration 5 [--nosync] [--dir /var/tmp]

The same workload as bench/python_bench.py and bench/cluster_bench.c: every point is 3
processes on 127.0.0.1 (this script in "worker" mode, one raft.node each, run by the same
interpreter as the driver), 100-byte commands (an 8-byte key "k0000042" and padding, 1024
distinct keys), a table state machine written in Lua (data[key] = command), heartbeat 50 ms,
election timeout 500 ms, snapshots every 16,384 entries keeping 1,024. Durable by default: the
data directories on --dir (default $TMPDIR or /var/tmp, a disk) with fsync on (fdatasync before
acknowledging); --nosync puts them on /dev/shm with fsync off.

The node that becomes leader runs a closed loop in its own process and on its own loop: W
proposals outstanding (node:propose with a callback; each completion submits the next one). 1 s
of warm-up, then --duration seconds measured; latency from propose to the callback, on the
proposer (raft.hrtime). Repetitions are interleaved (repetition r of every window runs before
repetition r + 1 of any); the figures are the median and min-max of ops/s and the median of the
per-repetition p50/p99.

Bounded: every worker is killed with SIGKILL at the end of its point (and at exit, even on an
error); each worker also exits by itself when the driver's process is gone or its deadline
passes. Only 127.0.0.1 is used.
]]

local v = _VERSION:match("%d+%.%d+")
-- Where the rock is: $RAFT_LUA_TREE, else the checkout's lua_modules (make lua-install) next to
-- this script, whatever the working directory; without either, the interpreter's own paths
-- (a rock installed with luarocks into the system tree).
local SCRIPT = arg and arg[0] or "bench/lua_bench.lua"
local ROOT = SCRIPT:match("^(.*)/bench/[^/]*$") or (SCRIPT:match("^bench/") and ".") or
    (SCRIPT:match("^(.*)/[^/]*$") and SCRIPT:match("^(.*)/[^/]*$") .. "/..") or ".."
local function exists(path)
    local f = io.open(path)
    if f then f:close() end
    return f ~= nil
end
local TREE = os.getenv("RAFT_LUA_TREE")
if not TREE and exists(("%s/lua_modules/lib/lua/%s/raft/core.so"):format(ROOT, v)) then
    TREE = ROOT .. "/lua_modules"
end
local LPATH, LCPATH = "", ""
if TREE then
    LPATH = ("%s/share/lua/%s/?.lua;%s/share/lua/%s/?/init.lua;"):format(TREE, v, TREE, v)
    LCPATH = ("%s/lib/lua/%s/?.so;"):format(TREE, v)
end
package.path = LPATH .. package.path
package.cpath = LCPATH .. package.cpath
local ok_raft, raft = pcall(require, "raft")
if not ok_raft then
    io.stderr:write("lua_bench: cannot load the rock \"raft\" (", tostring(raft), "): run `make "
        .. "lua-install` in the checkout, set RAFT_LUA_TREE to a luarocks tree holding it, or "
        .. "install it with luarocks\n")
    os.exit(2)
end

local KEYS, SIZE = 1024, 100

local function read_file(path)
    local f = io.open(path)
    if not f then return nil end
    local s = f:read("*a")
    f:close()
    return s
end

local function write_atomic(path, text)
    local f = assert(io.open(path .. ".tmp", "w"))
    f:write(text)
    f:close()
    assert(os.rename(path .. ".tmp", path))
end

local function self_pid()
    return (read_file("/proc/self/stat") or ""):match("^(%d+)")
end

local function commands()
    local out = {}
    for i = 0, KEYS - 1 do
        local key = ("k%07d"):format(i)
        local pad = ("v%d-"):format(i):rep(40)
        out[#out + 1] = (key .. pad):sub(1, SIZE)
    end
    return out
end

local function percentile(sorted, p)
    if #sorted == 0 then return 0 end
    local i = math.max(1, math.min(#sorted, math.ceil(p * #sorted)))
    return sorted[i]
end

-- ---- worker: one node; the leader runs the load ------------------------------------------------

local function worker(a)
    local id, peers_arg, dir, out = tonumber(a[2]), a[3], a[4], a[5]
    local window, warmup, duration = tonumber(a[6]), tonumber(a[7]), tonumber(a[8])
    local fsync, parent, deadline_s = a[9] == "1", a[10], tonumber(a[11])
    local peers = {}
    for k, addr in peers_arg:gmatch("(%d+)=([^,]+)") do peers[tonumber(k)] = addr end
    local data = {}
    local node = assert(raft.node{
        id = id, address = peers[id], data_dir = dir, peers = peers, fsync = fsync,
        heartbeat_ms = 50, election_timeout_ms = 500, log_level = "error",
        apply = function(cmd) data[cmd:sub(1, 8)] = cmd end,
        snapshot = function()
            local parts = {}
            for _, c in pairs(data) do parts[#parts + 1] = c end
            return parts
        end,
        restore = function(s)
            data = {}
            for i = 1, #s, SIZE do local c = s:sub(i, i + SIZE - 1) data[c:sub(1, 8)] = c end
        end,
    })
    local deadline = raft.now() + deadline_s * 1000
    local function watchdog()
        if raft.now() > deadline or not read_file("/proc/" .. parent .. "/stat") then os.exit(3) end
        raft.after(200, watchdog)
    end
    watchdog()
    assert(node:wait_for_leader(20000))
    if not node:is_leader() then
        raft.run() -- replicate until killed
        return
    end
    local cmds = commands()
    local t_start = raft.hrtime()
    local t_measure = t_start + warmup * 1000
    local t_end = t_measure + duration * 1000
    local lat, done, errors, next_cmd, outstanding = {}, 0, 0, 0, 0
    local function submit()
        next_cmd = next_cmd % KEYS + 1
        local t0 = raft.hrtime()
        outstanding = outstanding + 1
        node:propose(cmds[next_cmd], function(_, err)
            local t1 = raft.hrtime()
            outstanding = outstanding - 1
            if t0 >= t_measure and t1 <= t_end then
                if err then errors = errors + 1 else done = done + 1; lat[#lat + 1] = t1 - t0 end
            end
            if t1 < t_end then submit() elseif outstanding == 0 then raft.stop() end
        end)
    end
    for _ = 1, window do submit() end
    raft.run((warmup + duration) * 1000 + 15000)
    table.sort(lat)
    write_atomic(out, ("ops %f\np50 %f\np99 %f\nerrors %d\ncount %d\n"):format(
        done / duration, percentile(lat, 0.50), percentile(lat, 0.99), errors, done))
    raft.run() -- stay up (followers need a leader) until the driver kills the cluster
end

-- ---- driver -----------------------------------------------------------------------------------

local live = {}

local function kill_all()
    for _, pid in ipairs(live) do os.execute("kill -9 " .. pid .. " 2>/dev/null") end
    live = {}
end

local function free_addresses(n, dir)
    local probes, out = {}, {}
    for i = 1, n do
        probes[i] = assert(raft.node{ id = i, address = "127.0.0.1:0", data_dir = dir .. "/probe" .. i,
            join = true, fsync = false, apply = function() end })
        out[i] = probes[i]:address()
    end
    for i = 1, n do probes[i]:close() end
    return out
end

local function point(o, window, rep)
    local root = ("%s/lua-bench-%s-%d-%d"):format(o.dir, self_pid(), window, rep)
    assert(os.execute("rm -rf '" .. root .. "' && mkdir -p '" .. root .. "'"))
    local addrs = free_addresses(3, root)
    local parts = {}
    for i = 1, 3 do parts[i] = i .. "=" .. addrs[i] end
    local peers = table.concat(parts, ",")
    local interp = arg[-1] or "lua5.4"
    local env = ("LUA_PATH='%s;;' LUA_CPATH='%s;;'"):format(LPATH, LCPATH)
    if v == "5.4" then env = env .. (" LUA_PATH_5_4='%s;;' LUA_CPATH_5_4='%s;;'"):format(LPATH, LCPATH) end
    if TREE then env = env .. (" RAFT_LUA_TREE='%s'"):format(TREE) end
    local budget = o.warmup + o.duration + 60
    for i = 1, 3 do
        local cmd = ("%s %s '%s' worker %d %s %s/n%d %s/out %d %g %g %d %s %d >'%s/log%d' 2>&1 </dev/null & echo $! > '%s/pid%d'"):format(
            env, interp, SCRIPT, i, peers, root, i, root, window, o.warmup, o.duration, o.fsync and 1 or 0,
            self_pid(), budget, root, i, root, i)
        assert(os.execute(cmd))
        live[#live + 1] = assert(tonumber(read_file(("%s/pid%d"):format(root, i))))
    end
    local ok = raft.wait(function() return read_file(root .. "/out") end, budget * 1000, "the leader's results")
    local text = read_file(root .. "/out")
    kill_all()
    if not ok or not text then
        local logs = {}
        for i = 1, 3 do logs[#logs + 1] = read_file(("%s/log%d"):format(root, i)) or "" end
        os.execute("rm -rf '" .. root .. "'")
        error("no result for window " .. window .. ":\n" .. table.concat(logs, "\n"))
    end
    os.execute("rm -rf '" .. root .. "'")
    local r = {}
    for k, val in text:gmatch("(%a+%d*) ([%d%.e+-]+)") do r[k] = tonumber(val) end
    return r
end

local function median(xs)
    local s = {}
    for i, x in ipairs(xs) do s[i] = x end
    table.sort(s)
    if #s == 0 then return 0 end
    if #s % 2 == 1 then return s[(#s + 1) / 2] end
    return (s[#s / 2] + s[#s / 2 + 1]) / 2
end

local function driver(a)
    local o = { windows = { 1, 64 }, reps = 3, duration = 5, warmup = 1, fsync = true,
        dir = os.getenv("TMPDIR") or "/var/tmp" }
    local i = 1
    while i <= #a do
        local k = a[i]
        if k == "--quick" then o.reps, o.duration = 1, 2
        elseif k == "--nosync" then o.fsync, o.dir = false, "/dev/shm"
        elseif k == "--windows" then i = i + 1; o.windows = {}; for w in a[i]:gmatch("%d+") do o.windows[#o.windows + 1] = tonumber(w) end
        elseif k == "--reps" then i = i + 1; o.reps = tonumber(a[i])
        elseif k == "--duration" then i = i + 1; o.duration = tonumber(a[i])
        elseif k == "--dir" then i = i + 1; o.dir = a[i]
        else error("unknown argument " .. k .. " (see the comment at the top of bench/lua_bench.lua)") end
        i = i + 1
    end
    local interp = (type(jit) == "table" and jit.version) or _VERSION
    print(("craft from Lua (%s): 3 processes on 127.0.0.1, %d-byte commands, %s (data in %s), "
        .. "%d x %g s after %g s of warm-up"):format(interp, SIZE, o.fsync and "durable (fsync on)" or "nosync",
        o.dir, o.reps, o.duration, o.warmup))
    local results = {}
    for _, w in ipairs(o.windows) do results[w] = {} end
    for rep = 1, o.reps do
        for _, w in ipairs(o.windows) do
            local r = point(o, w, rep)
            table.insert(results[w], r)
            io.stderr:write(("  window %d rep %d: %.0f ops/s p50 %.3f ms p99 %.3f ms (%d errors)\n"):format(
                w, rep, r.ops, r.p50, r.p99, r.errors))
        end
    end
    print(("%-8s %-28s %-10s %-10s"):format("window", "ops/s median (min-max)", "p50 ms", "p99 ms"))
    for _, w in ipairs(o.windows) do
        local ops, p50, p99 = {}, {}, {}
        for _, r in ipairs(results[w]) do ops[#ops + 1] = r.ops; p50[#p50 + 1] = r.p50; p99[#p99 + 1] = r.p99 end
        table.sort(ops)
        print(("%-8d %-28s %-10.3f %-10.3f"):format(w, ("%.0f (%.0f-%.0f)"):format(median(ops), ops[1], ops[#ops]),
            median(p50), median(p99)))
    end
end

if arg[1] == "worker" then
    worker(arg)
else
    local ok, err = pcall(driver, arg)
    kill_all()
    if not ok then
        io.stderr:write(tostring(err) .. "\n")
        os.exit(1)
    end
end
