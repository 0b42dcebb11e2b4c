/*
 * lazyfs_shim.c: an LD_PRELOAD library that lets a test take away, after SIGKILL, everything a
 * process wrote under one directory and never made durable: a power cut without a machine.
 *
 * SIGKILL leaves the page cache to the kernel, so a crash test built on it cannot see a missing
 * or misordered fdatasync. Jepsen's LazyFS answers that with a FUSE file system that holds
 * writes in its own cache until they are synced. This shim does the same job from inside the
 * process, the other way round: every change to a file under $CRAFT_LAZYFS_ROOT goes to the
 * disk at once (so reads, stat, mmap for reading... need no interception at all), but before it
 * happens the shim appends to an UNDO journal what it is about to destroy:
 *
 *   - data: write, pwrite, writev, pwritev(2), stdio streams (below), sendfile and
 *     copy_file_range into a file: the old bytes of the range and the old size; ftruncate,
 *     truncate, open with O_TRUNC, fallocate, posix_fallocate: the old size and the bytes cut;
 *   - names: open with O_CREAT of a new file, mkdir, link, symlink (undone by removing the new
 *     name); unlink, rmdir, remove (the file is kept alive by a hard link in the state
 *     directory, put back on undo); rename over an existing file (the same, for the file
 *     replaced).
 *
 * and marks what becomes durable: fsync/fdatasync of a file makes that file's data so (POSIX
 * fdatasync also writes the size: it is needed to read the data back); fsync of a directory
 * makes the names created, removed or renamed into it so (fsync(2): "Calling fsync() does not
 * necessarily ensure that the entry in the directory containing the file has also reached
 * disk. For that an explicit fsync() on a file descriptor for the directory is also
 * needed."); sync() and syncfs() make everything so. sync_file_range is not a durability call
 * (its man page says so) and changes nothing here.
 *
 * A power cut (tests/powerloss/lazyfs.py) is then: SIGKILL every process of the node, and
 * apply the journal's records that were not made durable from the last back to the first (or
 * only back to some point, or tearing one write at sector granularity: a disk that persisted
 * some unsynced writes in order). What is left is what a disk could hold after losing power.
 *
 * Each record is appended (one writev, O_APPEND) BEFORE its operation, under one mutex, so the
 * journal's order is the order of the operations; a record whose operation never happened
 * (the process was killed in between, or the call failed) undoes to nothing (the undo checks
 * what it finds). A sync is marked AFTER it returned, covering the records that were in the
 * journal when it began. The shim keeps the records not yet durable in memory too, and empties
 * the journal when none is left (or rewrites it with only those, when it grows large), so it
 * stays small over a long run. Backups of durable removals are deleted as they become durable.
 *
 * Stdio: glibc's fwrite/fflush reach write(2) through internal calls an LD_PRELOAD library
 * cannot see, so fopen/fdopen of a file under the root for writing returns a fopencookie
 * stream whose writes go through the shim (Lua's io library is stdio). fileno works on it.
 *
 * Environment: CRAFT_LAZYFS_ROOT (the directory whose contents are tracked; itself included
 * for directory syncs) and CRAFT_LAZYFS_STATE (where the journal "journal" and the backups
 * "backup/" go: outside the root, on the same file system, for hard links). Without them the
 * shim does nothing. Optional: CRAFT_LAZYFS_SYNC_DELAY_US (each sync of a tracked file or
 * directory takes that much longer before it counts: a slow disk, and a wider window for a cut
 * to land in), CRAFT_LAZYFS_COMPACT_BYTES (rewrite the journal past this size, 32 MiB). Anything it cannot model (a shared writable mmap of a tracked file,
 * RENAME_EXCHANGE, splice into a tracked file, a journal write that failed) is written to the
 * journal as a FAIL record and to stderr: the power cut then refuses, the test fails loudly.
 *
 * Limits: one process per root writes the tracked files (the in-memory bookkeeping is per
 * process); a rename into another directory is durable once its new directory is synced;
 * file descriptors above 65535 are not tracked (a FAIL record says so); writes through a file
 * that was unlinked are not journaled. The layer, its journal format and how a test uses it
 * are described in docs/storage.md ("Power-loss testing") and tests/powerloss/lazyfs.py.
 *
 * Test tooling only: built by tests/powerloss/CMakeLists.txt, linked into nothing we ship.
 */
#undef _FORTIFY_SOURCE
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

/* ---- the journal format (read by tests/powerloss/lazyfs.py) ------------------------------- */

#define J_MAGIC 0x314a5a4cu   /* "LZJ1" */
#define J_TRAILER 0x454a5a4cu /* "LZJE" */
#define J_HEAD 88

enum {
    R_WRITE = 1,   /* p1 file, dev/ino file, a offset, b old size, c length, data old bytes */
    R_TRUNC = 2,   /* p1 file, dev/ino file, a new size, b old size, data bytes cut */
    R_CREATE = 3,  /* p1 new name, dev/ino its directory */
    R_MKDIR = 4,   /* p1 new directory, dev/ino its parent */
    R_UNLINK = 5,  /* p1 name, p2 backup, a the file's inode, dev/ino its directory */
    R_RMDIR = 6,   /* p1 name, dev/ino its parent */
    R_RENAME = 7,  /* p1 old, p2 new, a the inode moved, data backup of what new named, dev/ino
                      new's directory */
    R_SYNC = 8,    /* dev/ino file, a: the records with a lower seq are covered */
    R_DIRSYNC = 9, /* dev/ino directory, a: the same */
    R_SYNCALL = 10, /* a: the same, for every file and directory */
    R_FAIL = 11,    /* p1 what could not be modelled */
};

/* Old bytes are stored as extents (offset u64, length u64, bytes) of the 512-byte sectors that
 * hold anything but zeros: the preallocated zeros a WAL append overwrites cost nothing. */
#define SECTOR 512

/* ---- the real functions ------------------------------------------------------------------- */

