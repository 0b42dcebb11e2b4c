-- The Lua code of docs/lua.md runs as written, under the interpreter running the specs (issue
-- 14: the docs cannot rot). Each ```lua block runs as a script of its own, in a fresh directory,
-- with ./lua_modules on its paths; the example addresses 127.0.0.1:7001..7003 become free ports.
-- A block may be preceded by an HTML comment saying how it runs:
--   <!-- doc-test: prelude=NAME -->             PRELUDES[NAME] is put in front of it
--   <!-- doc-test: interrupt_after_ms=N -->     a service: Ctrl-C after N ms must end it cleanly
-- python/tests/test_docs.py does the same for the Python code and checks the shell blocks.
local raft = require "raft"
local support = require "spec.support"
local procs = require "spec.support.procs"

local PRELUDES = {
    -- A single-node cluster named node, leading, whose apply takes anything.
    one_node = [[
local raft = require "raft"
local node = assert(raft.node{ id = 1, address = "127.0.0.1:7001", data_dir = "data",
    peers = { [1] = "127.0.0.1:7001" }, apply = function(c) return c end, fsync = false,
    segment_size = 1048576 })
assert(node:wait_for_leader(5000))
]],
    -- raft, a one-server peers map and two fresh state machines.
    fsm_and_peers = [[
local raft = require "raft"
local peers = { [1] = "127.0.0.1:7001" }
local function kv()
    local data = {}
    return { apply = function(c) data[#data + 1] = c return c end,
             snapshot = function() return table.concat(data, "\n") end,
             restore = function(s) data = {} for l in s:gmatch("[^\n]+") do data[#data + 1] = l end end }
end
local fsm, fresh_fsm = kv(), kv()
]],
}

local function read(path)
    local f = io.open(path)
    if not f then return nil end
    local s = f:read("*a")
    f:close()
    return s
end

local function lua_blocks(page)
    local out, lang, lines, note, prev = {}, nil, nil, "", ""
    for line in (assert(read(page)) .. "\n"):gmatch("([^\n]*)\n") do
        local fence = line:match("^```(%w*)%s*$")
        if lang == nil and fence then
            lang, lines = fence, {}
            note = prev:match("^<!%-%- doc%-test: (.-) %-%->$") or prev:match("^<!%-%- doc%-test: (.-)%-%->$") or ""
        elseif lang ~= nil and line:match("^```") then
            if lang == "lua" then out[#out + 1] = { code = table.concat(lines, "\n") .. "\n", note = note } end
            lang = nil
        elseif lang ~= nil then
            lines[#lines + 1] = line
        end
        prev = line:match("^%s*(.-)%s*$")
    end
    return out
end

local function free_ports(code)
    local addrs = support.free_addresses(3)
    for i = 1, 3 do
        code = code:gsub("127%.0%.0%.1:700" .. i, addrs[i])
    end
    return code
end

describe("docs/lua.md runs as written (" .. procs.interpreter() .. ")", function()
    after_each(function() support.cleanup() end)

    local blocks = lua_blocks("docs/lua.md")
    it("has its Lua blocks", function() assert.is_true(#blocks >= 4) end)

    for n, b in ipairs(blocks) do
        it(("block %d%s"):format(n, b.note ~= "" and (" (" .. b.note .. ")") or ""), function()
            local dir = support.tmpdir()
            local prelude = b.note:match("prelude=([%w_]+)")
            -- The interpreter's pid first, for Ctrl-C (and for killing a block that hangs).
            local code = "do local s = io.open('/proc/self/stat'):read('*l') "
                .. "local f = io.open('pid', 'w') f:write((s:match('^%d+'))) f:close() end "
                .. (prelude and assert(PRELUDES[prelude], "no prelude " .. prelude) or "") .. b.code
            local f = assert(io.open(dir .. "/block.lua", "w"))
            f:write(free_ports(code))
            f:close()
            local cwd = assert(io.popen("pwd")):read("*l")
            local env = procs.lua_command():gsub("%./lua_modules", cwd .. "/lua_modules")
            local ms = tonumber(b.note:match("interrupt_after_ms=(%d+)"))
            -- exec: $! is the interpreter itself, which the SIGINT must reach.
            -- The status is written aside and renamed: an rc file that exists is never empty.
            assert(os.execute(("cd '%s' && (%s block.lua > out 2>&1; echo $? > rc.tmp; mv rc.tmp rc) </dev/null &")
                :format(dir, env)))
            if ms then
                raft.sleep(ms)
                local pid = read(dir .. "/pid")
                assert(pid and read(dir .. "/rc") == nil, "the service ended by itself: " .. tostring(read(dir .. "/out")))
                os.execute("kill -INT " .. pid)
            end
            local done = raft.wait(function() return read(dir .. "/rc") ~= nil end, 60000)
            if not done then
                local pid = read(dir .. "/pid")
                if pid then os.execute("kill -9 " .. pid) end
            end
            assert(done, "the block did not end: " .. tostring(read(dir .. "/out")))
            local rc, out = tonumber(read(dir .. "/rc")), read(dir .. "/out") or ""
            assert.are.equal(0, rc, out)
            assert.is_nil(out:find("Segmentation", 1, true), out)
        end)
    end
end)

describe("bench/lua_bench.lua", function()
    it("finds the rock from any working directory", function()
        local dir = support.tmpdir()
        local cwd = assert(io.popen("pwd")):read("*l")
        local p = assert(io.popen(("cd '%s' && %s '%s/bench/lua_bench.lua' --no-such-option 2>&1"):format(
            dir, procs.interpreter(), cwd)))
        local out = p:read("*a")
        p:close()
        assert.matches("unknown argument --no-such-option", out, 1, true)
        support.cleanup()
    end)
end)
