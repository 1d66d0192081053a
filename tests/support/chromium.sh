# shellcheck shell=bash
# Debian's chromium + chromium-driver for the dashboard test (tests/demo_dashboard.rs).
# Sourced by tests/run; needs common.sh (log, die, now_s, since) and RUN_DIR.
#
# Installed with apt-get when missing (root only). Sets CHROMIUM_BIN and CHROMEDRIVER_BIN.

ensure_chromium() {
    CHROMIUM_BIN=$(command -v chromium || true)
    CHROMEDRIVER_BIN=$(command -v chromedriver || true)
    if [[ -n $CHROMIUM_BIN && -n $CHROMEDRIVER_BIN ]]; then
        log "chromium: $("$CHROMIUM_BIN" --version 2>/dev/null | head -n1) (already installed)"
        return
    fi
    ((EUID == 0)) || die "chromium/chromedriver missing and this is not root: run 'apt-get install -y chromium chromium-driver'"
    command -v apt-get >/dev/null || die "chromium/chromedriver missing and apt-get is not available"
    local t0
    t0=$(now_s)
    log "chromium: apt-get install -y chromium chromium-driver (not installed)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver \
        >"$RUN_DIR/apt-chromium.log" 2>&1 || {
        tail -n 30 "$RUN_DIR/apt-chromium.log" >&2
        die "apt-get install chromium chromium-driver failed (log: $RUN_DIR/apt-chromium.log)"
    }
    CHROMIUM_BIN=$(command -v chromium) || die "chromium installed but not on PATH"
    CHROMEDRIVER_BIN=$(command -v chromedriver) || die "chromedriver installed but not on PATH"
    log "chromium: installed in $(since "$t0"): $("$CHROMIUM_BIN" --version 2>/dev/null | head -n1)"
}
