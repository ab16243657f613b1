#!/usr/bin/env bash
# Runs every .slt file (or the given ones) against a throwaway PostgreSQL 15 on a free port, to
# prove the expected outputs are PostgreSQL's. Part of scripts/test.
# Usage: sql-tests/run-postgres.sh SQL_TESTS_BINARY [FILES...]
set -euo pipefail
bin="$1"; shift
source "$(dirname "$0")/throwaway-postgres.sh"
start_postgres
"$bin" --external "$pg_url" "$@"
