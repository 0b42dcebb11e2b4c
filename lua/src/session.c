/* session.c: what the Lua half of the rock needs to read and write the formats a node shares
 * with nodes of other languages (docs/protocol.md, "The state machine's formats"):
 *
 *   core.sessions{...}        the client-session table of craft/session.h as a userdata
 *   core.session_register(), core.session_command(client, seq, ack, payload),
 *   core.session_unregister(client)            the session envelopes (docs/sessions.md)
 *   core.snapshot_header(table|nil)            the state-machine snapshot envelope's head
 *   core.snapshot_parse(s)                     and its reader
 *   core.digest_mark(), core.digest_value(at, digest), core.digest_parse(s)
 *                                              the state-digest entries
 *
 * Integers are little-endian and unpadded, written here in C because LuaJIT has no
 * string.pack. Every parser is total: any string either parses or returns nil, message, code.
 * lua/raft/init.lua uses these to run sessions and digests in front of the user's state
 * machine exactly as the Python package does (python/craft/__init__.py), byte for byte. */
#include <string.h>

#include "craft/session.h"
#include "lraft.h"

#define LRAFT_SESSIONS_MT "raft.sessions"

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return v;
}

static uint64_t check_u64(lua_State *L, int i)
{
    lua_Number n = luaL_checknumber(L, i);
    luaL_argcheck(L, n >= 0, i, "a non-negative integer expected");
    return (uint64_t)luaL_checkinteger(L, i);
}

/* ---- the session table -------------------------------------------------------------------- */

static struct craft_sessions *check_sessions(lua_State *L, int i)
{
    struct craft_sessions **p = luaL_checkudata(L, i, LRAFT_SESSIONS_MT);
    if (*p == NULL) {
        luaL_error(L, "raft: the session table is freed");
    }
    return *p;
}

/* core.sessions{max_sessions =, expire_after =, max_cached_results =} */
static int l_sessions(lua_State *L)
{
    struct craft_sessions_options o;
    craft_sessions_options_init(&o);
    if (lua_istable(L, 1)) {
        o.max_sessions = (uint32_t)lraft_opt_int(L, 1, "max_sessions", o.max_sessions);
        o.expire_after = (uint64_t)lraft_opt_int(L, 1, "expire_after", (lua_Integer)o.expire_after);
        o.max_cached_results =
            (uint32_t)lraft_opt_int(L, 1, "max_cached_results", o.max_cached_results);
    }
    struct craft_sessions **p = lua_newuserdata(L, sizeof *p);
    *p = NULL;
    luaL_getmetatable(L, LRAFT_SESSIONS_MT);
    lua_setmetatable(L, -2);
    int rc = craft_sessions_new(NULL, &o, p);
    if (rc != 0) {
        return luaL_error(L, "raft: session_options: max_sessions and max_cached_results must be "
                             "at least 1 (%s)", craft_strerror(rc));
    }
    return 1;
}

/* table:apply(index, data) -> kind, client, seq, bytes|nil, error */
static int l_sessions_apply(lua_State *L)
{
    struct craft_sessions *s = check_sessions(L, 1);
    struct craft_entry e;
    memset(&e, 0, sizeof e);
    e.index = check_u64(L, 2);
    e.type = CRAFT_ENTRY_COMMAND;
    size_t len;
    e.data = luaL_checklstring(L, 3, &len);
    e.size = len;
    struct craft_session_outcome o;
    int rc = craft_sessions_apply(s, &e, &o);
    if (rc != 0) {
        return luaL_error(L, "raft: the session table refused index %d: %s", (int)e.index,
                          craft_strerror(rc));
    }
    lua_pushinteger(L, o.kind);
    lraft_pushu64(L, o.client);
    lraft_pushu64(L, o.seq);
    if (o.kind == CRAFT_SESSION_APPLY || (o.kind == CRAFT_SESSION_NONE && o.payload != NULL)) {
        lua_pushlstring(L, o.payload, o.payload_len);
    } else if (o.kind == CRAFT_SESSION_DUPLICATE) {
        lua_pushlstring(L, o.result, o.result_len);
    } else {
        lua_pushnil(L);
    }
    lua_pushinteger(L, o.error);
    return 5;
}

static int l_sessions_record(lua_State *L)
{
    struct craft_sessions *s = check_sessions(L, 1);
    uint64_t client = check_u64(L, 2), seq = check_u64(L, 3);
    size_t len;
    const char *r = luaL_checklstring(L, 4, &len);
    int rc = craft_sessions_record(s, client, seq, r, len);
    if (rc != 0) {
        return luaL_error(L, "raft: recording a session result: %s", craft_strerror(rc));
    }
    return 0;
}

