/*
 * Internal interfaces of the wire layer (c/src/wire), shared by its files and by the wire tests
 * and fuzz target:
 *
 *   mp_read.c   a small bounds-checked msgpack reader for the subset the format uses. Decoding
 *               never goes through msgpack-c's unpacker, which allocates whatever a container
 *               header claims (see ../shared/TOOLCHAIN.md); msgpack-c only encodes.
 *   decoder.c   the decoder's memory: a bump allocator reused from one message to the next.
 *   validate.c  the semantic rules a message must follow, checked by the encoder (so we never
 *               send what a peer would refuse) and by the decoder (so we never accept it).
 *   equal.c     field-by-field equality of two messages, for round-trip tests and fuzzing.
 */
#ifndef CRAFT_WIRE_INTERNAL_H
#define CRAFT_WIRE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "craft.h"
#include "craft/wire.h"

/* Fields after the common header [version, type, from, to, term]. */
#define CRAFT__WIRE_HEADER_FIELDS 5u

/* --- mp_read.c ------------------------------------------------------------------------------
 * Every function reads one value at r->p, advances past it and returns 0, or returns
 * CRAFT_EMALFORMED with r->error set to a static reason and r->p unspecified. None of them
 * allocates or reads at or past r->end. */
struct craft__wire_reader {
    const uint8_t *p;
    const uint8_t *end;
    const char *error;
};

/* Any msgpack integer format holding a value in [0, 2^64). */
int craft__wire_read_uint(struct craft__wire_reader *r, uint64_t *out);
/* Any msgpack integer format holding a value in [-2^63, 2^63). */
int craft__wire_read_int(struct craft__wire_reader *r, int64_t *out);
/* true or false; nothing else (not 0 or 1). */
int craft__wire_read_bool(struct craft__wire_reader *r, bool *out);
/* A bin or str: *data points into the input. */
int craft__wire_read_bytes(struct craft__wire_reader *r, const void **data, size_t *size);
/* An array header. The count is checked against the bytes left, assuming every element takes
 * at least min_size bytes: the caller can then allocate per element without trusting the
 * count. */
int craft__wire_read_array(struct craft__wire_reader *r, size_t min_size, uint32_t *n);
/* An array header whose count must be exactly n. */
int craft__wire_expect_array(struct craft__wire_reader *r, uint32_t n);
/* A bin or str of fewer than CRAFT_ADDRESS_MAX bytes without a NUL, copied NUL-terminated. */
int craft__wire_read_address(struct craft__wire_reader *r, char out[CRAFT_ADDRESS_MAX]);

/* --- decoder.c ------------------------------------------------------------------------------ */
/* Memory for the message being decoded, suitably aligned for any type, released by the next
 * reset. NULL when out of memory. */
void *craft__wire_alloc(struct craft_wire_decoder *d, size_t size);

/* --- validate.c ----------------------------------------------------------------------------- */
/* 0 if m follows every rule of docs/wire.md, else CRAFT_EMALFORMED with *why set to a static
 * reason (CRAFT_ENOMEM if a scratch allocation with a failed). */
int craft__wire_validate(const struct craft_wire_message *m, const struct craft_allocator *a,
                         const char **why);
/* True if addr is NUL-terminated within CRAFT_ADDRESS_MAX bytes. */
bool craft__wire_address_ok(const char addr[CRAFT_ADDRESS_MAX]);

/* --- equal.c -------------------------------------------------------------------------------- */
/* True if a and b carry the same message (byte contents compared, not pointers). */
bool craft__wire_message_equal(const struct craft_wire_message *a,
                               const struct craft_wire_message *b);

#endif /* CRAFT_WIRE_INTERNAL_H */
