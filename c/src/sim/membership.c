/*
 * Membership changes and leadership transfer as simulator inputs. Each is asked of the current
 * leader (craft_sim_leader()), as an operator's tool would ask the node it believes leads, and
 * returns what the core returns: CRAFT_EBUSY, CRAFT_ENOTLEADER, ... are ordinary outcomes in a
 * faulty cluster, and the soak treats them so. The rules the core must follow while changing
 * membership are checked in quorum.c.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "sim_internal.h"

enum change { ADD, ADD_AUTO, PROMOTE, REMOVE, DEMOTE };

static const char *const change_names[] = {"add", "add (auto-promote)", "promote", "remove",
                                            "demote"};

static int change(struct craft_sim *s, enum change what, craft_id id, craft_index *index)
{
    if (s->stop_rc != 0) {
        return s->stop_rc;
    }
    if (index != NULL) {
        *index = 0;
    }
    if (id == 0 || id > s->n) {
        return CRAFT_EINVAL;
    }
    if (s->o.core != NULL) {
        return CRAFT_EINVAL; /* craft's core only (sim.h, "Bring your own core") */
    }
    craft_id leader = craft_sim_leader(s);
    int rc = CRAFT_ENOTLEADER;
    craft_index idx = 0;
    if (leader != 0) {
        struct craft_node *core = craft__sim_core_native(s, (unsigned)(leader - 1));
        switch (what) {
        case ADD:
        case ADD_AUTO: {
            char address[32];
            snprintf(address, sizeof(address), "sim-%" PRIu64, id);
            rc = craft_add_server(core, id, address, what == ADD_AUTO, &idx);
            break;
        }
        case PROMOTE:
            rc = craft_promote(core, id, &idx);
            break;
        case REMOVE:
            rc = craft_remove_server(core, id, &idx);
            break;
        case DEMOTE:
            rc = craft_demote(core, id, &idx);
            break;
        }
    }
    struct craft_sim_event ev;
    craft__sim_event_init(s, &ev, CRAFT_SIM_EV_MEMBERSHIP, leader);
    ev.peer = id;
    ev.rc = rc;
    ev.index = idx;
    snprintf(ev.text, sizeof(ev.text), "%s", change_names[what]);
    craft__sim_emit(s, &ev);
    if (rc != 0) {
        return rc;
    }
    s->stats.changes++;
    if (index != NULL) {
        *index = idx;
    }
    return craft__sim_drain(s, (unsigned)(leader - 1));
}

int craft_sim_add_server(struct craft_sim *s, craft_id id, bool auto_promote, craft_index *index)
{
    return change(s, auto_promote ? ADD_AUTO : ADD, id, index);
}

int craft_sim_promote(struct craft_sim *s, craft_id id, craft_index *index)
{
    return change(s, PROMOTE, id, index);
}

int craft_sim_remove_server(struct craft_sim *s, craft_id id, craft_index *index)
{
    return change(s, REMOVE, id, index);
}

int craft_sim_demote(struct craft_sim *s, craft_id id, craft_index *index)
{
    return change(s, DEMOTE, id, index);
}

int craft_sim_transfer(struct craft_sim *s, craft_id target)
{
    if (s->stop_rc != 0) {
        return s->stop_rc;
    }
    if (target > s->n || s->o.core != NULL) {
        return CRAFT_EINVAL;
    }
    craft_id leader = craft_sim_leader(s);
    int rc = CRAFT_ENOTLEADER;
    if (leader != 0) {
        rc = craft_transfer_leadership(s->nodes[leader - 1].core, target);
    }
    struct craft_sim_event ev;
    craft__sim_event_init(s, &ev, CRAFT_SIM_EV_TRANSFER, leader);
    ev.peer = target;
    ev.rc = rc;
    if (rc == 0 && target == 0) {
        ev.peer = craft_node_transfer_target(s->nodes[leader - 1].core);
    }
    craft__sim_emit(s, &ev);
    if (rc != 0) {
        return rc;
    }
    s->stats.transfers++;
    return craft__sim_drain(s, (unsigned)(leader - 1));
}
