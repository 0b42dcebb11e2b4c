/* What every store shares: closing one through its table. */
#include "craft.h"

void craft_store_close(struct craft_store *s)
{
    if (s != NULL && s->close != NULL) {
        s->close(s->impl);
    }
}
