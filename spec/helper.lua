-- Loaded by busted (see .busted) before the specs: finds the raft module built into
-- ./lua_modules for this interpreter (5.4 for lua5.4, 5.1 for LuaJIT), ahead of any other.
local v = _VERSION:match("%d+%.%d+")
local tree = "./lua_modules"
package.path = ("%s/share/lua/%s/?.lua;%s/share/lua/%s/?/init.lua;"):format(tree, v, tree, v) .. package.path
package.cpath = ("%s/lib/lua/%s/?.so;"):format(tree, v) .. package.cpath