static int l_sessions_encode(lua_State *L)
{
    struct craft_sessions *s = check_sessions(L, 1);
    void *buf = NULL;
    size_t size = 0;
    int rc = craft_sessions_encode(s, &buf, &size);
    if (rc != 0) {
        return luaL_error(L, "raft: encoding the session table: %s", craft_strerror(rc));
    }
    lua_pushlstring(L, buf, size);
    craft_free(NULL, buf);
    return 1;
}

/* table:decode(s) -> true | nil, message, code */
static int l_sessions_decode(lua_State *L)
{
    struct craft_sessions *s = check_sessions(L, 1);
    size_t len;
    const char *b = luaL_checklstring(L, 2, &len);
    int rc = craft_sessions_decode(s, b, len);
    if (rc != 0) {
        return lraft_fail(L, rc, rc == CRAFT_EVERSION
                                     ? "the snapshot's session table has a format version this "
                                       "node does not know"
                                     : "the snapshot's session table is malformed");
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int l_sessions_count(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)craft_sessions_count(check_sessions(L, 1)));
    return 1;
}

static int l_sessions_gc(lua_State *L)
{
    struct craft_sessions **p = luaL_checkudata(L, 1, LRAFT_SESSIONS_MT);
    craft_sessions_free(*p);
    *p = NULL;
    return 0;
}

/* ---- session envelopes -------------------------------------------------------------------- */

static int push_envelope(lua_State *L, int rc, void *buf, size_t size)
{
    if (rc != 0) {
        return luaL_error(L, "raft: a session envelope needs client > 0, seq > 0 and ack < seq");
    }
    lua_pushlstring(L, buf, size);
    craft_free(NULL, buf);
    return 1;
}

static int l_session_register(lua_State *L)
{
    void *buf = NULL;
    size_t size = 0;
    int rc = craft_session_encode_register(NULL, &buf, &size);
    return push_envelope(L, rc, buf, size);
}

static int l_session_command(lua_State *L)
{
    uint64_t client = check_u64(L, 1), seq = check_u64(L, 2), ack = check_u64(L, 3);
    size_t len;
    const char *payload = luaL_checklstring(L, 4, &len);
    void *buf = NULL;
    size_t size = 0;
    int rc = craft_session_encode_command(NULL, client, seq, ack, payload, len, &buf, &size);
    return push_envelope(L, rc, buf, size);
}

static int l_session_unregister(lua_State *L)
{
    void *buf = NULL;
    size_t size = 0;
    int rc = craft_session_encode_unregister(NULL, check_u64(L, 1), &buf, &size);
    return push_envelope(L, rc, buf, size);
}

/* ---- the state-machine snapshot envelope -------------------------------------------------- *
 * magic C1 63 73 70 (0xC1 "csp"), version 1, flags (bit 0: a session table follows), u64 length
 * of the table, the table, then the user's snapshot bytes. */

#define SNAP_MAGIC "\xC1\x63\x73\x70"
#define SNAP_VERSION 1
#define SNAP_HEAD 14

/* core.snapshot_header(table|nil) -> the envelope's head, the table included */
static int l_snapshot_header(lua_State *L)
{
    size_t len = 0;
    const char *table = luaL_optlstring(L, 1, NULL, &len);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    uint8_t head[SNAP_HEAD];
    memcpy(head, SNAP_MAGIC, 4);
    head[4] = SNAP_VERSION;
    head[5] = table != NULL ? 1 : 0;
    put_u64(head + 6, table != NULL ? len : 0);
    luaL_addlstring(&b, (const char *)head, SNAP_HEAD);
    if (table != NULL) {
        luaL_addlstring(&b, table, len);
    }
    luaL_pushresult(&b);
    return 1;
}

/* core.snapshot_parse(s) -> has_table, table|nil, offset of the user's bytes (1-based), or
 * nil, message, code */
static int l_snapshot_parse(lua_State *L)
{
    size_t len;
    const uint8_t *p = (const uint8_t *)luaL_checklstring(L, 1, &len);
    if (len < 4 || memcmp(p, SNAP_MAGIC, 4) != 0) {
        return lraft_fail(L, CRAFT_EMALFORMED,
                          "the snapshot does not start with craft's state-machine envelope "
                          "(C1 63 73 70): it was written by a node of an older or foreign "
                          "format, and this node will not guess what it holds");
    }
    if (len < 5 || p[4] != SNAP_VERSION) {
        lua_pushfstring(L, "the snapshot's state-machine envelope has version %d; this node "
                           "reads version %d: upgrade it",
                        len < 5 ? -1 : (int)p[4], SNAP_VERSION);
        return lraft_fail(L, CRAFT_EVERSION, lua_tostring(L, -1));
    }
    if (len < SNAP_HEAD || (p[5] & ~1u) != 0) {
        return lraft_fail(L, CRAFT_EMALFORMED, "the snapshot's state-machine envelope is malformed");
    }
    uint64_t n = get_u64(p + 6);
    if (n > len - SNAP_HEAD || ((p[5] & 1u) == 0 && n != 0)) {
        return lraft_fail(L, CRAFT_EMALFORMED,
                          "the snapshot's session table is longer than the snapshot");
    }
    bool has = (p[5] & 1u) != 0;
    lua_pushboolean(L, has);
    if (has) {
        lua_pushlstring(L, (const char *)p + SNAP_HEAD, (size_t)n);
    } else {
        lua_pushnil(L);
    }
    lua_pushinteger(L, (lua_Integer)(SNAP_HEAD + n + 1));
    return 3;
}

