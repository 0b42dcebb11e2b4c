#!/usr/bin/env bash
# make demo: a three-node replicated key-value service written in Python
# (examples/python/kv.py on craft), on 127.0.0.1, that survives its leader being killed.
# Starts three server processes (real sockets, real files with fsync), increments a counter
# through them, kills the leader with SIGKILL while a client is connected to every node, keeps
# writing, restarts it on the same ports, and shows that nothing acknowledged was lost and that
# every node serves the same value. The servers authenticate each other with a cluster secret
# generated for the run (docs/security.md). Everything it starts is stopped and removed on exit.
set -euo pipefail

PY=${PY:-.venv/bin/python}
KV=examples/python/kv.py
"$PY" -c 'import craft' 2>/dev/null || { echo "demo: craft is not installed in $PY (make python-install)" >&2; exit 1; }

DIR=$(mktemp -d /tmp/craft-demo.XXXXXX)
# shellcheck source=scripts/demo-lib.sh
source "$(dirname "$0")/demo-lib.sh"
trap demo_cleanup EXIT

# Two free port ranges, so that the demo never collides with anything on the machine.
free_base() {
    "$PY" - <<'PYEOF'
import random, socket
for _ in range(200):
    base = random.randrange(20000, 60000, 10)
    try:
        socks = []
        for i in range(1, 4):
            s = socket.socket(); s.bind(("127.0.0.1", base + i)); socks.append(s)
        for s in socks: s.close()
        print(base); break
    except OSError:
        for s in socks: s.close()
PYEOF
}
RAFT=$(free_base)
CLIENT=$(free_base)
[ "$RAFT" != "$CLIENT" ] || CLIENT=$((RAFT + 5))

# The servers authenticate each other with a cluster secret (TLS 1.3, docs/security.md),
# generated for this run: what a first deployment should copy.
SECRET="$DIR/cluster.secret"
"$PY" "$KV" keygen "$SECRET" >/dev/null

start() {
    local id=$1
    "$PY" "$KV" serve "$id" --data "$DIR" --raft-base "$RAFT" --client-base "$CLIENT" \
        --secret-file "$SECRET" >"$DIR/n$id.out" 2>&1 &
    PID[$id]=$!
}
wait_serving() {
    local id=$1
    for _ in $(seq 200); do grep -q "serving clients" "$DIR/n$id.out" 2>/dev/null && return; sleep 0.05; done
    echo "demo: node $id did not start:" >&2; cat "$DIR/n$id.out" >&2; exit 1
}
kv() { "$PY" "$KV" "$@"; }

say "starting three Python kv servers (Raft on 127.0.0.1:$((RAFT + 1))-$((RAFT + 3)), data in $DIR, fsync on, TLS 1.3 between them with the cluster secret generated in $SECRET)"
for id in 1 2 3; do start "$id"; done
for id in 1 2 3; do wait_serving "$id"; done
for id in 1 2 3; do kv status --port $((CLIENT + id)); done

say "50 increments of 'visits' through node 2, and a set through node 3"
for _ in $(seq 50); do kv incr --port $((CLIENT + 2)) visits >/dev/null; done
kv set --port $((CLIENT + 3)) colour blue

say "a client connected to every node, kept open through the kill and the restart"
declare -A CONN
for id in 1 2 3; do
    exec {fd}<>"/dev/tcp/127.0.0.1/$((CLIENT + id))"
    echo status >&"$fd"
    read -r -t 10 line <&"$fd" || { echo "demo: node $id did not answer" >&2; exit 1; }
    echo "client on node $id: $line"
    CONN[$id]=$fd
done

LEADER=$(kv status --port $((CLIENT + 1)) | sed -n 's/.*leader=\([0-9]*\).*/\1/p')
say "the leader is node $LEADER: kill -9"
demo_kill9 "$LEADER"

SURVIVOR=1; [ "$LEADER" = 1 ] && SURVIVOR=2
say "50 more increments through node $SURVIVOR while node $LEADER is down"
t0=$(date +%s%3N)
for _ in $(seq 50); do kv incr --port $((CLIENT + SURVIVOR)) visits >/dev/null; done
echo "(50 increments, one client process each, in $(( $(date +%s%3N) - t0 )) ms, failover included)"

say "restarting node $LEADER from its data directory, on the same ports (clients still connected)"
start "$LEADER"
wait_serving "$LEADER"
for id in "${!CONN[@]}"; do fd=${CONN[$id]}; exec {fd}>&-; done

say "every node, read linearizably"
for id in 1 2 3; do
    printf 'node %s: visits=%s colour=%s\n' "$id" "$(kv get --port $((CLIENT + id)) visits)" \
        "$(kv get --port $((CLIENT + id)) colour)"
done
VALUE=$(kv get --port $((CLIENT + LEADER)) visits)
if [ "$VALUE" = 100 ]; then
    say "100 increments acknowledged, 100 applied on every node: nothing lost"
else
    say "unexpected value $VALUE (expected 100)"; exit 1
fi
