-- Lua callbacks run on the loop, inside the runtime: a request's callback, an event handler.
-- Submitting from them is the ordinary callback style; the runtime must answer each request
-- once, with its own result, and apply every command once, in log order.
local raft = require "raft"
local support = require "spec.support"

describe("callbacks that submit from the loop", function()
    local c

    after_each(function()
        if c then c.close() end
        c = nil
        support.cleanup()
    end)

    it("chains proposals from their callbacks, more at once than one apply batch", function()
        c = support.cluster(1)
        c.leader()
        local nd = c.nodes[1]
        local limit, submitted, answered = 4000, 0, 0
        local failures, seen = {}, {}
        local function submit()
            submitted = submitted + 1
            assert(nd:propose("inc x", function(r, err, code)
                answered = answered + 1
                if err then
                    failures[#failures + 1] = code
                else
                    seen[#seen + 1] = tonumber(r)
                end
                if submitted < limit then submit() end
            end))
        end
        for _ = 1, 2000 do submit() end
        assert(raft.wait(function() return answered == limit end, 60000, "every answer"))
        assert.are.same({}, failures)
        table.sort(seen)
        for i = 1, limit do
            if seen[i] ~= i then
                error(("answer %d carries %s: results were lost or repeated"):format(i, tostring(seen[i])))
            end
        end
        local applied = c.fsms[1].applied()
        for i = 2, #applied do
            assert(applied[i] > applied[i - 1], "indexes applied out of order or twice")
        end
        assert.are.equal(tostring(limit), c.fsms[1].data().x)
    end)

    it("proposes from a role handler when the node becomes leader", function()
        c = support.cluster(1) -- started; its loop has not run yet, so no election so far
        local nd, got = c.nodes[1], nil
        nd:on("role", function(role)
            if role == "leader" and not got then
                got = {}
                assert(nd:propose("set by event", function(...) got = { ... } end))
            end
        end)
        assert(raft.wait(function() return got and got[1] end, 10000, "the proposal's answer"))
        assert.are.equal("event", got[1])
        assert.are.equal("event", c.fsms[1].data().by)
    end)
end)
