/*
 * The on-disk format of the durable store: byte layouts of the segment header, the log record,
 * the hard-state slot and the snapshot header, and their encoding. Everything is little-endian
 * and written byte by byte, so files move between machines. docs/storage.md describes the same
 * layouts for people; a change here changes the version numbers below.
 *
 * Decoding never trusts the bytes: every decode checks magic, version, CRC and ranges and says
 * which check failed, so recovery can tell a torn write from corruption and name the offset.
 */
#ifndef CRAFT_STORAGE_FORMAT_H
#define CRAFT_STORAGE_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "craft.h"

/* --- Little-endian helpers ---------------------------------------------------------------- */

static inline void craft__put32(uint8_t *p, uint32_t v)
{
    for (int k = 0; k < 4; k++) {
        p[k] = (uint8_t)(v >> (8 * k));
    }
}

static inline void craft__put64(uint8_t *p, uint64_t v)
{
    for (int k = 0; k < 8; k++) {
        p[k] = (uint8_t)(v >> (8 * k));
    }
}

static inline uint32_t craft__get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t craft__get64(const uint8_t *p)
{
    return (uint64_t)craft__get32(p) | (uint64_t)craft__get32(p + 4) << 32;
}

/* --- Segment files: wal-<seq, 16 hex digits>.seg ------------------------------------------
 *
 *   0  8  magic "CRAFTWAL"
 *   8  4  format version (2)
 *  12  4  header size in bytes (40)
 *  16  8  segment sequence number (matches the file name)
 *  24  8  index of the first record the segment holds
 *  32  4  reserved, 0
 *  36  4  CRC32C of bytes 0..35
 *
 * Version 2: segments are preallocated (their size is given when they are created, as zeros),
 * so the end of the written log is the first record boundary followed only by zero bytes, not
 * the end of the file. Version 1 (files grown by every append) is refused: a version 1 reader
 * would take a version 2 zero tail for damage.
 */
#define CRAFT__SEG_MAGIC "CRAFTWAL"
#define CRAFT__SEG_VERSION 2u
#define CRAFT__SEG_HEADER_SIZE 40u

struct craft__seg_header {
    uint64_t seq;
    craft_index first;
};

void craft__seg_header_encode(const struct craft__seg_header *h, uint8_t *buf);
/* 0, CRAFT_ECORRUPT (bad magic, size or CRC) or CRAFT_EVERSION. */
int craft__seg_header_decode(const uint8_t *buf, size_t len, struct craft__seg_header *h);

/* --- Log records, one per entry, back to back after the segment header ---------------------
 *
 *   0  4  CRC32C of bytes 4..39 of this header
 *   4  4  payload size
 *   8  8  index
 *  16  8  term
 *  24  8  batch: index of the first entry written by the same append call
 *  32  1  entry type
 *  33  1  flags: bit 0 set on the last record of its append call
 *  34  2  reserved, 0
 *  36  4  CRC32C of the payload
 *  40     payload
 *
 * The header has a CRC of its own so that a record whose payload is damaged can still be
 * stepped over; batch and the end flag let recovery decide whether damage at the end of the
 * last segment lies entirely within the last append (a torn write) or not (corruption).
 */
#define CRAFT__REC_HEADER_SIZE 40u
#define CRAFT__REC_FLAG_END 1u
#define CRAFT__REC_MAX_PAYLOAD (UINT32_C(1) << 30) /* 1 GiB per entry */

struct craft__rec_header {
    uint32_t size;
    craft_index index;
    craft_term term;
    craft_index batch;
    uint8_t type;
    uint8_t flags;
    uint32_t payload_crc;
};

void craft__rec_header_encode(const struct craft__rec_header *h, uint8_t *buf);
/* true if the header's own CRC checks and its fields are sane (size within the maximum, index
 * and term non-zero, batch <= index, reserved bits zero). */
bool craft__rec_header_decode(const uint8_t *buf, struct craft__rec_header *h);

/* --- The hard-state file "state": two slots, at offsets 0 and 512 -------------------------
 *
 * Each save writes the slot not holding the newest value, with the next sequence number; a
 * torn write damages only that slot, and load takes the valid slot with the highest sequence.
 * The slots are 512 bytes apart so that they never share a disk sector.
 *
 *   0  8  magic "CRAFTHST"
 *   8  4  format version (1)
 *  12  4  reserved, 0
 *  16  8  sequence number
 *  24  8  term
 *  32  8  vote
 *  40  8  commit (a hint)
 *  48  8  log base: index of the last entry removed by compaction (0 if none)
 *  56  8  term of that entry (0 if unknown)
 *  64  4  CRC32C of bytes 0..63
 */
#define CRAFT__HS_MAGIC "CRAFTHST"
#define CRAFT__HS_VERSION 1u
#define CRAFT__HS_SLOT_SIZE 68u
#define CRAFT__HS_SLOT_STRIDE 512u
#define CRAFT__HS_FILE_SIZE 1024u

struct craft__hs_slot {
    uint64_t seq;
    struct craft_hard_state hs;
    craft_index base;
    craft_term base_term;
};

void craft__hs_slot_encode(const struct craft__hs_slot *s, uint8_t *buf);
int craft__hs_slot_decode(const uint8_t *buf, struct craft__hs_slot *s);

/* --- Snapshot files: snap-<index, 16 hex digits>.snap --------------------------------------
 *
 *   0  8  magic "CRAFTSNP"
 *   8  4  format version (1)
 *  12  4  header size H in bytes (56 + configuration size + 4)
 *  16  8  index
 *  24  8  term
 *  32  8  configuration index
 *  40  8  data size in bytes
 *  48  4  CRC32C of the data
 *  52  4  configuration size C
 *  56  C  configuration, as craft_configuration_encode writes it
 *  56+C 4 CRC32C of bytes 0 .. 56+C-1
 *   H     data
 */
#define CRAFT__SNAP_MAGIC "CRAFTSNP"
#define CRAFT__SNAP_VERSION 1u
#define CRAFT__SNAP_FIXED_SIZE 56u
#define CRAFT__SNAP_MAX_CONF (1u << 24)

struct craft__snap_header {
    craft_index index;
    craft_term term;
    craft_index conf_index;
    uint64_t size;
    uint32_t data_crc;
    uint32_t conf_size;
    uint32_t header_size;
};

/* Writes the header (conf_size bytes of conf) into buf, which holds h->header_size bytes. */
void craft__snap_header_encode(const struct craft__snap_header *h, const void *conf,
                               uint8_t *buf);
/* Decodes the fixed part of the first CRAFT__SNAP_FIXED_SIZE bytes (no CRC check yet: the CRC
 * covers the configuration that follows). 0 or CRAFT_ECORRUPT. */
int craft__snap_header_decode_fixed(const uint8_t *buf, struct craft__snap_header *h);
/* Checks the CRC, then the version, of a whole header of h->header_size bytes: 0,
 * CRAFT_ECORRUPT or CRAFT_EVERSION. */
int craft__snap_header_check(const struct craft__snap_header *h, const uint8_t *buf);

#endif
