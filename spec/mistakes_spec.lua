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

describe("errors that say what went wrong (Lua)", function()
    local c

    after_each(function()
        if c then c.close() end
        c = nil
        support.cleanup()
    end)

    it("an address in use is EADDRINUSE, named, and raft.node can be called again", function()
        local addr = support.free_addresses(1)[1]
        local dir = support.tmpdir()
        local o = { id = 1, address = addr, data_dir = dir .. "/a", peers = { [1] = addr },
            apply = function() end, fsync = false, segment_size = support.SEGMENT, log_level = "error" }
        local first = assert(raft.node(o))
        local o2 = {}
        for k, v in pairs(o) do o2[k] = v end
        o2.data_dir = dir .. "/b"
        local node, msg, code = raft.node(o2)
        assert.is_nil(node)
        assert.are.equal("EADDRINUSE", code)
        assert.matches(addr, msg, 1, true)
        assert.matches("already in use", msg, 1, true)
        assert.is_nil(msg:find("disk", 1, true))
        first:close()
        node = assert(raft.node(o2)) -- free now
        node:close()
    end)

    it("no quorum is ENOQUORUM, saying how many voters are reachable", function()
        c = support.cluster(3)
        local leader = c.leader()
        for i = 1, 3 do if i ~= leader then c.nodes[i]:close() end end
        local r, msg, code, reachable, voters = c.nodes[leader]:apply("set y 2", 1500)
        assert.is_nil(r)
        assert.are.equal("ENOQUORUM", code)
        assert.matches("1 of the 3 voters", msg, 1, true)
        assert.are.equal(1, reachable)
        assert.are.equal(3, voters)
    end)

    local cases = {
        { { heartbeat_ms = -1 }, { "heartbeat_ms", "1", "60000" } },
        { { heartbeat_ms = 500 }, { "election_timeout_ms", "twice heartbeat_ms" } },
        { { snapshot_entries = 1.5 }, { "snapshot_entries", "integer" } },
        { { fsync = "yes" }, { "fsync", "true or false" } },
        { { timeout_ms = 0 }, { "timeout_ms", "1" } },
        { { session_options = { max_sessions = 0 } }, { "max_sessions", "1" } },
        { { digest_interval = -1 }, { "digest_interval" } },
        { { address = "127.0.0.1" }, { "address", "host:port" } },
        { { id = "1", peers = { [1] = "127.0.0.1:0" } }, { "id must be a positive integer", 'the string "1"' } },
        { { peers = { ["1"] = "127.0.0.1:0" } }, { "peers: ids", 'the string "1"' } },
        { { peers = { [1] = "127.0.0.1:0", [2] = "db.example.com:7002" } }, { "peers[2]", "not resolved" } },
        { { peers = { [1] = "127.0.0.1:0", [2] = "127.0.0.1:0" } }, { "peers[2]", "port 0" } },
        { { peers = { [1] = "127.0.0.1:0", [2] = "127.0.0.1:7", [3] = "127.0.0.1:7" } }, { "same address" } },
    }
    for n, case in ipairs(cases) do
        it("names the option and its range (" .. n .. ")", function()
            local o = { id = 1, address = "127.0.0.1:0", data_dir = support.tmpdir(),
                peers = { [1] = "127.0.0.1:0" }, apply = function() end }
            for k, v in pairs(case[1]) do o[k] = v end
            local ok, err = pcall(raft.node, o)
            assert.is_false(ok)
            for _, w in ipairs(case[2]) do assert.matches(w, err, 1, true) end
        end)
    end
end)

