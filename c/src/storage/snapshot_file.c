/* Snapshot files (see snapshot_file.h). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "storage/crc32c.h"
#include "storage/snapshot_file.h"

void craft__storage_snap_name(craft_index index, char *name)
{
    snprintf(name, 32, "snap-%016" PRIx64 ".snap", index);
}

bool craft__storage_snap_parse_name(const char *name, craft_index *index)
{
    if (strlen(name) != 26 || strncmp(name, "snap-", 5) != 0 || strcmp(name + 21, ".snap") != 0) {
        return false;
    }
    uint64_t v = 0;
    for (int k = 5; k < 21; k++) {
        char c = name[k];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) {
            return false;
        }
        v = v << 4 | (uint64_t)d;
    }
    *index = v;
    return true;
}

static void writer_free(const struct craft_allocator *a, struct craft__snap_writer *w)
{
    craft_configuration_close(&w->meta.conf, a);
    craft_free(a, w->hdr);
    craft_free(a, w->conf_buf);
    craft_free(a, w);
}

int craft__storage_snap_begin(int dirfd, const struct craft_allocator *a, uint64_t counter,
                              const struct craft_snapshot_meta *meta,
                              struct craft__snap_writer **out, struct craft__storage_err *err)
{
    struct craft__snap_writer *w = craft_calloc(a, 1, sizeof *w);
    if (w == NULL) {
        return CRAFT_ENOMEM;
    }
    w->fd = -1;
    craft_configuration_init(&w->meta.conf);
    size_t conf_size = 0;
    int rv = craft_configuration_encode(&meta->conf, a, &w->conf_buf, &conf_size);
    if (rv != 0) {
        writer_free(a, w);
        return rv;
    }
    if (conf_size > CRAFT__SNAP_MAX_CONF) {
        writer_free(a, w);
        return craft__storage_errf(err, CRAFT_ETOOBIG, "configuration of %zu bytes", conf_size);
    }
    w->meta = *meta;
    craft_configuration_init(&w->meta.conf);
    rv = craft_configuration_copy(&w->meta.conf, &meta->conf, a);
    if (rv != 0) {
        writer_free(a, w);
        return rv;
    }
    w->want_size = meta->size;
    w->h.index = meta->index;
    w->h.term = meta->term;
    w->h.conf_index = meta->conf_index;
    w->h.conf_size = (uint32_t)conf_size;
    w->h.header_size = CRAFT__SNAP_FIXED_SIZE + (uint32_t)conf_size + 4;
    w->hdr = craft_malloc(a, w->h.header_size);
    if (w->hdr == NULL) {
        writer_free(a, w);
        return CRAFT_ENOMEM;
    }
    snprintf(w->tmp, sizeof w->tmp, "snap-%016" PRIx64 "-%" PRIu64 ".tmp", meta->index,
             counter);
    w->fd = openat(dirfd, w->tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (w->fd < 0) {
        rv = craft__storage_errf(err, CRAFT_EIO, "create %s: %s", w->tmp, strerror(errno));
        writer_free(a, w);
        return rv;
    }
    *out = w;
    return 0;
}

int craft__storage_snap_write(struct craft__snap_writer *w, const void *buf, size_t len,
                              struct craft__storage_err *err)
{
    int rv = craft__storage_pwrite_all(w->fd, buf, len, w->h.header_size + w->h.size);
    if (rv != 0) {
        return craft__storage_errf(err, CRAFT_EIO, "write %s: %s", w->tmp, strerror(-rv));
    }
    w->h.data_crc = craft__storage_crc32c(w->h.data_crc, buf, len);
    w->h.size += len;
    return 0;
}

void craft__storage_snap_abort(int dirfd, const struct craft_allocator *a,
                               struct craft__snap_writer *w)
{
    if (w->fd >= 0) {
        close(w->fd);
        unlinkat(dirfd, w->tmp, 0);
    }
    writer_free(a, w);
}

int craft__storage_snap_commit(int dirfd, bool sync, const struct craft_allocator *a,
                               struct craft__snap_writer *w, struct craft_snapshot_meta *meta,
                               struct craft__storage_err *err)
{
    if (w->want_size != 0 && w->want_size != w->h.size) {
        int rv = craft__storage_errf(err, CRAFT_EINVAL,
                                     "snapshot %" PRIu64 ": %" PRIu64 " bytes written, %" PRIu64
                                     " announced",
                                     w->h.index, w->h.size, w->want_size);
        craft__storage_snap_abort(dirfd, a, w);
        return rv;
    }
    char name[32];
    craft__storage_snap_name(w->h.index, name);
    craft__snap_header_encode(&w->h, w->conf_buf, w->hdr);
    int rv = craft__storage_pwrite_all(w->fd, w->hdr, w->h.header_size, 0);
    if (rv == 0 && sync) {
        rv = fsync(w->fd) == 0 ? 0 : -errno;
    }
    if (rv == 0 && renameat(dirfd, w->tmp, dirfd, name) != 0) {
        rv = -errno;
    }
    if (rv != 0) {
        rv = craft__storage_errf(err, CRAFT_EIO, "write %s: %s", name, strerror(-rv));
        craft__storage_snap_abort(dirfd, a, w);
        return rv;
    }
    close(w->fd);
    w->fd = -1;
    rv = craft__storage_syncdir(dirfd, sync);
    if (rv != 0) {
        /* Renamed but perhaps not durably: the caller must not trust the directory. */
        rv = craft__storage_errf(err, CRAFT_EIO, "sync directory after %s: %s", name,
                                 strerror(-rv));
        writer_free(a, w);
        return rv;
    }
    *meta = w->meta;
    meta->size = w->h.size;
    craft_configuration_init(&w->meta.conf); /* moved out */
    writer_free(a, w);
    return 0;
}

