/*
 * craft/wire.h: the wire codec. Every message two craft nodes (or a node and a client) exchange
 * is one frame: a 4-byte big-endian body length, then the body, one msgpack array
 * `[version, type, from, to, term, ...fields]`. docs/wire.md describes the format byte by byte
 * for other implementations; this header is the C API over it.
 *
 * Encoding appends frames to a growable caller-owned buffer, so a transport can batch many
 * frames into one write. Decoding is total: any byte string either decodes or returns
 * CRAFT_EMALFORMED, CRAFT_EVERSION or CRAFT_ETOOBIG (CRAFT_ENOMEM if memory ran out), never
 * reads outside the bytes given, and never allocates more than a small multiple of the frame
 * length, whatever lengths the input declares.
 *
 * Nothing here keeps global state; a buffer or decoder is used by one thread at a time.
 */
#ifndef CRAFT_WIRE_H
#define CRAFT_WIRE_H

#include "craft.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The protocol version in every message. A decoder refuses any other with CRAFT_EVERSION. */
#define CRAFT_WIRE_VERSION 1
/* Bytes of the length prefix in front of every body. */
#define CRAFT_WIRE_HEADER_SIZE 4
/* Default and absolute limits on a body's length. */
#define CRAFT_WIRE_MAX_FRAME_DEFAULT (64u * 1024u * 1024u)
/* Servers in one configuration (snapshot metadata). A decoded server takes ~140 bytes of
 * memory for 4 bytes on the wire; the cap keeps a hostile frame from costing 36 times its size. */
#define CRAFT_WIRE_MAX_SERVERS 4096

/* How far ahead of the receiver's own term a Raft message's term may be (2^32: an election a
 * second for 136 years). Further is refused as malformed: no real cluster gets there, and a
 * forged term near the bound would leave the receiver unable to campaign. */
#define CRAFT_WIRE_TERM_AHEAD_MAX ((craft_term)1 << 32)

/* Returned by craft_wire_frame_length() and craft_wire_decode_frame() when the stream does not
 * hold a whole frame yet (a positive value: not an error). */
#define CRAFT_WIRE_NEED_MORE 1

/* ------------------------------------------------------------------------------------------
 * Type tags
 *
 *   1 .. 63    Raft messages between servers: enum craft_message_type (1..CRAFT_MSG_TYPE_MAX
 *              today), the rest reserved for later Raft messages.
 *   64 .. 127  Runtime messages: connection handshake, client requests forwarded between
 *              nodes and their results. 64..66 are defined; the rest are reserved.
 *   128 ..     Invalid.
 * A decoder of this version refuses every tag it does not know with CRAFT_EMALFORMED.
 * ---------------------------------------------------------------------------------------- */
enum craft_wire_type {
    CRAFT_WIRE_HANDSHAKE = 64,
    CRAFT_WIRE_REQUEST = 65,
    CRAFT_WIRE_RESPONSE = 66
};
#define CRAFT_WIRE_RAFT_TYPE_MAX 63
#define CRAFT_WIRE_RUNTIME_TYPE_MIN 64
#define CRAFT_WIRE_RUNTIME_TYPE_MAX 127

/* The first message on every connection, in both directions. */
struct craft_wire_handshake {
    craft_id from;       /* the sender's server id; 0 for a client that is not a server */
    craft_id to;         /* the server id the sender means to reach; 0 if it does not know */
    craft_term term;     /* the sender's current term (informational; 0 if none) */
    uint64_t cluster_id; /* a peer of another cluster is refused */
    uint64_t features;   /* bit set of optional features; 0 in this version */
    char address[CRAFT_ADDRESS_MAX]; /* the sender's listening address, "" if none */
};

