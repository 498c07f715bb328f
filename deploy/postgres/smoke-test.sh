#!/usr/bin/env bash
# Proves that PostgreSQL on 127.0.0.1 works for the application's role: logs in over
# TCP with the password, writes and reads back a row in a scratch table, drops it.
set -euo pipefail
# shellcheck source=deploy/postgres/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

token="smoke-$RANDOM$RANDOM"
out="$(PGPASSWORD="$PG_APP_PASSWORD" psql -X -q -At -v ON_ERROR_STOP=1 \
  -h 127.0.0.1 -p "$PG_PORT" -U "$PG_APP_USER" -d "$PG_APP_DB" <<SQL
CREATE TABLE ci_smoke_$$ (id serial PRIMARY KEY, token text NOT NULL);
INSERT INTO ci_smoke_$$ (token) VALUES ('$token');
SELECT current_user || '|' || current_database() || '|' || token || '|' || current_setting('server_version_num')
  FROM ci_smoke_$$;
DROP TABLE ci_smoke_$$;
SQL
)"
IFS='|' read -r user db got version <<<"$out"
[[ "$user" == "$PG_APP_USER" && "$db" == "$PG_APP_DB" && "$got" == "$token" ]] \
  || pg_die "unexpected answer: '$out'"
pg_log "smoke test passed: $user@$db wrote and read back a row (server_version_num $version)"
