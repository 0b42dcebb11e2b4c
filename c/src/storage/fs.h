/*
 * File-system helpers of the durable store: whole reads and writes that survive short
 * transfers and EINTR, syncs that honour the store's fsync option, and the error message
 * buffer every storage call fills when it fails (the store reports it through
 * craft_disk_store_errmsg, so a failure says which file and which system error).
 */
#ifndef CRAFT_STORAGE_FS_H
#define CRAFT_STORAGE_FS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CRAFT__STORAGE_ERRMSG_SIZE 512

/* Where a failure is described: a buffer of CRAFT__STORAGE_ERRMSG_SIZE bytes. */
struct craft__storage_err {
    char msg[CRAFT__STORAGE_ERRMSG_SIZE];
};

/* Formats the message and returns rc, so a failure path reads
 * `return craft__storage_errf(err, CRAFT_EIO, "write %s: %s", name, strerror(e));`. */
int craft__storage_errf(struct craft__storage_err *err, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Formats one log line and hands it to fn (nothing if fn is NULL). */
void craft__storage_logf(void (*fn)(void *, int, const char *), void *data, int level,
                         const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* pwrite of all len bytes at off: 0 or -errno. */
int craft__storage_pwrite_all(int fd, const void *buf, size_t len, uint64_t off);
/* pread of up to len bytes at off, stopping early only at the end of the file: 0 or -errno,
 * with the byte count in *got. */
int craft__storage_pread_all(int fd, void *buf, size_t len, uint64_t off, size_t *got);
/* fdatasync(fd) when sync is true: 0 or -errno. */
int craft__storage_datasync(int fd, bool sync);
/* fsync of the directory dirfd when sync is true (makes a create, rename or unlink durable):
 * 0 or -errno. */
int craft__storage_syncdir(int dirfd, bool sync);
/* fsync of the directory that holds path (its name, as given, without trailing slashes) when
 * sync is true: makes path's own name durable after a mkdir. 0 or -errno. */
int craft__storage_sync_parent(const char *path, bool sync);
/* The size of the file: 0 or -errno. */
int craft__storage_file_size(int fd, uint64_t *size);
/* Extends the file to size bytes of zeros, so that later writes below size overwrite instead
 * of growing the file: allocated (fallocate) if allocate is true and the file system can,
 * sparse (ftruncate) otherwise. Nothing if the file is already that long. Not synced: 0 or
 * -errno. */
int craft__storage_preallocate(int fd, uint64_t size, bool allocate);

#endif
