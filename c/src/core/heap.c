/* The allocator hook: every allocation of a node goes through the craft_allocator it was given,
 * so that an embedding program can account for memory and tests can inject out-of-memory. */
#include <stdlib.h>

#include "craft.h"

static void *libc_malloc(void *data, size_t size)
{
    (void)data;
    return malloc(size);
}

static void *libc_calloc(void *data, size_t nmemb, size_t size)
{
    (void)data;
    return calloc(nmemb, size);
}

static void *libc_realloc(void *data, void *ptr, size_t size)
{
    (void)data;
    return realloc(ptr, size);
}

static void libc_free(void *data, void *ptr)
{
    (void)data;
    free(ptr);
}

static const struct craft_allocator libc_allocator = {
    NULL, libc_malloc, libc_calloc, libc_realloc, libc_free,
};

const struct craft_allocator *craft_default_allocator(void)
{
    return &libc_allocator;
}

void *craft_malloc(const struct craft_allocator *a, size_t size)
{
    if (a == NULL) {
        a = &libc_allocator;
    }
    return a->malloc(a->data, size == 0 ? 1 : size);
}

void *craft_calloc(const struct craft_allocator *a, size_t nmemb, size_t size)
{
    if (a == NULL) {
        a = &libc_allocator;
    }
    if (nmemb == 0 || size == 0) {
        nmemb = 1;
        size = 1;
    }
    return a->calloc(a->data, nmemb, size);
}

void *craft_realloc(const struct craft_allocator *a, void *ptr, size_t size)
{
    if (a == NULL) {
        a = &libc_allocator;
    }
    return a->realloc(a->data, ptr, size == 0 ? 1 : size);
}

void craft_free(const struct craft_allocator *a, void *ptr)
{
    if (ptr == NULL) {
        return;
    }
    if (a == NULL) {
        a = &libc_allocator;
    }
    a->free(a->data, ptr);
}
