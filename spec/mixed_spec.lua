-- A mixed cluster: one Lua node (in this Lua state) and two Python nodes (craft.Node in
-- .venv/bin/python, spec/support/py_node.py) replicate one state machine, the key-value store
-- of spec/support.lua (plain-string commands, "k=v" snapshots), which both languages apply
-- identically. Writes go through each language's node; the leader, made a Python node, is
-- killed with SIGKILL while writes are in flight; writes continue; the dead node's data
-- directory, written by Python, is then reopened by a Lua process, which catches up (by
-- snapshot: snapshots are taken every 64 entries). Every node ends with the same state and no
-- acknowledged write is lost: the wire protocol and the data directory are the same whatever
-- the language (docs/protocol.md).
local raft = require "raft"
local support = require "spec.support"
local procs = require "spec.support.procs"

local OPTS = { heartbeat_ms = 50, election_timeout_ms = 500, fsync = false,
    snapshot_entries = 64, snapshot_trailing = 8, segment_size = support.SEGMENT }

-- The node in this Lua state, behind the same interface as a process (spec/support/procs.lua).
local function local_node(node, fsm)
    local self = { kind = "lua (in the spec's state)", id = node:id(), n = 0, answers = {} }
    local function dump()
        local parts = {}
        for k, v in pairs(fsm.data()) do parts[#parts + 1] = k .. "=" .. v .. "\n" end
        table.sort(parts)
        return table.concat(parts)
    end
    function self:send(op, arg)
        self.n = self.n + 1
        local n = self.n
        local function reply(v, err) self.answers[n] = { v, err } end
        if op == "apply" then
            node:propose(arg, reply)
        elseif op == "state" then
            node:read(dump, reply)
        elseif op == "stale" then
            reply(dump())
        else
            error("unknown operation " .. op)
        end
        return n
    end
    function self:result(n, timeout_ms)
        if not raft.wait(function() return self.answers[n] end, timeout_ms or 10000) then
            return nil, "timeout"
        end
        return self.answers[n][1], self.answers[n][2]
    end
    function self:call(op, arg, timeout_ms) return self:result(self:send(op, arg), timeout_ms) end
    function self:status()
        local s = node:status()
        return s.role, s.leader, s.applied, s.commit
    end
    return self
end

describe("a mixed cluster: 1 Lua node and 2 Python nodes (" .. procs.interpreter() .. ")", function()
    local lnode

    after_each(function()
        if lnode then lnode:close() end
        lnode = nil
        procs.kill_all()
        support.cleanup()
    end)

    it("replicates one state machine; a Python leader is killed, nothing acknowledged is lost", function()
        procs.require_python()
        local addrs = support.free_addresses(3)
        local peers = { addrs[1], addrs[2], addrs[3] }
        local root = support.tmpdir()
        local fsm = support.kv()
        local o = { id = 1, address = peers[1], data_dir = root .. "/n1", peers = peers, fsm = fsm,
            timeout_ms = 5000, log_level = "error" }
        for k, v in pairs(OPTS) do o[k] = v end
        lnode = assert(raft.node(o))
        local nodes = { local_node(lnode, fsm) }
        nodes[2] = procs.start("python", 2, peers, root .. "/n2", OPTS)
        nodes[3] = procs.start("python", 3, peers, root .. "/n3", OPTS)

        -- Writes through each language's node (followers forward to the leader).
        local leader = procs.find_leader(nodes)
        local acked = procs.collect(procs.send_writes(nodes, 1, 90, "k"), {})
        assert.are.equal(90, #acked)
        local state = procs.parse(procs.converge(nodes))
        assert.are.equal("v1", state.k1)

        -- Make a Python node the leader, then kill it with writes in flight.
        if leader.id == 1 then
            assert(lnode:transfer_leadership(2))
        end
        leader = procs.find_leader(nodes)
        assert.are.equal("python", leader.kind)
        local inflight = procs.send_writes(nodes, 91, 140, "k")
        leader:kill()
        procs.collect(inflight, acked)
        local new = procs.find_leader(nodes, 20000)
        assert.are_not.equal(leader.id, new.id)
        procs.collect(procs.send_writes(nodes, 141, 220, "k"), acked)

        -- The dead Python node's data directory, reopened by a Lua process.
        local dir = root .. "/n" .. leader.id
        nodes[leader.id] = procs.start("lua", leader.id, peers, dir, OPTS)
        state = procs.parse(procs.converge(nodes))
        for _, i in ipairs(acked) do
            assert.are.equal("v" .. i, state["k" .. i], "acknowledged write k" .. i .. " lost")
        end
        assert.is_true(#acked >= 170, "only " .. #acked .. " of 220 writes acknowledged")
        -- Snapshots were taken and installed across languages along the way.
        assert.is_true(lnode:status().snapshot_index > 0)
    end)
end)
