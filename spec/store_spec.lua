-- Log stores written in Lua: raft.memory_store() on its own (the rules of
-- c/include/craft/store.h), then real nodes on Lua stores: replication, snapshots, a restart
-- on the same store, and a hook that raises (the node stops loudly, the others carry on).
local raft = require "raft"
local support = require "spec.support"

local function E(index, term, data) return { index = index, term = term, type = 1, data = data or "" } end

describe("raft.memory_store", function()
    it("follows the storage rules of c/include/craft/store.h", function()
        local s = raft.memory_store()
        assert.are.same({ 0, 0, 0 }, { s:load_hard_state() })
        s:save_hard_state(3, 2, 1)
        assert.are.same({ 3, 2, 1 }, { s:load_hard_state() })
        assert.are.same({ 1, 0 }, { s:bounds() })
        s:append({ E(1, 1, "a"), E(2, 1, "b"), E(3, 2, "c") })
        assert.are.same({ 1, 3 }, { s:bounds() })
        -- Not contiguous, term 0, decreasing term: refused (a raised error: the node would stop).
        assert.has_error(function() s:append({ E(5, 2) }) end)
        assert.has_error(function() s:append({ E(4, 0) }) end)
        assert.has_error(function() s:append({ E(4, 1) }) end)
        assert.are.equal("b", s:entries(2, 2)[1].data)
        assert.are.same({}, s:entries(4, 3)) -- an empty range
        assert.are.same({ nil, "unavailable" }, { s:entries(2, 4) })
        assert.are.equal(2, s:term(3))
        assert.are.equal(0, s:term(0))
        assert.are.same({ nil, "unavailable" }, { s:term(4) })
        s:truncate(3)
        assert.are.same({ 1, 2 }, { s:bounds() })
        s:truncate(9) -- past the end: nothing
        assert.has_error(function() s:truncate(0) end)
        s:compact(1)
        assert.are.same({ 2, 2 }, { s:bounds() })
        assert.are.equal(1, s:term(1)) -- the last compacted entry's term is known
        assert.are.same({ nil, "compacted" }, { s:entries(1, 2) })
        assert.are.same({ nil, "compacted" }, { s:truncate(1) })
        -- A snapshot past the log: the log is discarded and continues after it.
        assert.is_nil(s:snapshot_meta())
        assert.is_nil(s:snapshot_open())
        local w = s:snapshot_begin({ index = 10, term = 4, conf_index = 1, size = 0, conf = "C" })
        w:write("hello ")
        w:write("world")
        s:snapshot_commit(w)
        local m = s:snapshot_meta()
        assert.are.same({ index = 10, term = 4, conf_index = 1, size = 11, conf = "C" }, m)
        assert.are.same({ 11, 10 }, { s:bounds() })
        assert.are.equal(4, s:term(10))
        local r = s:snapshot_open()
        assert.are.equal("hello", r:read(0, 5))
        assert.are.equal("world", r:read(6, 100))
        assert.are.equal("", r:read(11, 100))
        -- Older than the latest: refused. A wrong announced size: the commit fails.
        assert.has_error(function() s:snapshot_begin({ index = 9, term = 4, conf_index = 1, size = 0, conf = "C" }) end)
        local w2 = s:snapshot_begin({ index = 12, term = 4, conf_index = 1, size = 3, conf = "C" })
        w2:write("ab")
        assert.has_error(function() s:snapshot_commit(w2) end)
        -- A reader keeps reading the snapshot it opened.
        s:append({ E(11, 4, "x"), E(12, 4, "y") })
        local w3 = s:snapshot_begin({ index = 12, term = 4, conf_index = 1, size = 0, conf = "C" })
        w3:write("new")
        s:snapshot_commit(w3)
        assert.are.same({ 11, 12 }, { s:bounds() }) -- the log held 12/4: kept
        assert.are.equal("hello", r:read(0, 5))
        assert.are.equal("new", s:snapshot_open():read(0, 10))
        -- Compacting past the end empties the log, which continues after it.
        s:compact(20)
        assert.are.same({ 21, 20 }, { s:bounds() })
    end)
end)