static int (*real_openat)(int, const char *, int, ...);
static int (*real_close)(int);
static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static ssize_t (*real_pwritev)(int, const struct iovec *, int, off_t);
static ssize_t (*real_pwritev2)(int, const struct iovec *, int, off_t, int);
static ssize_t (*real_pread)(int, void *, size_t, off_t);
static ssize_t (*real_read)(int, void *, size_t);
static int (*real_ftruncate)(int, off_t);
static int (*real_truncate)(const char *, off_t);
static int (*real_fallocate)(int, int, off_t, off_t);
static int (*real_posix_fallocate)(int, off_t, off_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static void (*real_sync)(void);
static int (*real_syncfs)(int);
static int (*real_renameat2)(int, const char *, int, const char *, unsigned int);
static int (*real_renameat)(int, const char *, int, const char *);
static int (*real_unlinkat)(int, const char *, int);
static int (*real_mkdirat)(int, const char *, mode_t);
static int (*real_linkat)(int, const char *, int, const char *, int);
static int (*real_symlinkat)(const char *, int, const char *);
static int (*real_dup)(int);
static int (*real_dup2)(int, int);
static int (*real_dup3)(int, int, int);
static int (*real_fcntl)(int, int, ...);
static FILE *(*real_fopen)(const char *, const char *);
static FILE *(*real_fdopen)(int, const char *);
static FILE *(*real_freopen)(const char *, const char *, FILE *);
static int (*real_fileno)(FILE *);
static void *(*real_mmap)(void *, size_t, int, int, int, off_t);
static ssize_t (*real_sendfile)(int, int, off_t *, size_t);
static ssize_t (*real_copy_file_range)(int, off_t *, int, off_t *, size_t, unsigned int);
static ssize_t (*real_splice)(int, off_t *, int, off_t *, size_t, unsigned int);

/* ---- state -------------------------------------------------------------------------------- */

#define MAX_FDS 65536

struct pending {
    uint64_t seq;
    uint64_t off, len; /* where the record lies in the journal */
    uint64_t dev, ino; /* the file (data) or directory (names) whose sync makes it durable */
    char *backup;      /* a hard link to delete once durable, or NULL */
};

struct cookie {
    int fd;
    FILE *fp;
    struct cookie *next;
};

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static bool g_on;
static char g_root[PATH_MAX];
static size_t g_root_len;
static char g_state[PATH_MAX / 2]; /* short enough for the names made under it */
static char g_journal[PATH_MAX];
static int g_jfd = -1;
static unsigned long g_backups;
static uint64_t g_seq = 1;   /* the next record's sequence number */
static bool g_failed;        /* a FAIL record is in the journal: keep it there */
static bool g_secondary;     /* another process holds the journal: this one is not tracked */
static bool g_warned;
static uint64_t g_compact_bytes = 32u << 20;
static useconds_t g_sync_delay_us;
static unsigned char g_tracked[MAX_FDS];
static struct pending *g_pend;
static size_t g_npend, g_cappend;
static uint64_t g_pend_bytes;
static struct cookie *g_cookies;

/* ---- small helpers ------------------------------------------------------------------------ */

static void *sym(const char *name)
{
    return dlsym(RTLD_NEXT, name);
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("lazyfs: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs("\n", stderr);
    va_end(ap);
    abort();
}

static void lock(void)
{
    pthread_mutex_lock(&g_mu);
}

static void unlock(void)
{
    pthread_mutex_unlock(&g_mu);
}

static void load_journal(void);

static void atfork_child(void)
{
    /* The child has one thread: whatever the parent's others held is gone. */
    pthread_mutex_init(&g_mu, NULL);
}

static void init(void)
{
    real_openat = sym("openat");
    real_close = sym("close");
    real_write = sym("write");
    real_pwrite = sym("pwrite");
    real_writev = sym("writev");
    real_pwritev = sym("pwritev");
    real_pwritev2 = sym("pwritev2");
    real_pread = sym("pread");
    real_read = sym("read");
    real_ftruncate = sym("ftruncate");
    real_truncate = sym("truncate");
    real_fallocate = sym("fallocate");
    real_posix_fallocate = sym("posix_fallocate");
    real_fsync = sym("fsync");
    real_fdatasync = sym("fdatasync");
    real_sync = sym("sync");
    real_syncfs = sym("syncfs");
    real_renameat2 = sym("renameat2");
    real_renameat = sym("renameat");
    real_unlinkat = sym("unlinkat");
    real_mkdirat = sym("mkdirat");
    real_linkat = sym("linkat");
    real_symlinkat = sym("symlinkat");
    real_dup = sym("dup");
    real_dup2 = sym("dup2");
    real_dup3 = sym("dup3");
    real_fcntl = sym("fcntl");
    real_fopen = sym("fopen");
    real_fdopen = sym("fdopen");
    real_freopen = sym("freopen");
    real_fileno = sym("fileno");
    real_mmap = sym("mmap");
    real_sendfile = sym("sendfile");
    real_copy_file_range = sym("copy_file_range");
    real_splice = sym("splice");

    const char *root = getenv("CRAFT_LAZYFS_ROOT");
    const char *state = getenv("CRAFT_LAZYFS_STATE");
    if (root == NULL || state == NULL || root[0] == '\0' || state[0] == '\0') {
        return; /* inert */
    }
    if (realpath(root, g_root) == NULL) {
        die("CRAFT_LAZYFS_ROOT=%s: %s", root, strerror(errno));
    }
    char st_abs[PATH_MAX];
    if (realpath(state, st_abs) == NULL) {
        die("CRAFT_LAZYFS_STATE=%s: %s", state, strerror(errno));
    }
    if (strlen(st_abs) >= sizeof g_state) {
        die("CRAFT_LAZYFS_STATE=%s: path too long", st_abs);
    }
    strcpy(g_state, st_abs);
    g_root_len = strlen(g_root);
    size_t sl = strlen(g_state);
    if ((strncmp(g_state, g_root, g_root_len) == 0 &&
         (g_state[g_root_len] == '/' || g_state[g_root_len] == '\0')) ||
        (strncmp(g_root, g_state, sl) == 0 && g_root[sl] == '/')) {
        die("CRAFT_LAZYFS_STATE (%s) and CRAFT_LAZYFS_ROOT (%s) must not contain each other",
            g_state, g_root);
    }
    struct stat rs, ss;
    if (stat(g_root, &rs) != 0 || stat(g_state, &ss) != 0 || rs.st_dev != ss.st_dev) {
        die("CRAFT_LAZYFS_STATE (%s) must be on the file system of CRAFT_LAZYFS_ROOT (%s): "
            "removals are kept by hard links",
            g_state, g_root);
    }
    const char *cb = getenv("CRAFT_LAZYFS_COMPACT_BYTES");
    if (cb != NULL && cb[0] != '\0') {
        g_compact_bytes = strtoull(cb, NULL, 10);
    }
    const char *sd = getenv("CRAFT_LAZYFS_SYNC_DELAY_US");
    if (sd != NULL && sd[0] != '\0') {
        g_sync_delay_us = (useconds_t)strtoul(sd, NULL, 10);
    }
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/backup", g_state);
    if (real_mkdirat(AT_FDCWD, path, 0755) != 0 && errno != EEXIST) {
        die("mkdir %s: %s", path, strerror(errno));
    }
    snprintf(g_journal, sizeof g_journal, "%s/journal", g_state);
    g_jfd = real_openat(AT_FDCWD, g_journal, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (g_jfd < 0) {
        die("open %s: %s", g_journal, strerror(errno));
    }
    /* One process per journal: another one started from this one (a shell, a helper) that
     * finds it locked leaves everything alone. */
    if (flock(g_jfd, LOCK_EX | LOCK_NB) != 0) {
        real_close(g_jfd);
        g_jfd = -1;
        g_secondary = true; /* said on stderr if it ever writes under the root */
        return;
    }
    load_journal();
    pthread_atfork(NULL, NULL, atfork_child);
    g_on = true;
}

static bool on(void)
{
    pthread_once(&g_once, init);
    return g_on;
}

static bool is_tracked(int fd)
{
    return fd >= 0 && fd < MAX_FDS && __atomic_load_n(&g_tracked[fd], __ATOMIC_ACQUIRE);
}

static void set_tracked(int fd, bool v)
{
    if (fd >= 0 && fd < MAX_FDS) {
        __atomic_store_n(&g_tracked[fd], v ? 1 : 0, __ATOMIC_RELEASE);
    }
}

/* Strictly inside the root (a file or directory the test's program works with). */
static bool inside(const char *abs)
{
    return strncmp(abs, g_root, g_root_len) == 0 && abs[g_root_len] == '/';
}

/* Inside or the root itself (a directory whose sync counts). */
static bool inside_or_root(const char *abs)
{
    return strncmp(abs, g_root, g_root_len) == 0 &&
           (abs[g_root_len] == '/' || abs[g_root_len] == '\0');
}

/* The current path of an open file; false for a file that was unlinked. */
static bool fd_path(int fd, char out[PATH_MAX])
{
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, out, PATH_MAX - 1);
    if (n <= 0) {
        return false;
    }
    out[n] = '\0';
    const char *del = " (deleted)";
    size_t dl = strlen(del);
    return !((size_t)n > dl && strcmp(out + n - dl, del) == 0);
}

/* The absolute path that (dirfd, path) names, its directory resolved (the last component is
 * kept as it is: it may not exist yet, or be a symbolic link). */
static bool resolve(int dirfd, const char *path, char out[PATH_MAX])
{
    char joined[2 * PATH_MAX];
    if (path == NULL || path[0] == '\0') {
        return false;
    }
    if (path[0] == '/') {
        snprintf(joined, sizeof joined, "%s", path);
    } else {
        char base[PATH_MAX];
        if (dirfd == AT_FDCWD) {
            if (getcwd(base, sizeof base) == NULL) {
                return false;
            }
        } else if (!fd_path(dirfd, base)) {
            return false;
        }
        snprintf(joined, sizeof joined, "%s/%s", base, path);
    }
    size_t len = strlen(joined);
    while (len > 1 && joined[len - 1] == '/') {
        joined[--len] = '\0';
    }
    char *slash = strrchr(joined, '/');
    const char *name = slash + 1;
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
        return realpath(joined, out) != NULL;
    }
    char dir[PATH_MAX];
    if (slash == joined) {
        strcpy(dir, "/");
    } else {
        *slash = '\0';
        if (realpath(joined, dir) == NULL) {
            return false;
        }
    }
    int n = snprintf(out, PATH_MAX, "%s/%s", strcmp(dir, "/") == 0 ? "" : dir, name);
    return n > 0 && n < PATH_MAX;
}

/* The device and inode of the directory holding abs. */
static bool parent_id(const char *abs, uint64_t *dev, uint64_t *ino)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", abs);
    char *slash = strrchr(dir, '/');
    if (slash == NULL) {
        return false;
    }
    if (slash == dir) {
        slash[1] = '\0';
    } else {
        *slash = '\0';
    }
    struct stat st;
    if (stat(dir, &st) != 0) {
        return false;
    }
    *dev = (uint64_t)st.st_dev;
    *ino = (uint64_t)st.st_ino;
    return true;
}

