#!/usr/bin/env bash
# Starts a 3-node raftable cluster by hand with `raftable start`, in ./cluster-data.
# Run: cargo build --release && examples/start-cluster.sh   (Ctrl-C stops all three nodes)
set -euo pipefail
bin="${RAFTABLE_BIN:-target/release/raftable}"
dir="${1:-./cluster-data}"
mkdir -p "$dir"
pids=()
trap 'kill -TERM "${pids[@]}" 2>/dev/null; wait' INT TERM EXIT
for i in 1 2 3; do
  args=(start --node-id "$i" --data-dir "$dir/node$i" --rpc-addr "127.0.0.1:$((7000 + i))" --pg-addr "127.0.0.1:$((5432 + i))")
  # A fresh node 2 or 3 joins through node 1; a restarted node needs no --join.
  if [ "$i" -gt 1 ] && [ ! -d "$dir/node$i/db" ]; then args+=(--join 127.0.0.1:7001); fi
  "$bin" "${args[@]}" 2>>"$dir/node$i.log" &
  pids+=($!)
  sleep 1 # let node 1 bootstrap before the others join through it (they also retry)
done
echo "3 nodes running: psql -h 127.0.0.1 -p 5433 (or 5434, 5435); logs in $dir/node*.log; Ctrl-C to stop"
wait
