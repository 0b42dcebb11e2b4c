-- The rock builds with `luarocks make`, offline, from this checkout, and names every C file.
local support = require "spec.support"

local function read(path)
    local f = assert(io.open(path, "rb"))
    local s = f:read("*a")
    f:close()
    return s
end

local function lines_of(cmd)
    local p = assert(io.popen(cmd))
    local out = {}
    for line in p:lines() do out[#out + 1] = line end
    p:close()
    return out
end

describe("raft-scm-1.rockspec", function()
    after_each(support.cleanup)

    it("lists every C source of c/src/{core,storage,wire,uv,sim} and lua/src", function()
        local spec = read("raft-scm-1.rockspec")
        local files = lines_of("ls c/src/core/*.c c/src/storage/*.c c/src/wire/*.c c/src/uv/*.c c/src/sim/*.c lua/src/*.c")
        assert.is_true(#files > 50)
        for _, f in ipairs(files) do
            assert.is_truthy(spec:find('"' .. f .. '"', 1, true), f .. " is missing from the rockspec's sources")
        end
    end)

    it("builds and installs with luarocks make, with no rocks server", function()
        local jit_ = rawget(_G, "jit") ~= nil
        local v = _VERSION:match("%d+%.%d+")
        local tree = support.tmpdir()
        local empty = support.tmpdir()
        local cmd = ("luarocks --lua-version=%s --tree '%s' --only-server='%s' make --deps-mode=none raft-scm-1.rockspec %s > '%s/log' 2>&1")
            :format(v, tree, empty, jit_ and "LUA_INCDIR=/usr/include/luajit-2.1" or "", tree)
        local ok = os.execute(cmd)
        os.execute("rm -f raft/core.so; rmdir raft 2>/dev/null")
        assert.is_truthy(ok == true or ok == 0, read(tree .. "/log"))
        local so = ("%s/lib/lua/%s/raft/core.so"):format(tree, v)
        assert.is_truthy(io.open(so, "rb"), "no " .. so)
        assert.is_truthy(io.open(("%s/share/lua/%s/raft/init.lua"):format(tree, v), "rb"))
        -- The module loads in a fresh interpreter from that tree, and does not link liblua.
        local lua = jit_ and "luajit" or "lua" .. v
        local check = ([[%s -e "package.path='%s/share/lua/%s/?.lua;%s/share/lua/%s/?/init.lua;'..package.path; package.cpath='%s/lib/lua/%s/?.so;'..package.cpath; local r = require 'raft'; assert(r.craft_version); print('ok')"]])
            :format(lua, tree, v, tree, v, tree, v)
        assert.are.same({ "ok" }, lines_of(check))
        local libs = table.concat(lines_of("ldd '" .. so .. "'"), "\n")
        assert.is_nil(libs:find("liblua", 1, true))
        assert.is_nil(libs:find("libluajit", 1, true))
    end)
end)
