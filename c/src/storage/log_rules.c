/* Argument rules shared by every store (see log_rules.h). */
#include "storage/log_rules.h"

int craft__storage_check_append(craft_index last, craft_term last_term,
                                const struct craft_entry *entries, size_t n)
{
    if (n == 0) {
        return 0;
    }
    if (entries == NULL || entries[0].index != last + 1) {
        return CRAFT_EINVAL;
    }
    craft_term prev = last_term;
    for (size_t k = 0; k < n; k++) {
        const struct craft_entry *e = &entries[k];
        if (e->index != last + 1 + k || e->term == 0 || e->term < prev ||
            (e->data == NULL && e->size > 0)) {
            return CRAFT_EINVAL;
        }
        prev = e->term;
    }
    return 0;
}

int craft__storage_check_range(craft_index first, craft_index last, craft_index lo,
                               craft_index hi)
{
    if (lo == 0) {
        return CRAFT_EINVAL;
    }
    if (lo > hi) {
        return lo - hi == 1 ? 0 : CRAFT_EINVAL;
    }
    if (lo < first) {
        return CRAFT_ECOMPACTED;
    }
    if (hi > last) {
        return CRAFT_EUNAVAILABLE;
    }
    return 0;
}
