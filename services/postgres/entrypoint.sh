#!/bin/sh
# First start: set up the role and database from POSTGRES_USER,
# POSTGRES_PASSWORD, POSTGRES_DB in single-user mode (no TCP listener, so the
# health check cannot pass early), on the cluster the image carries in
# $PGDATA; a marker in $PGDATA makes later starts (restarts) skip it. Then run
# the server in the foreground as the postgres user, listening on all
# interfaces of the container.
set -eu

: "${POSTGRES_USER:=chat}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "pg-entrypoint: POSTGRES_PASSWORD must be set" >&2
    exit 1
fi
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    echo "pg-entrypoint: $PGDATA holds no cluster (an empty directory mounted over the image's?)" >&2
    echo "hint: mount nothing there, or a named volume (the engine fills it from the image)" >&2
    exit 1
fi

as_pg() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }
ident() { printf '"%s"' "$(printf '%s' "$1" | sed 's/"/""/g')"; }
literal() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/''/g")"; }

mkdir -p /run/postgresql
chown postgres:postgres /run/postgresql

marker="$PGDATA/.pg-entrypoint-setup"
if [ ! -e "$marker" ]; then
    echo "pg-entrypoint: setting up the role and database"
    user=$(ident "$POSTGRES_USER")
    pass=$(literal "$POSTGRES_PASSWORD")
    {
        # the image's cluster has the roles postgres and chat and the database chat
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
    as_pg touch "$marker"
    echo "pg-entrypoint: set up (db=$POSTGRES_DB user=$POSTGRES_USER)"
fi

exec setpriv --reuid=postgres --regid=postgres --init-groups \
    postgres -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories=/run/postgresql
