#!/usr/bin/env bash
# make demo-c: a three-node replicated counter on 127.0.0.1 that survives its leader being killed.
# Starts three craft-counter servers (separate processes, real sockets, real files with fsync),
# writes through them, kills the leader with SIGKILL, keeps writing, restarts it, and shows that
# nothing acknowledged was lost. Everything it starts is stopped and removed on exit.
set -euo pipefail

BIN=${BIN:-cbuild/default}
COUNTER="$BIN/craft-counter"
[ -x "$COUNTER" ] || { echo "demo: $COUNTER is not built (run make build)" >&2; exit 1; }

DIR=$(mktemp -d /tmp/craft-demo.XXXXXX)
# shellcheck source=scripts/demo-lib.sh
source "$(dirname "$0")/demo-lib.sh"
trap demo_cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
declare -A ADDR
for id in 1 2 3; do ADDR[$id]="127.0.0.1:$(free_port)"; done
PEERS="1=${ADDR[1]},2=${ADDR[2]},3=${ADDR[3]}"
SERVERS="${ADDR[1]},${ADDR[2]},${ADDR[3]}"

start() {
    local id=$1
    "$COUNTER" serve --id "$id" --address "${ADDR[$id]}" --data "$DIR/n$id" --peers "$PEERS" \
        --heartbeat 30 --election 300 --quiet >"$DIR/n$id.out" 2>"$DIR/n$id.log" &
    PID[$id]=$!
    for _ in $(seq 100); do grep -q ready "$DIR/n$id.out" 2>/dev/null && return; sleep 0.05; done
    echo "demo: node $id did not start:" >&2; cat "$DIR/n$id.log" >&2; exit 1
}


say "starting three nodes: $PEERS (data in $DIR, fsync on)"
for id in 1 2 3; do start "$id"; done

say "100 increments through node 2 (a follower forwards to the leader)"
"$COUNTER" inc --servers "${ADDR[2]}" --count 100

LEADER_ADDR=$("$COUNTER" get --servers "$SERVERS" | sed -n 's/.*via \(.*\))/\1/p')
LEADER=""
for id in 1 2 3; do [ "${ADDR[$id]}" = "$LEADER_ADDR" ] && LEADER=$id; done
say "the leader is node $LEADER ($LEADER_ADDR): kill -9"
demo_kill9 "$LEADER"

say "100 more increments while it is down (the others elect a new leader)"
start_ms=$(date +%s%3N)
"$COUNTER" inc --servers "$SERVERS" --count 100
echo "(including the failover: $(( $(date +%s%3N) - start_ms )) ms)"

say "restarting node $LEADER from its data directory; it catches up"
start "$LEADER"
"$COUNTER" inc --servers "$SERVERS" --count 10

say "final value (read through the log, from every node's point of view)"
for id in 1 2 3; do printf 'node %s: ' "$id"; "$COUNTER" get --servers "${ADDR[$id]}"; done
VALUE=$("$COUNTER" get --servers "$SERVERS" | cut -d' ' -f1)
if [ "$VALUE" = 210 ]; then
    say "210 increments acknowledged, 210 applied: nothing lost"
else
    say "unexpected value $VALUE (expected 210)"; exit 1
fi
