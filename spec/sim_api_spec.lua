-- raft.sim for test authors (issue 16): the same API and semantics as craft.sim in Python
-- (python/tests/test_sim_api.py holds the twin of each spec): message rules and held messages,
-- inject, events as tables, hooks for apply and restore, status with progress, non-blocking
-- reads, campaigns, clocks, link counters and the durable store.
local sim = require "raft.sim"

local function indexes(list)
    local out = {}
    for i, a in ipairs(list) do out[i] = a.index end
    return table.concat(out, ",")
end

local function other_than(c, node)
    for i = 1, c.n do if i ~= node then return i end end
end

describe("raft.sim for test authors", function()
    it("applied() after a restart without fsm is since the last restore", function()
        local c = sim.cluster{ n = 3, seed = 5 }
        local leader = assert(c:wait_for_leader())
        for k = 1, 3 do assert.is_nil(select(2, c:apply("v" .. k))) end
        assert.is_true(c:run_until(function(x) return x:converged() end, 200))
        local f = other_than(c, leader)
        local before = indexes(c:applied(f))
        c:crash(f)
        c:restart(f)
        assert.is_true(c:run_until(function(x) return x:converged() end, 300))
        assert.are.equal(before, indexes(c:applied(f)))
    end)

    it("campaign elects the chosen node; hold and deliver reorder messages", function()
        local c = sim.cluster{ n = 3, seed = 7 }
        c:set_clock(nil, 0)
        c:hold()
        assert.is_true(c:campaign(2))
        c:run(50)
        local held = c:held()
        assert.are.equal(2, #held)
        assert.are.equal("RequestVote", held[1].type)
        assert.is_true(held[1].pre_vote)
        assert.are.same({ 1, 3 }, { held[1].to, held[2].to })
        assert.are.equal(1, c:deliver({ to = 3 }))
        local answers = c:held({ types = "RequestVoteResult" })
        assert.are.equal(1, #answers)
        assert.is_true(answers[1].granted)
        assert.are.equal(1, c:discard({ to = 1 }))
        for _ = 1, 20 do
            if c:leader() then break end
            c:deliver()
            c:run(10)
        end
        assert.are.equal(2, c:leader())
        local st = c:status(2)
        assert.are.equal("leader", st.role)
        assert.are.same({ 1, 2, 3 }, st.voters)
        assert.are.equal(1, st.boots)
        assert.is_table(st.progress[1])
        assert.is_true(c:link_stats(2, 1).dropped >= 1)
        local ok, msg = c:campaign(2)
        assert.is_nil(ok)
        assert.matches("cannot campaign", msg)
        assert.is_true(c:check())
    end)

    it("rules select by type, link and predicate, with counts", function()
        local c = sim.cluster{ n = 3, seed = 3 }
        local leader = assert(c:wait_for_leader())
        local f = other_than(c, leader)
        local r = c:drop{ types = "AppendEntries", to = f, count = 1,
                          where = function(m) return #m.entries > 0 end }
        local before = c:link_stats(leader, f).dropped
        local index = assert(c:propose("x"))
        c:run(30)
        assert.are.equal(before + 1, c:link_stats(leader, f).dropped)
        assert.is_false(r:remove())
        assert.is_true(c:run_until(function(x) return x:applied_index(f) >= index end, 200))
        local slow = c:delay(300, { from = leader, to = f })
        index = assert(c:propose("y"))
        c:run(100)
        assert.is_true(c:applied_index(f) < index)
        c:run(400)
        assert.is_true(c:applied_index(f) >= index)
        assert.is_true(slow:remove())
        assert.has_error(function() c:hold{ types = "Appendentries" } end)
        assert.is_true(c:check())
    end)

    it("a predicate that raises stops the run with its error", function()
        local c = sim.cluster{ n = 3, seed = 3 }
        assert(c:wait_for_leader())
        c:hold{ where = function() error("no such field") end }
        assert.has_error(function() c:tick(5) end)
    end)

    it("injects a hand-built message", function()
        local c = sim.cluster{ n = 3, seed = 5, pre_vote = false, check_quorum = false }
        local leader = assert(c:wait_for_leader())
        local other = other_than(c, leader)
        local term = c:status(leader).term
        c:inject{ type = "RequestVote", from = other, to = leader, term = term + 3,
                  last_log_index = 0, last_log_term = 0, transfer = true }
        c:run(0)
        assert.are.equal(term + 3, c:status(leader).term)
        assert.has_error(function() c:inject{ type = "RequestVote", from = 1, to = 1, term = 9 } end)
        assert.has_error(function() c:inject{ type = "Nope", from = 1, to = 2 } end)
        assert(c:wait_for_leader())
        assert.is_true(c:check())
    end)

    it("gives events as tables and hooks for apply and restore", function()
        local events, applies, restores = {}, {}, {}
        local c = sim.cluster{ n = 3, seed = 2, snapshot_entries = 4, snapshot_trailing = 0,
            on_event = function(e) events[#events + 1] = e end,
            on_apply = function(a) applies[#applies + 1] = a end,
            on_restore = function(r) restores[#restores + 1] = r end }
        local leader = assert(c:wait_for_leader())
        local kinds = {}
        for _, e in ipairs(events) do kinds[e.kind] = true end
        assert.is_true(kinds.send and kinds.deliver and kinds.role and kinds.persist)
        for _, e in ipairs(events) do
            if e.kind == "send" then
                assert.is_string(e.message.type)
                assert.matches("^t=", e.line)
                break
            end
        end
        for k = 1, 10 do assert.is_nil(select(2, c:apply("c" .. k))) end
        assert.is_true(c:run_until(function(x) return x:converged() end, 200))
        local cmds = 0
        for _, a in ipairs(applies) do
            if a.type == "command" and a.node == leader then cmds = cmds + 1 end
            assert.are.equal(1, a.incarnation)
        end
        assert.are.equal(10, cmds)
        local f = other_than(c, leader)
        c:crash(f)
        c:restart(f)
        assert.is_true(c:run_until(function(x) return x:converged() end, 300))
        local last
        for _, r in ipairs(restores) do if r.node == f then last = r end end
        assert.are.equal(2, last.incarnation)
        assert.is_true(last.index > 0)
        assert.are.equal(last.index, c:status(f).restored_index)
        assert.is_true(#c:recent_events() > 0)
    end)

    it("reads without blocking", function()
        local c = sim.cluster{ n = 3, seed = 4 }
        assert(c:wait_for_leader())
        assert.is_nil(select(2, c:apply("x")))
        local id = assert(c:read_start())
        assert.are.equal("pending", c:read_result(id).state)
        assert.is_true(c:run_until(function(x) return x:read_result(id).state == "served" end, 100))
        assert.is_nil(c:read_result(12345))
        local ok, msg = c:read_start(other_than(c, c:leader()))
        assert.is_nil(ok)
        assert.is_string(msg)
    end)

    it("changes clocks and options for the next boot", function()
        local c = sim.cluster{ n = 3, seed = 9 }
        c:set_clock(3, 2)
        assert.are.equal(2, c:clock(3))
        assert.are.equal(3, c:wait_for_leader())
        assert.has_error(function() c:set_clock(3, 1) end)
        c:configure(1, { election_ticks = 40 })
        assert.are.equal(40, c:node_config(1).election_ticks)
        assert.has_error(function() c:configure(1, { nonsense = 1 }) end)
        c:set_clock(nil, 0)
        local t = c:status(3).term
        c:run(5000)
        assert.are.equal(t, c:status(3).term)
        assert.is_true(c:tick(5, 3))
        assert.is_true(c:check())
    end)

    it("reads the durable store of a node up or down", function()
        local c = sim.cluster{ n = 3, seed = 4, snapshot_entries = 5, snapshot_trailing = 1 }
        local leader = assert(c:wait_for_leader())
        for k = 0, 7 do assert.is_nil(select(2, c:apply("v" .. k))) end
        c:run(100)
        local f = other_than(c, leader)
        c:crash(f)
        local d = c:durable(f)
        assert.are.equal(c:status(leader).term, d.hard_state.term)
        assert.are.same({ 1, 2, 3 }, d.snapshot.voters)
        assert.are.equal(d.last_index, d.entries[#d.entries].index)
        assert.are.equal("v7", d.entries[#d.entries].data)
    end)
end)
