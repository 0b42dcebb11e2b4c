-- raft.sim: the deterministic simulator with Lua state machines. Virtual time: each spec runs
-- simulated seconds in milliseconds of real time.
local sim = require "raft.sim"

-- A counter state machine, in the shape raft.node's fsm= takes.
local function counter()
    local value = 0
    return {
        apply = function(command)
            if command == "boom" then error("boom", 0) end
            value = value + (tonumber(command) or 0)
            return tostring(value)
        end,
        snapshot = function() return { "v=", tostring(value) } end,
        restore = function(data) value = tonumber(data:match("^v=(%-?%d+)$")) end,
        value = function() return value end,
    }
end

local function sequence(c, node)
    local out = {}
    for _, a in ipairs(c:applied(node)) do out[#out + 1] = a.index .. "/" .. a.term .. "/" .. a.data end
    return table.concat(out, ",")
end

describe("raft.sim", function()
    it("elects a leader, replicates, and survives a leader crash", function()
        local c = sim.cluster{ n = 3, seed = 7, fsm = counter }
        local leader = assert(c:wait_for_leader())
        for i = 1, 10 do assert.are.equal(tostring(i), c:apply("1")) end
        c:crash(leader)
        local new = assert(c:wait_for_leader())
        assert.are_not.equal(leader, new)
        assert.are.equal("15", c:apply("5"))
        c:restart(leader)
        assert.is_true(c:run_until(function(x) return x:converged() end, 500))
        for i = 1, 3 do assert.are.equal(15, c:fsm(i).value()) end
        assert.is_true(c:check())
    end)

    it("returns an error raised by apply to the proposer, and applies it everywhere", function()
        local c = sim.cluster{ n = 3, seed = 3, fsm = counter }
        c:wait_for_leader()
        local r, err, code = c:apply("boom")
        assert.is_nil(r)
        assert.are.equal("apply failed: boom", err)
        assert.are.equal("EAPPLY", code)
        assert.are.equal("2", c:apply("2"))
        assert.is_true(c:run_until(function(x) return x:converged() end, 200))
        for i = 1, 3 do
            local applied = c:applied(i)
            assert.are.equal(2, #applied)
            assert.are.equal("boom", applied[1].error)
        end
    end)

    it("is deterministic: the same seed gives the same run", function()
        local function run(seed)
            local lines = {}
            local c = sim.cluster{ n = 5, seed = seed, fsm = counter, drop_rate = 0.05,
                trace = function(line) lines[#lines + 1] = line end }
            c:wait_for_leader()
            for _ = 1, 5 do c:apply("1") end
            c:partition({ 1, 2 }, { 3, 4, 5 })
            c:tick(100)
            c:heal()
            c:tick(100)
            return table.concat(lines, "\n"), c:now()
        end
        local a, ta = run(42)
        local b, tb = run(42)
        assert.are.equal(ta, tb)
        assert.are.equal(a, b)
        assert.are_not.equal(a, (run(43)))
    end)

    it("restores Lua state machines from snapshots (lagging node, restart)", function()
        local c = sim.cluster{ n = 3, seed = 11, fsm = counter, snapshot_entries = 8,
            snapshot_trailing = 2, snapshot_chunk_bytes = 64 }
        local leader = assert(c:wait_for_leader())
        local lagging = leader % 3 + 1
        c:crash(lagging)
        for _ = 1, 40 do assert(c:apply("1")) end
        c:restart(lagging)
        assert.is_true(c:run_until(function(x) return x:converged() end, 1000))
        assert.are.equal(40, c:fsm(lagging).value())
        -- Restored from a snapshot: its state machine applied fewer than 40 commands itself.
        assert.is_true(#c:applied(lagging) < 40)
        c:crash(leader)
        c:restart(leader)
        assert.is_true(c:run_until(function(x) return x:is_up(leader) and x:converged() end, 1000))
        assert.are.equal(40, c:fsm(leader).value())
    end)

    it("partitions: the minority cannot commit, the majority can", function()
        local c = sim.cluster{ n = 5, seed = 5, fsm = counter }
        local leader = assert(c:wait_for_leader())
        local others = {}
        for i = 1, 5 do if i ~= leader then others[#others + 1] = i end end
        c:partition({ leader, others[1] }, { others[2], others[3], others[4] })
        assert(c:propose("100", leader))
        assert.is_true(c:run_until(function(x)
            local l = x:leader()
            return l and l ~= leader and l ~= others[1]
        end, 1000))
        assert.are.equal("1", c:apply("1"))
        c:heal()
        assert.is_true(c:run_until(function(x) return x:converged() end, 1000))
        for i = 1, 5 do
            assert.are.equal(1, c:fsm(i).value())
            -- The minority's proposal was never committed: no state machine applied it.
            for _, a in ipairs(c:applied(i)) do assert.are_not.equal("100", a.data) end
        end
    end)

    it("changes membership and transfers leadership", function()
        local c = sim.cluster{ n = 4, n_voters = 3, seed = 9, fsm = counter }
        local leader = assert(c:wait_for_leader())
        assert(c:apply("1"))
        local index = assert(c:add_server(4, true))
        assert.is_true(index > 0)
        assert.is_true(c:run_until(function(x) return x:applied_index(4) >= index end, 1000))
        assert(c:apply("1"))
        assert.is_true(c:run_until(function(x) return x:converged() end, 1000))
        assert.are.equal(2, c:fsm(4).value())
        local target = leader % 3 + 1
        assert(c:transfer_leadership(target))
        assert.is_true(c:run_until(function(x) return x:leader() == target end, 500))
        assert.are.equal(2, c:read(function(fsm) return fsm.value() end))
        local record = c:read(nil, target)
        assert.are.equal("served", record.state)
    end)

    it("reports failures as nil, message, code and misuse as errors", function()
        local c = sim.cluster{ n = 3, seed = 1, fsm = counter }
        c:wait_for_leader()
        local follower = c:leader() % 3 + 1
        local r, err, code = c:propose("1", follower)
        assert.is_nil(r)
        assert.are.equal("ENOTLEADER", code)
        assert.matches("^not leader", err)
        assert.has_error(function() c:crash(99) end)
        assert.has_error(function() c:propose(42) end)
        assert.has_error(function() sim.cluster{ n = 0 } end)
        c:crash(follower)
        local ok, _, code2 = c:crash(follower)
        assert.is_nil(ok)
        assert.are.equal("ESTATE", code2)
        assert.is_table(c:stats().messages.AppendEntries or c:stats().messages)
        assert.is_true(#c:trace() > 0)
    end)

    it("randomized: every node applies the same sequence, whatever the faults (20 seeds)", function()
        for seed = 1, 20 do
            local c = sim.cluster{ n = 5, seed = seed, fsm = counter, drop_rate = 0.05, dup_rate = 0.05,
                max_delay_ms = 30, snapshot_entries = 16, snapshot_trailing = 4 }
            -- A fault schedule drawn from the seed (deterministic: Lua's own PRNG is not used).
            local x = seed
            local function rnd(n) x = (x * 1103515245 + 12345) % 2147483648; return x % n + 1 end
            c:wait_for_leader(2000)
            for _ = 1, 30 do
                local what = rnd(6)
                if what == 1 then
                    local l = c:leader()
                    if l then c:propose(tostring(rnd(9)), l) end
                elseif what == 2 then
                    local n = rnd(5)
                    if c:is_up(n) then c:crash(n) else c:restart(n) end
                elseif what == 3 then
                    local a, b = rnd(5), rnd(5)
                    local minority, majority = { a }, {}
                    if b ~= a then minority[2] = b end
                    for n = 1, 5 do if n ~= a and n ~= b then majority[#majority + 1] = n end end
                    c:partition(minority, majority)
                elseif what == 4 then
                    c:heal()
                else
                    local l = c:leader()
                    if l then c:propose("1", l) end
                end
                c:tick(rnd(20))
            end
            c:heal()
            c:network{ drop = 0, duplicate = 0 }
            for n = 1, 5 do if not c:is_up(n) then c:restart(n) end end
            assert(c:wait_for_leader(3000), "seed " .. seed)
            assert(c:apply("0", nil, 3000), "seed " .. seed)
            assert.is_true(c:run_until(function(cl) return cl:converged() end, 3000), "seed " .. seed)
            c:check()
            local value = c:fsm(1).value()
            for n = 2, 5 do
                assert.are.equal(value, c:fsm(n).value(), "seed " .. seed .. " node " .. n)
            end
            -- Where two nodes' applied records overlap (after their last restore), they agree.
            for n = 2, 5 do
                local a, b = {}, {}
                for _, r in ipairs(c:applied(1)) do a[r.index] = r.data end
                for _, r in ipairs(c:applied(n)) do b[r.index] = r.data end
                for index, data in pairs(a) do
                    if b[index] ~= nil then assert.are.equal(data, b[index], "seed " .. seed) end
                end
            end
            assert.is_string(sequence(c, 1))
            c:close()
        end
    end)
end)
