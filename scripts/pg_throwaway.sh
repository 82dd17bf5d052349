#!/usr/bin/env bash
# A throwaway PostgreSQL server on 127.0.0.1 for tests and local sweeps.
#
#   bash scripts/pg_throwaway.sh start   # start (or reuse) it; prints the URL on stdout
#   bash scripts/pg_throwaway.sh url     # print the URL of the running server
#   bash scripts/pg_throwaway.sh env     # print `export RESNET_ABLATE_PG_URL=...` (for eval)
#   bash scripts/pg_throwaway.sh status  # exit 0 if running
#   bash scripts/pg_throwaway.sh stop    # stop it and delete its files (no-op if not running)
#
# The cluster lives in a fresh mktemp dir under ${TMPDIR:-/tmp}, owned by the
# `postgres` user when run as root (initdb refuses root), and listens only on
# 127.0.0.1 on a free port, with its unix socket inside that dir.  It never
# touches a system cluster (/var/lib/postgresql, port 5432, /var/run/postgresql).
# Auth: scram-sha-256 password on TCP, trust on its private unix socket.
# The URL is postgresql://resnet_ablate:<random>@127.0.0.1:<port>/resnet_ablate
#
# Which server `stop`/`url` act on is recorded in a state file, by default one
# per repo checkout; set RESNET_ABLATE_PG_STATE=/some/file to keep several apart
# (scripts/test.sh does, so it never stops a server you started by hand).
#
# If Debian's PostgreSQL binaries are missing, `start` runs `apt-get update`
# and `apt-get install -y postgresql` (needs root).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TMPBASE="${TMPDIR:-/tmp}"
REPO_KEY="$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)"
STATE="${RESNET_ABLATE_PG_STATE:-$TMPBASE/resnet-ablate-pg-$REPO_KEY.state}"
DB_NAME="resnet_ablate"
DB_USER="resnet_ablate"

log() { printf '[pg] %s\n' "$*" >&2; }
die() { printf '[pg] ERROR: %s\n' "$*" >&2; exit 1; }

find_bindir() {
    # Highest installed major version that has the server binaries.
    local d
    for d in /usr/lib/postgresql/*/bin; do
        [[ -x "$d/initdb" && -x "$d/pg_ctl" && -x "$d/postgres" ]] && echo "$d"
    done | sort -V | tail -n 1
}

ensure_binaries() {
    BIN="$(find_bindir)"
    if [[ -z "$BIN" ]]; then
        [[ $EUID -eq 0 ]] || die "PostgreSQL binaries not found under /usr/lib/postgresql/*/bin and not root to apt-get install them"
        command -v apt-get >/dev/null || die "PostgreSQL binaries not found and no apt-get"
        local t0=$SECONDS
        log "PostgreSQL not installed: apt-get update && apt-get install -y postgresql"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2 || die "apt-get update failed"
        apt-get install -y -qq --no-install-recommends postgresql >&2 || die "apt-get install postgresql failed"
        log "installed PostgreSQL in $((SECONDS - t0))s"
        BIN="$(find_bindir)"
        [[ -n "$BIN" ]] || die "PostgreSQL installed but no initdb under /usr/lib/postgresql/*/bin"
    fi
}

# Run a command as the cluster owner (postgres when we are root, else ourselves).
as_owner() {
    if [[ $EUID -eq 0 ]]; then
        (cd / && runuser -u postgres -- "$@")
    else
        (cd / && "$@")
    fi
}

read_state() {
    # Sets PGDIR, PORT, URL, BIN from the state file; returns 1 if there is none.
    [[ -f "$STATE" ]] || return 1
    PGDIR="" PORT="" URL="" BIN=""
    # shellcheck disable=SC1090
    source "$STATE"
    [[ -n "$PGDIR" && -n "$PORT" && -n "$URL" && -n "$BIN" ]]
}

is_running() {
    [[ -n "${PGDIR:-}" && -d "$PGDIR/data" && -x "${BIN:-}/pg_ctl" ]] || return 1
    # pg_isready, not just `pg_ctl status`: a killed postmaster can linger as a
    # zombie that still passes a kill -0 check.
    as_owner "$BIN/pg_ctl" -D "$PGDIR/data" status >/dev/null 2>&1 &&
        "$BIN/pg_isready" -q -t 5 -h "$PGDIR/sock" -p "$PORT" -d "$DB_NAME" -U "$DB_USER" >/dev/null 2>&1
}

free_port() {
    python3 - <<'EOF'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
}

