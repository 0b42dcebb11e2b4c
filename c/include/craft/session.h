/*
 * craft client sessions: exactly-once application of client commands (Raft thesis section 6.3).
 *
 * Raft by itself gives at-least-once: a client whose leader crashes after committing its command
 * but before answering cannot tell whether the command was applied, so it retries, and the
 * command may be applied twice. The thesis's remedy (section 6.3, "Implementing linearizable
 * semantics") is to give each client a session: the client registers, numbers its commands, and
 * the replicated state machine remembers, per session, the result of every command it applied.
 * A retried command is then answered from that memory instead of being applied again.
 *
 * This module is that memory: a replicated session table that sits between the committed log and
 * the user's state machine. It is pure and deterministic (no I/O, no clock, no randomness, no
 * global state): every replica that feeds it the same committed entries in the same order makes
 * the same decisions, including which sessions expire, because expiry is measured in log indexes
 * and never in time (thesis 6.3: the servers must agree on when a session expires).
 *
 * How a driver uses it (docs/sessions.md has the whole story):
 *
 *   1. A client registers by proposing craft_session_encode_register(); when that entry is
 *      applied the outcome is CRAFT_SESSION_REGISTERED and the client's id is the entry's index.
 *   2. The client proposes each command wrapped by craft_session_encode_command() with its
 *      client id, a sequence number (1, 2, 3, ...) and ack: it has received the result of every
 *      command with a sequence number at or below ack (0 at first).
 *   3. The driver calls craft_sessions_apply() for EVERY committed entry, in log order, and acts
 *      on the outcome's kind. For CRAFT_SESSION_APPLY it applies outcome.payload to the state
 *      machine and hands the result back with craft_sessions_record() before the next entry.
 *   4. The table is part of the state machine: craft_sessions_encode() into every snapshot,
 *      craft_sessions_decode() when a snapshot is installed.
 *
 * Every function that can fail returns 0 or a negative CRAFT_E* code. A table is a plain value:
 * calls on one table must not be concurrent.
 */
#ifndef CRAFT_SESSION_H
#define CRAFT_SESSION_H

#include "../craft.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------
 * Session commands: the envelope a command entry's payload carries
 *
 * Every envelope starts with the 4 magic bytes C1 63 73 6E (0xC1 "csn"), a format version byte
 * (CRAFT_SESSION_FORMAT_VERSION) and a kind byte. 0xC1 is a byte that valid msgpack never uses
 * and that never starts a valid UTF-8 sequence, so no msgpack, JSON or text command can be taken
 * for a session command. Integers are unsigned little-endian. docs/sessions.md has the table.
 * ---------------------------------------------------------------------------------------- */
#define CRAFT_SESSION_FORMAT_VERSION 1
#define CRAFT_SESSION_MAGIC "\xC1\x63\x73\x6E" /* 0xC1 "csn" */
#define CRAFT_SESSION_MAGIC_SIZE 4

enum craft_session_command_kind {
    CRAFT_SESSION_CMD_PLAIN = 0,     /* no session: the payload is applied as it is */
    CRAFT_SESSION_CMD_REGISTER = 1,  /* open a session; no payload */
    CRAFT_SESSION_CMD_COMMAND = 2,   /* client, seq, ack, then the user's payload */
    CRAFT_SESSION_CMD_UNREGISTER = 3 /* close a session: client; no payload */
};

/* Header sizes, for drivers that build envelopes in their own buffers. */
#define CRAFT_SESSION_PLAIN_HEADER_SIZE 6
#define CRAFT_SESSION_REGISTER_SIZE 6
#define CRAFT_SESSION_COMMAND_HEADER_SIZE 30
#define CRAFT_SESSION_UNREGISTER_SIZE 14

/* Each encoder allocates *buf with a (NULL: the C library's) and sets *size; the caller frees
 * it with craft_free(a, *buf). CRAFT_EINVAL for client 0, seq 0 or ack >= seq (a client cannot
 * have received the result of a command it is still sending); CRAFT_ENOMEM. */
