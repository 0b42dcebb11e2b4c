-- First-week mistakes, made on purpose from Lua: each gets a clear error (nil, message, code,
-- or error() for a programming mistake) and never a crash, a hang or a silent loss (issue 14).
local raft = require "raft"
local support = require "spec.support"

describe("mistakes from Lua", function()
    local c

    after_each(function()
        if c then c.close() end
        c = nil
        support.cleanup()
    end)

    describe("a command larger than a frame", function()
        local FRAME = 256 * 1024

        it("is refused at once, with the limit, and the leader stays leader", function()
            c = support.cluster(3, { max_frame = FRAME })
            local leader = c.leader()
            local follower = leader % 3 + 1
            local term = c.nodes[leader]:status().term
            local limit = raft.max_command(FRAME)
            assert.is_true(limit > FRAME - 256 and limit < FRAME)
            assert.are.equal(limit, c.nodes[leader]:max_command())
            for _, i in ipairs({ leader, follower }) do
                local t0 = raft.now()
                local r, msg, code = c.nodes[i]:apply(("x"):rep(limit + 1))
                assert.is_nil(r)
                assert.are.equal("ETOOBIG", code)
                assert.matches("^too large: ", msg)
                assert.matches(tostring(limit + 1), msg, 1, true)
                assert.matches(tostring(limit), msg, 1, true)
                assert.matches("max_frame", msg, 1, true)
                assert.is_true(raft.now() - t0 < 1000)
                -- The callback form refuses at once too, and never calls back.
                local called = false
                r, msg, code = c.nodes[i]:apply(("x"):rep(limit + 1), function() called = true end)
                assert.are.equal("ETOOBIG", code)
                assert.is_false(called)
            end
            -- The largest command that fits is replicated, through a follower.
            local value = ("y"):rep(limit - #"set big ")
            assert.are.equal(value, (c.nodes[follower]:apply("set big " .. value)))
            assert(raft.wait(function()
                for i = 1, 3 do
                    if c.fsms[i].data().big ~= value then return false end
                end
                return true
            end, 10000, "the largest command on every node"))
            local s = c.nodes[leader]:status()
            assert.are.equal("leader", s.role)
            assert.are.equal(term, s.term)
            for i = 1, 3 do
                assert.are.equal(0, c.nodes[i]:status().counters.bad_frames)
            end
        end)

        it("a command may not start with craft's reserved bytes", function()
            c = support.cluster(1)
            local ok, err = pcall(c.nodes[1].apply, c.nodes[1], "\xC1cXY")
            assert.is_false(ok)
            assert.matches("C1 63", err, 1, true)
        end)

        it("max_frame below 64 KiB is refused, naming the range", function()
            local ok, err = pcall(raft.node, { id = 1, address = "127.0.0.1:0",
                data_dir = support.tmpdir(), peers = { [1] = "127.0.0.1:0" },
                apply = function() end, max_frame = 1000 })
            assert.is_false(ok)
            assert.matches("max_frame must be an integer from 65536", err, 1, true)
        end)
    end)
end)

describe("the state machine's own mistakes (Lua)", function()
    after_each(function() support.cleanup() end)

    local function single(dir, fsm, extra)
        local o = { id = 1, address = "127.0.0.1:0", data_dir = dir, peers = { [1] = "127.0.0.1:0" },
            fsm = fsm, fsync = false, segment_size = support.SEGMENT, snapshot_entries = 5,
            snapshot_trailing = 1, heartbeat_ms = 20, election_timeout_ms = 100, log_level = "error" }
        for k, v in pairs(extra or {}) do o[k] = v end
        return o
    end

    it("a snapshot that raises is retried with a backoff; the node keeps serving", function()
        local fsm = support.kv()
        local calls, broken = 0, true
        local snapshot = fsm.snapshot
        fsm.snapshot = function()
            calls = calls + 1
            if broken then error("snapshot bug") end
            return snapshot()
        end
        local lines, failed = {}, {}
        local o = single(support.tmpdir(), fsm, { log_level = "warn",
            log = function(level, line) lines[#lines + 1] = line end,
            on = { snapshot_failed = function(index, msg) failed[#failed + 1] = msg end } })
        local node = assert(raft.node(o))
        assert(node:wait_for_leader(5000))
        for i = 1, 60 do assert(node:apply("set k" .. i .. " " .. i)) end
        assert.is_true(calls >= 1 and calls <= 2, "snapshot called " .. calls .. " times")
        assert(raft.wait(function() return #failed > 0 end, 5000))
        assert.matches("snapshot bug", failed[1], 1, true)
        local s = node:status()
        assert.is_false(s.stopped)
        assert.is_true(s.snapshot_failures >= 1)
        assert.matches("snapshot bug", s.snapshot_error, 1, true)
        -- One log line per attempt, with the traceback.
        local n = 0
        for _, l in ipairs(lines) do
            if l:find("event=snapshot_failed", 1, true) then
                n = n + 1
                assert.matches("stack traceback", l, 1, true)
            end
        end
        assert.are.equal(calls, n)
        broken = false
        for i = 1, 100 do
            assert(node:apply("set after " .. i))
            if node:status().snapshot_index > 0 then break end
            raft.sleep(50)
        end
        assert.is_true(node:status().snapshot_index > 0)
        assert.are.equal(0, node:status().snapshot_failures)
        node:close()
    end)

    it("every node must make the same sessions choice: a snapshot says which", function()
        local dir = support.tmpdir()
        local node = assert(raft.node(single(dir, support.kv())))
        assert(node:wait_for_leader(5000))
        for i = 1, 12 do assert(node:apply("set k" .. i .. " " .. i)) end
        assert(raft.wait(function() return node:status().snapshot_index > 0 end, 5000))
        node:close()
        local ok, err = pcall(raft.node, single(dir, support.kv(), { sessions = false }))
        assert.is_false(ok)
        assert.matches("refuses the snapshot", tostring(err), 1, true)
        assert.matches("sessions", tostring(err), 1, true)
        node = assert(raft.node(single(dir, support.kv())))
        node:close()
    end)
end)
