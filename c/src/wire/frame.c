/*
 * Framing: a 4-byte big-endian body length, then the body. A transport reads bytes as they
 * come, asks craft_wire_frame_length() whether a whole frame is there, and decodes it. The
 * length is judged as soon as its 4 bytes have arrived, so a peer announcing a 4 GB frame is
 * refused at once rather than after we have buffered it.
 */
#include "wire/internal.h"

static bool is_array_header(uint8_t c)
{
    return (c >= 0x90 && c <= 0x9f) || c == 0xdc || c == 0xdd;
}

int craft_wire_frame_length(const void *buf, size_t len, uint32_t max_frame, size_t *frame_len)
{
    const uint8_t *p = buf;
    if (max_frame == 0) {
        max_frame = CRAFT_WIRE_MAX_FRAME_DEFAULT;
    }
    if (len < CRAFT_WIRE_HEADER_SIZE) {
        *frame_len = CRAFT_WIRE_HEADER_SIZE;
        return CRAFT_WIRE_NEED_MORE;
    }
    uint32_t body = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    if (body > max_frame) {
        return CRAFT_ETOOBIG;
    }
    if (body == 0) {
        return CRAFT_EMALFORMED;
    }
    /* The first body byte already tells a stream that is not ours (or is out of step). */
    if (len > CRAFT_WIRE_HEADER_SIZE && !is_array_header(p[CRAFT_WIRE_HEADER_SIZE])) {
        return CRAFT_EMALFORMED;
    }
    *frame_len = CRAFT_WIRE_HEADER_SIZE + (size_t)body;
    return len >= *frame_len ? 0 : CRAFT_WIRE_NEED_MORE;
}

int craft_wire_decode_frame(struct craft_wire_decoder *d, const void *buf, size_t len,
                            size_t *consumed, struct craft_wire_message *out)
{
    size_t frame_len;
    int rc = craft_wire_frame_length(buf, len, d->max_frame, &frame_len);
    if (rc != 0) {
        d->error = rc == CRAFT_WIRE_NEED_MORE ? NULL
                   : rc == CRAFT_ETOOBIG      ? "frame longer than the maximum"
                                              : "bad frame header";
        return rc;
    }
    rc = craft_wire_decode(d, (const uint8_t *)buf + CRAFT_WIRE_HEADER_SIZE,
                           frame_len - CRAFT_WIRE_HEADER_SIZE, out);
    if (rc == 0) {
        *consumed = frame_len;
    }
    return rc;
}

const char *craft_wire_type_name(int type)
{
    switch (type) {
    case CRAFT_WIRE_HANDSHAKE:
        return "Handshake";
    case CRAFT_WIRE_REQUEST:
        return "Request";
    case CRAFT_WIRE_RESPONSE:
        return "Response";
    default:
        return craft_message_type_name(type);
    }
}
