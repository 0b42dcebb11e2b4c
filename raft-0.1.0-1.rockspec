-- The Lua rock "raft": craft (a Raft library in C) from Lua 5.4 and LuaJIT.
--
--   luarocks --lua-version=5.4 make                          # into the system tree
--   luarocks --lua-version=5.4 make --tree lua_modules       # into ./lua_modules (make test)
--
-- Builds offline, with no download: the C sources of c/src (protocol core, storage, wire,
-- libuv runtime, simulator) and the binding in lua/src compile into one module, raft.core,
-- against the system's libuv, msgpack-c and OpenSSL; it does not link liblua (the host provides
-- the Lua symbols). The "command" build type, not "builtin": builtin copies the whole lua/ folder
-- (C sources, objects, compat.h) into the Lua tree; here only raft.core and the four Lua
-- files are installed (spec/rockspec_spec.lua lists the installed tree).
--
-- The version is craft's, CRAFT_VERSION_STRING in c/include/craft.h, with the rockspec revision
-- after the dash; the file name carries it too. spec/rockspec_spec.lua and
-- tests/packaging/test_version.py fail when they disagree.
rockspec_format = "3.0"
package = "raft"
version = "0.1.0-1"
source = {
    url = "git+file://.",
}
description = {
    summary = "Raft consensus for Lua: a replicated state machine written in Lua",
    detailed = [[
A Lua state machine replicated by craft's Raft (pre-vote, check-quorum, snapshots, membership
changes, leadership transfer, linearizable reads, forwarding from followers) over TCP, with a
durable write-ahead log. The loop runs in the caller's thread: raft.run() or raft.poll() to
embed it in another loop (OpenResty timers). raft.sim is the deterministic simulator with Lua
state machines, for labs and property tests. Lua 5.4; LuaJIT 2.1.
]],
    homepage = "https://example.invalid/craft",
    license = "MIT",
    labels = { "raft", "consensus", "replication", "libuv" },
}
dependencies = {
    "lua >= 5.1",
}
external_dependencies = {
    UV = { header = "uv.h", library = "uv" },
    MSGPACK = { header = "msgpack.h", library = "msgpackc" },
    OPENSSL = { header = "openssl/ssl.h", library = "ssl" },
}
build = {
    type = "command",
    -- One compiler run over every source (c/src/<layer>/*.c and lua/src/*.c: a new file in a
    -- layer is picked up; spec/rockspec_spec.lua checks that every layer folder is named), into
    -- cbuild/luarock/ (ignored by git), so that no object file lands in the checkout.
    build_command = [[
mkdir -p cbuild/luarock && \
$(CC) $(CFLAGS) -std=gnu11 -Ic/include -Ic/src -I$(LUA_INCDIR) -I$(UV_INCDIR) -I$(MSGPACK_INCDIR) \
  -I$(OPENSSL_INCDIR) \
  c/src/core/*.c c/src/storage/*.c c/src/wire/*.c c/src/uv/*.c c/src/sim/*.c lua/src/*.c \
  $(LIBFLAG) -o cbuild/luarock/core.so \
  -L$(UV_LIBDIR) -L$(MSGPACK_LIBDIR) -L$(OPENSSL_LIBDIR) -luv -lmsgpackc -lssl -lcrypto \
  -lpthread -lm
]],
    install = {
        lua = {
            ["raft.init"] = "lua/raft/init.lua",
            ["raft.fsm"] = "lua/raft/fsm.lua",
            ["raft.sim"] = "lua/raft/sim.lua",
            ["raft.store"] = "lua/raft/store.lua",
        },
        lib = {
            ["raft.core"] = "cbuild/luarock/core.so",
        },
    },
}
