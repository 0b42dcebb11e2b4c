--- Part A's tester in Lua (the twin of examples/lab/test_3a_election.py):
--
--     lua5.4 examples/lab/lua/test_election.lua        (after `make lua-install`)
--
-- A leader is elected and stays while nothing fails; it is replaced when cut off; a minority
-- never elects one. raft.sim checks after every event that no term has two leaders and that
-- every leader was elected by a majority whose votes are on disk.
local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
local root = here .. "/../../.."
local v = _VERSION:match("%d+%.%d+")
if v == "5.1" then v = "5.1" end
package.path = ("%s/?.lua;%s/lua_modules/share/lua/%s/?.lua;%s/lua_modules/share/lua/%s/?/init.lua;")
    :format(here, root, v, root, v) .. package.path
package.cpath = ("%s/lua_modules/lib/lua/%s/?.so;"):format(root, v) .. package.cpath

local harness = require "harness"

local tests = {
    { "initial election", function(seed, keep)
        local lab = harness.lab(3, seed); keep(lab)
        lab:check_one_leader()
        local term1 = lab:check_terms()
        assert(term1 >= 1, "no term")
        lab:run(2000)
        local term2 = lab:check_terms()
        assert(term2 == term1, ("the term changed from %d to %d with no failure"):format(term1, term2))
        lab:check_one_leader()
        lab:finish()
    end },
    { "re-election", function(seed, keep)
        local lab = harness.lab(3, seed); keep(lab)
        local leader1 = lab:check_one_leader()
        lab:disconnect(leader1)
        local leader2 = lab:check_one_leader()
        assert(leader2 ~= leader1, "the cut-off leader still leads")
        lab:connect(leader1)
        lab:check_one_leader()
        leader2 = lab:check_one_leader()
        lab:disconnect(leader2)
        lab:disconnect(leader2 % 3 + 1)
        lab:run(2000)
        lab:check_no_leader()
        lab:connect(leader2 % 3 + 1)
        lab:check_one_leader()
        lab:connect(leader2)
        lab:check_one_leader()
        lab:finish()
    end },
    { "many elections", function(seed, keep)
        local lab = harness.lab(7, seed); keep(lab)
        lab:check_one_leader()
        for _ = 1, 6 do
            local cut, taken = {}, {}
            while #cut < 3 do
                local i = lab:random(1, 7)
                if not taken[i] then taken[i] = true; cut[#cut + 1] = i end
            end
            for _, i in ipairs(cut) do lab:disconnect(i) end
            lab:check_one_leader()
            for _, i in ipairs(cut) do lab:connect(i) end
        end
        lab:check_one_leader()
        lab:finish()
    end },
}

os.exit(harness.run(arg and arg[0] or "test_election.lua", tests) == 0 and 0 or 1)