/* ---- a growable byte buffer --------------------------------------------------------------- */

struct buf {
    unsigned char *p;
    size_t len, cap;
    bool oom;
};

static void buf_put(struct buf *b, const void *data, size_t n)
{
    if (b->oom) {
        return;
    }
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) {
            cap *= 2;
        }
        unsigned char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void buf_u64(struct buf *b, uint64_t v)
{
    unsigned char x[8];
    for (int i = 0; i < 8; i++) {
        x[i] = (unsigned char)(v >> (8 * i));
    }
    buf_put(b, x, 8);
}

/* Appends the extents of [off, off + len) of the file open as ofd that are not all zeros,
 * sector by sector; holes (SEEK_HOLE) are skipped without reading. The file is opened again
 * for this: ofd may be write-only, and its offset must not move. */
static bool capture(int ofd, uint64_t off, uint64_t len, struct buf *out)
{
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", ofd);
    int fd = real_openat(AT_FDCWD, link, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return false;
    }
    uint64_t end = off + len;
    uint64_t pos = off;
    size_t chunk_cap = 1u << 20;
    unsigned char *chunk = malloc(chunk_cap);
    if (chunk == NULL) {
        real_close(fd);
        return false;
    }
    bool ok = true;
    while (pos < end) {
        off_t d = lseek(fd, (off_t)pos, SEEK_DATA);
        if (d < 0) {
            break; /* ENXIO: only a hole from pos on */
        }
        if ((uint64_t)d >= end) {
            break;
        }
        off_t h = lseek(fd, d, SEEK_HOLE);
        uint64_t stop = h < 0 || (uint64_t)h > end ? end : (uint64_t)h;
        pos = (uint64_t)d;
        while (pos < stop) {
            /* Sector-aligned reads, so extents line up with the sectors a torn write keeps. */
            uint64_t a = pos - pos % SECTOR;
            uint64_t want = stop - a < chunk_cap ? stop - a : chunk_cap;
            ssize_t got = real_pread(fd, chunk, want, (off_t)a);
            if (got <= 0) {
                ok = got == 0;
                pos = stop;
                break;
            }
            uint64_t s = 0;
            while (s < (uint64_t)got) {
                uint64_t slen = (uint64_t)got - s < SECTOR ? (uint64_t)got - s : SECTOR;
                bool zero = true;
                for (uint64_t k = 0; k < slen; k++) {
                    if (chunk[s + k] != 0) {
                        zero = false;
                        break;
                    }
                }
                if (zero) {
                    s += slen;
                    continue;
                }
                uint64_t e = s + slen;
                /* Grow the extent over the following non-zero sectors. */
                while (e < (uint64_t)got) {
                    uint64_t l2 = (uint64_t)got - e < SECTOR ? (uint64_t)got - e : SECTOR;
                    bool z2 = true;
                    for (uint64_t k = 0; k < l2; k++) {
                        if (chunk[e + k] != 0) {
                            z2 = false;
                            break;
                        }
                    }
                    if (z2) {
                        break;
                    }
                    e += l2;
                }
                /* Clip to [off, end). */
                uint64_t xs = a + s < off ? off : a + s;
                uint64_t xe = a + e > end ? end : a + e;
                if (xe > xs) {
                    buf_u64(out, xs);
                    buf_u64(out, xe - xs);
                    buf_put(out, chunk + (xs - a), xe - xs);
                }
                s = e;
            }
            pos = a + (uint64_t)got;
        }
    }
    free(chunk);
    real_close(fd);
    return ok && !out->oom;
}

/* ---- the journal -------------------------------------------------------------------------- */

struct rec {
    uint32_t type;
    uint64_t dev, ino, a, b, c;
    const char *p1, *p2;
    const void *data;
    size_t data_len;
};

static uint64_t journal_size(void)
{
    struct stat st;
    return fstat(g_jfd, &st) == 0 ? (uint64_t)st.st_size : 0;
}

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (unsigned char)(v >> (8 * i));
    }
}

static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (unsigned char)(v >> (8 * i));
    }
}

static void fail_locked(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Appends r in one writev, with the next sequence number; returns its offset, length and seq.
 * Called with g_mu held. */
static bool jappend(const struct rec *r, uint64_t *off, uint64_t *len, uint64_t *seq)
{
    size_t l1 = r->p1 ? strlen(r->p1) : 0, l2 = r->p2 ? strlen(r->p2) : 0;
    uint64_t total = J_HEAD + l1 + l2 + r->data_len + 4;
    uint64_t s = g_seq++;
    unsigned char h[J_HEAD], t[4];
    memset(h, 0, sizeof h);
    put32(h, J_MAGIC);
    put32(h + 4, r->type);
    put64(h + 8, total);
    put64(h + 16, s);
    put64(h + 24, r->dev);
    put64(h + 32, r->ino);
    put64(h + 40, r->a);
    put64(h + 48, r->b);
    put64(h + 56, r->c);
    put32(h + 64, (uint32_t)getpid());
    put32(h + 68, (uint32_t)l1);
    put32(h + 72, (uint32_t)l2);
    put64(h + 80, (uint64_t)r->data_len);
    put32(t, J_TRAILER);
    struct iovec iov[5] = {{h, sizeof h},
                           {(void *)r->p1, l1},
                           {(void *)r->p2, l2},
                           {(void *)r->data, r->data_len},
                           {t, sizeof t}};
    uint64_t at = journal_size();
    /* O_APPEND: one writev is one append. A short one (a full disk) is finished by hand. */
    ssize_t n = real_writev(g_jfd, iov, 5);
    if (n < 0) {
        return false;
    }
    uint64_t done = (uint64_t)n;
    for (int i = 0; i < 5 && done < total; i++) {
        if (done >= iov[i].iov_len) {
            done -= iov[i].iov_len;
            continue;
        }
        const char *p = (const char *)iov[i].iov_base + done;
        size_t left = iov[i].iov_len - done;
        while (left > 0) {
            ssize_t w = real_write(g_jfd, p, left);
            if (w <= 0) {
                return false;
            }
            p += w;
            left -= (size_t)w;
        }
        done = 0;
    }
    if (off != NULL) {
        *off = at;
        *len = total;
        *seq = s;
    }
    return true;
}

static void fail_locked(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "lazyfs: %s: the power cut will refuse this journal\n", msg);
    struct rec r = {.type = R_FAIL, .p1 = msg};
    g_failed = true;
    jappend(&r, NULL, NULL, NULL);
}