describe("membership mistakes (Lua)", function()
    local c

    after_each(function()
        if c then c.close() end
        c = nil
        support.cleanup()
    end)

    it("through a follower names the leader; members and non-members get their own codes", function()
        c = support.cluster(3)
        local leader = c.leader()
        local follower = leader % 3 + 1
        assert(raft.wait(function() return c.nodes[follower]:leader() ~= nil end, 5000))
        local r, msg, code, lid, laddr = c.nodes[follower]:add_server(9, "127.0.0.1:1")
        assert.is_nil(r)
        assert.are.equal("ENOTLEADER", code)
        assert.are.equal(leader, lid)
        assert.are.equal(c.peers[leader], laddr)
        r, msg, code = c.nodes[leader]:add_server(follower, "127.0.0.1:5")
        assert.are.equal("EEXISTS", code)
        assert.matches("^already a member: server " .. follower, msg)
        assert.matches(c.peers[follower], msg, 1, true)
        r, msg, code = c.nodes[leader]:remove_server(42)
        assert.are.equal("ENOTFOUND", code)
        assert.matches("^not a member: server 42", msg)
        r, msg, code = c.nodes[leader]:promote(42)
        assert.are.equal("ENOTFOUND", code)
        local ok, err = pcall(c.nodes[leader].add_server, c.nodes[leader], 9, "nowhere")
        assert.is_false(ok)
        assert.matches("host:port", err, 1, true)
    end)

    it("a removed node says so; a stopped leader does not say leader", function()
        c = support.cluster(3)
        local leader = c.leader()
        local gone = leader % 3 + 1
        local seen = {}
        c.nodes[gone]:on("removed", function(by, index) seen[#seen + 1] = { by, index } end)
        assert(c.nodes[leader]:remove_server(gone))
        -- The event is delivered on the node's state machine stream, after the status says so.
        assert(raft.wait(function() return c.nodes[gone]:status().removed and #seen > 0 end, 10000,
            "the removed node to know"))
        assert.are.equal(0, c.nodes[gone]:status().leader)
        local r, msg, code = c.nodes[gone]:apply("set x 1", 1000)
        assert.is_nil(r)
        assert.are.equal("EREMOVED", code)
        assert.matches("removed from the cluster", msg, 1, true)
        -- An entry of an unknown craft kind stops every node that applies it, the leader too.
        c.nodes[leader]._c:submit(1, "\xC1cZZ\1\0", 0, nil, false, 2000, function() end)
        assert(raft.wait(function() return c.nodes[leader]:status().stopped end, 10000))
        local s = c.nodes[leader]:status()
        assert.are.equal("stopped", s.role)
        assert.are.equal(0, s.leader)
        assert.is_false(c.nodes[leader]:is_leader())
        assert.matches("reserved bytes", s.stop_reason, 1, true)
    end)
end)

describe("configuration mistakes (Lua)", function()
    local c
    after_each(function()
        if c then c.close() end
        c = nil
        support.cleanup()
    end)

    it("nodes bootstrapped with different peer maps refuse each other", function()
        local a = support.free_addresses(3)
        local dir = support.tmpdir()
        local function start(id, peers)
            return assert(raft.node{ id = id, address = a[id], data_dir = dir .. "/n" .. id,
                peers = peers, apply = function() end, fsync = false, heartbeat_ms = 20,
                election_timeout_ms = 200, segment_size = support.SEGMENT, log_level = "error" })
        end
        local n1 = start(1, { [1] = a[1], [2] = a[2] })
        local n2 = start(2, { [1] = a[1], [2] = a[2], [3] = a[3] })
        c = { close = function() n1:close() n2:close() end }
        assert(raft.wait(function()
            return n1:status().counters.refused_handshakes > 0 and n2:status().counters.refused_handshakes > 0
        end, 10000, "both to refuse"))
        raft.sleep(500)
        assert.is_nil(n1:leader())
        assert.is_nil(n2:leader())
        assert.are_not.equal(n1:status().cluster_id, n2:status().cluster_id)
    end)

    it("a restart with other peers keeps the stored configuration and says which differ", function()
        c = support.cluster(3)
        local leader = c.leader()
        assert(c.nodes[leader]:apply("set x 1"))
        local back = leader % 3 + 1
        local other = back % 3 + 1
        if other == leader then other = other % 3 + 1 end
        local cid = c.nodes[back]:status().cluster_id
        c.nodes[back]:close()
        local wrong = {}
        for k, v in pairs(c.peers) do wrong[k] = v end
        wrong[other] = "127.0.0.1:1"
        local said = {}
        c.fsms[back] = support.kv()
        c.nodes[back] = assert(raft.node{ id = back, address = c.peers[back], data_dir = c.dirs[back],
            peers = wrong, fsm = c.fsms[back], fsync = false, heartbeat_ms = 20,
            election_timeout_ms = 200, segment_size = support.SEGMENT, log_level = "error",
            on = { peers_differ = function(msg) said[#said + 1] = msg end } })
        assert.are.equal(1, #said)
        assert.matches(("server %d is %s in the configuration but 127.0.0.1:1 in peers"):format(other, c.peers[other]), said[1], 1, true)
        assert.matches("remove_server", said[1], 1, true)
        assert.are.equal(cid, c.nodes[back]:status().cluster_id)
        assert(raft.wait(function() return c.fsms[back].data().x == "1" end, 10000, "the restarted node to catch up"))
    end)
end)
