-- Shared by the specs: temporary directories, free loopback ports, state machines, clusters.
local raft = require "raft"

local support = {}

local counter = 0

-- WAL segments of spec nodes: 1 MiB instead of the default 64 MiB each node preallocates.
support.SEGMENT = 1048576

--- A fresh empty directory under $TMPDIR, removed by support.cleanup().
function support.tmpdir()
    counter = counter + 1
    local base = os.getenv("TMPDIR") or "/tmp"
    local dir = ("%s/raft-spec-%d-%d-%d"):format(base, os.time(), math.random(1e9), counter)
    assert(os.execute("mkdir -p '" .. dir .. "'"))
    support._dirs = support._dirs or {}
    table.insert(support._dirs, dir)
    return dir
end

function support.cleanup()
    for _, d in ipairs(support._dirs or {}) do
        os.execute("rm -rf '" .. d .. "'")
    end
    support._dirs = {}
end

-- Ports for spec nodes come from below the kernel's ephemeral range (32768-60999 by default):
-- connect() hands its local ports out of that range, so a port the kernel chose for us there can
-- be taken by another node's outgoing connection between the probe and the node's listen, or
-- while the node is down for a restart (EADDRINUSE in CI). tests/free_ports.py is the Python
-- twin, c/tests/free_port.h the C one. One cursor per process, from a random place, moving on.
local LOWEST = 10000
local cursor

local function ephemeral_low()
    local f = io.open("/proc/sys/net/ipv4/ip_local_port_range")
    local lo = f and tonumber((f:read("*l") or ""):match("^%s*(%d+)")) or 32768
    if f then f:close() end
    return lo > LOWEST + 1000 and lo or 32768
end

--- n free loopback addresses: a node is opened on each (so each was free), then closed.
function support.free_addresses(n)
    local span = ephemeral_low() - LOWEST
    if not cursor then
        local stat = io.open("/proc/self/stat")
        local pid = stat and tonumber(stat:read("*l"):match("^(%d+)")) or 0
        if stat then stat:close() end
        cursor = (pid * 7919 + os.time() + math.random(1, span)) % span
    end
    local out, dir = {}, support.tmpdir()
    for _ = 1, span do
        if #out == n then return out end
        local addr = ("127.0.0.1:%d"):format(LOWEST + cursor)
        cursor = (cursor + 1) % span
        local probe, err, code = raft.node{ id = 1, address = addr,
            data_dir = dir .. "/p" .. (#out + 1) .. "-" .. cursor,
            join = true, fsync = false, apply = function() end, segment_size = support.SEGMENT }
        if probe then
            probe:close()
            out[#out + 1] = addr
        elseif code ~= "EADDRINUSE" then
            error("support.free_addresses: " .. tostring(err), 2) -- not a port in use: say so
        end
    end
    error(("fewer than %d free ports on 127.0.0.1 below %d"):format(n, LOWEST + span))
end

--- A replicated key-value store: commands "set k v", "inc k n", "get k", "fail msg".
function support.kv()
    local data, applied = {}, {}
    local fsm = {}
    function fsm.apply(command, index)
        applied[#applied + 1] = index
        local op, k, v = command:match("^(%S+)%s*(%S*)%s*(.*)$")
        if op == "set" then
            data[k] = v
            return v
        elseif op == "inc" then
            data[k] = tostring((tonumber(data[k]) or 0) + (tonumber(v) or 1))
            return data[k]
        elseif op == "get" then
            return data[k]
        elseif op == "fail" then
            error(k, 0)
        end
        error("unknown command " .. command, 0)
    end
    function fsm.snapshot()
        local parts = {}
        for k, v in pairs(data) do parts[#parts + 1] = k .. "=" .. v .. "\n" end
        table.sort(parts)
        return parts -- a table of strings: the runtime writes them one after the other
    end
    function fsm.restore(s)
        data = {}
        for k, v in s:gmatch("([^=\n]+)=([^\n]*)\n") do data[k] = v end
    end
    function fsm.data() return data end
    function fsm.applied() return applied end
    return fsm
end

--- Starts n nodes in this Lua state: returns the cluster {nodes, fsms, peers, dirs}. Every
--- option goes to raft.node, but for `stores` ({[id] = log store}) and `fsm_for` (a function
--- of the id making each state machine; support.kv() by default).
function support.cluster(n, opts)
    opts = opts or {}
    local addrs = support.free_addresses(n)
    local c = { nodes = {}, fsms = {}, peers = {}, dirs = {}, opts = opts }
    for i = 1, n do c.peers[i] = addrs[i] end
    local root = support.tmpdir()
    for i = 1, n do c.dirs[i] = root .. "/n" .. i end
    function c.start(i)
        c.fsms[i] = opts.fsm_for and opts.fsm_for(i) or support.kv()
        local o = {
            id = i, address = c.peers[i], data_dir = c.dirs[i], peers = c.peers, fsm = c.fsms[i],
            heartbeat_ms = 20, election_timeout_ms = 200, fsync = false, timeout_ms = 5000,
            log_level = "error", segment_size = support.SEGMENT,
        }
        for k, v in pairs(opts) do
            if k == "stores" then
                o.log_store = v[i] -- a log store per node: {[id] = store}
            elseif k ~= "fsm_for" then
                o[k] = v
            end
        end
        c.nodes[i] = assert(raft.node(o))
        return c.nodes[i]
    end
    for i = 1, n do c.start(i) end
    function c.leader(timeout_ms)
        local id
        assert(raft.wait(function()
            for i, nd in pairs(c.nodes) do
                if nd:is_open() and nd:is_leader() then id = i return true end
            end
        end, timeout_ms or 10000, "a leader"))
        return id
    end
    function c.close()
        for _, nd in pairs(c.nodes) do nd:close() end
    end
    return c
end

return support