/* Remembers a record that a later sync of (kdev, kino) makes durable. */
static void remember(uint64_t seq, uint64_t off, uint64_t len, uint64_t kdev, uint64_t kino,
                     const char *backup, size_t backup_len)
{
    if (g_npend == g_cappend) {
        size_t cap = g_cappend ? 2 * g_cappend : 64;
        struct pending *p = realloc(g_pend, cap * sizeof *p);
        if (p == NULL) {
            fail_locked("out of memory for the pending list");
            return;
        }
        g_pend = p;
        g_cappend = cap;
    }
    struct pending *p = &g_pend[g_npend++];
    p->seq = seq;
    p->off = off;
    p->len = len;
    p->dev = kdev;
    p->ino = kino;
    p->backup = backup != NULL && backup_len > 0 ? strndup(backup, backup_len) : NULL;
    g_pend_bytes += len;
}

/* Appends a record that a later sync makes durable, and remembers it. With g_mu held. */
static void jpending(const struct rec *r, uint64_t kdev, uint64_t kino, const char *backup)
{
    uint64_t off, len, seq;
    if (!jappend(r, &off, &len, &seq)) {
        fail_locked("journal write of a record of type %u failed: %s", r->type, strerror(errno));
        return;
    }
    remember(seq, off, len, kdev, kino, backup, backup ? strlen(backup) : 0);
}

/* Copies the pending records into a fresh journal and puts it in place of the old one. */
static void rewrite_journal(void)
{
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.new", g_journal);
    int fd = real_openat(AT_FDCWD, tmp, O_RDWR | O_APPEND | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        fail_locked("create %s: %s", tmp, strerror(errno));
        return;
    }
    uint64_t at = 0;
    for (size_t i = 0; i < g_npend; i++) {
        unsigned char *b = malloc(g_pend[i].len);
        if (b == NULL ||
            real_pread(g_jfd, b, g_pend[i].len, (off_t)g_pend[i].off) != (ssize_t)g_pend[i].len ||
            real_write(fd, b, g_pend[i].len) != (ssize_t)g_pend[i].len) {
            free(b);
            real_close(fd);
            real_unlinkat(AT_FDCWD, tmp, 0);
            fail_locked("rewrite of the journal failed");
            return;
        }
        free(b);
        g_pend[i].off = at;
        at += g_pend[i].len;
    }
    /* The lock on the journal goes with the new file before it takes the old one's name. */
    if (flock(fd, LOCK_EX | LOCK_NB) != 0 ||
        real_renameat(AT_FDCWD, tmp, AT_FDCWD, g_journal) != 0) {
        real_close(fd);
        fail_locked("rename %s: %s", tmp, strerror(errno));
        return;
    }
    real_close(g_jfd);
    g_jfd = fd;
}

/* Forgets the pending records a sync covers: of (dev, ino) (all of them for R_SYNCALL) with a
 * sequence number below seq. Their backups are no longer needed. */
static void forget(uint32_t type, uint64_t dev, uint64_t ino, uint64_t seq)
{
    size_t k = 0;
    for (size_t i = 0; i < g_npend; i++) {
        struct pending *p = &g_pend[i];
        bool done = p->seq < seq && (type == R_SYNCALL || (p->dev == dev && p->ino == ino));
        if (done) {
            if (p->backup != NULL) {
                real_unlinkat(AT_FDCWD, p->backup, 0);
                free(p->backup);
            }
            g_pend_bytes -= p->len;
        } else {
            g_pend[k++] = *p;
        }
    }
    g_npend = k;
}

/* A sync of (dev, ino) (everything for R_SYNCALL) that began when the next sequence number
 * was seq returned: the records before it become durable. With g_mu held. */
static void settle(uint32_t type, uint64_t dev, uint64_t ino, uint64_t seq)
{
    struct rec r = {.type = type, .dev = dev, .ino = ino, .a = seq};
    if (!jappend(&r, NULL, NULL, NULL)) {
        fail_locked("journal write of a sync failed: %s", strerror(errno));
        return;
    }
    forget(type, dev, ino, seq);
    if (g_failed) {
        return; /* the FAIL record stays for the power cut to see */
    }
    if (g_npend == 0) {
        /* Nothing left to undo: start the journal again from nothing. */
        if (real_ftruncate(g_jfd, 0) != 0) {
            fail_locked("truncate the journal: %s", strerror(errno));
        }
    } else if (journal_size() > g_compact_bytes && 2 * g_pend_bytes < journal_size()) {
        rewrite_journal();
    }
}

static uint32_t get32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) {
        v = v << 8 | p[i];
    }
    return v;
}

static uint64_t get64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) {
        v = v << 8 | p[i];
    }
    return v;
}

/* A process started again on a journal that was not cut (its predecessor crashed: the page
 * cache kept what it wrote, still not durable) carries on from it: the pending records are
 * read back. A torn last record (killed in the middle of its append) is cut off: its operation
 * never started. */
static void load_journal(void)
{
    uint64_t size = journal_size();
    if (size == 0) {
        return;
    }
    unsigned char *b = malloc(size);
    if (b == NULL || real_pread(g_jfd, b, size, 0) != (ssize_t)size) {
        die("read %s: %s", g_journal, strerror(errno));
    }
    uint64_t off = 0;
    while (off + J_HEAD + 4 <= size) {
        const unsigned char *h = b + off;
        uint64_t len = get64(h + 8);
        if (get32(h) != J_MAGIC || len < J_HEAD + 4 || len > size - off ||
            get32(h + len - 4) != J_TRAILER) {
            break;
        }
        uint32_t type = get32(h + 4);
        uint64_t seq = get64(h + 16), dev = get64(h + 24), ino = get64(h + 32);
        uint64_t a = get64(h + 40);
        uint32_t l1 = get32(h + 68), l2 = get32(h + 72);
        uint64_t dl = get64(h + 80);
        if (J_HEAD + (uint64_t)l1 + l2 + dl + 4 != len) {
            break;
        }
        const char *p2 = (const char *)h + J_HEAD + l1;
        const char *data = p2 + l2;
        g_seq = seq + 1 > g_seq ? seq + 1 : g_seq;
        switch (type) {
        case R_SYNC:
        case R_DIRSYNC:
        case R_SYNCALL:
            forget(type, dev, ino, a);
            break;
        case R_FAIL:
            g_failed = true;
            break;
        case R_UNLINK:
            remember(seq, off, len, dev, ino, p2, l2);
            break;
        case R_RENAME:
            remember(seq, off, len, dev, ino, data, (size_t)dl);
            break;
        default:
            remember(seq, off, len, dev, ino, NULL, 0);
            break;
        }
        off += len;
    }
    free(b);
    if (off < size && real_ftruncate(g_jfd, (off_t)off) != 0) {
        die("truncate %s: %s", g_journal, strerror(errno));
    }
}

