-- State digests from Lua (digest_interval =): a nondeterministic state machine is caught within
-- one interval and the nodes that diverged stop applying; a deterministic one is never flagged.
-- Mixed Lua and Python nodes agree on every digest in spec/mixed_spec.lua.
local raft = require "raft"
local support = require "spec.support"

local INTERVAL = 10

-- support.kv() with a random salt folded into its state: what a state machine that reads the
-- clock or math.random in apply does.
local function salted()
    local fsm = support.kv()
    local salt = tostring(math.random())
    local apply = fsm.apply
    fsm.apply = function(command, index)
        local r = apply(command, index)
        fsm.data().salt = salt
        return r
    end
    return fsm
end

describe("state digests (" .. (rawget(_G, "jit") and "luajit" or _VERSION) .. ")", function()
    local c

    after_each(function()
        if c then c.close() end
        c = nil
        support.cleanup()
    end)

    it("catch a nondeterministic state machine within one interval", function()
        c = support.cluster(3, { digest_interval = INTERVAL })
        local leader = c.leader()
        local seen = {}
        for i = 1, 3 do
            local nd = c.nodes[i]
            seen[i] = { diverged = {}, stopped = {} }
            nd:on("diverged", function(...) table.insert(seen[i].diverged, { ... }) end)
            nd:on("stopped", function(...) table.insert(seen[i].stopped, { ... }) end)
        end
        -- Restart every node with the salted state machine: same log, different states.
        c.close()
        c.fsms = {}
        for i = 1, 3 do
            c.nodes[i] = assert(raft.node{ id = i, address = c.peers[i], data_dir = c.dirs[i],
                peers = c.peers, fsm = salted(), heartbeat_ms = 20, election_timeout_ms = 200,
                fsync = false, timeout_ms = 2000, log_level = "error",
                segment_size = support.SEGMENT, digest_interval = INTERVAL,
                on = { diverged = function(...) table.insert(seen[i].diverged, { ... }) end,
                       stopped = function(...) table.insert(seen[i].stopped, { ... }) end } })
        end
        leader = c.leader()
        local followers = {}
        for i = 1, 3 do if i ~= leader then followers[#followers + 1] = i end end
        local function caught()
            return #seen[followers[1]].diverged > 0 and #seen[followers[2]].diverged > 0
        end
        local written = 0
        for k = 1, 2 * INTERVAL do
            written = k
            local r = c.nodes[leader]:apply("set k" .. k .. " v", 2000)
            if r == nil or caught() then break end
        end
        assert(raft.wait(caught, 5000, "every follower to be caught"))
        assert.is_true(written <= 2 * INTERVAL)
        for _, i in ipairs(followers) do
            local index, theirs, ours = (table.unpack or unpack)(seen[i].diverged[1])
            assert.is_true(index > 0)
            assert.are_not.equal(theirs, ours)
            assert.are.equal(64, #ours)
            assert(raft.wait(function() return #seen[i].stopped > 0 end, 5000))
            assert.are.equal("EVIOLATION", seen[i].stopped[1][1])
            assert.matches("diverged", seen[i].stopped[1][2], 1, true)
            local s = c.nodes[i]:status()
            assert.is_true(s.stopped)
            assert.are.equal(index, s.diverged.index)
            assert.are_not.equal("leader", s.role)
            -- A state known to be wrong is never read, not even stale.
            local r, msg, code = c.nodes[i]:read(function() return 1 end, { mode = "stale" })
            assert.is_nil(r)
            assert.are.equal("EDIVERGED", code)
            assert.matches("diverged", msg, 1, true)
            r, msg, code = c.nodes[i]:apply("set x 1", 1000)
            assert.is_nil(r)
            assert.are.equal("ESHUTDOWN", code)
            assert.matches("diverged", msg, 1, true)
        end
    end)

    it("never flag a deterministic state machine; every node reports the same digest", function()
        c = support.cluster(3, { digest_interval = INTERVAL, snapshot_entries = 25,
            snapshot_trailing = 5 })
        local leader = c.leader()
        local flagged = 0
        for i = 1, 3 do c.nodes[i]:on("diverged", function() flagged = flagged + 1 end) end
        local s = assert(c.nodes[leader]:session())
        for k = 1, 3 * INTERVAL + 5 do
            if k % 3 == 0 then
                assert(s:apply("inc n 1"))
            else
                assert(c.nodes[1 + k % 3]:apply("inc n 1"))
            end
        end
        local digests
        assert(raft.wait(function()
            digests = {}
            for i = 1, 3 do digests[i] = c.nodes[i]:status().digest end
            return digests[1] and digests[2] and digests[3]
                and digests[1].digest == digests[2].digest and digests[2].digest == digests[3].digest
                and digests[1].index == digests[3].index
        end, 10000, "the same digest everywhere"))
        assert.is_true(digests[1].index > 2 * INTERVAL)
        assert.are.equal(0, flagged)
    end)
end)
