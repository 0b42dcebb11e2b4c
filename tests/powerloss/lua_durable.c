/*
 * lua_durable.c: the Lua module "durable", what a log store written in Lua needs and Lua's
 * standard library lacks: a way to make a write durable. io.open, file:write and file:flush
 * give stdio's buffers to the kernel; nothing in Lua asks the kernel to put them on the disk.
 *
 *   local durable = require "durable"
 *   durable.fdatasync(file_or_path)   -- flushes a Lua file handle first; a path is opened,
 *   durable.fsync(file_or_path)       -- synced and closed (Linux syncs the file's inode, so
 *                                        -- writes made through any descriptor count)
 *   durable.fsync_dir(path)           -- makes the names created, renamed or removed in the
 *                                        -- directory durable
 *   durable.mkdir(path)               -- creates a directory (true if it already exists):
 *                                        -- os.execute("mkdir") would do it in another process
 *
 * Each returns true, or nil, message, errno. Used by tests/powerloss/file_store.lua; built for
 * Lua 5.4 by tests/powerloss/CMakeLists.txt (test tooling, not part of the rock).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

__attribute__((visibility("default"))) int luaopen_durable(lua_State *L);

static int fail(lua_State *L, const char *what, const char *name)
{
    int e = errno;
    lua_pushnil(L);
    lua_pushfstring(L, "%s %s: %s", what, name, strerror(e));
    lua_pushinteger(L, e);
    return 3;
}

static int sync_fd(int fd, int data)
{
    int rv;
    do {
        rv = data ? fdatasync(fd) : fsync(fd);
    } while (rv != 0 && errno == EINTR);
    return rv;
}

static int sync_arg(lua_State *L, int data)
{
    const char *what = data ? "fdatasync" : "fsync";
    luaL_Stream *s = luaL_testudata(L, 1, LUA_FILEHANDLE);
    if (s != NULL) {
        if (s->closef == NULL) {
            return luaL_argerror(L, 1, "attempt to use a closed file");
        }
        if (fflush(s->f) != 0) {
            return fail(L, "flush before", what);
        }
        if (sync_fd(fileno(s->f), data) != 0) {
            return fail(L, what, "a file");
        }
        lua_pushboolean(L, 1);
        return 1;
    }
    const char *path = luaL_checkstring(L, 1);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return fail(L, "open", path);
    }
    if (sync_fd(fd, data) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return fail(L, what, path);
    }
    close(fd);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_fsync(lua_State *L)
{
    return sync_arg(L, 0);
}

static int l_fdatasync(lua_State *L)
{
    return sync_arg(L, 1);
}

static int l_fsync_dir(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return fail(L, "open", path);
    }
    if (sync_fd(fd, 0) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return fail(L, "fsync", path);
    }
    close(fd);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_mkdir(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        return fail(L, "mkdir", path);
    }
    lua_pushboolean(L, 1);
    return 1;
}

int luaopen_durable(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"fsync", l_fsync},
        {"fdatasync", l_fdatasync},
        {"fsync_dir", l_fsync_dir},
        {"mkdir", l_mkdir},
        {NULL, NULL},
    };
    luaL_newlib(L, fns);
    return 1;
}