/* ---- data records ------------------------------------------------------------------------- */

/* Records that [off, off + len) of the tracked file fd is about to be overwritten. With g_mu. */
static void note_write(int fd, uint64_t off, uint64_t len)
{
    if (len == 0) {
        return;
    }
    struct stat st;
    char path[PATH_MAX];
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        return;
    }
    if (!fd_path(fd, path) || !inside(path)) {
        return; /* unlinked (nothing of it can come back) or moved out of the root */
    }
    uint64_t size = (uint64_t)st.st_size;
    struct buf b = {0};
    if (off < size && !capture(fd, off, (off + len < size ? off + len : size) - off, &b)) {
        fail_locked("%s: could not read the %" PRIu64 " bytes at %" PRIu64 " before a write",
                    path, len, off);
        free(b.p);
        return;
    }
    struct rec r = {.type = R_WRITE,
                    .dev = (uint64_t)st.st_dev,
                    .ino = (uint64_t)st.st_ino,
                    .a = off,
                    .b = size,
                    .c = len,
                    .p1 = path,
                    .data = b.p,
                    .data_len = b.len};
    jpending(&r, r.dev, r.ino, NULL);
    free(b.p);
}

/* Records that the tracked file fd is about to get size new_size. With g_mu. */
static void note_resize(int fd, uint64_t new_size)
{
    struct stat st;
    char path[PATH_MAX];
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || !fd_path(fd, path) || !inside(path)) {
        return;
    }
    uint64_t size = (uint64_t)st.st_size;
    if (size == new_size) {
        return;
    }
    struct buf b = {0};
    if (new_size < size && !capture(fd, new_size, size - new_size, &b)) {
        fail_locked("%s: could not read the bytes a truncation cuts", path);
        free(b.p);
        return;
    }
    struct rec r = {.type = R_TRUNC,
                    .dev = (uint64_t)st.st_dev,
                    .ino = (uint64_t)st.st_ino,
                    .a = new_size,
                    .b = size,
                    .p1 = path,
                    .data = b.p,
                    .data_len = b.len};
    jpending(&r, r.dev, r.ino, NULL);
    free(b.p);
}

/* The offset a write(2) on fd goes to. */
static uint64_t write_offset(int fd)
{
    int fl = real_fcntl(fd, F_GETFL);
    if (fl >= 0 && (fl & O_APPEND)) {
        struct stat st;
        return fstat(fd, &st) == 0 ? (uint64_t)st.st_size : 0;
    }
    off_t o = lseek(fd, 0, SEEK_CUR);
    return o < 0 ? 0 : (uint64_t)o;
}

static size_t iov_total(const struct iovec *iov, int n)
{
    size_t t = 0;
    for (int i = 0; i < n; i++) {
        t += iov[i].iov_len;
    }
    return t;
}

/* ---- name records ------------------------------------------------------------------------- */

static bool lexists(const char *abs, struct stat *st)
{
    return lstat(abs, st) == 0;
}

/* A hard link to abs in the state directory, to put back if its removal is undone. */
static bool make_backup(const char *abs, char out[PATH_MAX])
{
    snprintf(out, PATH_MAX, "%s/backup/%d.%lu", g_state, (int)getpid(), ++g_backups);
    if (real_linkat(AT_FDCWD, abs, AT_FDCWD, out, 0) != 0) {
        fail_locked("cannot keep %s (link to %s): %s", abs, out, strerror(errno));
        return false;
    }
    return true;
}

static void note_create(uint32_t type, const char *abs)
{
    uint64_t dev, ino;
    if (!parent_id(abs, &dev, &ino)) {
        return;
    }
    struct rec r = {.type = type, .dev = dev, .ino = ino, .p1 = abs};
    jpending(&r, dev, ino, NULL);
}

/* ---- open and close ----------------------------------------------------------------------- */

static int do_open(int dirfd, const char *path, int flags, mode_t mode)
{
    bool writes = (flags & O_ACCMODE) != O_RDONLY || (flags & (O_CREAT | O_TRUNC));
    char abs[PATH_MAX];
    if (!on()) {
        if (g_secondary && writes && resolve(dirfd, path, abs) && inside(abs) &&
            !__atomic_exchange_n(&g_warned, true, __ATOMIC_RELAXED)) {
            fprintf(stderr,
                    "lazyfs: pid %d writes under %s, but another process holds the journal %s: "
                    "its writes are not tracked\n",
                    (int)getpid(), g_root, g_journal);
        }
        return real_openat(dirfd, path, flags, mode);
    }
    if (!writes || !resolve(dirfd, path, abs) || !inside(abs)) {
        return real_openat(dirfd, path, flags, mode);
    }
    lock();
    struct stat st;
    bool existed = lexists(abs, &st);
    if ((flags & O_CREAT) && !existed) {
        note_create(R_CREATE, abs);
    }
    int fd = real_openat(dirfd, path, flags & ~O_TRUNC, mode);
    if (fd >= 0) {
        struct stat fst;
        bool reg = fstat(fd, &fst) == 0 && S_ISREG(fst.st_mode);
        if (reg && existed && (flags & O_TRUNC) && (flags & O_ACCMODE) != O_RDONLY) {
            note_resize(fd, 0);
            if (real_ftruncate(fd, 0) != 0) {
                int e = errno;
                real_close(fd);
                unlock();
                errno = e;
                return -1;
            }
        }
        if (reg && (flags & O_ACCMODE) != O_RDONLY) {
            if (fd >= MAX_FDS) {
                fail_locked("%s opened as fd %d, above the %d the shim tracks", abs, fd,
                            MAX_FDS);
            }
            set_tracked(fd, true);
        }
    }
    unlock();
    return fd;
}

static mode_t va_mode(int flags, va_list ap)
{
    return (flags & (O_CREAT | O_TMPFILE)) ? (mode_t)va_arg(ap, int) : 0;
}

EXPORT int open(const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t m = va_mode(flags, ap);
    va_end(ap);
    return do_open(AT_FDCWD, path, flags, m);
}

EXPORT int open64(const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t m = va_mode(flags, ap);
    va_end(ap);
    return do_open(AT_FDCWD, path, flags, m);
}

EXPORT int openat(int dirfd, const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t m = va_mode(flags, ap);
    va_end(ap);
    return do_open(dirfd, path, flags, m);
}

EXPORT int openat64(int dirfd, const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t m = va_mode(flags, ap);
    va_end(ap);
    return do_open(dirfd, path, flags, m);
}

/* The _FORTIFY_SOURCE entry points (open without a mode when O_CREAT is not given). */
int __open_2(const char *path, int flags);
int __open64_2(const char *path, int flags);
int __openat_2(int dirfd, const char *path, int flags);
int __openat64_2(int dirfd, const char *path, int flags);

EXPORT int __open_2(const char *path, int flags)
{
    return do_open(AT_FDCWD, path, flags, 0);
}

EXPORT int __open64_2(const char *path, int flags)
{
    return do_open(AT_FDCWD, path, flags, 0);
}

EXPORT int __openat_2(int dirfd, const char *path, int flags)
{
    return do_open(dirfd, path, flags, 0);
}

EXPORT int __openat64_2(int dirfd, const char *path, int flags)
{
    return do_open(dirfd, path, flags, 0);
}

