-- Only members talk to members (issue 13; docs/security.md) from Lua: raft.tls{...} and
-- raft.secret{...} on raft.node, node:set_security for rotations, raft.generate_secret, the
-- limits, and a mixed cluster of Lua and Python nodes over TLS. Certificates are made at test
-- time by tests/tls/make-certs.sh (openssl); no key is committed.
local raft = require "raft"
local support = require "spec.support"
local procs = require "spec.support.procs"

local function make_certs()
    local dir = support.tmpdir()
    local ok = os.execute(("bash tests/tls/make-certs.sh '%s' 1 2 3 >/dev/null 2>&1"):format(dir))
    assert(ok == true or ok == 0, "tests/tls/make-certs.sh failed (is openssl installed?)")
    return dir
end

local function tls_for(certs, prefix, ca)
    return function(i)
        return raft.tls{ cert = ("%s/%s%d.pem"):format(certs, prefix or "server-", i),
            key = ("%s/%s%d.key"):format(certs, prefix or "server-", i),
            ca = certs .. "/" .. (ca or "ca.pem") }
    end
end

-- n nodes in this Lua state, each with security_for(i).
local function cluster(n, security_for, extra)
    local addrs = support.free_addresses(n)
    local root = support.tmpdir()
    local c = { nodes = {}, fsms = {}, peers = {} }
    for i = 1, n do c.peers[i] = addrs[i] end
    for i = 1, n do
        c.fsms[i] = support.kv()
        local o = { id = i, address = c.peers[i], data_dir = root .. "/n" .. i, peers = c.peers,
            fsm = c.fsms[i], heartbeat_ms = 20, election_timeout_ms = 300, fsync = false,
            timeout_ms = 5000, log_level = "error", security = security_for(i) }
        for k, v in pairs(extra or {}) do o[k] = v end
        c.nodes[i] = assert(raft.node(o))
    end
    function c.leader()
        local id
        assert(raft.wait(function()
            for i, nd in pairs(c.nodes) do
                if nd:is_open() and nd:is_leader() then id = i return true end
            end
        end, 10000, "a leader"))
        return id
    end
    function c.close()
        for _, nd in pairs(c.nodes) do nd:close() end
    end
    return c
end

