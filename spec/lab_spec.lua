-- The Lua lab (examples/lab/lua, docs/lab.md): part A's tester passes craft's core and a
-- student's part A written against the skeleton (spec/support/lab_raft_a.lua); fails the
-- skeleton as shipped at its first TODO; and catches a planted mistake (a second vote in a
-- term) with the seed, the last events and the replay command. The tester runs as a student
-- runs it, a script under the same interpreter as this spec.
local interp = jit and "luajit" or "lua5.4"

local function tester(raft, env)
    local cmd = ("cd examples/lab/lua && LUA_PATH='../../../spec/support/?.lua;;' LAB_RAFT=%s %s %s test_election.lua 2>&1; echo \"exit=$?\"")
        :format(raft, env or "", interp)
    local p = io.popen(cmd)
    local out = p:read("*a")
    p:close()
    return out, out:match("exit=(%d+)%s*$") == "0"
end

describe("the Lua lab, part A", function()
    it("passes craft's own core", function()
        local out, ok = tester("craft")
        assert.is_true(ok, out)
        assert.matches("0 failed", out)
    end)

    it("passes a student's part A written on the skeleton", function()
        local out, ok = tester("lab_raft_a")
        assert.is_true(ok, out)
        assert.matches("0 failed", out)
    end)

    it("fails the skeleton as shipped at its first TODO", function()
        local out, ok = tester("raft", "LAB_SEEDS=1")
        assert.is_false(ok)
        assert.matches("TODO %(part A%): tick", out)
    end)

    it("catches a second vote in one term, with a replayable report", function()
        local out, ok = tester("lab_raft_a", "LAB_MISTAKE=double-vote LAB_SEEDS=5")
        assert.is_false(ok, out)
        -- The checker names the broken rule: a vote changed on disk within its term, or the
        -- consequence, two leaders in one term.
        assert.is_truthy(out:find("persisted vote in term", 1, true) or
                         out:find("election safety", 1, true))
        assert.matches("last events:", out)
        assert.matches("replay: LAB_SEED=%d+ LAB_RAFT=lab_raft_a", out)
    end)
end)
