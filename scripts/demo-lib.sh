# Shared by the demo scripts (sourced): the processes a demo starts, in PID[id], and their
# cleanup on exit. Expects DIR (the demo's temporary directory) to be set by the caller.
declare -A PID

demo_cleanup() {
    exec 2>/dev/null # the shell's own "Killed" notices, now that we are leaving
    # A graceful stop first, SIGKILL for any that linger.
    for id in "${!PID[@]}"; do kill -TERM "${PID[$id]}" 2>/dev/null || true; done
    for _ in $(seq 40); do
        alive=0
        for id in "${!PID[@]}"; do kill -0 "${PID[$id]}" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.05
    done
    for id in "${!PID[@]}"; do kill -9 "${PID[$id]}" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$DIR"
}

# The leader of the demo is killed with SIGKILL: no chance to flush anything.
demo_kill9() {
    local id=$1
    kill -9 "${PID[$id]}"
    wait "${PID[$id]}" 2>/dev/null || true
    unset "PID[$id]"
}

say() { printf '\n== %s\n' "$*"; }