enum craft_wire_request_kind {
    CRAFT_WIRE_PROPOSE = 1, /* payload: a command to commit and apply */
    CRAFT_WIRE_READ = 2,    /* a linearizable read barrier; payload: opaque, echoed */
    /* Operators' requests (docs/wire.md, "Administrative requests"), sent by clients such as
     * the `craft` command line. STATUS, SNAPSHOT and METRICS are answered by the server that
     * receives them, never forwarded; the membership changes and TRANSFER are the leader's
     * (a follower answers CRAFT_ENOTLEADER with the leader's address) and are answered once
     * the change is applied (the transfer: once the leader stepped down). Their payload is a
     * struct craft_wire_admin (craft_wire_admin_encode); STATUS's and METRICS's is empty. */
    CRAFT_WIRE_STATUS = 3,   /* result: the server's status, a msgpack map */
    CRAFT_WIRE_ADD = 4,      /* add server at address as a learner (auto_promote) */
    CRAFT_WIRE_REMOVE = 5,   /* remove server */
    CRAFT_WIRE_PROMOTE = 6,  /* learner server becomes a voter */
    CRAFT_WIRE_DEMOTE = 7,   /* voter server becomes a learner */
    CRAFT_WIRE_TRANSFER = 8, /* hand leadership to server (0: the most up-to-date voter) */
    CRAFT_WIRE_SNAPSHOT = 9, /* take a snapshot now; index: what it covers */
    CRAFT_WIRE_METRICS = 10  /* result: the server's metrics, Prometheus text (docs/metrics.md) */
};
#define CRAFT_WIRE_REQUEST_KIND_MAX 10

/* The arguments of an administrative request: a msgpack array of exactly 4,
 * [server, address, auto_promote, timeout_ms]. */
struct craft_wire_admin {
    craft_id server;                 /* ADD, REMOVE, PROMOTE, DEMOTE, TRANSFER; else 0 */
    char address[CRAFT_ADDRESS_MAX]; /* ADD; else "" */
    bool auto_promote;               /* ADD */
    uint32_t timeout_ms;             /* how long the server may take; 0: its default */
};

/* A client request forwarded to (what the sender believes is) the leader. */
struct craft_wire_request {
    craft_id from;
    craft_id to;
    craft_term term;
    uint64_t id;  /* chosen by the sender, unique per connection; echoed in the response */
    uint8_t kind; /* enum craft_wire_request_kind */
    const void *payload;
    size_t size;
};

/* The result of a request. */
struct craft_wire_response {
    craft_id from;
    craft_id to;
    craft_term term;
    uint64_t id;        /* the request's id */
    int error;          /* 0 or a negative CRAFT_E* code (e.g. CRAFT_ENOTLEADER) */
    craft_index index;  /* the log index the proposal was applied at, or the read index */
    craft_id leader_id; /* hint with CRAFT_ENOTLEADER; 0 if unknown */
    char leader_address[CRAFT_ADDRESS_MAX]; /* "" if unknown */
    const void *payload;                    /* the state machine's result */
    size_t size;
};

/* Any message: type says which member of u is meaningful. For Raft types (1..
 * CRAFT_MSG_TYPE_MAX), u.raft.type equals type. */
struct craft_wire_message {
    uint8_t type;
    union {
        struct craft_message raft;
        struct craft_wire_handshake handshake;
        struct craft_wire_request request;
        struct craft_wire_response response;
    } u;
};

/* ------------------------------------------------------------------------------------------
 * Encoding
 * ---------------------------------------------------------------------------------------- */

/* A growable byte buffer. Fill in alloc (or call init) and leave the rest zero; base is
 * allocated with alloc (NULL: the C library's). */
struct craft_wire_buf {
    uint8_t *base;
    size_t len; /* bytes used */
    size_t cap; /* bytes allocated */
    const struct craft_allocator *alloc;
};

