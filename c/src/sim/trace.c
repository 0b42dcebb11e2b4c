/*
 * The trace: every simulator event goes to the observers (the event and trace callbacks) and
 * into a ring of the last trace_depth events, which a violation report prints. Events are
 * kept as structs and formatted only when someone reads them, so an unobserved run pays for a
 * copy, not for printf.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "sim_internal.h"

/* The core names message types and roles (errors.c); one table each, not two. */
const char *craft__sim_msg_name(int type)
{
    return craft_message_type_name(type);
}

static const char *role_name(int role)
{
    return craft_role_name(role);
}

static const char *fate_name(int fate)
{
    switch (fate) {
        case CRAFT_SIM_FATE_LOST:
            return "lost";
        case CRAFT_SIM_FATE_DUPLICATED:
            return "duplicate";
        case CRAFT_SIM_FATE_PARTITIONED:
            return "partitioned";
        case CRAFT_SIM_FATE_DOWN:
            return "receiver down";
        case CRAFT_SIM_FATE_UNKNOWN:
            return "no such server";
        case CRAFT_SIM_FATE_HELD:
            return "held";
        case CRAFT_SIM_FATE_RULE:
            return "dropped by a rule";
        case CRAFT_SIM_FATE_INJECTED:
            return "injected";
        default:
            return "";
    }
}

