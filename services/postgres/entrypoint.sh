#!/bin/sh
# First start: copy the template cluster (initialised at build time) into
# $PGDATA and set up the role and database from POSTGRES_USER,
# POSTGRES_PASSWORD, POSTGRES_DB in single-user mode (no TCP listener, so the
# health check cannot pass early). Then run the server in the foreground as
# the postgres user, listening on all interfaces of the container.
set -eu

: "${POSTGRES_USER:=chat}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "pg-entrypoint: POSTGRES_PASSWORD must be set" >&2
    exit 1
fi

as_pg() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }
ident() { printf '"%s"' "$(printf '%s' "$1" | sed 's/"/""/g')"; }
literal() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/''/g")"; }

mkdir -p "$PGDATA" /run/postgresql
chown postgres:postgres "$PGDATA" /run/postgresql
chmod 0700 "$PGDATA"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    echo "pg-entrypoint: initialising cluster in $PGDATA"
    cp -a /var/lib/postgresql/template/. "$PGDATA"/
    user=$(ident "$POSTGRES_USER")
    pass=$(literal "$POSTGRES_PASSWORD")
    {
        # the template has the roles postgres and chat and the database chat
        case "$POSTGRES_USER" in
            postgres|chat) echo "ALTER ROLE $user PASSWORD $pass;" ;;
            *) echo "CREATE ROLE $user LOGIN SUPERUSER PASSWORD $pass;" ;;
        esac
        case "$POSTGRES_DB" in
            postgres) ;;
            chat) [ "$POSTGRES_USER" = chat ] || echo "ALTER DATABASE chat OWNER TO $user;" ;;
            *) echo "CREATE DATABASE $(ident "$POSTGRES_DB") OWNER $user;" ;;
        esac
    } | as_pg postgres --single -D "$PGDATA" postgres >/dev/null
    echo "pg-entrypoint: cluster initialised (db=$POSTGRES_DB user=$POSTGRES_USER)"
fi

exec setpriv --reuid=postgres --regid=postgres --init-groups \
    postgres -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories=/run/postgresql
