/* Which cluster a node belongs to, and whether its configuration is the one it was given.
 *
 * The cluster id travels in every handshake; a peer of another cluster is refused. Given
 * (cluster_id != 0), it is used as it is. Otherwise it is derived from the bootstrap
 * configuration when the cluster is created, so that nodes bootstrapped with different peer
 * maps (a typo, a copy of another service's configuration) refuse each other instead of
 * forming one cluster. It is derived once and kept in the data directory (the file CLUSTER,
 * docs/storage.md), because the peers given at later starts are not read (the stored
 * configuration is: membership changes move it on) and may well differ. A node started with
 * join = true and no cluster_id has none (0): it is accepted by any cluster and accepts any.
 * With a store of the caller's (no data directory) it is derived at every start.
 *
 * A node restarted with a peers map that differs from its stored configuration keeps the stored
 * one, as Raft requires; the difference is logged and raised as an event, naming each server
 * that differs and the membership calls that change a configuration. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "uv/node.h"

#define CLUSTER_FILE "CLUSTER"

/* FNV-1a 64 over the servers, by increasing id: "id=address;" each. Never 0 (0 means none). */
uint64_t craft__uv_cluster_id_of(const struct craft_configuration *conf)
{
    uint64_t h = 0xcbf29ce484222325ull;
    craft_id last = 0;
    for (unsigned k = 0; k < conf->n; k++) {
        const struct craft_server *next = NULL;
        for (unsigned i = 0; i < conf->n; i++) {
            const struct craft_server *s = &conf->servers[i];
            if (s->id > last && (next == NULL || s->id < next->id)) {
                next = s;
            }
        }
        if (next == NULL) {
            break;
        }
        char buf[CRAFT_ADDRESS_MAX + 32];
        int len = snprintf(buf, sizeof buf, "%" PRIu64 "=%s;", (uint64_t)next->id, next->address);
        for (int i = 0; i < len; i++) {
            h ^= (uint8_t)buf[i];
            h *= 0x100000001b3ull;
        }
        last = next->id;
    }
    return h != 0 ? h : 1;
}

static int read_file(const char *dir, uint64_t *out)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/" CLUSTER_FILE, dir);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return errno == ENOENT ? CRAFT_ENOTFOUND : CRAFT_EIO;
    }
    uint64_t v = 0;
    int ok = fscanf(f, "craft cluster %" SCNx64, &v);
    fclose(f);
    if (ok != 1 || v == 0) {
        return CRAFT_ECORRUPT;
    }
    *out = v;
    return 0;
}

/* Written to a temporary name, synced, renamed, the directory synced: all or nothing. */
static int write_file(const char *dir, uint64_t v)
{
    char path[4200], tmp[4210];
    snprintf(path, sizeof path, "%s/" CLUSTER_FILE, dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        return CRAFT_EIO;
    }
    char text[64];
    int len = snprintf(text, sizeof text, "craft cluster %016" PRIx64 "\n", v);
    bool ok = write(fd, text, (size_t)len) == len && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return CRAFT_EIO;
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    return 0;
}

int craft__uv_cluster_id(const struct craft_uv_config *c, const char *data_dir, uint64_t *out,
                         char *err, size_t cap)
{
    uint64_t derived = c->bootstrap != NULL ? craft__uv_cluster_id_of(c->bootstrap) : 0;
    if (c->store != NULL || data_dir == NULL) {
        *out = c->cluster_id != 0 ? c->cluster_id : derived;
        return 0;
    }
    uint64_t kept = 0;
    int rc = read_file(data_dir, &kept);
    if (rc == CRAFT_ECORRUPT || rc == CRAFT_EIO) {
        snprintf(err, cap, "reading %s/" CLUSTER_FILE ": %s (it holds the cluster's id; restore "
                 "it from another member's data directory)", data_dir,
                 rc == CRAFT_EIO ? "I/O error" : "malformed");
        return rc;
    }
    if (rc == 0) {
        if (c->cluster_id != 0 && c->cluster_id != kept) {
            snprintf(err, cap, "the data directory %s belongs to cluster %#" PRIx64 " but "
                     "cluster_id %#" PRIx64 " was given: leave cluster_id out, or use another "
                     "data directory", data_dir, kept, c->cluster_id);
            return CRAFT_EINVAL;
        }
        *out = kept;
        return 0;
    }
    *out = c->cluster_id != 0 ? c->cluster_id : derived;
    if (*out == 0) {
        return 0; /* join mode without cluster_id: no identity to keep yet */
    }
    rc = write_file(data_dir, *out);
    if (rc != 0) {
        snprintf(err, cap, "writing %s/" CLUSTER_FILE ": I/O error", data_dir);
    }
    return rc;
}

/* Appends to buf (at *len) without overflowing; the text is cut where it no longer fits. */
static void add(char *buf, size_t cap, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void add(char *buf, size_t cap, size_t *len, const char *fmt, ...)
{
    if (*len >= cap) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf + *len, cap - *len, fmt, ap);
    va_end(ap);
    if (k > 0) {
        *len += (size_t)k < cap - *len ? (size_t)k : cap - *len - 1;
    }
}

void craft__uv_check_peers(struct craft_uv_node *n)
{
    const struct craft_configuration *given = n->cfg.bootstrap;
    if (given == NULL || n->core == NULL) {
        return;
    }
    craft_index conf_index = 0;
    const struct craft_configuration *kept = craft_node_configuration(n->core, &conf_index);
    char diff[700];
    size_t len = 0;
    diff[0] = '\0';
    for (unsigned i = 0; i < kept->n; i++) {
        const struct craft_server *s = &kept->servers[i];
        const struct craft_server *g = craft_configuration_get(given, s->id);
        if (g == NULL) {
            add(diff, sizeof diff, &len, "%sserver %" PRIu64 " (%s) is in the configuration but "
                "not in peers", len ? "; " : "", (uint64_t)s->id, s->address);
        } else if (strcmp(g->address, s->address) != 0) {
            add(diff, sizeof diff, &len, "%sserver %" PRIu64 " is %s in the configuration but %s "
                "in peers", len ? "; " : "", (uint64_t)s->id, s->address, g->address);
        }
    }
    for (unsigned i = 0; i < given->n; i++) {
        const struct craft_server *g = &given->servers[i];
        if (craft_configuration_get(kept, g->id) == NULL) {
            add(diff, sizeof diff, &len, "%sserver %" PRIu64 " (%s) is in peers but not in the "
                "configuration", len ? "; " : "", (uint64_t)g->id, g->address);
        }
    }
    if (len == 0) {
        return;
    }
    char msg[1000];
    snprintf(msg, sizeof msg,
             "peers differs from the configuration this node keeps (index %" PRIu64 "), which "
             "it goes on using: %s. peers is only read when the data directory is empty. To "
             "change the cluster, use the membership calls on the leader: add_server(id, "
             "address), remove_server(id); to move a server to another address, remove it and "
             "add it again",
             (uint64_t)conf_index, diff);
    craft__uv_log(n, CRAFT_UV_WARN, "event=peers_differ reason=\"%s\"", msg);
    struct craft_uv_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = CRAFT_UV_EVENT_PEERS_DIFFER;
    ev.index = conf_index;
    ev.message = msg;
    craft__uv_event(n, &ev);
}