EXPORT int creat(const char *path, mode_t mode)
{
    return do_open(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}

EXPORT int creat64(const char *path, mode_t mode)
{
    return do_open(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}

EXPORT int close(int fd)
{
    if (!real_close) {
        on();
    }
    set_tracked(fd, false); /* before: the number may be reused as soon as it is closed */
    return real_close(fd);
}

static int dup_result(int oldfd, int newfd)
{
    if (newfd >= 0 && newfd != oldfd) {
        set_tracked(newfd, is_tracked(oldfd));
    }
    return newfd;
}

EXPORT int dup(int fd)
{
    on();
    return dup_result(fd, real_dup(fd));
}

EXPORT int dup2(int fd, int fd2)
{
    on();
    return dup_result(fd, real_dup2(fd, fd2));
}

EXPORT int dup3(int fd, int fd2, int flags)
{
    on();
    return dup_result(fd, real_dup3(fd, fd2, flags));
}

static int do_fcntl(int fd, int cmd, void *arg)
{
    on();
    int r = real_fcntl(fd, cmd, arg);
    if (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC) {
        dup_result(fd, r);
    }
    return r;
}

/* Every fcntl argument is an int or a pointer; passed on as a pointer-sized value. */
EXPORT int fcntl(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return do_fcntl(fd, cmd, arg);
}

EXPORT int fcntl64(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return do_fcntl(fd, cmd, arg);
}

/* ---- writes ------------------------------------------------------------------------------- */

EXPORT ssize_t write(int fd, const void *buf, size_t n)
{
    if (!is_tracked(fd)) {
        if (!real_write) {
            on();
        }
        return real_write(fd, buf, n);
    }
    lock();
    note_write(fd, write_offset(fd), n);
    ssize_t r = real_write(fd, buf, n);
    int e = errno;
    unlock();
    errno = e;
    return r;
}

static ssize_t do_pwrite(int fd, const void *buf, size_t n, off_t off)
{
    if (!is_tracked(fd)) {
        on();
        return real_pwrite(fd, buf, n, off);
    }
    lock();
    int fl = real_fcntl(fd, F_GETFL);
    /* Linux: pwrite on an O_APPEND file appends whatever the offset says. */
    note_write(fd, (fl >= 0 && (fl & O_APPEND)) ? write_offset(fd) : (uint64_t)off, n);
    ssize_t r = real_pwrite(fd, buf, n, off);
    int e = errno;
    unlock();
    errno = e;
    return r;
}

EXPORT ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
    return do_pwrite(fd, buf, n, off);
}

EXPORT ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off)
{
    return do_pwrite(fd, buf, n, off);
}

EXPORT ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
    if (!is_tracked(fd)) {
        if (!real_writev) {
            on();
        }
        return real_writev(fd, iov, cnt);
    }
    lock();
    note_write(fd, write_offset(fd), iov_total(iov, cnt));
    ssize_t r = real_writev(fd, iov, cnt);
    int e = errno;
    unlock();
    errno = e;
    return r;
}

static ssize_t do_pwritev2(int fd, const struct iovec *iov, int cnt, off_t off, int flags)
{
    on();
    if (!is_tracked(fd)) {
        return flags == 0 ? real_pwritev(fd, iov, cnt, off)
                          : real_pwritev2(fd, iov, cnt, off, flags);
    }
    lock();
    int fl = real_fcntl(fd, F_GETFL);
    /* An offset of -1 (pwritev2) means the file offset, as write(2) does. */
    bool append = (fl >= 0 && (fl & O_APPEND)) || off == -1;
#ifdef RWF_APPEND
    append = append || (flags & RWF_APPEND);
#endif
    note_write(fd, append ? write_offset(fd) : (uint64_t)off, iov_total(iov, cnt));
    ssize_t r = flags == 0 ? real_pwritev(fd, iov, cnt, off)
                           : real_pwritev2(fd, iov, cnt, off, flags);
    int e = errno;
    unlock();
    errno = e;
    return r;
}

EXPORT ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
    return do_pwritev2(fd, iov, cnt, off, 0);
}

EXPORT ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off_t off)
{
    return do_pwritev2(fd, iov, cnt, off, 0);
}

EXPORT ssize_t pwritev2(int fd, const struct iovec *iov, int cnt, off_t off, int flags)
{
    return do_pwritev2(fd, iov, cnt, off, flags);
}

EXPORT ssize_t pwritev64v2(int fd, const struct iovec *iov, int cnt, off_t off, int flags)
{
    return do_pwritev2(fd, iov, cnt, off, flags);
}

static int do_ftruncate(int fd, off_t len)
{
    on();
    if (!is_tracked(fd) || len < 0) {
        return real_ftruncate(fd, len);
    }
    lock();
    note_resize(fd, (uint64_t)len);
    int r = real_ftruncate(fd, len);
    int e = errno;
    unlock();
    errno = e;
    return r;
}

EXPORT int ftruncate(int fd, off_t len)
{
    return do_ftruncate(fd, len);
}

EXPORT int ftruncate64(int fd, off_t len)
{
    return do_ftruncate(fd, len);
}

static int do_truncate(const char *path, off_t len)
{
    char abs[PATH_MAX];
    if (!on() || len < 0 || !resolve(AT_FDCWD, path, abs) || !inside(abs)) {
        return real_truncate(path, len);
    }
    int fd = real_openat(AT_FDCWD, path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        return real_truncate(path, len); /* let it fail with its own error */
    }
    lock();
    note_resize(fd, (uint64_t)len);
    int r = real_ftruncate(fd, len);
    int e = errno;
    unlock();
    real_close(fd);
    errno = e;
    return r;
}

EXPORT int truncate(const char *path, off_t len)
{
    return do_truncate(path, len);
}

EXPORT int truncate64(const char *path, off_t len)
{
    return do_truncate(path, len);
}

/* mode 0 (and FALLOC_FL_KEEP_SIZE) change the size at most; punching or zeroing a range
 * changes bytes; collapsing or inserting a range moves them, which is not modelled. */
static int do_fallocate(int fd, int mode, off_t off, off_t len, bool posix)
{
    on();
    if (!is_tracked(fd) || off < 0 || len <= 0) {
        return posix ? real_posix_fallocate(fd, off, len) : real_fallocate(fd, mode, off, len);
    }
    lock();
    struct stat st;
    if (fstat(fd, &st) == 0) {
        uint64_t end = (uint64_t)off + (uint64_t)len;
        if (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) {
            note_write(fd, (uint64_t)off, (uint64_t)len);
        } else if (mode & (FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_INSERT_RANGE)) {
            fail_locked("fallocate mode %#x on a tracked file is not modelled", mode);
        }
        if (!(mode & FALLOC_FL_KEEP_SIZE) && end > (uint64_t)st.st_size) {
            note_resize(fd, end);
        }
    }
    int r = posix ? real_posix_fallocate(fd, off, len) : real_fallocate(fd, mode, off, len);
    int e = errno;
    unlock();
    errno = e;
    return r;
}

EXPORT int fallocate(int fd, int mode, off_t off, off_t len)
{
    return do_fallocate(fd, mode, off, len, false);
}

EXPORT int fallocate64(int fd, int mode, off_t off, off_t len)
{
    return do_fallocate(fd, mode, off, len, false);
}

EXPORT int posix_fallocate(int fd, off_t off, off_t len)
{
    return do_fallocate(fd, 0, off, len, true);
}

EXPORT int posix_fallocate64(int fd, off_t off, off_t len)
{
    return do_fallocate(fd, 0, off, len, true);
}

EXPORT ssize_t sendfile(int out, int in, off_t *off, size_t n)
{
    on();
    if (!is_tracked(out)) {
        return real_sendfile(out, in, off, n);
    }
    lock();
    note_write(out, write_offset(out), n);
    ssize_t r = real_sendfile(out, in, off, n);
    int e = errno;
    unlock();
    errno = e;
    return r;
}

