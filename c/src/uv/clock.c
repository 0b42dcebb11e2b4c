/* Time for the core. The core counts time in ticks (craft_tick); this file gives it one tick per
 * heartbeat_ms that the clock says has passed, no more and no fewer.
 *
 * A repeating libuv timer is not such a clock: it fires once however late it is, so a loop that
 * stalled for two seconds (a slow apply, a paused or swapped-out process, a suspended machine)
 * counted one tick for them. The core measures its leader lease in ticks (thesis 6.4: no voter
 * that acknowledged a heartbeat grants a vote within an election timeout of receiving it), so a
 * leader back from such a stall believed the lease it had before still held while the others had
 * elected a new leader and committed writes: a lease read then returned a value already
 * overwritten. So:
 *
 *   - ticks are counted from a monotonic clock that also runs while the machine is suspended
 *     (CLOCK_BOOTTIME where it exists): tick k is due heartbeat_ms * k after the node started;
 *   - every input is preceded by craft__uv_clock_feed(), which gives the core the ticks that are
 *     due before it sees the input. A request that waited out a stall in the submit queue is
 *     therefore judged after the stall has been counted, whatever ran first after it;
 *   - the ticks missed by a long stall are made up, but at most election_ticks + 1 of them: that
 *     is enough for every lease and every election timeout to have run out (a stall longer than
 *     the lease voids it), and a stall of an hour does not make the core spin through 72000
 *     heartbeats. The rest of the stall is skipped, and logged.
 *
 * Whatever stalls the loop -- apply on the loop thread (until the state machine moves to a
 * thread of its own), a callback, the whole process -- it is the clock, read before each input,
 * that tells; nothing depends on where the stall happened. */
#include <time.h>

#include "uv/node.h"

static uint64_t clock_ns(void)
{
#ifdef CLOCK_BOOTTIME
    struct timespec ts;
    if (clock_gettime(CLOCK_BOOTTIME, &ts) == 0) {
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    }
#endif
    return uv_hrtime();
}

static uint64_t period_ns(const struct craft_uv_node *n)
{
    return (uint64_t)n->cfg.heartbeat_ms * 1000000u;
}

int craft__uv_clock_feed(struct craft_uv_node *n)
{
    if (!n->clock_started || n->core == NULL) {
        return 0;
    }
    uint64_t now = clock_ns();
    uint64_t due = (now - n->clock_origin) / period_ns(n) - n->ticks_fed;
    if (due == 0) {
        return 0;
    }
    uint64_t lease_ticks = n->election_ticks > 2 ? n->election_ticks - 2 : 1;
    if (due > lease_ticks) {
        craft__uv_log(n, CRAFT_UV_WARN,
                      "event=stall ms=%llu reason=\"the loop did not run for that long (a slow "
                      "callback or apply, a paused process, a suspended machine): the leader "
                      "lease has run out\"",
                      (unsigned long long)(due * n->cfg.heartbeat_ms));
    }
    uint64_t cap = (uint64_t)n->election_ticks + 1;
    if (due > cap) {
        n->ticks_fed += due - cap; /* skipped: the core has seen enough to time everything out */
        due = cap;
    }
    for (uint64_t k = 0; k < due; k++) {
        n->ticks_fed++;
        int rc = craft_tick(n->core);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

/* Sleeps until the next tick is due by the clock (a one-shot timer, armed again each time). */
static void arm(struct craft_uv_node *n);

static void tick_cb(uv_timer_t *t)
{
    struct craft_uv_node *n = t->data;
    if (n->dead || n->stopping) {
        return;
    }
    int rc = craft__uv_clock_feed(n);
    if (rc != 0) {
        craft__uv_fatal(n, rc, "craft_tick failed");
        return;
    }
    craft__uv_requests_tick(n);
    craft__uv_snapshot_retry(n);
    craft__uv_admin_tick(n);
    craft__uv_drive(n);
    craft__uv_publish_status(n);
    if (!n->dead && !n->stopping) {
        arm(n);
    }
}

static void arm(struct craft_uv_node *n)
{
    uint64_t next = n->clock_origin + (n->ticks_fed + 1) * period_ns(n);
    uint64_t now = clock_ns();
    uint64_t ms = next > now ? (next - now + 999999) / 1000000 : 0;
    /* libuv measures the delay from the loop's cached time, which lags behind after a long
     * callback: refresh it, or the timer fires early (harmless: it would only arm again). */
    uv_update_time(n->loop);
    uv_timer_start(&n->tick, tick_cb, ms, 0);
}

void craft__uv_clock_start(struct craft_uv_node *n)
{
    n->clock_origin = clock_ns();
    n->ticks_fed = 0;
    n->clock_started = true;
    arm(n);
}
