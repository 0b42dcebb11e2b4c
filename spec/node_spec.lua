-- Real nodes on 127.0.0.1 (ephemeral ports) in one Lua state, sharing the caller's loop.
-- Every wait here is bounded: requests time out (timeout_ms = 5000) and raft.wait has a
-- deadline, so a broken build fails these specs instead of hanging them.
local raft = require "raft"
local support = require "spec.support"

describe("raft.node", function()
    local c

    after_each(function()
        if c then c.close() end
        c = nil
        raft.on_error(nil)
        support.cleanup()
    end)

    it("replicates a state machine over 3 nodes, with writes from followers", function()
        c = support.cluster(3)
        local leader = c.leader()
        local follower = leader % 3 + 1
        for i = 1, 20 do
            local r, err = c.nodes[follower]:apply("inc x 1")
            assert.is_nil(err)
            assert.are.equal(tostring(i), r)
        end
        local r, err, index = c.nodes[leader]:apply("set y hello")
        assert.are.equal("hello", r)
        assert.is_nil(err)
        assert.is_true(index > 20)
        -- Every node applies the same sequence.
        assert(raft.wait(function()
            for i = 1, 3 do
                if c.fsms[i].data().y ~= "hello" then return false end
            end
            return true
        end, 5000))
        for i = 1, 3 do
            assert.are.same({ x = "20", y = "hello" }, c.fsms[i].data())
        end
        local s = c.nodes[leader]:status()
        assert.are.equal("leader", s.role)
        assert.are.equal(3, #s.peers)
        assert.are.equal(leader, (c.nodes[follower]:leader()))
    end)

    it("offers callbacks, coroutines and blocking calls over the same loop", function()
        c = support.cluster(3)
        local leader = c.leader()
        local got = {}
        assert.is_true(c.nodes[leader]:apply("inc n", function(r, err) got.cb = { r, err } end))
        raft.spawn(function()
            got.co = { c.nodes[leader % 3 + 1]:apply("inc n") }
            got.read = { c.nodes[leader]:read(function() return c.fsms[leader].data().n end) }
        end)
        assert(raft.wait(function() return got.cb and got.co and got.read end, 5000))
        assert.is_nil(got.cb[2])
        assert.is_nil(got.co[2])
        local values = { got.cb[1], got.co[1] }
        table.sort(values)
        assert.are.same({ "1", "2" }, values)
        assert.are.equal("2", got.read[1])
        -- raft.poll: run what is ready, as from an OpenResty timer.
        local done
        c.nodes[leader]:apply("inc n", function(r) done = r end)
        local deadline = raft.now() + 5000
        while not done and raft.now() < deadline do raft.poll(10) end
        assert.are.equal("3", done)
    end)

    it("returns an error raised by apply to the proposer; the entry counts as applied", function()
        c = support.cluster(3)
        local leader = c.leader()
        local follower = leader % 3 + 1
        local r, err, code = c.nodes[follower]:apply("fail no-such-key")
        assert.is_nil(r)
        assert.are.equal("apply failed: no-such-key", err)
        assert.are.equal("EAPPLY", code)
        local _, _, index = c.nodes[leader]:apply("set a 1")
        assert(raft.wait(function()
            for i = 1, 3 do if c.nodes[i]:status().applied < index then return false end end
            return true
        end, 5000))
        for i = 1, 3 do
            -- Both entries reached every state machine: the failed one counts as applied.
            assert.are.equal(2, #c.fsms[i].applied())
        end
    end)

    it("elects a new leader when the leader stops, and loses no acknowledged write", function()
        c = support.cluster(3)
        local leader = c.leader()
        local acked = {}
        for i = 1, 10 do
            local r = c.nodes[leader]:apply("set k" .. i .. " v" .. i)
            if r then acked[#acked + 1] = i end
        end
        c.nodes[leader]:close()
        local rest = {}
        for i = 1, 3 do if i ~= leader then rest[#rest + 1] = i end end
        local new
        assert(raft.wait(function()
            for _, i in ipairs(rest) do
                if c.nodes[i]:is_leader() then new = i return true end
            end
        end, 10000, "a new leader"))
        assert.are_not.equal(leader, new)
        local other = rest[1] == new and rest[2] or rest[1]
        local r, err = c.nodes[other]:apply("set after stop")
        assert.is_nil(err)
        assert.are.equal("stop", r)
        local data = c.nodes[new]:read(function() return c.fsms[new].data() end)
        for _, i in ipairs(acked) do
            assert.are.equal("v" .. i, data["k" .. i])
        end
        assert.are.equal(10, #acked)
    end)

    it("restarts from its data directory, and catches up by snapshot", function()
        c = support.cluster(3, { snapshot_entries = 8, snapshot_trailing = 2 })
        local leader = c.leader()
        local victim = leader % 3 + 1
        for i = 1, 5 do assert(c.nodes[leader]:apply("inc x")) end
        c.nodes[victim]:close()
        for i = 1, 30 do assert(c.nodes[leader]:apply("inc x")) end
        assert(raft.wait(function() return c.nodes[leader]:status().snapshot_index > 0 end, 5000))
        local installed
        local nd = c.start(victim)
        nd:on("snapshot", function(index, inst) if inst then installed = index end end)
        assert(raft.wait(function() return c.fsms[victim].data().x == "35" end, 10000,
            "the restarted node to catch up"))
        -- Restart again: this time from its own snapshot and log, on the loop thread.
        c.nodes[victim]:close()
        nd = c.start(victim)
        assert.are.equal("35", nd:read(function() return c.fsms[victim].data().x end))
        assert.is_number(installed) -- the snapshot came from the leader (restore on a worker)
    end)

    it("fails with nil, message, code: timeouts and no leader", function()
        local addrs = support.free_addresses(3)
        local dir = support.tmpdir()
        local peers = { addrs[1], addrs[2], addrs[3] }
        -- One node of three: it can never commit.
        local nd = assert(raft.node{ id = 1, address = addrs[1], data_dir = dir, peers = peers,
            apply = function() end, heartbeat_ms = 20, election_timeout_ms = 100, fsync = false,
            log_level = "error", segment_size = support.SEGMENT })
        c = { close = function() nd:close() end }
        local t0 = raft.now()
        local r, err, code = nd:apply("x", { timeout_ms = 300 })
        assert.is_nil(r)
        -- Alone of three: no quorum, said as such (not a bare timeout or "not leader").
        assert.are.equal("ENOQUORUM", code)
        assert.matches("^no quorum: node 1 reaches 1 of the 3 voters", err)
        assert.is_true(raft.now() - t0 < 3000)
        local _, err2, code2 = nd:barrier(200)
        assert.are.equal("ENOQUORUM", code2)
        assert.is_string(err2)
        -- A second node on the same data directory: the directory is locked.
        local other, msg, code3 = raft.node{ id = 1, address = "127.0.0.1:0", data_dir = dir,
            peers = { [1] = "127.0.0.1:0" }, apply = function() end }
        assert.is_nil(other)
        assert.are.equal("ELOCKED", code3)
        assert.is_string(msg)
        nd:close()
        local r3, err3, code4 = nd:apply("x")
        assert.is_nil(r3)
        assert.are.equal("ESHUTDOWN", code4)
        assert.matches("^closed", err3)
    end)

    it("raises for programming mistakes, and refuses to wait inside a callback", function()
        local dir = support.tmpdir()
        assert.has_error(function() raft.node("x") end)
        assert.has_error(function() raft.node{ id = 0, address = "127.0.0.1:0", data_dir = dir, join = true, apply = print } end)
        assert.has_error(function() raft.node{ id = 1, address = "127.0.0.1:0", data_dir = dir, apply = print } end)
        assert.has_error(function() raft.node{ id = 1, address = "127.0.0.1:0", data_dir = dir, join = true } end)
        assert.has_error(function() raft.node{ id = 1, address = "127.0.0.1:0", data_dir = dir, join = true, apply = print, bogus = 1 } end)
        c = support.cluster(1)
        local leader = c.leader()
        assert.has_error(function() c.nodes[leader]:apply(42) end)
        local inner
        c.nodes[leader]:apply("inc q", function()
            inner = { pcall(c.nodes[leader].apply, c.nodes[leader], "inc q") }
        end)
        assert(raft.wait(function() return inner end, 5000))
        assert.is_false(inner[1])
        assert.matches("cannot wait inside a callback", inner[2])
    end)

    it("hands errors raised by callbacks to raft.on_error, or raises them from the loop", function()
        c = support.cluster(1)
        local leader = c.leader()
        c.nodes[leader]:apply("inc z", function() error("oops in a callback") end)
        local ok, err = pcall(raft.run, 5000)
        assert.is_false(ok)
        assert.matches("oops in a callback", err)
        assert.matches("traceback", err)
        local seen
        raft.on_error(function(e) seen = e end)
        c.nodes[leader]:apply("inc z", function() error("handled") end)
        assert(raft.wait(function() return seen end, 5000))
        assert.matches("handled", seen)
    end)

    it("changes membership: a joining node is added, promoted, and removed", function()
        c = support.cluster(3)
        local leader = c.leader()
        assert(c.nodes[leader]:apply("set m 1"))
        local addr = support.free_addresses(1)[1]
        local fsm = support.kv()
        local dir = support.tmpdir()
        local joiner = assert(raft.node{ id = 4, address = addr, data_dir = dir, join = true, fsm = fsm,
            heartbeat_ms = 20, election_timeout_ms = 200, fsync = false, log_level = "error",
            segment_size = support.SEGMENT })
        c.nodes[4] = joiner
        local changes = {}
        c.nodes[leader]:on("membership", function(index) changes[#changes + 1] = index end)
        local index, err = c.nodes[leader]:add_server(4, addr, { auto_promote = true })
        assert.is_nil(err)
        assert.is_true(index > 0)
        assert(raft.wait(function() return fsm.data().m == "1" end, 10000, "the new server to catch up"))
        assert(raft.wait(function()
            for _, p in ipairs(c.nodes[leader]:status().peers) do
                if p.id == 4 then return p.role == "voter" end
            end
        end, 10000, "auto-promotion"))
        assert.is_true(#changes >= 1)
        local idx2, err2 = c.nodes[leader]:remove_server(4)
        assert.is_nil(err2)
        assert.is_true(idx2 > index)
        assert.are.equal(3, #c.nodes[leader]:status().peers)
    end)

    it("ignores SIGPIPE, so that a write to a peer that just died does not kill the process", function()
        local f = assert(io.open("/proc/self/status"))
        local status = f:read("*a")
        f:close()
        local mask = assert(status:match("SigIgn:%s*(%x+)"))
        local low = tonumber(mask:sub(-4), 16) -- signals 1..16; SIGPIPE is 13: bit 12
        assert.are.equal(1, math.floor(low / 4096) % 2)
    end)

    it("takes segment_size: the WAL segments are preallocated to it", function()
        local addr = support.free_addresses(1)[1]
        local dir = support.tmpdir()
        local nd = assert(raft.node{ id = 1, address = addr, data_dir = dir, peers = { addr },
            apply = function() return "ok" end, heartbeat_ms = 20, election_timeout_ms = 100,
            fsync = false, log_level = "error", segment_size = 8192 })
        c = { close = function() nd:close() end }
        assert(raft.wait(function() return nd:is_leader() end, 5000, "leadership"))
        for _ = 1, 20 do assert(nd:apply(string.rep("v", 1000))) end
        nd:close()
        local sizes = {}
        local ls = assert(io.popen("ls '" .. dir .. "'"))
        for name in ls:lines() do
            if name:match("^wal%-%d+%.seg$") then
                local f = assert(io.open(dir .. "/" .. name, "rb"))
                sizes[#sizes + 1] = f:seek("end")
                f:close()
            end
        end
        ls:close()
        -- ~20 KiB of records in 8 KiB segments; one append is never split, so a segment may
        -- end a record past its preallocated size.
        assert.is_true(#sizes >= 2, "segments: " .. #sizes)
        for _, size in ipairs(sizes) do
            assert.is_true(size >= 8192 and size < 8192 + 2048, "segment of " .. size .. " bytes")
        end
    end)

    it("refuses a segment_size outside 4 KiB .. 1 GiB, naming the range", function()
        local dir = support.tmpdir()
        for _, bad in ipairs({ 0, 4095, 2 ^ 30 + 1, -1, 8192.5, "1M", true }) do
            local ok, err = pcall(raft.node, { id = 1, address = "127.0.0.1:0", data_dir = dir,
                join = true, apply = print, segment_size = bad })
            assert.is_false(ok)
            assert.matches("segment_size", err)
            assert.matches("4096", err)
            assert.matches("1073741824", err)
        end
        for _, good in ipairs({ 4096, 2 ^ 30 }) do
            local nd = assert(raft.node{ id = 1, address = "127.0.0.1:0", data_dir = dir .. "/" .. good,
                join = true, apply = print, fsync = false, segment_size = good })
            nd:close()
        end
    end)

    it("transfers leadership", function()
        c = support.cluster(3)
        local leader = c.leader()
        local target = leader % 3 + 1
        local ok, err = c.nodes[leader]:transfer_leadership(target)
        assert.is_nil(err)
        assert.is_true(ok)
        assert(raft.wait(function() return c.nodes[target]:is_leader() end, 5000))
        -- To itself: nothing to hand over, no error, and it goes on leading.
        local term = c.nodes[target]:status().term
        assert.is_true((c.nodes[target]:transfer_leadership(target)))
        assert.is_true(c.nodes[target]:is_leader())
        assert.are.equal(term, c.nodes[target]:status().term)
        local none, msg, code = c.nodes[target]:transfer_leadership(9)
        assert.is_nil(none)
        assert.are.equal("EINVAL", code)
        assert.matches("server 9 is not a member: only a voter can lead", msg, 1, true)
    end)
end)