CRAFT_API int craft_session_encode_register(const struct craft_allocator *a, void **buf,
                                            size_t *size);
CRAFT_API int craft_session_encode_command(const struct craft_allocator *a, uint64_t client,
                                           uint64_t seq, uint64_t ack, const void *payload,
                                           size_t len, void **buf, size_t *size);
CRAFT_API int craft_session_encode_unregister(const struct craft_allocator *a, uint64_t client,
                                              void **buf, size_t *size);
/* A command that belongs to no session, for tables in strict mode (see options.strict). */
CRAFT_API int craft_session_encode_plain(const struct craft_allocator *a, const void *payload,
                                         size_t len, void **buf, size_t *size);

/* A parsed envelope; payload points into the parsed buffer. */
struct craft_session_header {
    uint8_t kind; /* enum craft_session_command_kind */
    uint64_t client;
    uint64_t seq;
    uint64_t ack;
    const void *payload;
    size_t payload_len;
};

/* Parses one command payload (a driver uses it to tell which client and sequence number a
 * proposal carries). 0 on success; CRAFT_ENOTFOUND if data does not start with the magic (a
 * plain command); CRAFT_EVERSION for an unknown format version; CRAFT_EMALFORMED for anything
 * else that starts with the magic but is not a valid envelope. Total: never reads outside
 * [data, data + size). */
CRAFT_API int craft_session_parse(const void *data, size_t size, struct craft_session_header *out);

/* ------------------------------------------------------------------------------------------
 * The session table
 * ---------------------------------------------------------------------------------------- */
struct craft_sessions_options {
    /* At most this many sessions. Registering one more expires the least recently active
     * session (activity is the index of its last entry, so every replica picks the same one).
     * Default 1024; must be at least 1. */
    uint32_t max_sessions;
    /* A session with no entry of its own among this many log entries expires: it is removed
     * when the entry with index last_active + expire_after + 1 is applied. 0 disables expiry
     * by distance (max_sessions still bounds the table). Default 0. */
    uint64_t expire_after;
    /* Results kept per session for sequence numbers above ack. When one more must be kept,
     * the result with the lowest sequence number is dropped, and every sequence number up to
     * it is treated as acknowledged (a retry of it is STALE: refused, never applied again).
     * Default 128; must be at least 1. */
    uint32_t max_cached_results;
    /* false (default): a command entry that does not start with the magic is a plain command
     * (outcome NONE). true: every command entry must be an envelope; one without the magic is
     * refused (MALFORMED), so no plain command can ever be misread as a session command.
     * Wrap plain commands with craft_session_encode_plain() in strict mode. */
    bool strict;
};

/* Fills o with the defaults above. */
CRAFT_API void craft_sessions_options_init(struct craft_sessions_options *o);

/* What the driver must do with a committed entry. */
enum craft_session_outcome_kind {
    /* Not a session command. For a CRAFT_ENTRY_COMMAND entry apply payload/payload_len to the
     * state machine as usual (the entry's data, or the unwrapped plain command); other entry
     * types (barriers, configurations) get payload NULL: handle them as without sessions. */
    CRAFT_SESSION_NONE = 0,
    /* A new session; its client id is client (the entry's index). Return it to the proposer. */
    CRAFT_SESSION_REGISTERED = 1,
    /* Apply payload/payload_len to the state machine, then call craft_sessions_record() with
     * the state machine's result before anything else touches the table. */
    CRAFT_SESSION_APPLY = 2,
    /* Already applied: return result/result_len (the first application's result) and do NOT
     * apply again. */
    CRAFT_SESSION_DUPLICATE = 3,
    /* No such session: it expired, was unregistered or never existed. Not applied; the
     * proposer must register again (and cannot know whether its earlier commands were
     * applied: see docs/sessions.md). */
    CRAFT_SESSION_UNKNOWN = 4,
    /* seq is at or below what the session already discarded (acknowledged, or dropped from a
     * full cache). Not applied; the proposer gets an error. */
    CRAFT_SESSION_STALE = 5,
    /* The session was closed. */
    CRAFT_SESSION_UNREGISTERED = 6,
    /* An envelope that is invalid (or, in strict mode, a command without one). Not applied.
     * error is CRAFT_EMALFORMED or CRAFT_EVERSION. */
    CRAFT_SESSION_MALFORMED = 7
};