/* Appends to buf at *pos, never past len, while *pos keeps counting like snprintf. */
static void put(char *buf, size_t len, size_t *pos, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void put(char *buf, size_t len, size_t *pos, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char dummy[1];
    char *at = *pos < len ? buf + *pos : dummy;
    size_t room = *pos < len ? len - *pos : 0;
    int k = vsnprintf(at, room, fmt, ap);
    va_end(ap);
    if (k > 0) {
        *pos += (size_t)k;
    }
}

static void put_message(char *buf, size_t len, size_t *pos, const struct craft_message *m)
{
    put(buf, len, pos, "%s term=%" PRIu64, craft__sim_msg_name(m->type), m->term);
    switch (m->type) {
        case CRAFT_MSG_REQUEST_VOTE: {
            const struct craft_request_vote *r = &m->u.request_vote;
            put(buf, len, pos, " last=%" PRIu64 "/%" PRIu64 "%s%s", r->last_log_index,
                r->last_log_term, r->pre_vote ? " pre" : "", r->transfer ? " transfer" : "");
            break;
        }
        case CRAFT_MSG_REQUEST_VOTE_RESULT: {
            const struct craft_request_vote_result *r = &m->u.request_vote_result;
            put(buf, len, pos, " %s%s", r->granted ? "granted" : "denied",
                r->pre_vote ? " pre" : "");
            break;
        }
        case CRAFT_MSG_APPEND_ENTRIES: {
            const struct craft_append_entries *a = &m->u.append_entries;
            put(buf, len, pos, " prev=%" PRIu64 "/%" PRIu64 " n=%zu commit=%" PRIu64,
                a->prev_index, a->prev_term, a->n_entries, a->commit);
            break;
        }
        case CRAFT_MSG_APPEND_ENTRIES_RESULT: {
            const struct craft_append_entries_result *r = &m->u.append_entries_result;
            if (r->rejected) {
                put(buf, len, pos,
                    " rejected index=%" PRIu64 " hint=%" PRIu64 "/%" PRIu64 " last=%" PRIu64,
                    r->index, r->hint_index, r->hint_term, r->last_index);
            } else {
                put(buf, len, pos, " ok index=%" PRIu64, r->index);
            }
            break;
        }
        case CRAFT_MSG_INSTALL_SNAPSHOT: {
            const struct craft_install_snapshot *r = &m->u.install_snapshot;
            put(buf, len, pos, " snap=%" PRIu64 "/%" PRIu64 " off=%" PRIu64 " len=%zu%s",
                r->meta.index, r->meta.term, r->offset, r->size, r->done ? " done" : "");
            break;
        }
        case CRAFT_MSG_INSTALL_SNAPSHOT_RESULT: {
            const struct craft_install_snapshot_result *r = &m->u.install_snapshot_result;
            put(buf, len, pos, " index=%" PRIu64 " off=%" PRIu64 "%s%s", r->index, r->offset,
                r->rejected ? " rejected" : "", r->done ? " done" : "");
            break;
        }
        default:
            break;
    }
}

int craft_sim_event_format(const struct craft_sim_event *ev, char *buf, size_t len)
{
    size_t pos = 0;
    if (len > 0) {
        buf[0] = '\0';
    }
    put(buf, len, &pos, "t=%" PRIu64 "ms ", ev->time);
    switch (ev->kind) {
        case CRAFT_SIM_EV_SEND:
            put(buf, len, &pos, "n%" PRIu64 " -> n%" PRIu64 " ", ev->node, ev->peer);
            put_message(buf, len, &pos, &ev->msg);
            if (ev->fate != CRAFT_SIM_FATE_OK) {
                put(buf, len, &pos, " [%s]", fate_name(ev->fate));
            }
            break;
        case CRAFT_SIM_EV_DELIVER:
            put(buf, len, &pos, "n%" PRIu64 " <- n%" PRIu64 " ", ev->peer, ev->node);
            put_message(buf, len, &pos, &ev->msg);
            if (ev->fate == CRAFT_SIM_FATE_DUPLICATED) {
                put(buf, len, &pos, " [duplicate]");
            }
            break;
        case CRAFT_SIM_EV_DROP:
            put(buf, len, &pos, "n%" PRIu64 " -x n%" PRIu64 " ", ev->node, ev->peer);
            put_message(buf, len, &pos, &ev->msg);
            if (ev->fate == CRAFT_SIM_FATE_RULE) {
                put(buf, len, &pos, " [discarded while held]");
            } else {
                put(buf, len, &pos, " [dropped: %s]", fate_name(ev->fate));
            }
            break;
        case CRAFT_SIM_EV_PERSIST:
            put(buf, len, &pos,
                "n%" PRIu64 " persisted #%" PRIu64 " term=%" PRIu64 " vote=%" PRIu64
                " last=%" PRIu64,
                ev->node, ev->seq, ev->term, ev->leader, ev->index);
            break;
        case CRAFT_SIM_EV_ROLE:
            put(buf, len, &pos, "n%" PRIu64 " is %s term=%" PRIu64, ev->node,
                role_name(ev->role), ev->term);
            if (ev->leader) {
                put(buf, len, &pos, " leader=n%" PRIu64, ev->leader);
            }
            break;
        case CRAFT_SIM_EV_COMMIT:
            put(buf, len, &pos, "n%" PRIu64 " commit=%" PRIu64, ev->node, ev->index);
            break;
        case CRAFT_SIM_EV_PROPOSE:
            if (ev->rc == 0) {
                put(buf, len, &pos, "n%" PRIu64 " propose -> %" PRIu64 "/%" PRIu64, ev->node,
                    ev->index, ev->term);
            } else {
                put(buf, len, &pos, "n%" PRIu64 " propose failed: %s", ev->node,
                    craft_err_name(ev->rc));
            }
            break;
        case CRAFT_SIM_EV_CRASH:
            put(buf, len, &pos, "n%" PRIu64 " CRASH", ev->node);
            break;
        case CRAFT_SIM_EV_RESTART:
            put(buf, len, &pos,
                "n%" PRIu64 " RESTART term=%" PRIu64 " vote=%" PRIu64 " last=%" PRIu64,
                ev->node, ev->term, ev->leader, ev->index);
            break;
        case CRAFT_SIM_EV_PARTITION:
            put(buf, len, &pos, "PARTITION %s", ev->text);
            break;
        case CRAFT_SIM_EV_CUT:
            put(buf, len, &pos, "CUT n%" PRIu64 " -x n%" PRIu64, ev->node, ev->peer);
            break;
        case CRAFT_SIM_EV_HEAL:
            put(buf, len, &pos, "HEAL");
            break;
        case CRAFT_SIM_EV_NETWORK:
            put(buf, len, &pos, "NETWORK %s", ev->text);
            break;
        case CRAFT_SIM_EV_NOTE:
            put(buf, len, &pos, "note: %s", ev->text);
            break;
        case CRAFT_SIM_EV_VIOLATION:
            put(buf, len, &pos, "VIOLATION %s", ev->text);
            break;
        case CRAFT_SIM_EV_MEMBERSHIP:
            if (ev->peer == 0) {
                put(buf, len, &pos, "n%" PRIu64 " %s", ev->node, ev->text);
            } else if (ev->rc == 0) {
                put(buf, len, &pos, "n%" PRIu64 " %s n%" PRIu64 " -> configuration %" PRIu64,
                    ev->node, ev->text, ev->peer, ev->index);
            } else {
                put(buf, len, &pos, "n%" PRIu64 " %s n%" PRIu64 " failed: %s", ev->node,
                    ev->text, ev->peer, craft_err_name(ev->rc));
            }
            break;
        case CRAFT_SIM_EV_TRANSFER:
            put(buf, len, &pos, "n%" PRIu64 " transfer leadership to n%" PRIu64, ev->node,
                ev->peer);
            if (ev->rc != 0) {
                put(buf, len, &pos, " failed: %s", craft_err_name(ev->rc));
            }
            break;
        case CRAFT_SIM_EV_READ:
            put(buf, len, &pos, "n%" PRIu64 " read #%" PRIu64 " %s", ev->node, ev->seq,
                ev->text);
            if (ev->rc != 0) {
                put(buf, len, &pos, ": %s", craft_err_name(ev->rc));
            } else if (strcmp(ev->text, "requested") != 0) {
                put(buf, len, &pos, " index=%" PRIu64, ev->index);
            }
            break;
        default:
            put(buf, len, &pos, "event %d", ev->kind);
            break;
    }
    return (int)pos;
}

void craft__sim_event_init(struct craft_sim *s, struct craft_sim_event *ev, uint8_t kind,
                           craft_id node)
{
    memset(ev, 0, sizeof(*ev));
    ev->time = s->now;
    ev->kind = kind;
    ev->node = node;
}

void craft__sim_emit(struct craft_sim *s, struct craft_sim_event *ev)
{
    /* Pointers in a message copy would dangle by the time anyone reads the ring. */
    if (ev->kind == CRAFT_SIM_EV_SEND || ev->kind == CRAFT_SIM_EV_DELIVER ||
        ev->kind == CRAFT_SIM_EV_DROP) {
        switch (ev->msg.type) {
            case CRAFT_MSG_APPEND_ENTRIES:
                ev->msg.u.append_entries.entries = NULL;
                break;
            case CRAFT_MSG_INSTALL_SNAPSHOT:
                ev->msg.u.install_snapshot.data = NULL;
                ev->msg.u.install_snapshot.meta.conf.servers = NULL;
                break;
            default:
                break;
        }
    }
    if (s->o.trace_depth > 0) {
        s->ring[s->ring_head] = *ev;
        s->ring_head = (s->ring_head + 1) % s->o.trace_depth;
        if (s->ring_len < s->o.trace_depth) {
            s->ring_len++;
        }
    }
    if (s->o.event != NULL) {
        s->o.event(s->o.ud, ev);
    }
    if (s->o.trace != NULL) {
        char line[512];
        craft_sim_event_format(ev, line, sizeof(line));
        s->o.trace(s->o.ud, line);
    }
}

void craft__sim_emit_text(struct craft_sim *s, uint8_t kind, craft_id node, const char *fmt,
                          ...)
{
    struct craft_sim_event ev;
    craft__sim_event_init(s, &ev, kind, node);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ev.text, sizeof(ev.text), fmt, ap);
    va_end(ap);
    craft__sim_emit(s, &ev);
}

void craft_sim_note(struct craft_sim *s, const char *text)
{
    craft__sim_emit_text(s, CRAFT_SIM_EV_NOTE, 0, "%s", text);
}

void craft_sim_dump_trace(const struct craft_sim *s, void (*line)(void *ud, const char *line),
                          void *ud)
{
    size_t depth = s->o.trace_depth;
    if (depth == 0) {
        return;
    }
    size_t start = (s->ring_head + depth - s->ring_len) % depth;
    for (size_t k = 0; k < s->ring_len; k++) {
        char buf[512];
        craft_sim_event_format(&s->ring[(start + k) % depth], buf, sizeof(buf));
        line(ud, buf);
    }
}