describe("security", function()
    local c

    after_each(function()
        if c then c.close() end
        c = nil
        procs.kill_all()
        support.cleanup()
    end)

    it("runs a cluster with a cluster secret; another secret gets nothing", function()
        local dir = support.tmpdir()
        assert.is_true(raft.generate_secret(dir .. "/cluster.secret"))
        assert.is_true(raft.generate_secret(dir .. "/other.secret"))
        c = cluster(3, function(i)
            return raft.secret{ file = dir .. (i < 3 and "/cluster.secret" or "/other.secret") }
        end)
        -- Nodes 1 and 2 share the secret: a majority, and they elect a leader among them.
        local leader = c.leader()
        assert.is_true(leader ~= 3)
        assert.are.equal("1", (c.nodes[leader]:apply("inc n")))
        -- Node 3 holds another secret: it never hears from them.
        raft.sleep(300)
        assert.is_nil(c.fsms[3].data().n)
        assert.is_nil((c.nodes[3]:leader()))
        -- Given the cluster's secret at run time, it catches up.
        assert.is_true(c.nodes[3]:set_security(raft.secret{ file = dir .. "/cluster.secret" }))
        assert(raft.wait(function() return c.fsms[3].data().n == "1" end, 10000, "node 3 to catch up"))
    end)

    it("runs a cluster with mutual TLS and rotates its CA under writes", function()
        local certs = make_certs()
        c = cluster(3, tls_for(certs))
        local leader = c.leader()
        local acked = 0
        local function writes(k)
            for _ = 1, k do
                local _, err = c.nodes[c.leader()]:apply("inc n")
                if err == nil then acked = acked + 1 end
            end
        end
        writes(10)
        -- Trust both CAs; then new certificates; then only the new CA.
        for _, stage in ipairs({ { "server-", "ca-bundle.pem" }, { "new-server-", "ca-bundle.pem" },
            { "new-server-", "new-ca.pem" } }) do
            local sec = tls_for(certs, stage[1], stage[2])
            for i = 1, 3 do assert.is_true(c.nodes[i]:set_security(sec(i))) end
            writes(10)
        end
        leader = c.leader()
        assert(raft.wait(function()
            for i = 1, 3 do if c.fsms[i].data().n ~= tostring(acked) then return false end end
            return true
        end, 10000, "every node to apply every write"))
        assert.are.equal(30 + 10, acked)
        assert.are.equal(tostring(acked), c.fsms[leader].data().n)
    end)

    it("refuses settings that cannot work, with the reason", function()
        local certs = make_certs()
        local addr = support.free_addresses(1)[1]
        local node, msg, code = raft.node{ id = 1, address = addr, data_dir = support.tmpdir(),
            peers = { addr }, apply = function() end, log_level = "error",
            security = raft.tls{ cert = certs .. "/server-2.pem", key = certs .. "/server-2.key",
                ca = certs .. "/ca.pem" } }
        assert.is_nil(node)
        assert.are.equal("EINVAL", code)
        assert.truthy(msg:find("names server 2", 1, true))
        local ok
        ok, msg, code = raft.check_security(raft.secret{ passphrase = "short" })
        assert.is_nil(ok)
        assert.truthy(msg:find("at least 8", 1, true))
        ok, msg, code = raft.check_security(raft.secret{ file = certs .. "/missing" })
        assert.is_nil(ok)
        assert.truthy(msg:find("cannot read the secret file", 1, true))
        local dir = support.tmpdir()
        assert.is_true(raft.generate_secret(dir .. "/s"))
        ok, msg, code = raft.generate_secret(dir .. "/s")
        assert.is_nil(ok)
        assert.are.equal("EEXISTS", code)
        assert.has_error(function() raft.tls{ cert = "a.pem" } end)
        assert.has_error(function() raft.secret{} end)
        assert.has_error(function()
            raft.node{ id = 1, address = addr, data_dir = dir, peers = { addr },
                apply = function() end, security = "tls" }
        end)
        assert.has_error(function()
            raft.node{ id = 1, address = addr, data_dir = dir, peers = { addr },
                apply = function() end, limits = { nonsense = 1 } }
        end)
    end)

    it("takes limits", function()
        local addr = support.free_addresses(1)[1]
        local node = assert(raft.node{ id = 1, address = addr, data_dir = support.tmpdir(),
            peers = { addr }, fsm = support.kv(), log_level = "error",
            limits = { max_clients = 10, max_clients_per_ip = 2, client_idle_timeout_ms = 1000,
                max_client_requests = 4, read_budget = 8 * 1024 * 1024, max_pending = 8 } })
        assert(raft.wait(function() return node:is_leader() end, 10000, "a leader"))
        assert.are.equal("v", (node:apply("set k v")))
        node:close()
    end)

    it("runs a mixed Lua and Python cluster over TLS", function()
        procs.require_python()
        local certs = make_certs()
        local addrs = support.free_addresses(3)
        local peers = { addrs[1], addrs[2], addrs[3] }
        local root = support.tmpdir()
        local fsm = support.kv()
        local lnode = assert(raft.node{ id = 1, address = peers[1], data_dir = root .. "/n1",
            peers = peers, fsm = fsm, heartbeat_ms = 50, election_timeout_ms = 500,
            fsync = false, timeout_ms = 5000, log_level = "error", security = tls_for(certs)(1) })
        c = { close = function() lnode:close() end }
        local opts = { tls_dir = certs }
        local py2 = procs.start("python", 2, peers, root .. "/n2", opts)
        local py3 = procs.start("lua", 3, peers, root .. "/n3", opts)
        -- Writes through the Lua node and through the Python one.
        for i = 1, 10 do
            local _, err = lnode:apply("inc n")
            assert.is_nil(err)
            local v, perr = py2:call("apply", "inc m")
            assert.is_nil(perr)
            assert.are.equal(tostring(i), v)
        end
        local want = "m=10\nn=10\n"
        assert(raft.wait(function()
            local a = py2:call("stale")
            local b = py3:call("stale")
            return a == want and b == want and fsm.data().n == "10"
        end, 10000, "every node to hold the same state"))
    end)
end)
