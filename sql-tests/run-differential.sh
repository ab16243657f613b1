#!/usr/bin/env bash
# The differential test: seeded random queries on a throwaway PostgreSQL 15 and on a 1-node
# raftable (a real node process on free loopback ports), compared by sql-diff. `--short` is
# scripts/test's run: seed 1, 1,000 queries, leaving out the features listed in
# sql-tests/known-differences (each a documented difference in docs/sql.md).
# Usage: sql-tests/run-differential.sh TARGET_DIR [--short | sql-diff args, e.g. --seed 7 --queries 100000]
set -euo pipefail
target="$1"; shift
if [[ "${1:-}" == --short ]]; then
  known="$(sed 's/#.*//' "$(dirname "$0")/known-differences" | xargs | tr ' ' ',')"
  set -- --seed 1 --queries 1000 --exclude "$known"
fi
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
