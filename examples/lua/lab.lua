-- A small lab on the simulator (raft.sim): watch an election and a replication round as a
-- printed timeline, partition the leader away, and bring a lagging node back by snapshot.
-- Everything runs in virtual time from a seed: the same seed prints the same story.
--
--   lua5.4 examples/lua/lab.lua [seed]            (or luajit; after `make lua-install`)
local v = _VERSION:match("%d+%.%d+")
package.path = ("./lua_modules/share/lua/%s/?.lua;./lua_modules/share/lua/%s/?/init.lua;"):format(v, v) .. package.path
package.cpath = ("./lua_modules/lib/lua/%s/?.so;"):format(v) .. package.cpath

local sim = require "raft.sim"

local seed = tonumber(arg and arg[1]) or 1

-- A Lua state machine: a running sum.
local function sum()
    local total = 0
    return {
        apply = function(command) total = total + tonumber(command) return tostring(total) end,
        snapshot = function() return tostring(total) end,
        restore = function(data) total = tonumber(data) end,
        total = function() return total end,
    }
end

local printing = true
local c = sim.cluster{ n = 5, seed = seed, fsm = sum, snapshot_entries = 20, snapshot_trailing = 5,
    trace = function(line) if printing then print("  " .. line) end end }

print("== 1. The first election (every message, every disk write)")
local leader = assert(c:wait_for_leader())
print(("-> node %d leads (t=%dms)"):format(leader, c:now()))

print("\n== 2. One replication round")
print("-> apply returned", c:apply("5"))
printing = false

print("\n== 3. Partition the leader with one follower: the majority elects a new leader")
local others = {}
for i = 1, 5 do if i ~= leader then others[#others + 1] = i end end
c:partition({ leader, others[1] }, { others[2], others[3], others[4] })
c:note("partitioned the leader away")
assert(c:run_until(function(x) local l = x:leader(); return l and l ~= leader and l ~= others[1] end, 1000))
local new = c:leader()
print(("-> node %d leads the majority; the old leader's proposals cannot commit"):format(new))
c:propose("1000", leader)
print("-> the majority applies", c:apply("1"))

print("\n== 4. Crash a node, write past the snapshot threshold, restart it: it catches up by snapshot")
c:heal()
assert(c:run_until(function(x) return x:converged() end, 1000))
new = c:leader()
local lagging = new % 5 + 1
c:crash(lagging)
for _ = 1, 50 do assert(c:apply("1")) end
c:restart(lagging)
assert(c:run_until(function(x) return x:converged() end, 2000))
print(("-> node %d: total %d after applying only %d commands itself"):format(
    lagging, c:fsm(lagging).total(), #c:applied(lagging)))
for i = 1, 5 do
    assert(c:fsm(i).total() == c:fsm(new).total(), "every node holds the same sum")
end
print("-> every node holds " .. c:fsm(new).total() .. " (the minority's 1000 was never committed)")
c:check()
local st = c:stats()
print(("\n%d events, %d AppendEntries, %d InstallSnapshot messages; every safety invariant held")
    :format(st.events, st.messages.AppendEntries.sent, st.messages.InstallSnapshot.sent))