CRAFT_API void craft_wire_buf_init(struct craft_wire_buf *b, const struct craft_allocator *a);
/* Frees the memory; the buffer may be initialized again. */
CRAFT_API void craft_wire_buf_close(struct craft_wire_buf *b);
/* Forgets the contents, keeps the memory. */
CRAFT_API void craft_wire_buf_reset(struct craft_wire_buf *b);
/* Makes room for at least n more bytes after len. CRAFT_ENOMEM, CRAFT_ETOOBIG on overflow. */
CRAFT_API int craft_wire_buf_reserve(struct craft_wire_buf *b, size_t n);

/* Appends one frame (length prefix and body) holding m to b.
 * CRAFT_EINVAL if m breaks a rule a decoder enforces (an unknown type, entries that are not
 * contiguous from prev_index + 1, an unterminated address, data NULL with size > 0, ... see
 * docs/wire.md), CRAFT_ETOOBIG if the body would exceed 2^32 - 1 bytes, CRAFT_ENOMEM.
 * On failure b->len and the bytes before it are as they were (the capacity may have grown).
 * The encoder does not know the receiver's max_frame: keep messages below it (the core's
 * max_batch_bytes and the snapshot chunk size do). An InstallSnapshot as the core emits it
 * (data NULL, size > 0) is refused: fill in the chunk first. */
CRAFT_API int craft_wire_encode(struct craft_wire_buf *b, const struct craft_message *m);
/* The same for any message, Raft or runtime. */
CRAFT_API int craft_wire_encode_message(struct craft_wire_buf *b,
                                        const struct craft_wire_message *m);

/* ------------------------------------------------------------------------------------------
 * Administrative payloads (struct craft_wire_admin above) and a msgpack writer
 * ---------------------------------------------------------------------------------------- */

/* Appends the payload to b (CRAFT_EINVAL for an unterminated address). */
CRAFT_API int craft_wire_admin_encode(struct craft_wire_buf *b, const struct craft_wire_admin *a);
/* Total, as every decode here: 0, or CRAFT_EMALFORMED with *why (may be NULL) set to a static
 * reason. */
CRAFT_API int craft_wire_admin_decode(const void *payload, size_t size,
                                      struct craft_wire_admin *out, const char **why);

/* A msgpack writer for structured payloads (a status map): each call appends one value to b
 * and returns 0, CRAFT_ENOMEM or CRAFT_ETOOBIG. Shortest formats, except map16/array16, which
 * write a 16-bit header whose count craft_wire_pack_patch16 fills in later (when the caller
 * learns it as it goes). */
CRAFT_API int craft_wire_pack_uint(struct craft_wire_buf *b, uint64_t v);
CRAFT_API int craft_wire_pack_int(struct craft_wire_buf *b, int64_t v);
CRAFT_API int craft_wire_pack_bool(struct craft_wire_buf *b, bool v);
CRAFT_API int craft_wire_pack_nil(struct craft_wire_buf *b);
CRAFT_API int craft_wire_pack_double(struct craft_wire_buf *b, double v);
CRAFT_API int craft_wire_pack_str(struct craft_wire_buf *b, const char *s);
CRAFT_API int craft_wire_pack_strn(struct craft_wire_buf *b, const char *s, size_t n);
CRAFT_API int craft_wire_pack_bin(struct craft_wire_buf *b, const void *data, size_t n);
CRAFT_API int craft_wire_pack_map(struct craft_wire_buf *b, uint32_t n);
CRAFT_API int craft_wire_pack_array(struct craft_wire_buf *b, uint32_t n);
CRAFT_API int craft_wire_pack_map16(struct craft_wire_buf *b, size_t *at);
CRAFT_API int craft_wire_pack_array16(struct craft_wire_buf *b, size_t *at);
CRAFT_API int craft_wire_pack_patch16(struct craft_wire_buf *b, size_t at, uint32_t n);

/* ------------------------------------------------------------------------------------------
 * Decoding
 * ---------------------------------------------------------------------------------------- */

