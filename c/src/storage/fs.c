/* File-system helpers of the durable store (see fs.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* fallocate */
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage/fs.h"

int craft__storage_errf(struct craft__storage_err *err, int rc, const char *fmt, ...)
{
    if (err != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return rc;
}

void craft__storage_logf(void (*fn)(void *, int, const char *), void *data, int level,
                         const char *fmt, ...)
{
    if (fn == NULL) {
        return;
    }
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fn(data, level, line);
}

int craft__storage_pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = pwrite(fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        if (n == 0) {
            return -EIO;
        }
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

int craft__storage_pread_all(int fd, void *buf, size_t len, uint64_t off, size_t *got)
{
    char *p = buf;
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, p + done, len - done, (off_t)(off + done));
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        if (n == 0) {
            break;
        }
        done += (size_t)n;
    }
    *got = done;
    return 0;
}

int craft__storage_datasync(int fd, bool sync)
{
    if (!sync) {
        return 0;
    }
    while (fdatasync(fd) != 0) {
        if (errno != EINTR) {
            return -errno;
        }
    }
    return 0;
}

int craft__storage_syncdir(int dirfd, bool sync)
{
    if (!sync) {
        return 0;
    }
    while (fsync(dirfd) != 0) {
        if (errno != EINTR) {
            /* Some file systems refuse fsync on a directory; nothing more can be done there. */
            return errno == EINVAL ? 0 : -errno;
        }
    }
    return 0;
}

int craft__storage_sync_parent(const char *path, bool sync)
{
    if (!sync) {
        return 0;
    }
    char parent[4096];
    size_t len = strlen(path);
    if (len >= sizeof parent) {
        return -ENAMETOOLONG;
    }
    memcpy(parent, path, len + 1);
    while (len > 1 && parent[len - 1] == '/') {
        parent[--len] = '\0';
    }
    char *slash = strrchr(parent, '/');
    if (slash == NULL) {
        strcpy(parent, ".");
    } else if (slash == parent) {
        parent[1] = '\0'; /* "/name": the parent is the root */
    } else {
        *slash = '\0';
    }
    int fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return -errno;
    }
    int rv = craft__storage_syncdir(fd, true);
    close(fd);
    return rv;
}

int craft__storage_file_size(int fd, uint64_t *size)
{
    struct stat st;
    if (fstat(fd, &st) != 0) {
        return -errno;
    }
    *size = (uint64_t)st.st_size;
    return 0;
}

int craft__storage_preallocate(int fd, uint64_t size, bool allocate)
{
    uint64_t cur;
    int rv = craft__storage_file_size(fd, &cur);
    if (rv != 0 || cur >= size) {
        return rv;
    }
#ifdef __linux__
    while (allocate && fallocate(fd, 0, (off_t)cur, (off_t)(size - cur)) != 0) {
        if (errno == EINTR) {
            continue;
        }
        if (errno != EOPNOTSUPP && errno != ENOSYS) {
            return -errno;
        }
        break; /* not supported here: a sparse extension reads as zeros too */
    }
    rv = craft__storage_file_size(fd, &cur);
    if (rv != 0 || cur >= size) {
        return rv;
    }
#endif
    return ftruncate(fd, (off_t)size) == 0 ? 0 : -errno;
}
