-- Issue 15 from Lua: the full status (the field names of Python's), the new events, demote,
-- snapshot, metrics (node:metrics() and GET /metrics on metrics_address), lag_threshold, and
-- every waiting operation in both styles: yielding inside raft.spawn, and with a callback.
-- Real nodes on 127.0.0.1 in one Lua state; every wait is bounded, nothing is timed.
local raft = require "raft"
local support = require "spec.support"

local unpack = table.unpack or unpack
local function pack(...) return { n = select("#", ...), ... } end

-- The keys and annotations of one TypedDict of python/craft/_types.py: the names Python's
-- status uses, read from the source so that the two bindings cannot drift apart silently.
local function python_fields(class)
    local f = assert(io.open("python/craft/_types.py"))
    local text = f:read("*a")
    f:close()
    local body = assert(text:match("\nclass " .. class .. "%(TypedDict%):\n(.-)\n\n"), class)
    local fields = {}
    for name, annotation in body:gmatch("\n    ([%a_][%w_]*): ([^\n#]+)") do
        fields[name] = annotation:gsub("%s+$", "")
    end
    assert(next(fields), "no fields in " .. class)
    return fields
end

-- The Lua type a Python annotation becomes.
local LUA_TYPE = { int = "number", str = "string", bool = "boolean", Role = "string",
    PeerRole = "string", ReplicationState = "string", Counters = "table" }

local function check_fields(t, class, except)
    for name, annotation in pairs(python_fields(class)) do
        local want = (except and except[name]) or LUA_TYPE[annotation]
            or (annotation:match("^List") and "table") or error("annotation " .. annotation)
        assert(want == "skip" or type(t[name]) == want,
            ("%s.%s: %s expected (Python: %s), got %s"):format(class, name, want, annotation, type(t[name])))
    end
end

-- Writes its own body and the head of an HTTP GET of url into files, in the background: the
-- node answers from this very loop, so the caller must keep running it meanwhile.
local function http_get(url)
    local dir = support.tmpdir()
    local body, head, done = dir .. "/body", dir .. "/head", dir .. "/done"
    assert(os.execute(("(curl -s --max-time 5 -D '%s' -o '%s' '%s'; touch '%s') >/dev/null 2>&1 &")
        :format(head, body, url, done)))
    assert(raft.wait(function()
        local f = io.open(done)
        if f then f:close() end
        return f ~= nil
    end, 10000, "curl to finish"))
    local function slurp(p)
        local f = io.open(p)
        if not f then return "" end
        local s = f:read("*a")
        f:close()
        return s
    end
    return slurp(head), slurp(body)
end

-- The value of the sample `name` (labels included, e.g. 'craft_peer_voter{peer="2"}').
local function sample(text, name)
    for line in text:gmatch("[^\n]+") do
        local n, v = line:match("^(%S+) (%S+)$")
        if n == name then return tonumber(v) end
    end
    return nil
end

describe("issue 15 from Lua", function()
    local c
    local others = {} -- nodes outside a cluster: closed even when an assertion failed

    local function keep(node)
        others[#others + 1] = node
        return node
    end

    after_each(function()
        if c then c.close() end
        c = nil
        for _, nd in ipairs(others) do nd:close() end
        others = {}
        raft.on_error(nil)
        support.cleanup()
    end)

    it("status() has every field of Python's status, with the leader's view of each follower", function()
        c = support.cluster(3)
        local leader = c.leader()
        local L = c.nodes[leader]
        for _ = 1, 5 do assert(L:apply("inc x")) end
        assert(raft.wait(function()
            local s = L:status()
            for _, p in ipairs(s.peers) do
                if p.match ~= s.last_index then return false end
            end
            return true
        end, 5000, "every follower to match the leader's log"))
        local s = L:status()
        -- cluster_id stays hex in Lua: a 64-bit id does not fit a LuaJIT number.
        check_fields(s, "Status", { cluster_id = "string" })
        check_fields(s.counters, "Counters")
        for _, p in ipairs(s.peers) do check_fields(p, "PeerStatus") end
        assert.are.same({ 1, 2, 3 }, s.voters)
        assert.are.same({}, s.learners)
        assert.is_true(s.has_quorum)
        assert.is_true(s.conf_committed)
        assert.is_true(s.conf_index > 0)
        assert.is_false(s.stopped)
        assert.are.equal("", s.stop_reason)
        assert.is_false(s.removed)
        assert.are.equal("", s.metrics_address)
        assert.is_true(s.counters.proposals >= 5)
        assert.is_true(s.counters.entries_committed >= 5)
        assert.is_true(s.counters.elections_won >= 1)
        for _, p in ipairs(s.peers) do
            if p.id == leader then
                assert.are.equal("self", p.state)
            else
                assert.are.equal("replicate", p.state)
                assert.are.equal(0, p.lag)
                assert.are.equal(s.last_index + 1, p.next)
                assert.is_true(p.last_contact_ms >= 0)
            end
        end
        -- A follower tracks nobody's replication, and knows when it last heard the leader.
        local fs = c.nodes[leader % 3 + 1]:status()
        check_fields(fs, "Status", { cluster_id = "string" })
        assert.is_true(fs.has_quorum)
        assert.is_true(fs.leader_contact_ms >= 0)
        for _, p in ipairs(fs.peers) do
            assert.are.equal(p.id == fs.id and "self" or "", p.state)
        end
    end)

    it("raises follower_lagging and follower_caught_up, snapshot_taken and snapshot_installed", function()
        c = support.cluster(3, { lag_threshold = 4, snapshot_trailing = 0 })
        local leader = c.leader()
        local L = c.nodes[leader]
        local seen = { lagging = {}, caught = {}, taken = {}, snapshot = {}, installed = {} }
        L:on("follower_lagging", function(...) table.insert(seen.lagging, { ... }) end)
        L:on("follower_caught_up", function(...) table.insert(seen.caught, { ... }) end)
        L:on("snapshot_taken", function(...) table.insert(seen.taken, { ... }) end)
        L:on("snapshot", function(...) table.insert(seen.snapshot, { ... }) end)
        local f = leader % 3 + 1
        c.nodes[f]:close()
        for _ = 1, 10 do assert(L:apply("inc y")) end
        assert(raft.wait(function() return #seen.lagging > 0 end, 5000, "follower_lagging"))
        local id, lag, match = unpack(seen.lagging[1])
        assert.are.equal(f, id)
        assert.is_true(lag > 4)
        assert.are.equal(L:status().last_index - match, lag)

        local index, err = L:snapshot()
        assert.is_nil(err)
        assert.are.equal(L:status().applied, index)
        assert.are.same({ { index } }, seen.taken)
        assert.are.same({ { index, false } }, seen.snapshot)
        -- status() is a copy the runtime refreshes once per turn of the loop.
        assert(raft.wait(function() return L:status().snapshot_index == index end, 5000))
        local s = L:status()
        assert.is_true(s.snapshot_size > 0)
        assert.is_true(s.snapshot_term > 0)

        -- The follower comes back behind the leader's first index: it gets the snapshot.
        local F = c.start(f)
        F:on("snapshot_installed", function(...) table.insert(seen.installed, { ... }) end)
        assert(raft.wait(function() return #seen.installed > 0 and #seen.caught > 0 end, 10000,
            "the follower to install the snapshot and catch up"))
        assert.are.same({ index }, seen.installed[1])
        assert.are.equal(f, seen.caught[1][1])
        assert.are.equal("10", c.fsms[f].data().y)
    end)

    it("names the valid events when given an unknown one", function()
        c = support.cluster(1)
        local ok, err = pcall(c.nodes[1].on, c.nodes[1], "follower_lag", print)
        assert.is_false(ok)
        for _, name in ipairs({ "follower_lagging", "follower_caught_up", "snapshot_taken",
                "snapshot_installed", "snapshot_failed", "stopped", "leader", "role", "membership" }) do
            assert.matches(name, err, 1, true)
        end
        local ok2, err2 = pcall(raft.node, { id = 1, address = "127.0.0.1:0", join = true,
            data_dir = support.tmpdir(), apply = print, on = { snapshot_take = print } })
        assert.is_false(ok2)
        assert.matches("snapshot_taken", err2, 1, true)
    end)

    it("demotes a voter to learner, with membership events; errors name the server", function()
        c = support.cluster(3)
        local leader = c.leader()
        local L = c.nodes[leader]
        local f = leader % 3 + 1
        local changes = {}
        L:on("membership", function(index) changes[#changes + 1] = index end)
        local index, err = L:demote(f)
        assert.is_nil(err)
        assert.is_true(index > 0)
        assert(raft.wait(function() return #changes > 0 end, 5000, "the membership event"))
        assert.are.equal(index, changes[#changes])
        assert(raft.wait(function() return #L:status().learners == 1 end, 5000, "status to show it"))
        local s = L:status()
        assert.are.same({ f }, s.learners)
        assert.are.equal(2, #s.voters)
        local r, msg, code = L:demote(f)
        assert.is_nil(r)
        assert.are.equal("EINVAL", code)
        assert.matches("already a learner", msg, 1, true)
        r, msg, code = L:demote(9)
        assert.is_nil(r)
        assert.are.equal("ENOTFOUND", code)
        assert.matches("not a member: server 9", msg, 1, true)
        assert.has_error(function() L:demote("2") end)
        assert.is_true(L:promote(f) > index)
        assert(raft.wait(function() return #L:status().learners == 0 end, 5000, "the promotion"))
    end)

    it("snapshot() fails with nil, message, code when there is none to take or it raises", function()
        local dir = support.tmpdir()
        local addr = support.free_addresses(1)[1]
        local nd = keep(assert(raft.node{ id = 1, address = addr, data_dir = dir .. "/a",
            peers = { [1] = addr }, apply = function() end, fsync = false,
            segment_size = support.SEGMENT, log_level = "error" }))
        assert(nd:wait_for_leader(5000))
        local r, msg, code = nd:snapshot()
        assert.is_nil(r)
        assert.are.equal("EINVAL", code)
        assert.matches("takes no snapshots", msg, 1, true)
        nd:close()

        local failed = {}
        local nd2 = keep(assert(raft.node{ id = 1, address = addr, data_dir = dir .. "/b",
            peers = { [1] = addr }, apply = function() end, fsync = false,
            snapshot = function() error("no room", 0) end, restore = function() end,
            segment_size = support.SEGMENT, log_level = "error",
            on = { snapshot_failed = function(index, m) failed[#failed + 1] = { index, m } end } }))
        assert(nd2:wait_for_leader(5000))
        assert(nd2:apply("x"))
        r, msg, code = nd2:snapshot()
        assert.is_nil(r)
        assert.is_string(code)
        assert.matches("no room", msg, 1, true)
        assert.are.equal(1, #failed)
        assert.matches("no room", failed[1][2], 1, true)
        assert.has_error(function() nd2:snapshot("now") end)
        nd2:close()
        r, msg, code = nd2:snapshot()
        assert.is_nil(r)
        assert.are.equal("ESHUTDOWN", code)
    end)

    it("serves metrics: node:metrics() and GET /metrics on metrics_address", function()
        c = support.cluster(3, { metrics_address = "127.0.0.1:0" })
        local leader = c.leader()
        local L = c.nodes[leader]
        for _ = 1, 3 do assert(L:apply("inc m")) end
        local text = assert(L:metrics())
        assert.are.equal(1, sample(text, "craft_is_leader"))
        assert.are.equal(3, sample(text, "craft_voters"))
        assert.is_true(sample(text, "craft_proposals_total") >= 3)
        local om = assert(L:metrics(true))
        assert.matches("# EOF\n$", om)
        assert.is_nil(text:match("# EOF"))
        assert.has_error(function() L:metrics("yes") end)

        local s = L:status()
        local host, port = s.metrics_address:match("^(127%.0%.0%.1):(%d+)$")
        assert.is_string(host)
        assert.is_true(tonumber(port) > 0)
        local head, body = http_get("http://" .. s.metrics_address .. "/metrics")
        assert.matches("^HTTP/1%.[01] 200", head)
        assert.matches("text/plain", head, 1, true)
        assert.are.equal(1, sample(body, "craft_is_leader"))
        assert.are.equal(3, sample(body, "craft_voters"))
        assert.is_true(sample(body, "craft_applied_index") >= s.applied)
        local f = leader % 3 + 1
        assert.are.equal(1, sample(body, ('craft_peer_voter{peer="%d"}'):format(f)))
        -- A follower serves its own.
        local _, fbody = http_get("http://" .. c.nodes[f]:status().metrics_address .. "/metrics")
        assert.are.equal(0, sample(fbody, "craft_is_leader"))
        c.nodes[f]:close()
        local r, _, code = c.nodes[f]:metrics()
        assert.is_nil(r)
        assert.are.equal("ESHUTDOWN", code)
    end)

    it("validates metrics_address and lag_threshold like the other options", function()
        local dir = support.tmpdir()
        local base = { id = 1, address = "127.0.0.1:0", data_dir = dir, join = true, apply = print }
        local function try(k, v)
            local o = {}
            for key, val in pairs(base) do o[key] = val end
            o[k] = v
            local ok, err = pcall(raft.node, o)
            assert.is_false(ok, k .. " = " .. tostring(v))
            assert.matches(k, err, 1, true)
        end
        for _, bad in ipairs({ 9100, "localhost", "example.com:9100", true }) do try("metrics_address", bad) end
        for _, bad in ipairs({ -1, 1.5, "1000", true }) do try("lag_threshold", bad) end
        local o = {}
        for key, val in pairs(base) do o[key] = val end
        o.lag_threshold, o.metrics_address, o.fsync = 0, "127.0.0.1:0", false
        local nd = keep(assert(raft.node(o)))
        assert.matches("^127%.0%.0%.1:%d+$", nd:status().metrics_address)
        nd:close()
    end)

    describe("every waiting operation has the coroutine style and the callback style", function()
        -- Runs op(nil) in a raft.spawn coroutine and op(callback) once more: each must answer
        -- later (the coroutine yields, the callback call returns true at once), with
        -- check(values...) holding for both. at_once: a refusal the runtime answers on the spot
        -- may come back without yielding (but the callback still comes after the call).
        local function both(name, op, check, at_once)
            local co
            raft.spawn(function() co = pack(op(nil)) end)
            if not at_once then assert.is_nil(co, name .. " did not yield in the coroutine") end
            assert(raft.wait(function() return co end, 10000, name .. " in a coroutine"))
            check(unpack(co, 1, co.n))
            local cb
            local sent = pack(op(function(...) cb = pack(...) end))
            assert.are.same({ n = 1, true }, sent, name .. " by callback")
            assert.is_nil(cb, name .. " called its callback before returning")
            assert(raft.wait(function() return cb end, 10000, name .. " by callback"))
            check(unpack(cb, 1, cb.n))
        end

        local function index_ok(r, err)
            assert.is_nil(err)
            assert.is_number(r)
            assert.is_true(r > 0)
        end

        it("wait_for_leader, apply, read, barrier, snapshot, sessions", function()
            c = support.cluster(3)
            -- Before any election: both styles wait for one.
            both("wait_for_leader", function(cb) return c.nodes[1]:wait_for_leader(5000, cb) end,
                function(id, address)
                    assert.is_number(id)
                    assert.are.equal(c.peers[id], address)
                end)
            local leader = c.leader()
            local L, F = c.nodes[leader], c.nodes[leader % 3 + 1]
            both("apply", function(cb) return F:apply("inc a", cb) end, function(r, err, index)
                assert.is_nil(err)
                assert.is_string(r)
                assert.is_true(index > 0)
            end)
            both("read", function(cb)
                return F:read(function() return c.fsms[leader % 3 + 1].data().a end, cb)
            end, function(v) assert.is_string(v) end)
            -- A stale read needs no waiting: the coroutine gets it at once, the callback later.
            both("stale read", function(cb)
                return F:read(function() return "now" end, { mode = "stale" }, cb)
            end, function(v) assert.are.equal("now", v) end, true)
            both("barrier", function(cb) return F:barrier(cb) end, index_ok)
            both("snapshot", function(cb)
                assert(L:apply("inc b")) -- something new to cover: a snapshot is taken each time
                return L:snapshot(cb)
            end, index_ok)
            local session
            both("session", function(cb) return F:session(nil, cb) end, function(s, err)
                assert.is_nil(err)
                assert.are.equal(raft.Session, getmetatable(s))
                session = s
            end)
            both("session:apply", function(cb) return session:apply("inc s", cb) end,
                function(r, err) assert.is_nil(err) assert.is_string(r) end)
            both("session:close", function(cb) return session:close(cb) end,
                function(r, err) assert.is_nil(err) assert.is_true(r) end)
            -- Failures come through both styles too, as nil, message, code.
            both("demote (not a member)", function(cb) return L:demote(9, cb) end,
                function(r, msg, code)
                    assert.is_nil(r)
                    assert.are.equal("ENOTFOUND", code)
                    assert.is_string(msg)
                end, true)
        end)

        it("demote, promote, add_server, remove_server, transfer_leadership", function()
            c = support.cluster(3)
            local leader = c.leader()
            local L = c.nodes[leader]
            local f = leader % 3 + 1
            local learner = function(yes)
                return function(r, err)
                    index_ok(r, err)
                    assert(raft.wait(function() return #L:status().learners == (yes and 1 or 0) end, 5000))
                    assert.are.same(yes and { f } or {}, L:status().learners)
                end
            end
            -- Each style once: demote, promote back.
            local styles = {
                function(op, ...) -- coroutine
                    local args = pack(...)
                    local out
                    raft.spawn(function() out = pack(L[op](L, unpack(args, 1, args.n))) end)
                    assert.is_nil(out)
                    assert(raft.wait(function() return out end, 10000, op))
                    return unpack(out, 1, out.n)
                end,
                function(op, ...) -- callback
                    local args = pack(...)
                    args.n = args.n + 1
                    local out
                    args[args.n] = function(...) out = pack(...) end
                    assert.is_true(L[op](L, unpack(args, 1, args.n)))
                    assert.is_nil(out)
                    assert(raft.wait(function() return out end, 10000, op))
                    return unpack(out, 1, out.n)
                end,
            }
            for _, call in ipairs(styles) do
                learner(true)(call("demote", f))
                learner(false)(call("promote", f))
            end

            local addr = support.free_addresses(1)[1]
            c.fsms[4] = support.kv()
            c.nodes[4] = assert(raft.node{ id = 4, address = addr, data_dir = support.tmpdir(),
                join = true, fsm = c.fsms[4], heartbeat_ms = 20, election_timeout_ms = 200,
                fsync = false, log_level = "error", segment_size = support.SEGMENT })
            index_ok(styles[1]("add_server", 4, addr, { auto_promote = false }))
            assert(raft.wait(function() return L:status().learners[1] == 4 end, 5000, "the learner"))
            index_ok(styles[2]("remove_server", 4))
            assert(raft.wait(function() return #L:status().learners == 0 end, 5000, "the removal"))
            c.nodes[4]:close()

            -- Transfer away (coroutine), then back from the new leader (callback).
            local r, err = styles[1]("transfer_leadership", f)
            assert.is_nil(err)
            assert.is_true(r)
            assert(raft.wait(function() return c.nodes[f]:is_leader() end, 10000, "the new leader"))
            local out
            assert.is_true(c.nodes[f]:transfer_leadership(leader, function(...) out = pack(...) end))
            assert(raft.wait(function() return out end, 10000, "transfer back"))
            assert.is_nil(out[2])
            assert.is_true(out[1])
            assert(raft.wait(function() return L:is_leader() end, 10000, "the leader back"))
        end)
    end)
end)
