# shellcheck shell=bash
# ensure_postgres: PostgreSQL reachable at 127.0.0.1:5432 with postgres/postgres.
#
# Uses a server that is already running (and never stops it). Otherwise starts the
# Debian cluster with pg_ctlcluster, installing the `postgresql` package first if
# needed (root only). A cluster this script started is stopped again on exit
# (PG_STARTED_CLUSTER), unless TESTRUN_KEEP_POSTGRES=1.
#
# Out: PG_URL, PG_STARTED_CLUSTER ("" or "VERSION main").

PG_HOST=127.0.0.1
PG_PORT=5432
PG_CLUSTER=main # the Debian cluster to start when nothing listens on PG_PORT
PG_URL=postgres://postgres:postgres@$PG_HOST:$PG_PORT/postgres
PG_STARTED_CLUSTER=

pg_ready() {
    if command -v pg_isready >/dev/null; then
        pg_isready -q -h "$PG_HOST" -p "$PG_PORT" -t 2
    else
        tcp_open "$PG_PORT"
    fi
}

_pg_as_postgres() { # run a command as the postgres OS user
    if command -v runuser >/dev/null; then
        runuser -u postgres -- "$@"
    else
        su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
    fi
}

_pg_install() {
    ((EUID == 0)) || die "PostgreSQL is not installed and this is not root: run 'apt-get install -y postgresql' (or start a server on $PG_HOST:$PG_PORT)"
    command -v apt-get >/dev/null || die "PostgreSQL is not installed and apt-get is not available"
    log "postgres: apt-get install -y postgresql (not installed)"
    local t0
    t0=$(now_s)
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >"$RUN_DIR/apt-postgresql.log" 2>&1 || {
        tail -n 30 "$RUN_DIR/apt-postgresql.log" >&2
        die "apt-get install postgresql failed (log: $RUN_DIR/apt-postgresql.log)"
    }
    log "postgres: installed in $(since "$t0")"
}

ensure_postgres() {
    local t0 ver i
    t0=$(now_s)
    if pg_ready; then
        log "postgres: already running on $PG_HOST:$PG_PORT"
    else
        if ! command -v pg_ctlcluster >/dev/null || ! compgen -G "/etc/postgresql/*/$PG_CLUSTER" >/dev/null; then
            _pg_install
        fi
        # The package's postinst may already have started the new cluster.
        if ! pg_ready; then
            ((EUID == 0)) || die "PostgreSQL is not running on $PG_HOST:$PG_PORT and this is not root to start it"
            ver=$(cd /etc/postgresql && for d in */"$PG_CLUSTER"; do echo "${d%%/*}"; done | sort -V | tail -n 1)
            [[ -n $ver ]] || die "no cluster under /etc/postgresql"
            log "postgres: starting cluster $ver/$PG_CLUSTER"
            pg_ctlcluster --skip-systemctl-redirect "$ver" "$PG_CLUSTER" start ||
                die "pg_ctlcluster $ver $PG_CLUSTER start failed (log: /var/log/postgresql/postgresql-$ver-$PG_CLUSTER.log)"
            PG_STARTED_CLUSTER="$ver $PG_CLUSTER"
        fi
        for ((i = 0; i < 60; i++)); do
            pg_ready && break
            sleep 0.5
        done
        pg_ready || die "PostgreSQL did not become ready on $PG_HOST:$PG_PORT within 30 s (see /var/log/postgresql/)"
        log "postgres: ready in $(since "$t0")"
    fi

    # Make sure the URL's credentials work (a fresh Debian install uses scram over TCP
    # and the postgres role has no password).
    if command -v psql >/dev/null && ! PGCONNECT_TIMEOUT=5 psql "$PG_URL" -Atqc 'select 1' >/dev/null 2>&1; then
        if ((EUID == 0)) && id postgres >/dev/null 2>&1; then
            log "postgres: setting the postgres role's password to 'postgres'"
            (cd / && _pg_as_postgres psql -q -p "$PG_PORT" -c "ALTER USER postgres PASSWORD 'postgres'") >/dev/null ||
                die "could not set the postgres password"
        fi
        PGCONNECT_TIMEOUT=5 psql "$PG_URL" -Atqc 'select 1' >/dev/null ||
            die "cannot connect to $PG_URL"
    fi
}

stop_postgres_if_started() {
    [[ -n $PG_STARTED_CLUSTER ]] || return 0
    if [[ ${TESTRUN_KEEP_POSTGRES:-} == 1 ]]; then
        log "postgres: leaving cluster $PG_STARTED_CLUSTER running (TESTRUN_KEEP_POSTGRES=1)"
        return 0
    fi
    log "postgres: stopping cluster $PG_STARTED_CLUSTER (this run started it)"
    # shellcheck disable=SC2086
    pg_ctlcluster --skip-systemctl-redirect $PG_STARTED_CLUSTER stop -m fast || true
    PG_STARTED_CLUSTER=
}
