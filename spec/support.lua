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

--- n free loopback addresses: nodes on port 0 learn a port each from the kernel, then close.
function support.free_addresses(n)
    local probes, out = {}, {}
    local dir = support.tmpdir()
    for i = 1, n do
        probes[i] = assert(raft.node{ id = i, address = "127.0.0.1:0", data_dir = dir .. "/p" .. i,
            join = true, fsync = false, apply = function() end, segment_size = support.SEGMENT })
        out[i] = probes[i]:address()
    end
    for i = 1, n do probes[i]:close() end
    return out
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

--- Starts n nodes in this Lua state: returns the cluster {nodes, fsms, peers, dirs}.
function support.cluster(n, opts)
    opts = opts or {}
    local addrs = support.free_addresses(n)
    local c = { nodes = {}, fsms = {}, peers = {}, dirs = {}, opts = opts }
    for i = 1, n do c.peers[i] = addrs[i] end
    local root = support.tmpdir()
    for i = 1, n do c.dirs[i] = root .. "/n" .. i end
    function c.start(i)
        c.fsms[i] = support.kv()
        local o = {
            id = i, address = c.peers[i], data_dir = c.dirs[i], peers = c.peers, fsm = c.fsms[i],
            heartbeat_ms = 20, election_timeout_ms = 200, fsync = false, timeout_ms = 5000,
            log_level = "error", segment_size = support.SEGMENT,
        }
        for k, v in pairs(opts) do
            if k == "stores" then
                o.log_store = v[i] -- a log store per node: {[id] = store}
            else
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