int craft__storage_snap_load(int dirfd, const char *name, const struct craft_allocator *a,
                             bool check_data, struct craft_snapshot_meta *meta,
                             uint64_t *data_offset, struct craft__storage_err *err)
{
    int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return craft__storage_errf(err, CRAFT_EIO, "open %s: %s", name, strerror(errno));
    }
    uint8_t fixed[CRAFT__SNAP_FIXED_SIZE];
    uint8_t *hdr = NULL, *buf = NULL;
    uint64_t file_size = 0;
    size_t got = 0;
    struct craft__snap_header h;
    int rv = craft__storage_file_size(fd, &file_size);
    if (rv == 0) {
        rv = craft__storage_pread_all(fd, fixed, sizeof fixed, 0, &got);
    }
    if (rv != 0) {
        rv = craft__storage_errf(err, CRAFT_EIO, "read %s: %s", name, strerror(-rv));
        goto out;
    }
    if (got < sizeof fixed || craft__snap_header_decode_fixed(fixed, &h) != 0) {
        rv = craft__storage_errf(err, CRAFT_ECORRUPT, "%s: bad snapshot header at offset 0",
                                 name);
        goto out;
    }
    hdr = craft_malloc(a, h.header_size);
    if (hdr == NULL) {
        rv = CRAFT_ENOMEM;
        goto out;
    }
    rv = craft__storage_pread_all(fd, hdr, h.header_size, 0, &got);
    if (rv != 0) {
        rv = craft__storage_errf(err, CRAFT_EIO, "read %s: %s", name, strerror(-rv));
        goto out;
    }
    rv = got == h.header_size ? craft__snap_header_check(&h, hdr) : CRAFT_ECORRUPT;
    if (rv != 0) {
        rv = craft__storage_errf(err, rv, "%s: %s at offset 0", name,
                                 rv == CRAFT_EVERSION ? "unsupported snapshot format version"
                                                      : "bad snapshot header checksum");
        goto out;
    }
    craft_index named;
    if (craft__storage_snap_parse_name(name, &named) && named != h.index) {
        rv = craft__storage_errf(err, CRAFT_ECORRUPT,
                                 "%s: header says index %" PRIu64 " at offset 16", name, h.index);
        goto out;
    }
    if (file_size != h.header_size + h.size) {
        rv = craft__storage_errf(err, CRAFT_ECORRUPT,
                                 "%s: file is %" PRIu64 " bytes, header says %" PRIu64, name,
                                 file_size, h.header_size + h.size);
        goto out;
    }
    if (check_data) {
        /* Streamed: a snapshot may be larger than memory. */
        const size_t chunk = (size_t)1 << 20;
        buf = craft_malloc(a, chunk);
        if (buf == NULL) {
            rv = CRAFT_ENOMEM;
            goto out;
        }
        uint32_t crc = 0;
        for (uint64_t off = 0; off < h.size;) {
            size_t len = h.size - off < chunk ? (size_t)(h.size - off) : chunk;
            rv = craft__storage_pread_all(fd, buf, len, h.header_size + off, &got);
            if (rv != 0 || got != len) {
                rv = craft__storage_errf(err, CRAFT_EIO, "read %s: %s", name,
                                         rv != 0 ? strerror(-rv) : "short read");
                goto out;
            }
            crc = craft__storage_crc32c(crc, buf, len);
            off += len;
        }
        if (crc != h.data_crc) {
            rv = craft__storage_errf(err, CRAFT_ECORRUPT,
                                     "%s: data checksum mismatch (data at offsets %" PRIu32
                                     "..%" PRIu64 ")",
                                     name, h.header_size, h.header_size + h.size);
            goto out;
        }
    }
    memset(meta, 0, sizeof *meta);
    rv = craft_configuration_decode(hdr + CRAFT__SNAP_FIXED_SIZE, h.conf_size, a, &meta->conf);
    if (rv != 0) {
        rv = craft__storage_errf(err, rv == CRAFT_ENOMEM ? rv : CRAFT_ECORRUPT,
                                 "%s: bad configuration at offset %u", name,
                                 CRAFT__SNAP_FIXED_SIZE);
        goto out;
    }
    meta->index = h.index;
    meta->term = h.term;
    meta->conf_index = h.conf_index;
    meta->size = h.size;
    *data_offset = h.header_size;
out:
    craft_free(a, hdr);
    craft_free(a, buf);
    close(fd);
    return rv;
}
