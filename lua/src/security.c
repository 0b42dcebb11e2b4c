/* security.c: security settings and resource limits from Lua (craft/security.h,
 * docs/security.md), as built by raft.tls{...} and raft.secret{...} in raft/init.lua:
 *
 *   { mode = "tls", cert = "n1.pem", key = "n1.key", ca = "ca.pem", verify_id = true }
 *   { mode = "secret", file = "cluster.secret" [, accept_file = ...] }
 *   { mode = "secret", passphrase = "..." [, accept_passphrase = ...] }
 *
 * The strings are borrowed from the table, which the caller keeps on the stack while the
 * settings are used. Also raft.core.generate_secret(path) and node:set_security(settings). */
#include <string.h>

#include "craft/uv.h"
#include "lraft.h"

void lraft_security_read(lua_State *L, int t, struct craft_security *s)
{
    memset(s, 0, sizeof *s);
    if (lua_isnoneornil(L, t)) {
        return; /* plaintext */
    }
    luaL_checktype(L, t, LUA_TTABLE);
    const char *mode = lraft_opt_str(L, t, "mode", "plaintext");
    if (strcmp(mode, "tls") == 0) {
        s->mode = CRAFT_SECURITY_TLS;
    } else if (strcmp(mode, "secret") == 0) {
        s->mode = CRAFT_SECURITY_SECRET;
    } else if (strcmp(mode, "plaintext") != 0) {
        luaL_error(L, "raft: security mode must be \"tls\", \"secret\" or \"plaintext\"");
    }
    s->cert_file = lraft_opt_str(L, t, "cert", NULL);
    s->key_file = lraft_opt_str(L, t, "key", NULL);
    s->ca_file = lraft_opt_str(L, t, "ca", NULL);
    s->verify_id = lraft_opt_bool(L, t, "verify_id", true);
    s->secret_file = lraft_opt_str(L, t, "file", NULL);
    s->passphrase = lraft_opt_str(L, t, "passphrase", NULL);
    s->accept_secret_file = lraft_opt_str(L, t, "accept_file", NULL);
    s->accept_passphrase = lraft_opt_str(L, t, "accept_passphrase", NULL);
}

void lraft_limits_read(lua_State *L, int t, struct craft_uv_limits *l)
{
    memset(l, 0, sizeof *l);
    if (lua_isnoneornil(L, t)) {
        return;
    }
    luaL_checktype(L, t, LUA_TTABLE);
    l->max_pending = (unsigned)lraft_opt_int(L, t, "max_pending", 0);
    l->max_clients = (unsigned)lraft_opt_int(L, t, "max_clients", 0);
    l->max_clients_per_ip = (unsigned)lraft_opt_int(L, t, "max_clients_per_ip", 0);
    l->client_idle_timeout_ms = (unsigned)lraft_opt_int(L, t, "client_idle_timeout_ms", 0);
    l->max_client_requests = (unsigned)lraft_opt_int(L, t, "max_client_requests", 0);
    l->read_budget = (size_t)lraft_opt_int(L, t, "read_budget", 0);
}

/* core.generate_secret(path) -> true, or nil, message, code */
int lraft_generate_secret(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    int rc = craft_secret_generate(path);
    if (rc == CRAFT_EEXISTS) {
        lua_pushfstring(L, "%s exists: a secret is never overwritten", path);
        return lraft_fail(L, rc, lua_tostring(L, -1));
    }
    if (rc != 0) {
        lua_pushfstring(L, "cannot write a secret to %s", path);
        return lraft_fail(L, rc, lua_tostring(L, -1));
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* core.check_security(settings, cluster_id) -> true, or nil, message, code */
int lraft_check_security(lua_State *L)
{
    struct craft_security s;
    char err[512] = "";
    lraft_security_read(L, 1, &s);
    int rc = craft_security_check(&s, (uint64_t)luaL_optinteger(L, 2, 0), err, sizeof err);
    if (rc != 0) {
        return lraft_fail(L, rc, err);
    }
    lua_pushboolean(L, 1);
    return 1;
}
