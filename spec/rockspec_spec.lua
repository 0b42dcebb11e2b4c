-- The rock builds with `luarocks make`, offline, from this checkout, compiles every C layer,
-- carries craft's version, and installs only raft.core and the Lua files.
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

-- The one rockspec of the checkout: raft-<version>-<revision>.rockspec.
local function rockspec_name()
    local names = lines_of("ls raft-*.rockspec")
    assert.are.equal(1, #names, "expected one raft-*.rockspec, found: " .. table.concat(names, " "))
    return names[1]
end

-- What a tree holds once the rock is installed, luarocks' own metadata (lib/luarocks/) aside.
local function installed_tree(tree)
    local installed = {}
    for _, f in ipairs(lines_of(("cd '%s' && find . -path ./lib/luarocks -prune -o ! -type d -print | sort"):format(tree))) do
        if f ~= "./log" then installed[#installed + 1] = f:sub(3) end
    end
    return installed
end

-- Only the C module and the Lua files: no sources, objects or headers.
local function expected_tree(v)
    return {
        ("lib/lua/%s/raft/core.so"):format(v),
        ("share/lua/%s/raft/fsm.lua"):format(v),
        ("share/lua/%s/raft/init.lua"):format(v),
        ("share/lua/%s/raft/sim.lua"):format(v),
        ("share/lua/%s/raft/store.lua"):format(v),
    }
end

local function succeeded(ok)
    return ok == true or ok == 0
end

describe("the rockspec", function()
    after_each(support.cleanup)

    it("compiles every layer of c/src and lua/src", function()
        local spec = read(rockspec_name())
        -- Every folder holding C sources must be in the build command's globs: a new layer
        -- (c/src/<name>/) left out would only show as undefined symbols when the module loads.
        local dirs = lines_of("ls c/src/*/*.c lua/src/*.c | sed 's|/[^/]*$||' | sort -u")
        assert.is_true(#dirs >= 6)
        for _, d in ipairs(dirs) do
            assert.is_truthy(spec:find(d .. "/*.c", 1, true), d .. "/*.c is missing from the rockspec's build_command")
        end
    end)

    it("carries craft's version (CRAFT_VERSION_STRING in c/include/craft.h)", function()
        local version = assert(read("c/include/craft.h"):match('#define CRAFT_VERSION_STRING "([^"]+)"'))
        local name = rockspec_name()
        local spec = read(name)
        local field = assert(spec:match('\nversion = "([^"]+)"'))
        assert.matches("^%d+$", field:sub(#version + 2))
        assert.are.equal(version .. "-", field:sub(1, #version + 1))
        assert.are.equal("raft-" .. field .. ".rockspec", name)
        local raft = require "raft"
        assert.are.equal(version, raft.craft_version)
        assert.are.equal("raft " .. version, raft._VERSION)
    end)

    it("builds and installs with luarocks make, with no rocks server", function()
        local jit_ = rawget(_G, "jit") ~= nil
        local v = _VERSION:match("%d+%.%d+")
        local tree = support.tmpdir()
        local empty = support.tmpdir()
        local cmd = ("luarocks --lua-version=%s --tree '%s' --only-server='%s' make --deps-mode=none %s %s > '%s/log' 2>&1")
            :format(v, tree, empty, rockspec_name(), jit_ and "LUA_INCDIR=/usr/include/luajit-2.1" or "", tree)
        local objects = lines_of("find c lua -name '*.o' | sort")
        local ok = os.execute(cmd)
        assert.is_truthy(succeeded(ok), read(tree .. "/log"))
        local so = ("%s/lib/lua/%s/raft/core.so"):format(tree, v)
        assert.is_truthy(io.open(so, "rb"), "no " .. so)
        assert.is_truthy(io.open(("%s/share/lua/%s/raft/init.lua"):format(tree, v), "rb"))
        -- Only the C module and the Lua files are installed: no sources, objects or headers
        -- (luarocks' own metadata lives under lib/luarocks/).
        assert.are.same(expected_tree(v), installed_tree(tree))
        -- The module loads in a fresh interpreter from that tree, and does not link liblua.
        local lua = jit_ and "luajit" or "lua" .. v
        local check = ([[%s -e "package.path='%s/share/lua/%s/?.lua;%s/share/lua/%s/?/init.lua;'..package.path; package.cpath='%s/lib/lua/%s/?.so;'..package.cpath; local r = require 'raft'; assert(r.craft_version); print('ok')"]])
            :format(lua, tree, v, tree, v, tree, v)
        assert.are.same({ "ok" }, lines_of(check))
        -- Nor does the build leave object files in the checkout.
        assert.are.same(objects, lines_of("find c lua -name '*.o' | sort"))
        local libs = table.concat(lines_of("ldd '" .. so .. "'"), "\n")
        assert.is_nil(libs:find("liblua", 1, true))
        assert.is_nil(libs:find("libluajit", 1, true))
    end)

    it("packs a binary rock that installs the same files, with no rocks server", function()
        local jit_ = rawget(_G, "jit") ~= nil
        local v = _VERSION:match("%d+%.%d+")
        local out, tree, empty = support.tmpdir(), support.tmpdir(), support.tmpdir()
        -- luarocks writes the .rock into the current directory (the checkout): moved out at once.
        local pack = ("luarocks --lua-version=%s --only-server='%s' make --deps-mode=none --pack-binary-rock %s %s > '%s/log' 2>&1")
            :format(v, empty, rockspec_name(), jit_ and "LUA_INCDIR=/usr/include/luajit-2.1" or "", out)
        local ok = os.execute(pack)
        os.execute(("mv raft-*.rock '%s/' 2>/dev/null"):format(out))
        assert.is_truthy(succeeded(ok), read(out .. "/log"))
        local rocks = lines_of(("ls '%s'/raft-*.rock"):format(out))
        assert.are.equal(1, #rocks)
        local install = ("luarocks --lua-version=%s --tree '%s' --only-server='%s' install --deps-mode=none '%s' > '%s/log' 2>&1")
            :format(v, tree, empty, rocks[1], out)
        assert.is_truthy(succeeded(os.execute(install)), read(out .. "/log"))
        assert.are.same(expected_tree(v), installed_tree(tree))
    end)
end)
