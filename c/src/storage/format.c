/* Encoding and checking of the on-disk layouts described in format.h. */
#include <string.h>

#include "storage/crc32c.h"
#include "storage/format.h"

void craft__seg_header_encode(const struct craft__seg_header *h, uint8_t *buf)
{
    memset(buf, 0, CRAFT__SEG_HEADER_SIZE);
    memcpy(buf, CRAFT__SEG_MAGIC, 8);
    craft__put32(buf + 8, CRAFT__SEG_VERSION);
    craft__put32(buf + 12, CRAFT__SEG_HEADER_SIZE);
    craft__put64(buf + 16, h->seq);
    craft__put64(buf + 24, h->first);
    craft__put32(buf + 36, craft__storage_crc32c(0, buf, 36));
}

int craft__seg_header_decode(const uint8_t *buf, size_t len, struct craft__seg_header *h)
{
    if (len < CRAFT__SEG_HEADER_SIZE || memcmp(buf, CRAFT__SEG_MAGIC, 8) != 0) {
        return CRAFT_ECORRUPT;
    }
    if (craft__get32(buf + 36) != craft__storage_crc32c(0, buf, 36)) {
        return CRAFT_ECORRUPT;
    }
    /* The version is checked after the CRC so that a flipped bit reads as corruption. */
    if (craft__get32(buf + 8) != CRAFT__SEG_VERSION) {
        return CRAFT_EVERSION;
    }
    if (craft__get32(buf + 12) != CRAFT__SEG_HEADER_SIZE || craft__get64(buf + 24) == 0) {
        return CRAFT_ECORRUPT;
    }
    h->seq = craft__get64(buf + 16);
    h->first = craft__get64(buf + 24);
    return 0;
}

void craft__rec_header_encode(const struct craft__rec_header *h, uint8_t *buf)
{
    craft__put32(buf + 4, h->size);
    craft__put64(buf + 8, h->index);
    craft__put64(buf + 16, h->term);
    craft__put64(buf + 24, h->batch);
    buf[32] = h->type;
    buf[33] = h->flags;
    buf[34] = 0;
    buf[35] = 0;
    craft__put32(buf + 36, h->payload_crc);
    craft__put32(buf, craft__storage_crc32c(0, buf + 4, CRAFT__REC_HEADER_SIZE - 4));
}

bool craft__rec_header_decode(const uint8_t *buf, struct craft__rec_header *h)
{
    if (craft__get32(buf) != craft__storage_crc32c(0, buf + 4, CRAFT__REC_HEADER_SIZE - 4)) {
        return false;
    }
    h->size = craft__get32(buf + 4);
    h->index = craft__get64(buf + 8);
    h->term = craft__get64(buf + 16);
    h->batch = craft__get64(buf + 24);
    h->type = buf[32];
    h->flags = buf[33];
    h->payload_crc = craft__get32(buf + 36);
    return h->size <= CRAFT__REC_MAX_PAYLOAD && h->index != 0 && h->term != 0 &&
           h->batch != 0 && h->batch <= h->index && (h->flags & ~CRAFT__REC_FLAG_END) == 0 &&
           buf[34] == 0 && buf[35] == 0;
}

void craft__hs_slot_encode(const struct craft__hs_slot *s, uint8_t *buf)
{
    memset(buf, 0, CRAFT__HS_SLOT_SIZE);
    memcpy(buf, CRAFT__HS_MAGIC, 8);
    craft__put32(buf + 8, CRAFT__HS_VERSION);
    craft__put64(buf + 16, s->seq);
    craft__put64(buf + 24, s->hs.term);
    craft__put64(buf + 32, s->hs.vote);
    craft__put64(buf + 40, s->hs.commit);
    craft__put64(buf + 48, s->base);
    craft__put64(buf + 56, s->base_term);
    craft__put32(buf + 64, craft__storage_crc32c(0, buf, 64));
}

int craft__hs_slot_decode(const uint8_t *buf, struct craft__hs_slot *s)
{
    if (memcmp(buf, CRAFT__HS_MAGIC, 8) != 0 ||
        craft__get32(buf + 64) != craft__storage_crc32c(0, buf, 64)) {
        return CRAFT_ECORRUPT;
    }
    if (craft__get32(buf + 8) != CRAFT__HS_VERSION) {
        return CRAFT_EVERSION;
    }
    s->seq = craft__get64(buf + 16);
    s->hs.term = craft__get64(buf + 24);
    s->hs.vote = craft__get64(buf + 32);
    s->hs.commit = craft__get64(buf + 40);
    s->base = craft__get64(buf + 48);
    s->base_term = craft__get64(buf + 56);
    return 0;
}

void craft__snap_header_encode(const struct craft__snap_header *h, const void *conf,
                               uint8_t *buf)
{
    memset(buf, 0, CRAFT__SNAP_FIXED_SIZE);
    memcpy(buf, CRAFT__SNAP_MAGIC, 8);
    craft__put32(buf + 8, CRAFT__SNAP_VERSION);
    craft__put32(buf + 12, h->header_size);
    craft__put64(buf + 16, h->index);
    craft__put64(buf + 24, h->term);
    craft__put64(buf + 32, h->conf_index);
    craft__put64(buf + 40, h->size);
    craft__put32(buf + 48, h->data_crc);
    craft__put32(buf + 52, h->conf_size);
    if (h->conf_size > 0) {
        memcpy(buf + CRAFT__SNAP_FIXED_SIZE, conf, h->conf_size);
    }
    size_t n = CRAFT__SNAP_FIXED_SIZE + h->conf_size;
    craft__put32(buf + n, craft__storage_crc32c(0, buf, n));
}

int craft__snap_header_decode_fixed(const uint8_t *buf, struct craft__snap_header *h)
{
    if (memcmp(buf, CRAFT__SNAP_MAGIC, 8) != 0) {
        return CRAFT_ECORRUPT;
    }
    h->header_size = craft__get32(buf + 12);
    h->index = craft__get64(buf + 16);
    h->term = craft__get64(buf + 24);
    h->conf_index = craft__get64(buf + 32);
    h->size = craft__get64(buf + 40);
    h->data_crc = craft__get32(buf + 48);
    h->conf_size = craft__get32(buf + 52);
    if (h->conf_size > CRAFT__SNAP_MAX_CONF ||
        h->header_size != CRAFT__SNAP_FIXED_SIZE + h->conf_size + 4) {
        return CRAFT_ECORRUPT;
    }
    return 0;
}

int craft__snap_header_check(const struct craft__snap_header *h, const uint8_t *buf)
{
    size_t n = CRAFT__SNAP_FIXED_SIZE + h->conf_size;
    if (craft__get32(buf + n) != craft__storage_crc32c(0, buf, n)) {
        return CRAFT_ECORRUPT;
    }
    /* The version is checked after the CRC so that a flipped bit reads as corruption. */
    return craft__get32(buf + 8) == CRAFT__SNAP_VERSION ? 0 : CRAFT_EVERSION;
}
