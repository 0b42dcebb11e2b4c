-- Three Lua nodes as three processes (spec/support/lua_node.lua, under the interpreter that
-- runs busted): the leader is killed with SIGKILL while writes are in flight, writes continue
-- through the others, the killed node restarts from its data directory and catches up, and no
-- acknowledged write is lost. Bounded: every wait has a deadline; after_each kills what is left.
local raft = require "raft"
local support = require "spec.support"
local procs = require "spec.support.procs"
local find_leader, send_writes, collect, converge, parse =
    procs.find_leader, procs.send_writes, procs.collect, procs.converge, procs.parse

describe("3 Lua nodes as 3 processes (" .. procs.interpreter() .. ")", function()
    after_each(function()
        procs.kill_all()
        support.cleanup()
    end)

    it("survive the leader's SIGKILL: writes continue, nothing acknowledged is lost", function()
        local addrs = support.free_addresses(3)
        local peers = { addrs[1], addrs[2], addrs[3] }
        local root = support.tmpdir()
        local nodes = {}
        for i = 1, 3 do nodes[i] = procs.start("lua", i, peers, root .. "/n" .. i, { snapshot_entries = 64, snapshot_trailing = 8 }) end
        local leader = find_leader(nodes)
        local acked = collect(send_writes(nodes, 1, 60, "k"), {})
        assert.are.equal(60, #acked)
        -- Writes in flight through every node, then the leader dies.
        local inflight = send_writes(nodes, 61, 100, "k")
        leader:kill()
        collect(inflight, acked)
        local new = find_leader(nodes, 20000)
        assert.are_not.equal(leader.id, new.id)
        collect(send_writes(nodes, 101, 160, "k"), acked)
        -- The killed node restarts from its data directory and catches up.
        nodes[leader.id] = procs.start("lua", leader.id, peers, root .. "/n" .. leader.id, { snapshot_entries = 64, snapshot_trailing = 8 })
        local state = parse(converge(nodes))
        for _, i in ipairs(acked) do
            assert.are.equal("v" .. i, state["k" .. i], "acknowledged write k" .. i .. " lost")
        end
        assert.is_true(#acked >= 120, "only " .. #acked .. " of 160 writes acknowledged")
    end)
end)