cleanup_dir() {
    # Stop whatever runs in $1 (if anything) and remove it.
    local dir="$1"
    [[ -n "$dir" && -d "$dir" ]] || return 0
    case "$dir" in "$TMPBASE"/resnet-ablate-pg.*) ;; *) die "refusing to remove unexpected dir $dir" ;; esac
    if [[ -f "$dir/data/postmaster.pid" && -n "${BIN:-}" ]]; then
        as_owner "$BIN/pg_ctl" -D "$dir/data" -m fast -w -t 20 stop >/dev/null 2>&1 ||
            as_owner "$BIN/pg_ctl" -D "$dir/data" -m immediate -w -t 10 stop >/dev/null 2>&1 || true
        if [[ -f "$dir/data/postmaster.pid" ]]; then
            local pid
            pid="$(head -n 1 "$dir/data/postmaster.pid" 2>/dev/null || true)"
            # Only kill it if it really is a postgres running on this data dir.
            if [[ "$pid" =~ ^[0-9]+$ ]] && tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -- "$dir/data"; then
                kill -KILL "$pid" 2>/dev/null || true
            fi
        fi
    fi
    rm -rf "$dir"
}

cmd_start() {
    if read_state; then
        if is_running; then
            log "already running on 127.0.0.1:$PORT ($PGDIR)"
            echo "$URL"
            return 0
        fi
        log "stale state file $STATE (server not running); cleaning up"
        cleanup_dir "$PGDIR"
        rm -f "$STATE"
    fi

    local t0=$SECONDS
    ensure_binaries
    if [[ $EUID -eq 0 ]] && ! id postgres >/dev/null 2>&1; then
        log "creating system user postgres"
        useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
    fi

    PGDIR="$(mktemp -d "$TMPBASE/resnet-ablate-pg.XXXXXXXX")"
    chmod 755 "$PGDIR"
    mkdir -p "$PGDIR/sock"
    local password
    password="$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
    printf '%s\n' "$password" >"$PGDIR/pwfile"
    chmod 600 "$PGDIR/pwfile"
    [[ $EUID -eq 0 ]] && chown -R postgres: "$PGDIR"

    log "initdb ($("$BIN/postgres" --version)) in $PGDIR"
    if ! as_owner "$BIN/initdb" -D "$PGDIR/data" -U "$DB_USER" --pwfile="$PGDIR/pwfile" \
        --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --no-locale --no-instructions \
        >"$PGDIR/initdb.log" 2>&1; then
        cat "$PGDIR/initdb.log" >&2
        cleanup_dir "$PGDIR"
        die "initdb failed"
    fi
    rm -f "$PGDIR/pwfile"

    local attempt started=0
    for attempt in 1 2 3 4 5; do
        PORT="$(free_port)"
        # fsync & co. off: a throwaway test server, speed matters more than durability.
        if as_owner "$BIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/server.log" -w -t 30 start \
            -o "-c listen_addresses=127.0.0.1 -c port=$PORT -c unix_socket_directories=$PGDIR/sock -c max_connections=200 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
            >/dev/null 2>&1; then
            started=1
            break
        fi
        log "start on port $PORT failed (attempt $attempt); retrying"
        tail -n 5 "$PGDIR/server.log" >&2 || true
    done
    if [[ $started -ne 1 ]]; then
        tail -n 30 "$PGDIR/server.log" >&2 || true
        cleanup_dir "$PGDIR"
        die "could not start PostgreSQL"
    fi

    if ! as_owner "$BIN/createdb" -h "$PGDIR/sock" -p "$PORT" -U "$DB_USER" "$DB_NAME" >&2; then
        cleanup_dir "$PGDIR"
        die "createdb failed"
    fi

    URL="postgresql://$DB_USER:$password@127.0.0.1:$PORT/$DB_NAME"
    umask 077
    cat >"$STATE" <<EOF
PGDIR='$PGDIR'
PORT='$PORT'
URL='$URL'
BIN='$BIN'
EOF
    printf "export RESNET_ABLATE_PG_URL='%s'\n" "$URL" >"$PGDIR/env"
    log "running on 127.0.0.1:$PORT, database $DB_NAME in $((SECONDS - t0))s; state $STATE"
    echo "$URL"
}

cmd_stop() {
    if ! read_state; then
        log "not running (no state file $STATE)"
        rm -f "$STATE"
        return 0
    fi
    cleanup_dir "$PGDIR"
    rm -f "$STATE"
    log "stopped and removed $PGDIR"
}

cmd_url() {
    if ! { read_state && is_running; }; then
        die "not running (start it with: bash scripts/pg_throwaway.sh start)"
    fi
    echo "$URL"
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    url) cmd_url ;;
    env) cmd_url >/dev/null && printf "export RESNET_ABLATE_PG_URL='%s'\n" "$URL" ;;
    status)
        if read_state && is_running; then log "running on 127.0.0.1:$PORT ($PGDIR)"; else log "not running"; exit 1; fi ;;
    *) echo "usage: $0 start|stop|url|env|status" >&2; exit 2 ;;
esac
