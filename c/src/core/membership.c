/* The configuration in effect. A server uses the latest configuration in its log, whether or
 * not that entry is committed (thesis 4.1), so the configuration changes when a config entry is
 * appended and reverts when a truncation removes it; the snapshot's configuration is the floor
 * under the log. */
#include "core/node.h"

static int adopt(struct craft_node *n, struct craft_configuration *c, craft_index index)
{
    craft_configuration_close(&n->conf, n->alloc);
    n->conf = *c;
    n->conf_index = index;
    return craft__progress_rebuild(n);
}

int craft__conf_from_entry(struct craft_node *n, const struct craft_entry *e)
{
    struct craft_configuration c;
    int rc = craft_configuration_decode(e->data, e->size, n->alloc, &c);
    if (rc != 0) {
        return rc;
    }
    return adopt(n, &c, e->index);
}

/* Re-derives the configuration from the log after a truncation or at start. */
int craft__conf_reload(struct craft_node *n)
{
    craft_index first = craft__log_first(&n->log);
    for (craft_index i = craft__log_last(&n->log); i >= first && i > 0; i--) {
        const struct craft_entry *e = craft__log_get(&n->log, i);
        if (e->type == CRAFT_ENTRY_CONFIG) {
            if (i == n->conf_index) {
                return 0;
            }
            int rc = craft__conf_from_entry(n, e);
            return rc == CRAFT_EMALFORMED || rc == CRAFT_EVERSION ? CRAFT_ECORRUPT : rc;
        }
    }
    if (n->conf_index == n->snap_conf_index && n->conf_index != 0) {
        return 0;
    }
    struct craft_configuration c;
    int rc = craft_configuration_copy(&c, &n->snap_conf, n->alloc);
    if (rc != 0) {
        return rc;
    }
    return adopt(n, &c, n->snap_conf_index);
}