describe("raft.node with log_store", function()
    local c

    after_each(function()
        if c then c.close() end
        c = nil
        raft.on_error(nil)
        support.cleanup()
    end)

    it("replicates over 3 nodes on Lua stores, takes snapshots, and restarts on the same store", function()
        local stores = { raft.memory_store(), raft.memory_store(), raft.memory_store() }
        c = support.cluster(3, { stores = stores, snapshot_entries = 8, snapshot_trailing = 2 })
        local leader = c.leader()
        local follower = leader % 3 + 1
        for i = 1, 25 do
            assert.are.equal(tostring(i), (c.nodes[i % 2 == 0 and leader or follower]:apply("inc x")))
        end
        assert(raft.wait(function()
            for i = 1, 3 do if c.fsms[i].data().x ~= "25" then return false end end
            return true
        end, 5000, "every node to apply 25 commands"))
        -- Snapshots went through the Lua store (taken on the disk thread, written by the hooks).
        assert(raft.wait(function() return stores[leader]:snapshot_meta() ~= nil end, 5000, "a snapshot"))
        local meta = stores[leader]:snapshot_meta()
        assert.is_true(meta.index >= 8)
        assert.is_true(#meta.conf > 0)
        assert.is_true(c.nodes[leader]:status().snapshot_index > 0)
        for i = 1, 3 do assert.is_true(stores[i].calls > 10) end
        local first = stores[leader]:bounds()
        assert.is_true(first > 1) -- compacted after the snapshot

        -- Restart a follower on the same store: its state comes back from the store's
        -- snapshot and log (read on the loop thread while the node opens).
        c.nodes[follower]:close()
        for i = 1, 5 do assert(c.nodes[leader]:apply("inc x")) end
        local nd = c.start(follower)
        assert.are.equal("30", nd:read(function() return c.fsms[follower].data().x end))
        assert(raft.wait(function() return c.fsms[follower].data().x == "30" end, 5000))

        -- A node whose (new, empty) store is far behind catches up by an InstallSnapshot.
        local third = 6 - leader - follower
        c.nodes[third]:close()
        for i = 1, 20 do assert(c.nodes[leader]:apply("inc x")) end
        stores[third] = raft.memory_store()
        local installed
        nd = c.start(third)
        nd:on("snapshot", function(index, inst) if inst then installed = index end end)
        assert(raft.wait(function() return c.fsms[third].data().x == "50" end, 10000,
            "the node on an empty store to catch up"))
        assert.is_number(installed)
        assert.are.equal(installed, stores[third]:snapshot_meta().index)
    end)

    it("stops a node loudly when a hook raises; the others carry on", function()
        local stores = { raft.memory_store(), raft.memory_store(), raft.memory_store() }
        c = support.cluster(3, { stores = stores })
        local leader = c.leader()
        local victim = leader % 3 + 1
        assert(c.nodes[leader]:apply("set a 1"))
        local errors, stopped = {}, nil
        raft.on_error(function(e) errors[#errors + 1] = e end)
        c.nodes[victim]:on("stopped", function(code, message) stopped = { code, message } end)
        stores[victim].append = function() error("disk on fire", 0) end
        local r, err = c.nodes[leader]:apply("set b 2")
        assert.is_nil(err)
        assert.are.equal("2", r)
        assert(raft.wait(function() return stopped ~= nil end, 5000, "the node to stop"))
        assert.are.equal("EIO", stopped[1])
        assert.is_true(c.nodes[victim]:status().stopped)
        assert.is_true(#errors >= 1)
        assert.matches("log store's append failed; the node stops: disk on fire", errors[1], 1, true)
        assert.matches("traceback", errors[1])
        local _, err2, code2 = c.nodes[victim]:apply("set c 3", 1000)
        assert.is_string(err2)
        assert.is_string(code2)
        -- The other two still form a majority.
        assert.are.equal("4", (c.nodes[leader]:apply("set d 4")))

        -- Without a handler the error is raised by whatever runs the loop; nil plus a message
        -- other than "compacted" / "unavailable" is a failure too.
        raft.on_error(nil)
        local other = 6 - leader - victim
        stores[other].save_hard_state = function() return nil, "no space left" end
        c.nodes[leader]:transfer_leadership(other, function() end)
        local ok, e = pcall(raft.run, 5000)
        assert.is_false(ok)
        assert.matches("log store's save_hard_state failed; the node stops: it returned nil, no space left", e, 1, true)
    end)

    it("refuses a log_store without the required hooks", function()
        local s = raft.memory_store()
        s.entries = nil
        s.MemoryStore = nil
        local plain = {}
        for k, v in pairs(getmetatable(s).__index) do plain[k] = v end
        plain.entries = nil
        assert.has_error(function()
            raft.node{ id = 1, address = "127.0.0.1:0", peers = { [1] = "127.0.0.1:0" },
                apply = function() end, log_store = plain }
        end, "raft.node: log_store has no method entries() (see raft.memory_store and docs/lua.md)")
        assert.has_error(function()
            raft.node{ id = 1, address = "127.0.0.1:0", peers = { [1] = "127.0.0.1:0" },
                apply = function() end, log_store = 42 }
        end)
    end)
end)