/* ---- state-digest entries ----------------------------------------------------------------- *
 * magic C1 63 64 67 (0xC1 "cdg"), version 1, kind: 1 mark (6 bytes in all), 2 value (u64 the
 * mark's index, then the 32 bytes of a SHA-256: 46 bytes in all). */

#define DIGEST_MAGIC "\xC1\x63\x64\x67"
#define DIGEST_VERSION 1
#define DIGEST_MARK 1
#define DIGEST_VALUE 2
#define DIGEST_SIZE 32

static int l_digest_mark(lua_State *L)
{
    char b[6];
    memcpy(b, DIGEST_MAGIC, 4);
    b[4] = DIGEST_VERSION;
    b[5] = DIGEST_MARK;
    lua_pushlstring(L, b, sizeof b);
    return 1;
}

static int l_digest_value(lua_State *L)
{
    uint64_t at = check_u64(L, 1);
    size_t len;
    const char *d = luaL_checklstring(L, 2, &len);
    luaL_argcheck(L, len == DIGEST_SIZE, 2, "a 32-byte SHA-256 digest expected");
    uint8_t b[6 + 8 + DIGEST_SIZE];
    memcpy(b, DIGEST_MAGIC, 4);
    b[4] = DIGEST_VERSION;
    b[5] = DIGEST_VALUE;
    put_u64(b + 6, at);
    memcpy(b + 14, d, DIGEST_SIZE);
    lua_pushlstring(L, (const char *)b, sizeof b);
    return 1;
}

/* core.digest_parse(s) -> "mark" | "value", at, digest; or nil, message, code for a digest
 * entry this node cannot read (the caller stops the node: it will not guess). */
static int l_digest_parse(lua_State *L)
{
    size_t len;
    const uint8_t *p = (const uint8_t *)luaL_checklstring(L, 1, &len);
    if (len < 6 || memcmp(p, DIGEST_MAGIC, 4) != 0) {
        return lraft_fail(L, CRAFT_EMALFORMED, "a malformed state-digest entry");
    }
    if (p[4] != DIGEST_VERSION) {
        lua_pushfstring(L, "a state-digest entry of version %d; this node reads version %d: "
                           "upgrade it", (int)p[4], DIGEST_VERSION);
        return lraft_fail(L, CRAFT_EVERSION, lua_tostring(L, -1));
    }
    if (p[5] == DIGEST_MARK && len == 6) {
        lua_pushliteral(L, "mark");
        return 1;
    }
    if (p[5] == DIGEST_VALUE && len == 6 + 8 + DIGEST_SIZE) {
        lua_pushliteral(L, "value");
        lraft_pushu64(L, get_u64(p + 6));
        lua_pushlstring(L, (const char *)p + 14, DIGEST_SIZE);
        return 3;
    }
    return lraft_fail(L, CRAFT_EMALFORMED, "a malformed state-digest entry");
}

static const luaL_Reg table_methods[] = {
    {"apply", l_sessions_apply},   {"record", l_sessions_record}, {"encode", l_sessions_encode},
    {"decode", l_sessions_decode}, {"count", l_sessions_count},   {NULL, NULL},
};

static const luaL_Reg funcs[] = {
    {"sessions", l_sessions},
    {"session_register", l_session_register},
    {"session_command", l_session_command},
    {"session_unregister", l_session_unregister},
    {"snapshot_header", l_snapshot_header},
    {"snapshot_parse", l_snapshot_parse},
    {"digest_mark", l_digest_mark},
    {"digest_value", l_digest_value},
    {"digest_parse", l_digest_parse},
    {NULL, NULL},
};

/* Adds the functions to the module table at the top of the stack. */
void lraft_session_init(lua_State *L)
{
    if (luaL_newmetatable(L, LRAFT_SESSIONS_MT)) {
        lua_newtable(L);
        luaL_setfuncs(L, table_methods, 0);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_sessions_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    luaL_setfuncs(L, funcs, 0);
}
