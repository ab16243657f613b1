# Sourced by run-postgres.sh and run-differential.sh: `start_postgres` starts a throwaway
# PostgreSQL 15 (C locale, UTC, no fsync) in a fresh temp dir on a free port, sets `pg_url` and
# `work_dir`, and stops it (removing the dir) when the script exits. `on_exit` adds more clean-up.
pgbin="${PGBIN:-/usr/lib/postgresql/15/bin}"
exit_hooks=()
on_exit() { exit_hooks+=("$1"); }
run_exit_hooks() { local h; for h in "${exit_hooks[@]}"; do eval "$h" || true; done; }
trap run_exit_hooks EXIT

# A free loopback port.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# initdb and postgres refuse to run as root: use the postgres user then.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

start_postgres() {
  if [ ! -x "$pgbin/initdb" ]; then
    echo "$0: PostgreSQL 15 not found in $pgbin (set PGBIN)" >&2
    exit 1
  fi
  work_dir="$(mktemp -d /tmp/raftable-pg.XXXXXX)"
  chmod 755 "$work_dir"
  if [ "$(id -u)" = 0 ]; then chown postgres "$work_dir"; fi
  on_exit "as_pg '$pgbin/pg_ctl' -D '$work_dir/data' -m immediate stop >/dev/null 2>&1; rm -rf '$work_dir'"
  local port
  port="$(free_port)"
  as_pg "$pgbin/initdb" -D "$work_dir/data" -A trust -U postgres --no-sync --locale=C --encoding=UTF8 >/dev/null
  as_pg "$pgbin/pg_ctl" -D "$work_dir/data" -l "$work_dir/server.log" -w \
    -o "-p $port -k $work_dir -c listen_addresses=127.0.0.1 -c TimeZone=UTC -c fsync=off" start >/dev/null
  pg_url="postgres://postgres@127.0.0.1:$port/postgres"
}
