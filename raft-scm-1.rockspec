-- The Lua rock "raft": craft (a Raft library in C) from Lua 5.4 and LuaJIT.
--
--   luarocks --lua-version=5.4 make                          # into the system tree
--   luarocks --lua-version=5.4 make --tree lua_modules       # into ./lua_modules (make test)
--
-- Builds offline, with no download: the C sources of c/src (protocol core, storage, wire,
-- libuv runtime, simulator) and the binding in lua/src compile into one module, raft.core,
-- against the system's libuv and msgpack-c; it does not link liblua (the host provides the Lua
-- symbols). spec/rockspec_spec.lua checks that the source list below names every C file.
rockspec_format = "3.0"
package = "raft"
version = "scm-1"
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
}
build = {
    type = "builtin",
    modules = {
        ["raft"] = "lua/raft/init.lua",
        ["raft.sim"] = "lua/raft/sim.lua",
        ["raft.store"] = "lua/raft/store.lua",
        ["raft.core"] = {
            sources = {
            "c/src/core/configuration.c",
            "c/src/core/convert.c",
            "c/src/core/election.c",
            "c/src/core/errors.c",
            "c/src/core/heap.c",
            "c/src/core/log.c",
            "c/src/core/membership.c",
            "c/src/core/node.c",
            "c/src/core/progress.c",
            "c/src/core/read.c",
            "c/src/core/replication.c",
            "c/src/core/session.c",
            "c/src/core/session_codec.c",
            "c/src/core/snapshot.c",
            "c/src/core/step.c",
            "c/src/core/transfer.c",
            "c/src/core/update.c",
            "c/src/storage/crc32c.c",
            "c/src/storage/disk_store.c",
            "c/src/storage/format.c",
            "c/src/storage/fs.c",
            "c/src/storage/hard_state.c",
            "c/src/storage/lock.c",
            "c/src/storage/log_rules.c",
            "c/src/storage/mem_store.c",
            "c/src/storage/snapshot_file.c",
            "c/src/storage/store.c",
            "c/src/storage/wal.c",
            "c/src/storage/wal_segment.c",
            "c/src/wire/decode.c",
            "c/src/wire/decoder.c",
            "c/src/wire/encode.c",
            "c/src/wire/equal.c",
            "c/src/wire/frame.c",
            "c/src/wire/mp_read.c",
            "c/src/wire/validate.c",
            "c/src/uv/addr.c",
            "c/src/uv/apply.c",
            "c/src/uv/backoff.c",
            "c/src/uv/client.c",
            "c/src/uv/clock.c",
            "c/src/uv/conn.c",
            "c/src/uv/disk.c",
            "c/src/uv/drive.c",
            "c/src/uv/node.c",
            "c/src/uv/requests.c",
            "c/src/uv/transport.c",
            "c/src/sim/disk.c",
            "c/src/sim/events.c",
            "c/src/sim/invariants.c",
            "c/src/sim/membership.c",
            "c/src/sim/network.c",
            "c/src/sim/prng.c",
            "c/src/sim/quorum.c",
            "c/src/sim/reads.c",
            "c/src/sim/sim.c",
            "c/src/sim/snapshot.c",
            "c/src/sim/soak.c",
            "c/src/sim/testing.c",
            "c/src/sim/trace.c",
            "lua/src/core.c",
            "lua/src/node.c",
            "lua/src/sim.c",
            "lua/src/store.c",
            },
            incdirs = { "c/include", "c/src", "$(UV_INCDIR)", "$(MSGPACK_INCDIR)" },
            libdirs = { "$(UV_LIBDIR)", "$(MSGPACK_LIBDIR)" },
            libraries = { "uv", "msgpackc", "pthread", "m" },
        },
    },
}
