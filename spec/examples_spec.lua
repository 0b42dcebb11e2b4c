-- The examples in examples/lua run to completion under the interpreter running the specs.
local support = require "spec.support"

-- Three consecutive free ports, for kv.lua's RAFT_KV_PORT (support.free_addresses walks its
-- cursor one port at a time, so three in a row that were free come back consecutive).
local function free_port_base()
    for _ = 1, 20 do
        local a = support.free_addresses(3)
        local p1, p3 = tonumber(a[1]:match(":(%d+)$")), tonumber(a[3]:match(":(%d+)$"))
        if p3 == p1 + 2 then return p1 end
    end
    error("no three consecutive free ports on 127.0.0.1")
end

local function run(script, env)
    local lua = rawget(_G, "jit") and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")
    local p = assert(io.popen(("%s timeout 60 %s %s 2>&1; echo \"exit=$?\""):format(env or "", lua, script)))
    local out = p:read("*a")
    p:close()
    return out
end

describe("examples/lua", function()
    it("kv.lua: a replicated key-value store survives its leader being stopped", function()
        local out = run("examples/lua/kv.lua", "RAFT_KV_PORT=" .. free_port_base())
        support.cleanup()
        assert.matches("exit=0", out, 1, true)
        assert.matches("key150 = value150", out, 1, true)
        assert.matches("apply failed: unknown command", out, 1, true)
    end)

    it("lab.lua: the simulator lab tells its story", function()
        local out = run("examples/lua/lab.lua 3")
        assert.matches("exit=0", out, 1, true)
        assert.matches("every safety invariant held", out, 1, true)
    end)
end)
