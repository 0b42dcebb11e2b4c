-- Batches from Lua (issue 17.4): node:apply_many proposes a list of commands at once, and a
-- state machine with an apply_batch(commands, first_index) gets runs of committed commands in
-- one call. Against real nodes on the loop; the Python twins are python/tests/test_apply_batch.py.
local raft = require "raft"
local support = require "spec.support"

-- support.kv() that takes batches: records each call's size and first index, and applies the
-- commands exactly as apply would (a failing command becomes {error = message}).
local function batched(opts)
    opts = opts or {}
    local fsm = support.kv()
    local apply = fsm.apply
    local calls = {}
    fsm.apply = nil
    function fsm.apply_batch(commands, first)
        calls[#calls + 1] = { n = #commands, first = first }
        if opts.raise then error("the batch went wrong", 0) end
        local out = {}
        for k, command in ipairs(commands) do
            local ok, r = pcall(apply, command, first + k - 1)
            out[k] = ok and (r or "") or { error = r }
        end
        if opts.short then out[#out] = nil end
        return out
    end
    function fsm.calls() return calls end
    return fsm
end

-- A cluster of three whose state machines are made by make(i).
local function cluster(make, extra)
    local opts = { fsm_for = make }
    for k, v in pairs(extra or {}) do opts[k] = v end
    return support.cluster(3, opts)
end

local function commands(n, prefix)
    local out = {}
    for k = 1, n do out[k] = ("set %s%d v%d"):format(prefix or "k", k, k) end
    return out
end

-- The adapter (lua/raft/fsm.lua) over one log, fed one entry at a time or in batches cut in
-- different places: the outcomes, the state and the digests must not depend on the cuts.
local function through_adapter(log, fsm, cuts)
    local fsm_adapter = require "raft.fsm"
    local a = fsm_adapter.new(fsm, { id = 1, sessions = true, digest_interval = 3,
        log = function() end, on_diverged = function() end, is_leader = function() return false end,
        propose = function() end })
    local out = {}
    local function norm(ok, r)
        if type(r) == "table" then return "ERR:" .. r[1] end
        return ok and r or "ERR:" .. tostring(r)
    end
    if cuts == nil then
        for i, command in ipairs(log) do out[i] = norm(pcall(a.apply, command, i)) end
    else
        local i = 1
        for _, size in ipairs(cuts) do
            local cmds, idx = {}, {}
            for k = i, math.min(#log, i + size - 1) do cmds[#cmds + 1] = log[k]; idx[#idx + 1] = k end
            for k, r in ipairs(a.apply_batch(cmds, idx)) do out[idx[k]] = norm(true, r) end
            i = i + size
        end
    end
    return out, fsm.data(), a.last_digest
end

describe("batches (" .. (rawget(_G, "jit") and "luajit" or _VERSION) .. ")", function()
    local c

    it("cut anywhere, give the same outcomes, state and digests as one at a time", function()
        local core = require "raft.core"
        local log = { core.session_register() } -- index 1: client 1
        local function add(e) log[#log + 1] = e end
        add("set a 1"); add("set b 2"); add(core.digest_mark()); add("inc a 5"); add("fail x")
        add(core.session_command(1, 1, 0, "inc s 1")); add("set c 3")
        add(core.session_command(1, 1, 0, "inc s 1")) -- a retry: the recorded result
        add(core.session_command(1, 2, 1, "fail y")); add(core.session_command(1, 2, 1, "fail y"))
        add("set d 4"); add(core.digest_mark()); add(core.digest_mark()); add("inc a 1")
        add(core.session_command(1, 3, 2, "set e 5")); add("set f 6"); add(core.digest_mark())
        local want_out, want_data, want_digest = through_adapter(log, support.kv())
        assert.is_truthy(want_digest)
        local cuttings = { { #log }, { 1, 2, 3, 4, 5, 6 }, { 3, 1, 1, 7, 2, 4 }, { 2, 2, 2, 2, 2, 2, 2, 2, 2 } }
        for _, cuts in ipairs(cuttings) do
            local out, data, digest = through_adapter(log, batched(), cuts)
            assert.are.same(want_out, out)
            assert.are.same(want_data, data)
            assert.are.same(want_digest, digest)
        end
    end)

    after_each(function()
        if c then c.close() end
        c = nil
        support.cleanup()
    end)

    it("apply_many gives one result per command, and apply_batch gets runs", function()
        c = cluster(function() return batched() end)
        local leader = c.leader()
        local rs, err, code = c.nodes[leader]:apply_many(commands(300))
        assert.is_nil(err, code)
        assert.are.equal(300, #rs)
        for k = 1, 300 do assert.are.equal("v" .. k, rs[k]) end
        local last = select(3, c.nodes[leader]:apply_many({ "inc n 2" }))
        assert.is_true(last > 300)
        for i = 1, 3 do
            assert(raft.wait(function() return c.fsms[i].data().n == "2" end, 5000))
            assert.are.equal("v300", c.fsms[i].data().k300)
        end
        -- Runs of more than one command, each at consecutive indexes that never overlap.
        local calls, biggest, next_first = c.fsms[leader].calls(), 0, 0
        for _, call in ipairs(calls) do
            biggest = math.max(biggest, call.n)
            assert.is_true(call.first >= next_first)
            next_first = call.first + call.n
        end
        assert.is_true(biggest > 1, "every batch held one command")
        -- The indexes the user saw are the entries' own.
        local applied = c.fsms[leader].applied()
        assert.are.equal(last, applied[#applied])
    end)

    it("a failed command is its own outcome; the others commit", function()
        c = cluster(function() return batched() end)
        local leader = c.leader()
        local rs, msg, code, outcomes = c.nodes[leader]:apply_many({ "set a 1", "fail nope", "set b 2" })
        assert.is_nil(rs)
        assert.are.equal("EAPPLY", code)
        assert.matches("command 2 of 3", msg, 1, true)
        assert.matches("nope", msg, 1, true)
        assert.are.equal("1", outcomes[1].result)
        assert.are.equal("EAPPLY", outcomes[2].code)
        assert.are.equal("2", outcomes[3].result)
        assert.are.equal(outcomes[1].index + 2, outcomes[3].index)
        for i = 1, 3 do
            assert(raft.wait(function() return c.fsms[i].data().b == "2" end, 5000))
        end
    end)

    it("apply_many in all three styles, and its argument errors", function()
        c = cluster(function() return support.kv() end) -- apply_many needs no apply_batch
        local nd = c.nodes[c.leader()]
        local rs = assert(nd:apply_many({}))
        assert.are.same({}, rs)
        local got
        assert.is_true(nd:apply_many({ "set x 1", "set y 2" }, 3000, function(...) got = { ... } end))
        assert(raft.wait(function() return got ~= nil end, 5000))
        assert.are.same({ "1", "2" }, got[1])
        local co_result
        raft.spawn(function() co_result = nd:apply_many(commands(20, "c"), { timeout_ms = 3000 }) end)
        assert(raft.wait(function() return co_result ~= nil end, 5000))
        assert.are.equal(20, #co_result)
        assert.has_error(function() nd:apply_many("set a 1") end)
        assert.has_error(function() nd:apply_many({ "ok", 5 }) end, nil)
        local ok, e = pcall(nd.apply_many, nd, { "ok", "\193cx" })
        assert.is_false(ok)
        assert.matches("commands[2]", e, 1, true)
    end)

    it("batch and one-at-a-time nodes reach the same state, digests and sessions included", function()
        -- Node 1 applies one command at a time, nodes 2 and 3 in batches: the digests (every
        -- 7 commands) compare the states, so any difference in what a batch does stops a node.
        local diverged, stopped = {}, {}
        c = cluster(function(i) return i == 1 and support.kv() or batched() end, {
            digest_interval = 7,
            on = { diverged = function(...) diverged[#diverged + 1] = { ... } end,
                   stopped = function(...) stopped[#stopped + 1] = { ... } end } })
        local nd = c.nodes[c.leader()]
        -- Two lists in flight, each finished one sending the next: the marks the leader
        -- proposes land between the plain commands of a batch.
        local sent, done = 0, 0
        local function send()
            sent = sent + 1
            assert(nd:apply_many(commands(30, "p" .. sent), function(rs, msg)
                assert(rs, msg)
                done = done + 1
                if sent < 16 then send() end
            end))
        end
        send()
        send()
        assert(raft.wait(function() return done == 16 end, 10000, "the pipelined lists"))
        local s = assert(nd:session())
        for round = 1, 5 do
            assert(nd:apply_many(commands(40, "r" .. round)))
            assert.are.equal(tostring(round), (s:apply("inc s 1")))
            local r, msg = s:apply("fail purposely")
            assert.is_nil(r)
            assert.matches("purposely", msg, 1, true)
        end
        local leader_state = c.fsms[c.leader()].data()
        for i = 1, 3 do
            assert(raft.wait(function() return c.fsms[i].data().s == "5" end, 5000))
            assert.are.same(leader_state, c.fsms[i].data())
        end
        raft.sleep(200) -- the last digests
        assert.are.same({}, diverged)
        assert.are.same({}, stopped)
        for i = 1, 3 do assert.is_truthy(c.nodes[i]:status().digest) end
    end)

    for _, case in ipairs({ { "raises", { raise = true }, "raised an error" },
                            { "returns too few results", { short = true }, "no result" } }) do
        it("an apply_batch that " .. case[1] .. " stops the node, saying why", function()
            local stopped = {}
            c = cluster(function() return batched(case[2]) end,
                { on = { stopped = function(...) stopped[#stopped + 1] = { ... } end } })
            local nd = c.nodes[c.leader()]
            nd:apply_many(commands(3), 2000)
            assert(raft.wait(function() return #stopped >= 3 end, 5000, "every node to stop"))
            for _, st in ipairs(stopped) do
                assert.are.equal("EINVAL", st[1])
                assert.matches("apply_batch", st[2], 1, true)
                assert.matches(case[3], st[2], 1, true)
            end
        end)
    end

    it("refuses a bad apply_batch option", function()
        local dir = support.tmpdir()
        local addr = support.free_addresses(1)[1]
        local ok, e = pcall(raft.node, { id = 1, address = addr, data_dir = dir,
            peers = { addr }, apply_batch = "no" })
        assert.is_false(ok)
        assert.matches("apply_batch must be a function", e, 1, true)
        ok, e = pcall(raft.node, { id = 1, address = addr, data_dir = dir, peers = { addr } })
        assert.is_false(ok)
        assert.matches("apply_batch", e, 1, true)
    end)
end)
