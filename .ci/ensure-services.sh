#!/usr/bin/env bash
# Start PostgreSQL and Redis when they are installed but not answering (make test, .ci/run).
set -euo pipefail

pg_up() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }

if [ -z "${TEST_DATABASE_URL:-}" ] && ! pg_up; then
  if ls /etc/postgresql/*/main >/dev/null 2>&1; then
    echo "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    for _ in $(seq 1 50); do pg_up && break; sleep 0.2; done
  fi
  pg_up || { echo "PostgreSQL is not running on 127.0.0.1:5432 (install it, or set TEST_DATABASE_URL)" >&2; exit 1; }
fi

if [ -z "${TEST_REDIS_URL:-}" ] && ! redis_up; then
  if command -v redis-server >/dev/null; then
    echo "starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
    for _ in $(seq 1 50); do redis_up && break; sleep 0.1; done
  fi
  redis_up || { echo "Redis is not running on 127.0.0.1:6379 (install redis-server, or set TEST_REDIS_URL)" >&2; exit 1; }
fi

# A PostgreSQL installed elsewhere may ask for a password on 127.0.0.1: say so plainly.
if [ -z "${TEST_DATABASE_URL:-}" ] && ! psql -h 127.0.0.1 -U postgres -Atc "select 1" >/dev/null 2>&1; then
  echo "PostgreSQL answers but user 'postgres' cannot log in without a password on 127.0.0.1;" >&2
  echo "set TEST_DATABASE_URL=postgresql://USER:PASSWORD@127.0.0.1:5432/postgres" >&2
  exit 1
fi
