#!/usr/bin/env bash
# The differential test: seeded random queries on a throwaway PostgreSQL 15 and on a 1-node
# raftable (a real node process on free loopback ports), compared by sql-diff. The short run of
# scripts/test leaves out the features listed in KNOWN_DIFFERENCES (each one is a documented
# difference in docs/sql.md); pass --exclude yourself to change that.
# Usage: sql-tests/run-differential.sh TARGET_DIR [sql-diff args, e.g. --seed 7 --queries 100000]
set -euo pipefail
target="$1"; shift
source "$(dirname "$0")/throwaway-postgres.sh"
start_postgres

node_dir="$work_dir/raftable"
mkdir -p "$node_dir"
pg_port="$(free_port)"
rpc_port="$(free_port)"
"$target/raftable" start --node-id 1 --data-dir "$node_dir/data" --rpc-addr "127.0.0.1:$rpc_port" \
  --pg-addr "127.0.0.1:$pg_port" >"$node_dir/node.log" 2>&1 &
node_pid=$!
on_exit "kill $node_pid 2>/dev/null; wait $node_pid 2>/dev/null"
raftable_url="postgres://postgres@127.0.0.1:$pg_port/raftable"
deadline=$((SECONDS + 120))
until "$pgbin/psql" "$raftable_url" -qAtc 'SELECT 1' >/dev/null 2>&1; do
  if ((SECONDS > deadline)) || ! kill -0 "$node_pid" 2>/dev/null; then
    echo "run-differential.sh: the raftable node did not come up; its log:" >&2
    cat "$node_dir/node.log" >&2
    exit 1
  fi
  sleep 0.2
done

"$target/sql-diff" --postgres "$pg_url" --raftable "$raftable_url" "$@"
