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

        it("max_frame below 64 KiB is refused, naming the range", function()
            local ok, err = pcall(raft.node, { id = 1, address = "127.0.0.1:0",
                data_dir = support.tmpdir(), peers = { [1] = "127.0.0.1:0" },
                apply = function() end, max_frame = 1000 })
            assert.is_false(ok)
            assert.matches("max_frame must be an integer from 65536", err, 1, true)
        end)
    end)
end)
