#!/usr/bin/env bash
# Runs every .slt file (or the given ones) against a throwaway PostgreSQL 15 on a free port, to
# prove the expected outputs are PostgreSQL's. Part of scripts/test.
# Usage: sql-tests/run-postgres.sh SQL_TESTS_BINARY [FILES...]
set -euo pipefail
bin="$1"; shift
pgbin="${PGBIN:-/usr/lib/postgresql/15/bin}"
if [ ! -x "$pgbin/initdb" ]; then
  echo "run-postgres.sh: PostgreSQL 15 not found in $pgbin (set PGBIN)" >&2
  exit 1
fi
dir="$(mktemp -d /tmp/raftable-pg.XXXXXX)"
chmod 755 "$dir"
# initdb and postgres refuse to run as root: use the postgres user then.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; fi
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
cleanup() { as_pg "$pgbin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$dir"; }
trap cleanup EXIT
as_pg "$pgbin/initdb" -D "$dir/data" -A trust -U postgres --no-sync >/dev/null
as_pg "$pgbin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
  -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c TimeZone=UTC -c fsync=off" start >/dev/null
"$bin" --external "postgres://postgres@127.0.0.1:$port/postgres" "$@"
