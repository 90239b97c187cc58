# A throw-away PostgreSQL server for the distributed-search tests (sourced by .ci/run).
#   start_postgres   installs the Debian package if missing, starts a cluster in a temporary
#                    folder on a free local port, exports GOCOPT_TEST_POSTGRES_URL
#   stop_postgres    stops it and removes the folder (.ci/run traps it on exit, failure included)

start_postgres() {
    if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
        echo "installing PostgreSQL (Debian package)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    fi
    PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
    PG_DIR=$(mktemp -d /tmp/gocopt-postgres.XXXXXX)
    PG_AS=()
    if [ "$(id -u)" = 0 ]; then  # the server refuses to run as root
        chown postgres "$PG_DIR"
        PG_AS=(runuser -u postgres --)
    fi
    local port password
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    password=$(python3 -c 'import secrets; print(secrets.token_hex(12))')
    echo "$password" > "$PG_DIR/password"
    [ "$(id -u)" = 0 ] && chown postgres "$PG_DIR/password"
    "${PG_AS[@]}" "$PG_BIN/initdb" -D "$PG_DIR/data" -U gocopt --auth=scram-sha-256 \
        --pwfile="$PG_DIR/password" >"$PG_DIR/initdb.log" 2>&1 || { cat "$PG_DIR/initdb.log"; return 1; }
    "${PG_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w \
        -o "-p $port -k $PG_DIR -c listen_addresses=127.0.0.1" start >/dev/null \
        || { cat "$PG_DIR/server.log"; return 1; }
    export GOCOPT_TEST_POSTGRES_URL="postgresql://gocopt:$password@127.0.0.1:$port/postgres"
    echo "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (data in $PG_DIR)"
}

stop_postgres() {
    if [ -n "${PG_DIR:-}" ] && [ -d "$PG_DIR/data" ]; then
        "${PG_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
        rm -rf "$PG_DIR"
    fi
}
