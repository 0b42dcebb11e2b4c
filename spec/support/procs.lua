-- Nodes as separate processes, for the specs: Lua ones (spec/support/lua_node.lua, under the
-- interpreter that runs busted) and Python ones (spec/support/py_node.py under .venv/bin/python),
-- driven through request/response files (py_node.py documents the protocol). Every wait is
-- bounded, and procs.kill_all() (called from the specs' after_each) kills whatever is left
-- with SIGKILL.
local raft = require "raft"
local support = require "spec.support"

local procs = { started = {} }

-- The Python with the craft package: the project's .venv (make python-install), or
-- $CRAFT_SPEC_PYTHON to test another build.
local PYTHON = os.getenv("CRAFT_SPEC_PYTHON") or ".venv/bin/python"

--- The interpreter running this spec: "luajit" or "lua5.4".
function procs.interpreter()
    return type(jit) == "table" and "luajit" or "lua5.4"
end

local function lua_env()
    local v = _VERSION:match("%d+%.%d+")
    local tree = "./lua_modules"
    local path = ("%s/share/lua/%s/?.lua;%s/share/lua/%s/?/init.lua;./?.lua;;"):format(tree, v, tree, v)
    local cpath = ("%s/lib/lua/%s/?.so;;"):format(tree, v)
    local e = ("LUA_PATH='%s' LUA_CPATH='%s'"):format(path, cpath)
    if v == "5.4" then
        e = e .. (" LUA_PATH_5_4='%s' LUA_CPATH_5_4='%s'"):format(path, cpath)
    end
    return e
end

--- The shell prefix that runs a Lua script with this interpreter and ./lua_modules: env
-- assignments and the interpreter ("LUA_PATH=... lua5.4").
function procs.lua_command()
    return lua_env() .. " " .. procs.interpreter()
end

--- Fails with a clear message unless .venv/bin/python imports craft.
function procs.require_python()
    local ok = os.execute(PYTHON .. " -c 'import craft' >/dev/null 2>&1")
    if ok ~= true and ok ~= 0 then
        error(PYTHON .. " cannot import craft: the mixed Lua/Python specs need the Python "
            .. "package; run `make python-install` (make test does it first)", 0)
    end
end

local function read_file(path)
    local f = io.open(path)
    if not f then return nil end
    local s = f:read("*a")
    f:close()
    return s
end

local P = {}
P.__index = P

local function peers_arg(peers)
    local parts = {}
    for id, addr in pairs(peers) do parts[#parts + 1] = id .. "=" .. addr end
    table.sort(parts)
    return table.concat(parts, ",")
end

--- Starts node id ("lua" or "python") with its data directory and a fresh control directory.
-- extra: {key = value} options (heartbeat_ms, snapshot_entries, fsync, ...).
function procs.start(kind, id, peers, data_dir, extra)
    local ctl = support.tmpdir()
    local args = { id, peers_arg(peers), data_dir, ctl }
    for k, v in pairs(extra or {}) do args[#args + 1] = k .. "=" .. tostring(v) end
    local cmd
    if kind == "python" then
        cmd = PYTHON .. " spec/support/py_node.py"
    else
        cmd = lua_env() .. " " .. procs.interpreter() .. " spec/support/lua_node.lua"
    end
    local log = ctl .. "/log"
    assert(os.execute(("%s %s >'%s' 2>&1 </dev/null & echo $! > '%s/pid'"):format(
        cmd, table.concat(args, " "), log, ctl)))
    local p = setmetatable({ kind = kind, id = id, ctl = ctl, log = log, next = 0,
        pid = tonumber(read_file(ctl .. "/pid")) }, P)
    assert(p.pid, "no pid for " .. kind .. " node " .. id)
    procs.started[#procs.started + 1] = p
    local ok = raft.wait(function() return read_file(ctl .. "/ready") or not p:alive() end, 15000)
    if not ok or not p:alive() then
        local out = read_file(log) or "(no log)"
        local hint = ""
        if out:find("format version", 1, true) then
            hint = "\n(the data directory was written by a build with another on-disk format: are "
                .. "the Python package in .venv and the Lua rock in ./lua_modules built from the same "
                .. "C sources? `make python-install lua-install` rebuilds both)"
        end
        error(("%s node %d did not start: %s%s"):format(kind, id, out, hint), 2)
    end
    return p
end

function P:alive()
    local stat = read_file("/proc/" .. self.pid .. "/stat")
    return stat ~= nil and not stat:match("^%d+ %b() [ZX]")
end

--- Sends a request; returns its number (see P:result).
function P:send(op, arg)
    self.next = self.next + 1
    local path = ("%s/req.%d"):format(self.ctl, self.next)
    local f = assert(io.open(path .. ".tmp", "w"))
    f:write(op .. "\n" .. (arg or ""))
    f:close()
    assert(os.rename(path .. ".tmp", path))
    return self.next
end

--- The answer to request n if it arrived: true, value or false, message; nil if not yet.
function P:poll(n)
    local s = read_file(("%s/resp.%d"):format(self.ctl, n))
    if not s then return nil end
    local status, value = s:match("^(%a+)\n(.*)$")
    return status == "ok", value
end

--- Waits (running this state's loop) for the answer to request n: value, or nil, message.
function P:result(n, timeout_ms)
    local ok, value
    local done = raft.wait(function()
        local a, b = self:poll(n)
        if a == nil then return self.dead end
        ok, value = a, b
        return true
    end, timeout_ms or 10000)
    if not done then return nil, "timeout: no answer from " .. self.kind .. " node " .. self.id end
    if ok == nil then return nil, "the node was killed" end
    if not ok then return nil, value end
    return value
end

function P:call(op, arg, timeout_ms)
    return self:result(self:send(op, arg), timeout_ms)
end

--- role, leader id, applied, commit.
function P:status()
    local s, err = self:call("status", nil, 5000)
    if not s then return nil, err end
    local role, leader, applied, commit = s:match("^(%S+) (%d+) (%d+) (%d+)")
    return role, tonumber(leader), tonumber(applied), tonumber(commit)
end

--- SIGKILL, and waits until the process is gone.
function P:kill()
    os.execute("kill -9 " .. self.pid .. " 2>/dev/null")
    self.dead = true
    assert(raft.wait(function() return not self:alive() end, 5000, "the killed process to exit"))
end

--- Kills every process a spec started (SIGKILL) and forgets them.
function procs.kill_all()
    for _, p in ipairs(procs.started) do
        if p:alive() then os.execute("kill -9 " .. p.pid .. " 2>/dev/null") end
    end
    procs.started = {}
end

--- The log of a process (for failure messages).
function P:output()
    return read_file(self.log) or ""
end

-- ---- cluster helpers over processes (and, for the mixed spec, an in-state node) ----------

--- Waits until some process reports itself leader: that process.
function procs.find_leader(nodes, timeout_ms)
    local found
    local ok, msg = raft.wait(function()
        for _, p in pairs(nodes) do
            if not p.dead then
                local role = p:status()
                if role == "leader" then found = p return true end
            end
        end
    end, timeout_ms or 15000, "a leader among the processes")
    if not ok then
        local lines = { msg }
        for id, p in pairs(nodes) do
            if not p.dead then
                local role, leader, applied, commit = p:status()
                lines[#lines + 1] = ("node %d (%s): %s, leader %s, applied %s, commit %s"):format(
                    id, p.kind, tostring(role), tostring(leader), tostring(applied), tostring(commit))
                if p.output then lines[#lines + 1] = p:output():sub(-2000) end
            end
        end
        error(table.concat(lines, "\n"), 2)
    end
    return found
end

--- Sends "set kI vI" for I in [from, to] round-robin through the live nodes; returns the
-- pending requests {node, n, i}.
function procs.send_writes(nodes, from, to, tag)
    local live, pending = {}, {}
    for _, p in pairs(nodes) do if not p.dead then live[#live + 1] = p end end
    for i = from, to do
        local p = live[i % #live + 1]
        pending[#pending + 1] = { p = p, n = p:send("apply", ("set %s%d v%d"):format(tag, i, i)), i = i }
    end
    return pending
end

--- Collects the answers: the indexes that were acknowledged.
function procs.collect(pending, acked)
    for _, r in ipairs(pending) do
        local v = r.p:result(r.n, 12000)
        if v ~= nil then acked[#acked + 1] = r.i end
    end
    return acked
end

--- Waits until every node's linearizable read gives the same state; returns it.
function procs.converge(nodes, timeout_ms)
    local state
    local ok = raft.wait(function()
        local seen
        for _, p in pairs(nodes) do
            local s = p:call("state", nil, 5000)
            if s == nil or (seen ~= nil and s ~= seen) then return false end
            seen = s
        end
        state = seen
        return true
    end, timeout_ms or 20000, "every node to hold the same state")
    if not ok then
        local out = {}
        for id, p in pairs(nodes) do out[#out + 1] = id .. ": " .. tostring(p:call("stale", nil, 2000)) end
        error("the nodes did not converge:\n" .. table.concat(out, "\n"), 2)
    end
    return state
end

function procs.parse(state)
    local t = {}
    for k, v in state:gmatch("([^=\n]+)=([^\n]*)\n") do t[k] = v end
    return t
end

return procs