EXPORT ssize_t sendfile64(int out, int in, off_t *off, size_t n)
{
    return sendfile(out, in, off, n);
}

EXPORT ssize_t copy_file_range(int in, off_t *in_off, int out, off_t *out_off, size_t n,
                               unsigned int flags)
{
    on();
    if (!is_tracked(out)) {
        return real_copy_file_range(in, in_off, out, out_off, n, flags);
    }
    lock();
    note_write(out, out_off ? (uint64_t)*out_off : write_offset(out), n);
    ssize_t r = real_copy_file_range(in, in_off, out, out_off, n, flags);
    int e = errno;
    unlock();
    errno = e;
    return r;
}

EXPORT ssize_t splice(int in, off_t *in_off, int out, off_t *out_off, size_t n,
                      unsigned int flags)
{
    on();
    if (is_tracked(out)) {
        lock();
        fail_locked("splice into a tracked file is not modelled");
        unlock();
    }
    return real_splice(in, in_off, out, out_off, n, flags);
}

static void check_mmap(int prot, int flags, int fd)
{
    if (fd >= 0 && is_tracked(fd) && (prot & PROT_WRITE) && (flags & MAP_SHARED)) {
        lock();
        fail_locked("a shared writable mmap of a tracked file is not modelled");
        unlock();
    }
}

EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    on();
    check_mmap(prot, flags, fd);
    return real_mmap(addr, len, prot, flags, fd, off);
}

EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    return mmap(addr, len, prot, flags, fd, off);
}

/* ---- syncs -------------------------------------------------------------------------------- */

static int do_sync(int fd, int (*fn)(int))
{
    if (!on()) {
        return fn(fd);
    }
    struct stat st;
    char path[PATH_MAX];
    bool reg = false, dir = false;
    if (fstat(fd, &st) == 0 && fd_path(fd, path)) {
        reg = S_ISREG(st.st_mode) && inside(path);
        dir = S_ISDIR(st.st_mode) && inside_or_root(path);
    }
    if (!reg && !dir) {
        return fn(fd);
    }
    /* The records already in the journal when the sync begins are the ones it covers. */
    lock();
    uint64_t seq = g_seq;
    unlock();
    int r = fn(fd);
    if (r == 0) {
        int e = errno;
        if (g_sync_delay_us > 0) {
            usleep(g_sync_delay_us); /* a slower disk: cuts land inside the window more often */
        }
        lock();
        settle(dir ? R_DIRSYNC : R_SYNC, (uint64_t)st.st_dev, (uint64_t)st.st_ino, seq);
        unlock();
        errno = e;
    }
    return r;
}

EXPORT int fsync(int fd)
{
    on();
    return do_sync(fd, real_fsync);
}

EXPORT int fdatasync(int fd)
{
    on();
    return do_sync(fd, real_fdatasync);
}

static void sync_all_done(uint64_t seq)
{
    lock();
    settle(R_SYNCALL, 0, 0, seq);
    unlock();
}

EXPORT void sync(void)
{
    if (!on()) {
        real_sync();
        return;
    }
    lock();
    uint64_t seq = g_seq;
    unlock();
    real_sync();
    sync_all_done(seq);
}

EXPORT int syncfs(int fd)
{
    if (!on()) {
        return real_syncfs(fd);
    }
    lock();
    uint64_t seq = g_seq;
    unlock();
    int r = real_syncfs(fd);
    if (r == 0) {
        sync_all_done(seq);
    }
    return r;
}

/* ---- names -------------------------------------------------------------------------------- */

static int do_unlinkat(int dirfd, const char *path, int flags)
{
    char abs[PATH_MAX];
    if (!on() || !resolve(dirfd, path, abs) || !inside(abs)) {
        return real_unlinkat(dirfd, path, flags);
    }
    lock();
    struct stat st;
    uint64_t dev, ino;
    if (lexists(abs, &st) && parent_id(abs, &dev, &ino)) {
        if (flags & AT_REMOVEDIR) {
            struct rec r = {.type = R_RMDIR, .dev = dev, .ino = ino, .p1 = abs};
            jpending(&r, dev, ino, NULL);
        } else {
            char backup[PATH_MAX];
            if (make_backup(abs, backup)) {
                struct rec r = {.type = R_UNLINK,
                                .dev = dev,
                                .ino = ino,
                                .a = (uint64_t)st.st_ino,
                                .p1 = abs,
                                .p2 = backup};
                jpending(&r, dev, ino, backup);
            }
        }
    }
    int r = real_unlinkat(dirfd, path, flags);
    int e = errno;
    unlock();
    errno = e;
    return r;
}

EXPORT int unlinkat(int dirfd, const char *path, int flags)
{
    return do_unlinkat(dirfd, path, flags);
}

EXPORT int unlink(const char *path)
{
    return do_unlinkat(AT_FDCWD, path, 0);
}

EXPORT int rmdir(const char *path)
{
    return do_unlinkat(AT_FDCWD, path, AT_REMOVEDIR);
}

EXPORT int remove(const char *path)
{
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        return do_unlinkat(AT_FDCWD, path, AT_REMOVEDIR);
    }
    return do_unlinkat(AT_FDCWD, path, 0);
}

static int do_rename(int odir, const char *old, int ndir, const char *new, unsigned flags)
{
    char aold[PATH_MAX], anew[PATH_MAX];
    bool in_old = false, in_new = false;
    if (on()) {
        in_old = resolve(odir, old, aold) && inside(aold);
        in_new = resolve(ndir, new, anew) && inside(anew);
    }
    if (!in_old && !in_new) {
        return flags ? real_renameat2(odir, old, ndir, new, flags)
                     : real_renameat(odir, old, ndir, new);
    }
    lock();
    if (flags & RENAME_EXCHANGE) {
        fail_locked("rename with RENAME_EXCHANGE of %s is not modelled", in_new ? anew : aold);
    } else if (!in_new) {
        /* Moved out of the root: seen from inside, a removal. */
        struct stat st;
        uint64_t dev, ino;
        char backup[PATH_MAX];
        if (lexists(aold, &st) && parent_id(aold, &dev, &ino) && make_backup(aold, backup)) {
            struct rec r = {.type = R_UNLINK,
                            .dev = dev,
                            .ino = ino,
                            .a = (uint64_t)st.st_ino,
                            .p1 = aold,
                            .p2 = backup};
            jpending(&r, dev, ino, backup);
        }
    } else if (!in_old) {
        /* Moved in from outside: a creation (and the file it replaces, a removal). */
        struct stat st;
        uint64_t dev, ino;
        char backup[PATH_MAX];
        if (lexists(anew, &st) && parent_id(anew, &dev, &ino) && make_backup(anew, backup)) {
            struct rec r = {.type = R_UNLINK,
                            .dev = dev,
                            .ino = ino,
                            .a = (uint64_t)st.st_ino,
                            .p1 = anew,
                            .p2 = backup};
            jpending(&r, dev, ino, backup);
        }
        note_create(R_CREATE, anew);
    } else {
        struct stat so, sn;
        uint64_t dev, ino;
        if (lexists(aold, &so) && parent_id(anew, &dev, &ino)) {
            char backup[PATH_MAX] = "";
            bool replaces = lexists(anew, &sn) && !(flags & RENAME_NOREPLACE);
            if (!replaces || make_backup(anew, backup)) {
                struct rec r = {.type = R_RENAME,
                                .dev = dev,
                                .ino = ino,
                                .a = (uint64_t)so.st_ino,
                                .p1 = aold,
                                .p2 = anew,
                                .data = backup,
                                .data_len = strlen(backup)};
                jpending(&r, dev, ino, replaces ? backup : NULL);
            }
        }
    }
    int r = flags ? real_renameat2(odir, old, ndir, new, flags)
                  : real_renameat(odir, old, ndir, new);
    int e = errno;
    unlock();
    errno = e;
    return r;
}

