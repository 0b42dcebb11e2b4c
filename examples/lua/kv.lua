-- A replicated key-value store in Lua on craft: three nodes on 127.0.0.1 that keep serving
-- writes while their leader is stopped, and a restarted node that catches up from its data
-- directory and the leader's snapshot.
--
--   lua5.4 examples/lua/kv.lua                       (or luajit; after `make lua-install`)
--
-- One node per process works the same way: run raft.node{...} with the same peers in three
-- processes and call raft.run() in each.
--
-- The nodes authenticate each other with a cluster secret, generated here (TLS 1.3 with a key
-- derived from it; docs/security.md): copy the file to every server of a real cluster, with the
-- care a private key deserves. Without security = ..., a node runs in plaintext and anyone who
-- reaches its port can act as a member.
local v = _VERSION:match("%d+%.%d+")
package.path = ("./lua_modules/share/lua/%s/?.lua;./lua_modules/share/lua/%s/?/init.lua;"):format(v, v) .. package.path
package.cpath = ("./lua_modules/lib/lua/%s/?.so;"):format(v) .. package.cpath

local raft = require "raft"

-- The state machine: commands are "set <key> <value>", "del <key>", "get <key>".
local function kv()
    local data = {}
    return {
        apply = function(command, index)
            local op, key, value = command:match("^(%a+) (%S+) ?(.*)$")
            if op == "set" then data[key] = value return value
            elseif op == "del" then local old = data[key]; data[key] = nil return old
            elseif op == "get" then return data[key]
            end
            error("unknown command: " .. command, 0) -- goes back to the proposer, nowhere else
        end,
        snapshot = function()
            local out = {}
            for k, val in pairs(data) do out[#out + 1] = k .. "\t" .. val .. "\n" end
            table.sort(out)
            return out
        end,
        restore = function(s)
            data = {}
            for k, val in s:gmatch("([^\t\n]+)\t([^\n]*)\n") do data[k] = val end
        end,
        get = function(key) return data[key] end,
    }
end

local base = os.getenv("TMPDIR") or "/tmp"
local root = ("%s/raft-kv-example-%d"):format(base, os.time())
local port = tonumber(os.getenv("RAFT_KV_PORT")) or 7101 -- ports port .. port + 2
local peers = {}
for id = 1, 3 do peers[id] = "127.0.0.1:" .. (port + id - 1) end
local nodes, fsms = {}, {}
assert(os.execute("mkdir -p '" .. root .. "'"))
local secret = root .. "/cluster.secret"
assert(raft.generate_secret(secret))
print("cluster secret: " .. secret)

local function start(id)
    fsms[id] = kv()
    nodes[id] = assert(raft.node{
        id = id, address = peers[id], data_dir = root .. "/n" .. id, peers = peers, fsm = fsms[id],
        security = raft.secret{ file = secret },
        heartbeat_ms = 30, election_timeout_ms = 300, snapshot_entries = 50, snapshot_trailing = 10,
        segment_size = 1048576, -- 1 MiB WAL segments (preallocated): craft's default is 64 MiB
        on = { leader = function(leader, term)
            if leader then print(("  node %d: the leader is node %d (term %d)"):format(id, leader, term)) end
        end },
    })
end

for id = 1, 3 do start(id) end
local leader = assert(nodes[1]:wait_for_leader(5000))
print("leader elected:", leader)

-- Writes from a follower are forwarded to the leader; apply returns once applied here.
local follower = leader % 3 + 1
for i = 1, 100 do
    assert(nodes[follower]:apply(("set key%d value%d"):format(i, i)))
end
print("100 writes through follower " .. follower .. ": key42 =", nodes[follower]:read(function() return fsms[follower].get("key42") end))
print("a bad command:", nodes[follower]:apply("frobnicate x"))

-- Stop the leader: the others elect a new one and keep serving.
print("stopping the leader, node " .. leader)
nodes[leader]:close()
local survivor = leader % 3 + 1
assert(raft.wait(function()
    local l = nodes[survivor]:leader()
    return l and l ~= leader
end, 5000))
print("new leader:", (nodes[survivor]:leader()))
for i = 101, 150 do assert(nodes[survivor]:apply(("set key%d value%d"):format(i, i))) end

-- Callback style (for an embedding loop) and coroutine style, on the same loop.
nodes[survivor]:apply("set mode callback", function(result, err) print("callback:", result, err) end)
raft.spawn(function()
    print("coroutine:", nodes[survivor]:apply("set mode coroutine"))
    raft.stop()
end)
raft.run(5000)

-- Restart the old leader from its data directory: it catches up (by snapshot: the log was
-- compacted meanwhile).
start(leader)
assert(raft.wait(function() return fsms[leader].get("key150") == "value150" end, 10000))
print(("node %d is back: key150 = %s, status %s"):format(leader, fsms[leader].get("key150"),
    nodes[leader]:status().role))

for id = 1, 3 do nodes[id]:close() end
os.execute("rm -rf '" .. root .. "'")
print("done")
