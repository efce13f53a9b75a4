#!/bin/sh
# coder-testenv's stand-in for the official postgres image's docker-entrypoint.sh, run by
# busybox sh as the image's user (999). Same contract for what the platform uses:
#   POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE (required unless POSTGRES_HOST_AUTH_METHOD=trust),
#   POSTGRES_USER (default postgres), POSTGRES_DB (default $POSTGRES_USER), PGDATA,
#   POSTGRES_INITDB_ARGS, POSTGRES_HOST_AUTH_METHOD (default scram-sha-256).
# The first start (no $PGDATA/PG_VERSION) runs initdb (trust on the local socket, the host
# method for TCP from any address, listen_addresses '*') and creates POSTGRES_DB; every start
# then execs the command (default `postgres`), which logs to stderr. Not supported:
# /docker-entrypoint-initdb.d scripts, running as root.
set -eu

# file_env NAME: NAME, or the contents of the file named by NAME_FILE (not both).
file_env() {
	eval "value=\${$1:-}"
	eval "file=\${$1_FILE:-}"
	if [ -n "$value" ] && [ -n "$file" ]; then
		echo "error: both $1 and $1_FILE are set (but are exclusive)" >&2
		exit 1
	fi
	if [ -n "$file" ]; then
		value="$(cat "$file")"
	fi
	export "$1=$value"
	unset "$1_FILE"
}

init_database() {
	auth="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"
	if [ -z "$POSTGRES_PASSWORD" ] && [ "$auth" != trust ]; then
		echo "error: the database is not initialised and no superuser password is set;" \
			"set POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE" >&2
		exit 1
	fi
	case "$POSTGRES_DB" in
	*'
'*)
		echo "error: POSTGRES_DB must not contain a line break" >&2
		exit 1
		;;
	esac
	pwfile=""
	if [ -n "$POSTGRES_PASSWORD" ]; then
		pwfile="$(mktemp)"
		trap 'rm -f "$pwfile"' EXIT
		printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
	fi
	# shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of arguments
	initdb --username="$POSTGRES_USER" ${pwfile:+--pwfile="$pwfile"} --encoding=UTF8 --no-locale \
		--auth-local=trust --auth-host="$auth" ${POSTGRES_INITDB_ARGS:-} >&2
	if [ -n "$pwfile" ]; then
		rm -f "$pwfile"
	fi
	printf '\nhost all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"
	printf "\nlisten_addresses = '*'\n" >>"$PGDATA/postgresql.conf"
	if [ "$POSTGRES_DB" != postgres ]; then
		ident="$(printf '%s' "$POSTGRES_DB" | sed 's/"/""/g')"
		# Single-user mode exits 0 after a failed statement: its output tells.
		output="$(printf 'CREATE DATABASE "%s";\n' "$ident" |
			postgres --single -D "$PGDATA" -c log_min_messages=warning postgres 2>&1)"
		printf '%s\n' "$output" >&2
		case "$output" in
		*ERROR:* | *FATAL:*) exit 1 ;;
		esac
	fi
	echo "coder-testenv postgres stand-in: init process complete; ready for start up." >&2
}

case "${1:-}" in
-*) set -- postgres "$@" ;;
esac

if [ "${1:-}" = postgres ]; then
	file_env POSTGRES_PASSWORD
	export POSTGRES_USER="${POSTGRES_USER:-postgres}"
	export POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"
	export PGDATA="${PGDATA:-/var/lib/postgresql/data}"
	mkdir -p "$PGDATA"
	chmod 00700 "$PGDATA" 2>/dev/null || :
	if [ ! -s "$PGDATA/PG_VERSION" ]; then
		init_database
	fi
fi

exec "$@"
