/* lua/compat.h: the few differences between Lua 5.4 (the target) and LuaJIT 2.1 / Lua 5.1 (the
 * Lua of OpenResty) that the raft module meets, as macros, so that one copy of the C code builds
 * for both (STYLE.md: "Lua 5.4 first, LuaJIT through a small compat.h").
 *
 * Limits under LuaJIT: numbers are doubles, so indexes, terms and ids above 2^53 lose precision
 * (documented in docs/lua.md); __close does not exist (call :close()). */
#ifndef LRAFT_COMPAT_H
#define LRAFT_COMPAT_H

#include <lauxlib.h>
#include <lua.h>

#if LUA_VERSION_NUM < 502
/* Lua 5.1 and LuaJIT. LuaJIT 2.1 already has luaL_setfuncs, luaL_newlib, luaL_testudata and
 * luaL_traceback; plain 5.1 is not supported. */
#define lua_rawlen(L, i) lua_objlen((L), (i))
#define LUA_OK 0
#define lraft_isinteger(L, i) (lua_type((L), (i)) == LUA_TNUMBER)
#define lraft_getuservalue(L, i) lua_getfenv((L), (i))
#define lraft_setuservalue(L, i) lua_setfenv((L), (i))
#else
#define lraft_isinteger(L, i) lua_isinteger((L), (i))
#define lraft_getuservalue(L, i) lua_getuservalue((L), (i))
#define lraft_setuservalue(L, i) lua_setuservalue((L), (i))
#endif

/* Pushes an unsigned 64-bit value (ids, indexes, terms). Exact in 5.4 up to 2^63 - 1; exact
 * under LuaJIT up to 2^53. */
#define lraft_pushu64(L, v) lua_pushinteger((L), (lua_Integer)(v))

#endif
