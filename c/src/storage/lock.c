/* The data directory's lock (see lock.h). */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "craft.h"
#include "storage/lock.h"

int craft__storage_lock(int dirfd, const char *dir, int *fd, struct craft__storage_err *err)
{
    int lfd = openat(dirfd, "LOCK", O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lfd < 0) {
        return craft__storage_errf(err, CRAFT_EIO, "open %s/LOCK: %s", dir, strerror(errno));
    }
    while (flock(lfd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        if (e == EINTR) {
            continue;
        }
        close(lfd);
        if (e == EWOULDBLOCK) {
            return craft__storage_errf(err, CRAFT_ELOCKED,
                                       "%s is locked by another process or store", dir);
        }
        return craft__storage_errf(err, CRAFT_EIO, "flock %s/LOCK: %s", dir, strerror(e));
    }
    *fd = lfd;
    return 0;
}

void craft__storage_unlock(int fd)
{
    if (fd >= 0) {
        close(fd); /* releases the flock */
    }
}
