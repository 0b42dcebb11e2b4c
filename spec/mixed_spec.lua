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
        elseif op == "sapply" then
            raft.spawn(function()
                self.session = self.session or assert(node:session())
                reply(self.session:apply(arg))
            end)
        elseif op == "digest" then
            local s = node:status()
            reply(s.diverged and "diverged" or s.digest and (s.digest.index .. " " .. s.digest.digest) or "none")
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
    function self:kill() error("the in-state Lua node is closed, not killed") end
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

describe("a mixed cluster with sessions and state digests (" .. procs.interpreter() .. ")", function()
    local lnode

    after_each(function()
        if lnode then lnode:close() end
        lnode = nil
        procs.kill_all()
        support.cleanup()
    end)

    it("installs snapshots from Python to Lua and from Lua to Python; every digest agrees", function()
        procs.require_python()
        local opts = { digest_interval = 16 }
        for k, v in pairs(OPTS) do opts[k] = v end
        local addrs = support.free_addresses(3)
        local peers = { addrs[1], addrs[2], addrs[3] }
        local root = support.tmpdir()
        local installed, diverged = 0, {}
        local fsm
        local function start_lua()
            fsm = support.kv()
            local o = { id = 1, address = peers[1], data_dir = root .. "/n1", peers = peers,
                fsm = fsm, timeout_ms = 5000, log_level = "error",
                on = { snapshot = function(_, inst) if inst then installed = installed + 1 end end,
                       diverged = function(...) diverged[#diverged + 1] = { ... } end } }
            for k, v in pairs(opts) do o[k] = v end
            lnode = assert(raft.node(o))
            return local_node(lnode, fsm)
        end
        local nodes = { start_lua() }
        nodes[2] = procs.start("python", 2, peers, root .. "/n2", opts)
        nodes[3] = procs.start("python", 3, peers, root .. "/n3", opts)
        procs.find_leader(nodes)

        -- Writes through each language, plain and through each language's client session.
        local acked = procs.collect(procs.send_writes(nodes, 1, 60, "k"), {})
        assert.are.equal(60, #acked)
        for i, p in pairs(nodes) do
            for j = 1, 5 do
                local v, err = p:call("sapply", ("inc s%d 1"):format(i))
                assert.is_nil(err)
                assert.are.equal(tostring(j), v)
            end
        end

        -- Python to Lua: the Lua node misses enough for the Python nodes to compact past it,
        -- then catches up by installing a snapshot a Python leader took (with its session
        -- table in front: before, the Lua node read the table as its first record).
        lnode:close()
        lnode = nil
        local py = { [2] = nodes[2], [3] = nodes[3] }
        procs.find_leader(py)
        procs.collect(procs.send_writes(py, 61, 200, "k"), acked)
        nodes[1] = start_lua()
        procs.converge(nodes)
        assert.is_true(installed >= 1, "the Lua node installed no snapshot")

        -- Lua to Python: the Lua node leads, a Python node is killed and misses enough, and
        -- comes back to install the Lua leader's snapshot.
        local leader = procs.find_leader(nodes)
        if leader.id ~= 1 then
            assert(leader:call("transfer", "1"))
            assert(raft.wait(function() return lnode:is_leader() end, 10000, "the Lua node to lead"))
        end
        nodes[3]:kill()
        local rest = { [1] = nodes[1], [2] = nodes[2] }
        procs.collect(procs.send_writes(rest, 201, 340, "k"), acked)
        assert.is_true(lnode:is_leader())
        nodes[3] = procs.start("python", 3, peers, root .. "/n3", opts)
        local ok, st = pcall(procs.converge, nodes)
        assert(ok, tostring(st):sub(1, 300) .. "\n" .. nodes[3]:output():sub(-3000))
        local state = procs.parse(st)
        assert.is_true(tonumber(nodes[3]:call("installed")) >= 1, "the Python node installed no snapshot")
        for _, i in ipairs(acked) do
            assert.are.equal("v" .. i, state["k" .. i], "acknowledged write k" .. i .. " lost")
        end
        for i = 1, 3 do assert.are.equal("5", state["s" .. i]) end

        -- A session command sent again after the snapshots is answered, not applied again.
        assert.are.equal("6", (nodes[2]:call("sapply", "inc s2 1")))

        -- Digests: one more interval of writes makes a mark after the last snapshot; every node
        -- reports the same digest for it, and none diverged.
        procs.collect(procs.send_writes(nodes, 341, 380, "k"), acked)
        local seen
        assert(raft.wait(function()
            local all = {}
            for i = 1, 3 do all[i] = nodes[i]:call("digest") end
            seen = all
            return all[1] ~= "none" and all[1] == all[2] and all[2] == all[3]
        end, 15000, "the same digest on every node"), "digests: " .. table.concat(seen or {}, " | "))
        assert.is_nil(seen[1]:find("diverged"))
        assert.are.same({}, diverged)
        assert.is_nil(lnode:status().diverged)
    end)
end)
