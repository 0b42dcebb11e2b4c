-- One craft node in Lua for the power-loss campaign (powercut.py --store lua), run under the
-- lazyfs shim, on the log store written in Lua (file_store.lua):
--
--     lua5.4 node.lua ID PEERS DATA_DIR CTL_DIR APPLIED_FILE [sync=false] [snapshot_entries=N]
--
-- with LUA_PATH/LUA_CPATH reaching the raft rock (./lua_modules), file_store.lua and the
-- durable module. The same protocol as node.py, which documents it: requests CTL/req.N
-- answered in CTL/resp.N, "set K V", "state", "digest", "status"; the applied file gets
-- "a INDEX CHAIN COMMAND" per apply and "r INDEX CHAIN" per restore. The chain here is FNV-1a
-- (64 bits) over the previous chain, the index and the command: compared only between Lua
-- nodes of one run.
local raft = require "raft"
local file_store = require "file_store"

local id, peers_arg, data_dir, ctl, applied_path = tonumber(arg[1]), arg[2], arg[3], arg[4], arg[5]
local opts = { sync = true, snapshot_entries = 100 }
for i = 6, #arg do
    local k, v = arg[i]:match("^([%w_]+)=(.*)$")
    if v == "true" or v == "false" then opts[k] = v == "true" else opts[k] = tonumber(v) end
end
local peers = {}
for k, v in peers_arg:gmatch("(%d+)=([^,]+)") do peers[tonumber(k)] = v end

local out = assert(io.open(applied_path, "a"))
out:setvbuf("no") -- one write per line, nothing left in a buffer when the power goes

local function fnv(s, h)
    h = h or -3750763034362895579 -- 0xcbf29ce484222325
    for i = 1, #s do
        h = (h ~ s:byte(i)) * 1099511628211
    end
    return h
end

local data, applied, chain = {}, 0, 0
local fsm = {}
function fsm.apply(command, index)
    chain = fnv(("%016x:%d:%s"):format(chain, index, command))
    applied = index
    out:write(("a %d %016x %s\n"):format(index, chain, command))
    local op, k, v = command:match("^(%S+) (%S+) (.*)$")
    if op ~= "set" then error("unknown command " .. command, 0) end
    data[k] = v
    return "OK"
end
local function dump()
    local parts = {}
    for k, v in pairs(data) do parts[#parts + 1] = k .. "=" .. v .. "\n" end
    table.sort(parts)
    return table.concat(parts)
end
function fsm.snapshot()
    return ("%d %016x\n"):format(applied, chain) .. dump()
end
function fsm.restore(s)
    local a, c, rest = s:match("^(%d+) (%x+)\n(.*)$")
    applied, chain, data = tonumber(a), tonumber(c, 16), {}
    for k, v in rest:gmatch("([^=\n]+)=([^\n]*)\n") do data[k] = v end
    out:write(("r %d %016x\n"):format(applied, chain))
end

local ok, store = pcall(file_store.open, data_dir, { sync = opts.sync })
if not ok then
    io.stderr:write(("node %d: cannot start: %s\n"):format(id, tostring(store)))
    os.exit(3)
end
local node, err = raft.node{
    id = id, address = peers[id], peers = peers, log_store = store, fsm = fsm,
    heartbeat_ms = 50, election_timeout_ms = 300, timeout_ms = 3000,
    snapshot_entries = opts.snapshot_entries, snapshot_trailing = 20, log_level = "info",
    on = { stopped = function(code, msg) io.stderr:write(("node %d: stopped: %s %s\n"):format(id, code, msg)) end },
}
if not node then
    io.stderr:write(("node %d: cannot start: %s\n"):format(id, tostring(err)))
    os.exit(3)
end
local st = node:status()
print(("node %d: started: term %d commit %d applied %d log %d..%d snapshot %d"):format(
    id, st.term, st.commit, st.applied, st.first_index, st.last_index, st.snapshot_index))
io.stdout:flush()
raft.on_error(function(e) io.stderr:write("node " .. id .. ": " .. tostring(e) .. "\n") end)

local function write_atomic(path, text)
    local f = assert(io.open(path .. ".tmp", "w"))
    f:write(text)
    f:close()
    assert(os.rename(path .. ".tmp", path))
end

local function pid()
    local f = io.open("/proc/self/stat")
    local p = f and f:read("l"):match("^(%d+)")
    if f then f:close() end
    return p or "?"
end
write_atomic(ctl .. "/ready", pid())

local function answer(n)
    return function(value, e)
        if value == nil and e ~= nil then
            write_atomic(("%s/resp.%d"):format(ctl, n), "err\n" .. tostring(e))
        else
            write_atomic(("%s/resp.%d"):format(ctl, n), "ok\n" .. tostring(value or ""))
        end
    end
end

local next_req = 1
local function poll()
    while true do
        local f = io.open(("%s/req.%d"):format(ctl, next_req))
        if not f then break end
        local req = f:read("a")
        f:close()
        local reply = answer(next_req)
        next_req = next_req + 1
        if req:match("^set ") then
            node:propose(req, reply)
        elseif req == "state" then
            node:read(dump, reply)
        elseif req == "digest" then
            reply(("%d %016x"):format(applied, chain))
        elseif req == "status" then
            local s = node:status()
            reply(("%s %d %d %d %d"):format(s.role, s.leader or 0, s.term, s.applied, s.commit))
        else
            reply(nil, "unknown request " .. req)
        end
    end
    raft.after(2, poll)
end
raft.after(0, poll)
raft.run()