/* Finds the frame at the start of a byte stream. With len < 4, or a frame longer than len:
 * returns CRAFT_WIRE_NEED_MORE and sets *frame_len to the bytes the whole frame needs (4 while
 * the prefix is incomplete), so a reader can size its buffer. With a whole frame: returns 0
 * and sets *frame_len to its length (prefix included). CRAFT_ETOOBIG if the declared body is
 * longer than max_frame (0: CRAFT_WIRE_MAX_FRAME_DEFAULT); CRAFT_EMALFORMED for an empty body
 * or a body whose first byte is not a msgpack array header. Either error means the stream is
 * lost: close the connection. */
CRAFT_API int craft_wire_frame_length(const void *buf, size_t len, uint32_t max_frame,
                                      size_t *frame_len);

/* Decodes messages and owns what they point to. A decoded message stays valid until the next
 * decode, reset or close on the same decoder. It is zero-copy: entry data, snapshot chunk data
 * and request/response payloads point into the input bytes, which must also stay alive and
 * unchanged for as long as the message is used. Arrays (entries, configuration servers) live
 * in the decoder's memory, which is reused from one message to the next: never free them, nor
 * call craft_configuration_close() on a decoded configuration (craft_configuration_copy() it
 * to keep it). */
struct craft_wire_decoder {
    const struct craft_allocator *alloc; /* NULL: the C library's */
    uint32_t max_frame;                  /* longest body accepted; 0: the default */
    /* The highest term a Raft message (types 1..63) may carry; 0: CRAFT_TERM_MAX only. A
     * receiver sets it before each decode to its own term plus CRAFT_WIRE_TERM_AHEAD_MAX, so
     * that one message cannot push its term absurdly far (docs/wire.md, "Bounds"). */
    craft_term max_term;
    /* After a failed decode: a static string saying why (for a log line); else NULL. */
    const char *error;
    /* Private. */
    struct craft__wire_block *block_; /* reused memory */
    struct craft__wire_block *extra_; /* overflow of the current message */
    size_t used_;                     /* bytes of block_ in use */
    size_t want_;                     /* bytes the last message needed in all */
};

CRAFT_API void craft_wire_decoder_init(struct craft_wire_decoder *d,
                                       const struct craft_allocator *a);
/* Releases the last decoded message, keeping memory for the next. */
CRAFT_API void craft_wire_decoder_reset(struct craft_wire_decoder *d);
CRAFT_API void craft_wire_decoder_close(struct craft_wire_decoder *d);

/* Decodes one frame body (the bytes after the length prefix) into *out. 0 on success;
 * CRAFT_EVERSION for another protocol version, CRAFT_ETOOBIG if len > d->max_frame,
 * CRAFT_EMALFORMED for anything else that is not one valid message, CRAFT_ENOMEM. */
CRAFT_API int craft_wire_decode(struct craft_wire_decoder *d, const void *body, size_t len,
                                struct craft_wire_message *out);

/* The version and type tag of a frame body from its first bytes, before the rest has arrived
 * (at most 23 bytes are looked at): 0 with *type set, CRAFT_WIRE_NEED_MORE, CRAFT_EVERSION, or
 * CRAFT_EMALFORMED when the bytes cannot start a message. A receiver uses it to refuse a frame
 * it would not take from that sender (a client may only send Requests) without buffering the
 * whole body first. */
CRAFT_API int craft_wire_peek_type(const void *body, size_t len, uint64_t *type);

/* craft_wire_frame_length() with d->max_frame, then craft_wire_decode() of the body: returns
 * CRAFT_WIRE_NEED_MORE, 0 with *consumed set to the frame's length, or an error as above. */
CRAFT_API int craft_wire_decode_frame(struct craft_wire_decoder *d, const void *buf, size_t len,
                                      size_t *consumed, struct craft_wire_message *out);

/* A name for a type tag ("AppendEntries", "Handshake", ...; "Unknown" for anything else). */
CRAFT_API const char *craft_wire_type_name(int type);

#ifdef __cplusplus
}
#endif

#endif /* CRAFT_WIRE_H */
