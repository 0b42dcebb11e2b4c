/*
 * The decoder's memory. A decoded message needs a few arrays (entries, configuration servers,
 * scratch for validation); they come from a bump allocator over one block that is reused for
 * every message, so a connection decoding a steady stream of similar frames makes no call to
 * malloc at all. When a message needs more than the block holds, the excess goes into
 * overflow blocks of exactly the size asked, and the next reset replaces the main block with
 * one large enough for that message: the block converges on the largest message seen (up to
 * KEEP_MAX; beyond that, the memory of a rare huge message is returned after it).
 */
#include <stdalign.h>

#include "wire/internal.h"

struct craft__wire_block {
    size_t size; /* usable bytes in data */
    struct craft__wire_block *next;
    alignas(max_align_t) unsigned char data[];
};

#define ALIGN (alignof(max_align_t))
#define MIN_BLOCK 4096
#define KEEP_MAX (4u * 1024u * 1024u)

static struct craft__wire_block *block_new(const struct craft_allocator *a, size_t size)
{
    if (size > SIZE_MAX - sizeof(struct craft__wire_block)) {
        return NULL;
    }
    struct craft__wire_block *b = craft_malloc(a, sizeof *b + size);
    if (b == NULL) {
        return NULL;
    }
    b->size = size;
    b->next = NULL;
    return b;
}

static void free_list(const struct craft_allocator *a, struct craft__wire_block *b)
{
    while (b != NULL) {
        struct craft__wire_block *next = b->next;
        craft_free(a, b);
        b = next;
    }
}

void craft_wire_decoder_init(struct craft_wire_decoder *d, const struct craft_allocator *a)
{
    d->alloc = a;
    d->max_frame = CRAFT_WIRE_MAX_FRAME_DEFAULT;
    d->max_term = 0;
    d->error = NULL;
    d->block_ = NULL;
    d->extra_ = NULL;
    d->used_ = 0;
    d->want_ = 0;
}

void craft_wire_decoder_reset(struct craft_wire_decoder *d)
{
    if (d->extra_ != NULL) {
        free_list(d->alloc, d->extra_);
        d->extra_ = NULL;
        /* The main block was too small for the last message: replace it with one of the
         * size that message needed in all, unless that is too much memory to hold on to
         * between messages. If the allocation fails, the next decode starts a small one. */
        craft_free(d->alloc, d->block_);
        d->block_ = d->want_ <= KEEP_MAX ? block_new(d->alloc, d->want_) : NULL;
    }
    d->used_ = 0;
    d->want_ = 0;
}

void craft_wire_decoder_close(struct craft_wire_decoder *d)
{
    free_list(d->alloc, d->extra_);
    craft_free(d->alloc, d->block_);
    d->extra_ = NULL;
    d->block_ = NULL;
    d->used_ = 0;
    d->want_ = 0;
}

void *craft__wire_alloc(struct craft_wire_decoder *d, size_t size)
{
    if (size > SIZE_MAX - ALIGN) {
        return NULL;
    }
    size = (size + ALIGN - 1) & ~(ALIGN - 1);
    if (d->want_ > SIZE_MAX - size) {
        return NULL;
    }
    d->want_ += size;

    if (d->block_ == NULL && d->extra_ == NULL) {
        /* The first allocation of a decoder (or the first since a failed replacement). */
        d->block_ = block_new(d->alloc, size > MIN_BLOCK ? size : MIN_BLOCK);
        if (d->block_ == NULL) {
            return NULL;
        }
        d->used_ = 0;
    }
    if (d->block_ != NULL && d->block_->size - d->used_ >= size) {
        void *p = d->block_->data + d->used_;
        d->used_ += size;
        return p;
    }
    struct craft__wire_block *b = block_new(d->alloc, size);
    if (b == NULL) {
        return NULL;
    }
    b->next = d->extra_;
    d->extra_ = b;
    return b->data;
}
