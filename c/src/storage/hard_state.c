/* The hard-state file (see hard_state.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "craft.h"
#include "storage/hard_state.h"

int craft__storage_hs_open(int dirfd, bool sync, struct craft__hs_file *f,
                           struct craft__storage_err *err)
{
    f->fd = -1;
    f->sync = sync;
    f->bad_slot = -1;
    int fd = openat(dirfd, "state", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) {
            return CRAFT_ENOTFOUND;
        }
        return craft__storage_errf(err, CRAFT_EIO, "open state: %s", strerror(errno));
    }
    uint8_t buf[CRAFT__HS_FILE_SIZE + 1];
    size_t got = 0;
    int rv = craft__storage_pread_all(fd, buf, sizeof buf, 0, &got);
    if (rv != 0) {
        close(fd);
        return craft__storage_errf(err, CRAFT_EIO, "read state: %s", strerror(-rv));
    }
    if (got != CRAFT__HS_FILE_SIZE) {
        close(fd);
        return craft__storage_errf(err, CRAFT_ECORRUPT,
                                   "state: file is %zu bytes long, expected %u", got,
                                   CRAFT__HS_FILE_SIZE);
    }
    struct craft__hs_slot s[2];
    int rc[2];
    for (int k = 0; k < 2; k++) {
        rc[k] = craft__hs_slot_decode(buf + k * CRAFT__HS_SLOT_STRIDE, &s[k]);
    }
    if (rc[0] != 0 && rc[1] != 0) {
        close(fd);
        if (rc[0] == CRAFT_EVERSION || rc[1] == CRAFT_EVERSION) {
            return craft__storage_errf(err, CRAFT_EVERSION,
                                       "state: unsupported format version");
        }
        return craft__storage_errf(err, CRAFT_ECORRUPT,
                                   "state: both slots (offsets 0 and %u) fail their checksum",
                                   CRAFT__HS_SLOT_STRIDE);
    }
    int pick;
    if (rc[0] != 0 || rc[1] != 0) {
        /* One slot was being written when the process or machine stopped: the other one holds
         * the value that was last made durable. */
        pick = rc[0] == 0 ? 0 : 1;
        f->bad_slot = 1 - pick;
    } else {
        pick = s[1].seq > s[0].seq ? 1 : 0;
    }
    f->fd = fd;
    f->cur = s[pick];
    f->cur_slot = pick;
    return 0;
}

int craft__storage_hs_create(int dirfd, bool sync, struct craft__storage_err *err)
{
    uint8_t buf[CRAFT__HS_FILE_SIZE];
    struct craft__hs_slot s;
    memset(buf, 0, sizeof buf);
    memset(&s, 0, sizeof s);
    craft__hs_slot_encode(&s, buf);
    craft__hs_slot_encode(&s, buf + CRAFT__HS_SLOT_STRIDE);
    int fd = openat(dirfd, "state.tmp", O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        return craft__storage_errf(err, CRAFT_EIO, "create state.tmp: %s", strerror(errno));
    }
    int rv = craft__storage_pwrite_all(fd, buf, sizeof buf, 0);
    if (rv == 0) {
        rv = craft__storage_datasync(fd, sync);
    }
    close(fd);
    if (rv == 0 && renameat(dirfd, "state.tmp", dirfd, "state") != 0) {
        rv = -errno;
    }
    if (rv == 0) {
        rv = craft__storage_syncdir(dirfd, sync);
    }
    if (rv != 0) {
        return craft__storage_errf(err, CRAFT_EIO, "create state: %s", strerror(-rv));
    }
    return 0;
}

int craft__storage_hs_write(struct craft__hs_file *f, const struct craft_hard_state *hs,
                            craft_index base, craft_term base_term,
                            struct craft__storage_err *err)
{
    struct craft__hs_slot s;
    s.seq = f->cur.seq + 1;
    s.hs = *hs;
    s.base = base;
    s.base_term = base_term;
    uint8_t buf[CRAFT__HS_SLOT_SIZE];
    craft__hs_slot_encode(&s, buf);
    /* The slot not holding the newest value is the one overwritten. */
    int slot = 1 - f->cur_slot;
    uint64_t off = (uint64_t)slot * CRAFT__HS_SLOT_STRIDE;
    int rv = craft__storage_pwrite_all(f->fd, buf, sizeof buf, off);
    if (rv == 0) {
        rv = craft__storage_datasync(f->fd, f->sync);
    }
    if (rv != 0) {
        return craft__storage_errf(err, CRAFT_EIO, "write state: %s", strerror(-rv));
    }
    f->cur = s;
    f->cur_slot = slot;
    return 0;
}

void craft__storage_hs_close(struct craft__hs_file *f)
{
    if (f->fd >= 0) {
        close(f->fd);
        f->fd = -1;
    }
}
