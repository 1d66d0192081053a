# shellcheck shell=bash
# Helpers for tests/run: logging, free ports, readiness waits, and background
# processes that are always stopped by PID when the script exits.
#
# Sourced, not executed. Expects RUN_DIR to be set before start_bg is used.

log() { printf '[tests/run %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

# now_s: seconds since the epoch with milliseconds, for phase timings.
now_s() { date +%s.%3N; }
# since START: "1.23s"
since() { awk -v a="$1" -v b="$(now_s)" 'BEGIN { printf "%.2fs", b - a }'; }

# free_port: a currently free TCP port on 127.0.0.1 (the kernel picks it).
free_port() {
    "${BASE_PY:-python3}" -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# tcp_open PORT: does something accept connections on 127.0.0.1:PORT?
tcp_open() {
    timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# ---------------------------------------------------------------------------
# Background processes.
#
# start_bg NAME LOGFILE CMD...   runs CMD in the background, stdin from /dev/null,
#                                stdout+stderr to LOGFILE; sets BG_PID. If CMD is a
#                                wrapper that execs the server (env ...), pass the
#                                server's path as BG_EXE=... for stale-run cleanup.
# bg_alive PID                   is it still running (and not a zombie)?
# stop_all_bg                    TERM every started process (newest first), KILL
#                                what is left after 10 s, and reap them.
# ---------------------------------------------------------------------------
BG_PIDS=()
declare -A BG_NAMES=()
declare -A BG_LOGS=()

start_bg() {
    local name=$1 logfile=$2
    shift 2
    "$@" </dev/null >"$logfile" 2>&1 &
    BG_PID=$!
    BG_PIDS+=("$BG_PID")
    BG_NAMES[$BG_PID]=$name
    BG_LOGS[$BG_PID]=$logfile
    # Recorded so that a later run can clean up after a run that was SIGKILLed.
    printf '%s %s\n' "$BG_PID" "$(readlink -f "${BG_EXE:-$1}")" >>"$RUN_DIR/pids"
}

bg_alive() {
    local state
    state=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ -n $state && $state != Z ]]
}

stop_all_bg() {
    local i pid deadline
    for ((i = ${#BG_PIDS[@]} - 1; i >= 0; i--)); do
        pid=${BG_PIDS[i]}
        bg_alive "$pid" && kill -TERM "$pid" 2>/dev/null
    done
    deadline=$((SECONDS + 10))
    for pid in "${BG_PIDS[@]}"; do
        while bg_alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
        if bg_alive "$pid"; then
            log "${BG_NAMES[$pid]} (pid $pid) ignored SIGTERM; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null
        fi
        wait "$pid" 2>/dev/null || true
    done
    BG_PIDS=()
}

# reap_stale_runs STATE_DIR: a previous run killed with SIGKILL could not stop its
# servers. Each run dir holds `owner` (the tests/run PID) and `pids` ("PID BINARY"
# lines). If the owner is gone, stop those PIDs that still run that same binary.
reap_stale_runs() {
    local dir owner pid bin
    for dir in "$1"/run.*; do
        [[ -f $dir/owner && -f $dir/pids ]] || continue
        owner=$(<"$dir/owner")
        if [[ -n $owner ]] && kill -0 "$owner" 2>/dev/null &&
            [[ $(readlink -f "/proc/$owner/exe" 2>/dev/null) == */bash ]]; then
            continue # that run is still going
        fi
        while read -r pid bin; do
            [[ -n $pid && -n $bin ]] || continue
            if [[ $(readlink -f "/proc/$pid/exe" 2>/dev/null) == "$bin" ]]; then
                log "stopping leftover $(basename "$bin") (pid $pid) of a killed run in $dir"
                kill -TERM "$pid" 2>/dev/null || true
            fi
        done <"$dir/pids"
        rm -f "$dir/pids"
    done
}

# prune_old_runs STATE_DIR KEEP: keep only the KEEP newest run dirs.
prune_old_runs() {
    local dir dirs=()
    for dir in "$1"/run.*; do
        [[ -d $dir ]] && dirs+=("$dir")
    done
    ((${#dirs[@]} > $2)) || return 0
    # Names start with a timestamp, so a reverse sort puts the newest first.
    printf '%s\n' "${dirs[@]}" | sort -r | tail -n +"$(($2 + 1))" | while read -r dir; do
        [[ -f $dir/pids ]] && continue # its owner may still be running: leave it
        rm -rf "$dir"
    done
    return 0
}