EXPORT int rename(const char *old, const char *new)
{
    return do_rename(AT_FDCWD, old, AT_FDCWD, new, 0);
}

EXPORT int renameat(int odir, const char *old, int ndir, const char *new)
{
    return do_rename(odir, old, ndir, new, 0);
}

EXPORT int renameat2(int odir, const char *old, int ndir, const char *new, unsigned int flags)
{
    return do_rename(odir, old, ndir, new, flags);
}

static int do_mkdirat(int dirfd, const char *path, mode_t mode)
{
    char abs[PATH_MAX];
    struct stat st;
    if (!on() || !resolve(dirfd, path, abs) || !inside(abs)) {
        return real_mkdirat(dirfd, path, mode);
    }
    lock();
    if (!lexists(abs, &st)) {
        note_create(R_MKDIR, abs);
    }
    int r = real_mkdirat(dirfd, path, mode);
    int e = errno;
    unlock();
    errno = e;
    return r;
}

EXPORT int mkdir(const char *path, mode_t mode)
{
    return do_mkdirat(AT_FDCWD, path, mode);
}

EXPORT int mkdirat(int dirfd, const char *path, mode_t mode)
{
    return do_mkdirat(dirfd, path, mode);
}

static int do_linkat(int odir, const char *old, int ndir, const char *new, int flags)
{
    char abs[PATH_MAX];
    struct stat st;
    if (!on() || !resolve(ndir, new, abs) || !inside(abs)) {
        return real_linkat(odir, old, ndir, new, flags);
    }
    lock();
    if (!lexists(abs, &st)) {
        note_create(R_CREATE, abs);
    }
    int r = real_linkat(odir, old, ndir, new, flags);
    int e = errno;
    unlock();
    errno = e;
    return r;
}

EXPORT int link(const char *old, const char *new)
{
    return do_linkat(AT_FDCWD, old, AT_FDCWD, new, 0);
}

EXPORT int linkat(int odir, const char *old, int ndir, const char *new, int flags)
{
    return do_linkat(odir, old, ndir, new, flags);
}

static int do_symlinkat(const char *target, int dirfd, const char *path)
{
    char abs[PATH_MAX];
    struct stat st;
    if (!on() || !resolve(dirfd, path, abs) || !inside(abs)) {
        return real_symlinkat(target, dirfd, path);
    }
    lock();
    if (!lexists(abs, &st)) {
        note_create(R_CREATE, abs);
    }
    int r = real_symlinkat(target, dirfd, path);
    int e = errno;
    unlock();
    errno = e;
    return r;
}

EXPORT int symlink(const char *target, const char *path)
{
    return do_symlinkat(target, AT_FDCWD, path);
}

EXPORT int symlinkat(const char *target, int dirfd, const char *path)
{
    return do_symlinkat(target, dirfd, path);
}

/* ---- stdio -------------------------------------------------------------------------------- */

static ssize_t ck_read(void *c, char *buf, size_t n)
{
    return real_read(((struct cookie *)c)->fd, buf, n);
}

static ssize_t ck_write(void *c, const char *buf, size_t n)
{
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(((struct cookie *)c)->fd, buf + done, n - done);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return done > 0 ? (ssize_t)done : -1;
        }
        done += (size_t)w;
    }
    return (ssize_t)done;
}

static int ck_seek(void *c, off64_t *pos, int whence)
{
    off_t r = lseek(((struct cookie *)c)->fd, (off_t)*pos, whence);
    if (r < 0) {
        return -1;
    }
    *pos = r;
    return 0;
}

static int ck_close(void *c)
{
    struct cookie *k = c;
    lock();
    for (struct cookie **p = &g_cookies; *p != NULL; p = &(*p)->next) {
        if (*p == k) {
            *p = k->next;
            break;
        }
    }
    unlock();
    int r = close(k->fd);
    free(k);
    return r;
}

static FILE *cookie_stream(int fd, const char *mode)
{
    struct cookie *k = malloc(sizeof *k);
    if (k == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    k->fd = fd;
    cookie_io_functions_t io = {ck_read, ck_write, ck_seek, ck_close};
    FILE *fp = fopencookie(k, mode, io);
    if (fp == NULL) {
        free(k);
        return NULL;
    }
    k->fp = fp;
    lock();
    k->next = g_cookies;
    g_cookies = k;
    unlock();
    return fp;
}

/* fopen's mode as open flags; false if it only reads. */
static bool mode_flags(const char *mode, int *flags)
{
    int acc, extra = 0;
    switch (mode[0]) {
    case 'r':
        acc = O_RDONLY;
        break;
    case 'w':
        acc = O_WRONLY;
        extra = O_CREAT | O_TRUNC;
        break;
    case 'a':
        acc = O_WRONLY;
        extra = O_CREAT | O_APPEND;
        break;
    default:
        return false;
    }
    for (const char *m = mode + 1; *m != '\0' && *m != ','; m++) {
        if (*m == '+') {
            acc = O_RDWR;
        } else if (*m == 'x') {
            extra |= O_EXCL;
        } else if (*m == 'e') {
            extra |= O_CLOEXEC;
        }
    }
    *flags = acc | extra;
    return acc != O_RDONLY;
}

static FILE *do_fopen(const char *path, const char *mode)
{
    int flags;
    char abs[PATH_MAX];
    if (!on() || mode == NULL || !mode_flags(mode, &flags) || !resolve(AT_FDCWD, path, abs) ||
        !inside(abs)) {
        return real_fopen(path, mode);
    }
    int fd = do_open(AT_FDCWD, path, flags, 0666);
    if (fd < 0) {
        return NULL;
    }
    FILE *fp = cookie_stream(fd, mode);
    if (fp == NULL) {
        int e = errno;
        close(fd);
        errno = e;
    }
    return fp;
}

EXPORT FILE *fopen(const char *path, const char *mode)
{
    return do_fopen(path, mode);
}

EXPORT FILE *fopen64(const char *path, const char *mode)
{
    return do_fopen(path, mode);
}

EXPORT FILE *fdopen(int fd, const char *mode)
{
    on();
    int flags;
    if (is_tracked(fd) && mode != NULL && mode_flags(mode, &flags)) {
        return cookie_stream(fd, mode);
    }
    return real_fdopen(fd, mode);
}

EXPORT FILE *freopen(const char *path, const char *mode, FILE *fp)
{
    int flags;
    char abs[PATH_MAX];
    if (on() && path != NULL && mode != NULL && mode_flags(mode, &flags) &&
        resolve(AT_FDCWD, path, abs) && inside(abs)) {
        lock();
        fail_locked("freopen of %s for writing is not modelled", abs);
        unlock();
    }
    return real_freopen(path, mode, fp);
}

EXPORT FILE *freopen64(const char *path, const char *mode, FILE *fp)
{
    return freopen(path, mode, fp);
}

static int cookie_fd(FILE *fp)
{
    int fd = -1;
    lock();
    for (struct cookie *k = g_cookies; k != NULL; k = k->next) {
        if (k->fp == fp) {
            fd = k->fd;
            break;
        }
    }
    unlock();
    return fd;
}

EXPORT int fileno(FILE *fp)
{
    if (on()) {
        int fd = cookie_fd(fp);
        if (fd >= 0) {
            return fd;
        }
    }
    return real_fileno(fp);
}

EXPORT int fileno_unlocked(FILE *fp)
{
    return fileno(fp);
}