CRAFT_API const char *craft_session_outcome_name(int kind);

struct craft_session_outcome {
    int kind; /* enum craft_session_outcome_kind */
    uint64_t client;
    uint64_t seq;
    /* NONE (command entries) and APPLY: what to apply, pointing into the entry's data. */
    const void *payload;
    size_t payload_len;
    /* DUPLICATE: the cached result, borrowed until the next call that changes the table. */
    const void *result;
    size_t result_len;
    /* MALFORMED: why. 0 otherwise. */
    int error;
    /* Sessions expired while applying this entry (by distance, or evicted by a registration
     * at max_sessions). For metrics; the driver need not act on it. */
    uint32_t expired;
};

struct craft_sessions;

/* Creates an empty table. options NULL means the defaults. The allocator (NULL: the C
 * library's) is kept and used for everything the table allocates; it must outlive the table.
 * CRAFT_EINVAL for a limit of 0; CRAFT_ENOMEM. */
CRAFT_API int craft_sessions_new(const struct craft_allocator *a,
                                 const struct craft_sessions_options *options,
                                 struct craft_sessions **out);
/* NULL is ignored. */
CRAFT_API void craft_sessions_free(struct craft_sessions *s);

/* Feeds one committed entry. Call it for every committed entry, in log order, whatever its
 * type: expiry is driven by the log indexes it sees. *out says what to do (see above).
 * CRAFT_EINVAL if e->index is not above the last index fed; CRAFT_ESTATE if the result of an
 * earlier APPLY has not been recorded; CRAFT_ENOMEM, in which case the table is unchanged and
 * the same call may be retried. */
CRAFT_API int craft_sessions_apply(struct craft_sessions *s, const struct craft_entry *e,
                                   struct craft_session_outcome *out);
/* Records the state machine's result (copied) for the command the last APPLY outcome named.
 * A result that is an error is still a result (DESIGN.md: errors are deterministic behaviour):
 * serialize it into the bytes. CRAFT_ESTATE if no APPLY is waiting or client/seq differ;
 * CRAFT_ETOOBIG above 4 GiB - 1; CRAFT_ENOMEM (nothing recorded, retry the call). */
CRAFT_API int craft_sessions_record(struct craft_sessions *s, uint64_t client, uint64_t seq,
                                    const void *result, size_t len);

/* Serializes the whole table (language-neutral, documented in docs/sessions.md) into *buf,
 * allocated with the table's allocator, for the state machine's snapshot. CRAFT_ESTATE while
 * an APPLY waits for its result; CRAFT_ENOMEM. */
CRAFT_API int craft_sessions_encode(const struct craft_sessions *s, void **buf, size_t *size);
/* Replaces the table's contents with a serialized table (from a snapshot). Total: any byte
 * string either restores or returns CRAFT_EMALFORMED (CRAFT_EVERSION for an unknown format
 * version), never reading out of bounds or allocating more than the input can describe. On
 * any error the table is unchanged. A table larger than this table's limits is trimmed as the
 * limits would have trimmed it (least recently active sessions, lowest cached results). */
CRAFT_API int craft_sessions_decode(struct craft_sessions *s, const void *buf, size_t size);

/* Introspection. */
CRAFT_API uint32_t craft_sessions_count(const struct craft_sessions *s);
/* The index of the last entry fed (or restored from a snapshot); 0 if none. */
CRAFT_API craft_index craft_sessions_last_index(const struct craft_sessions *s);
CRAFT_API bool craft_sessions_contains(const struct craft_sessions *s, uint64_t client);

#ifdef __cplusplus
}
#endif

#endif /* CRAFT_SESSION_H */
