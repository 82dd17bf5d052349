#!/usr/bin/env bash
# A throwaway one-node Slurm cluster on this machine for tests (munged + slurmctld + slurmd).
#
#   bash scripts/slurm_throwaway.sh start   # start (or reuse) it; prints its slurm.conf path on stdout
#   bash scripts/slurm_throwaway.sh conf    # print the slurm.conf path of the running cluster
#   bash scripts/slurm_throwaway.sh env     # print `export SLURM_CONF=...` (for eval)
#   bash scripts/slurm_throwaway.sh status  # exit 0 if running (slurmctld answers, the node is up)
#   bash scripts/slurm_throwaway.sh stop    # cancel its jobs, stop the daemons and delete its files
#
# Clients (sbatch, squeue, scontrol, scancel, and submitit through them) find the cluster through
# SLURM_CONF=<that path>; nothing under /etc/slurm, /etc/munge, /run/munge or /var/spool is touched.
# Everything lives in a fresh mktemp dir under ${TMPDIR:-/tmp}: a munge key and munged with its own socket,
# slurm.conf, state and spool dirs and logs. slurmctld and slurmd listen on free ports on 127.0.0.1.
# The node is this host (NodeName = `hostname -s`, NodeAddr 127.0.0.1) with NODE_CPUS CPUs (default 8, more than
# a small CI machine has: SlurmdParameters=config_overrides, so a 4-task array fits on 2 cores) and no GPUs.
# No cgroups, no accounting database: ProctrackType=proctrack/linuxproc, TaskPlugin=task/none,
# SelectType=select/cons_tres with CR_CPU. The daemons and the jobs run as the user who starts it (root in CI:
# SlurmUser=SlurmdUser=root). KillWait is 10 s (SIGTERM, then SIGKILL 10 s later) to keep the tests short.
#
# The state file (default one per repo checkout; RESNET_ABLATE_SLURM_STATE=/some/file keeps several apart, as
# scripts/test.sh does) records which cluster `stop`/`conf` act on.
#
# If Debian's slurm-wlm and munge are missing, `start` runs `apt-get update` and
# `apt-get install -y slurm-wlm munge` (needs root).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TMPBASE="${TMPDIR:-/tmp}"
REPO_KEY="$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)"
STATE="${RESNET_ABLATE_SLURM_STATE:-$TMPBASE/resnet-ablate-slurm-$REPO_KEY.state}"
NODE_CPUS="${NODE_CPUS:-8}"

log() { printf '[slurm] %s\n' "$*" >&2; }
die() { printf '[slurm] ERROR: %s\n' "$*" >&2; exit 1; }

have_binaries() {
    command -v munged >/dev/null && command -v slurmctld >/dev/null && command -v slurmd >/dev/null &&
        command -v sbatch >/dev/null && command -v scontrol >/dev/null
}

ensure_binaries() {
    PATH="$PATH:/usr/sbin:/sbin"
    have_binaries && return 0
    [[ $EUID -eq 0 ]] || die "slurmctld/slurmd/munged not found and not root to apt-get install slurm-wlm munge"
    command -v apt-get >/dev/null || die "Slurm not installed and no apt-get"
    local t0=$SECONDS
    log "Slurm not installed: apt-get update && apt-get install -y slurm-wlm munge"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >&2 || die "apt-get install slurm-wlm munge failed"
    log "installed Slurm in $((SECONDS - t0))s"
    have_binaries || die "slurm-wlm installed but slurmctld/slurmd/munged are still missing"
}

read_state() {
    # Sets SDIR, CONF from the state file; returns 1 if there is none.
    [[ -f "$STATE" ]] || return 1
    SDIR="" CONF=""
    # shellcheck disable=SC1090
    source "$STATE"
    [[ -n "$SDIR" && -n "$CONF" ]]
}

pid_of() { [[ -f "$1" ]] && head -n 1 "$1" 2>/dev/null | tr -dc '0-9'; }

# Is pid $1 alive and running binary $2 with our dir on its command line?
ours() {
    local pid="$1" name="$2"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [[ -r "/proc/$pid/cmdline" ]] || return 1
    local cmd
    cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
    [[ "$cmd" == *"$name"* && "$cmd" == *"$SDIR"* ]]
}

is_running() {
    [[ -n "${SDIR:-}" && -f "${CONF:-}" ]] || return 1
    ours "$(pid_of "$SDIR/slurmctld.pid")" slurmctld || return 1
    ours "$(pid_of "$SDIR/slurmd.pid")" slurmd || return 1
    SLURM_CONF="$CONF" timeout 10 scontrol ping 2>/dev/null | grep -q "is UP"
}

node_up() {
    local st
    st="$(SLURM_CONF="$CONF" timeout 10 sinfo -h -N -o '%T' 2>/dev/null | head -n 1)"
    [[ "$st" == idle* || "$st" == mixed* || "$st" == allocated* ]]
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

stop_pid() {
    # stop_pid PIDFILE NAME: SIGTERM, wait up to 10 s, then SIGKILL; only if it is ours.
    local pid
    pid="$(pid_of "$1" || true)"
    ours "$pid" "$2" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    local i
    for i in $(seq 1 50); do
        ours "$pid" "$2" || return 0
        sleep 0.2
    done
    kill -KILL "$pid" 2>/dev/null || true
}

cleanup_dir() {
    local dir="$1"
    [[ -n "$dir" && -d "$dir" ]] || return 0
    case "$dir" in "$TMPBASE"/resnet-ablate-slurm.*) ;; *) die "refusing to remove unexpected dir $dir" ;; esac
    SDIR="$dir"
    if [[ -f "$dir/slurm.conf" ]] && ours "$(pid_of "$dir/slurmctld.pid" || true)" slurmctld; then
        SLURM_CONF="$dir/slurm.conf" timeout 10 scancel --full --quiet --user "$(id -un)" 2>/dev/null || true
        local i
        for i in $(seq 1 30); do
            [[ -z "$(SLURM_CONF="$dir/slurm.conf" timeout 5 squeue -h 2>/dev/null)" ]] && break
            sleep 0.5
        done
    fi
    stop_pid "$dir/slurmd.pid" slurmd
    stop_pid "$dir/slurmctld.pid" slurmctld
    # What is left of this cluster (a slurmstepd and its job, if slurmd went first): processes whose environment
    # carries this cluster's marker (the daemons and their slurmstepd) or that are jobs of this cluster (SLURM_JOB_ID
    # and our SLURM_CONF). Never this script or its callers (scripts/test.sh exports SLURM_CONF).
    local p pid env keep=" $$ " q=$$
    while [[ "$q" -gt 1 ]]; do
        q="$(awk '{print $4}' "/proc/$q/stat" 2>/dev/null || echo 1)"
        keep+="$q "
    done
    for p in /proc/[0-9]*; do
        pid="${p#/proc/}"
        [[ "$keep" == *" $pid "* ]] && continue
        env="$(tr '\0' '\n' 2>/dev/null <"$p/environ")" || continue
        if grep -qxF "RESNET_ABLATE_SLURM_DIR=$dir" <<<"$env" ||
            { grep -qxF "SLURM_CONF=$dir/slurm.conf" <<<"$env" && grep -q "^SLURM_JOB_ID=" <<<"$env"; }; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    stop_pid "$dir/munged.pid" munged
    rm -rf "$dir"
}

cmd_start() {
    if read_state; then
        if is_running && node_up; then
            log "already running ($SDIR)"
            echo "$CONF"
            return 0
        fi
        log "stale state file $STATE (cluster not running); cleaning up"
        cleanup_dir "$SDIR"
        rm -f "$STATE"
    fi

    local t0=$SECONDS
    ensure_binaries
    local user node
    user="$(id -un)"
    node="$(hostname -s)"
    SDIR="$(mktemp -d "$TMPBASE/resnet-ablate-slurm.XXXXXXXX")"
    CONF="$SDIR/slurm.conf"
    chmod 755 "$SDIR"
    mkdir -p "$SDIR/munge" "$SDIR/state" "$SDIR/spool"
    chmod 700 "$SDIR/munge"

    # munge: our own key and socket
    dd if=/dev/urandom of="$SDIR/munge/munge.key" bs=1024 count=1 status=none
    chmod 400 "$SDIR/munge/munge.key"
    if ! munged --force --socket="$SDIR/munge/munge.sock" --key-file="$SDIR/munge/munge.key" \
        --pid-file="$SDIR/munged.pid" --log-file="$SDIR/munged.log" --seed-file="$SDIR/munge/munged.seed" \
        >"$SDIR/munged.out" 2>&1; then
        cat "$SDIR/munged.out" "$SDIR/munged.log" >&2 2>/dev/null || true
        cleanup_dir "$SDIR"
        die "munged failed to start"
    fi

    local ctld_port slurmd_port
    ctld_port="$(free_port)"
    slurmd_port="$(free_port)"
    while [[ "$slurmd_port" == "$ctld_port" ]]; do slurmd_port="$(free_port)"; done
    cat >"$CONF" <<EOF
# throwaway one-node cluster written by scripts/slurm_throwaway.sh
ClusterName=resnetablate
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=$user
SlurmdUser=$user
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SDIR/munge/munge.sock
StateSaveLocation=$SDIR/state
SlurmdSpoolDir=$SDIR/spool
SlurmctldPidFile=$SDIR/slurmctld.pid
SlurmdPidFile=$SDIR/slurmd.pid
SlurmctldLogFile=$SDIR/slurmctld.log
SlurmdLogFile=$SDIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
SlurmdParameters=config_overrides
KillWait=10
MinJobAge=600
InactiveLimit=0
JobRequeue=1
NodeName=$node NodeAddr=127.0.0.1 CPUs=$NODE_CPUS RealMemory=4096 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF

    export RESNET_ABLATE_SLURM_DIR="$SDIR"   # marks the daemons and their slurmstepd for `stop`
    if ! slurmctld -f "$CONF" -i >"$SDIR/slurmctld.out" 2>&1; then
        tail -n 30 "$SDIR/slurmctld.out" "$SDIR/slurmctld.log" >&2 2>/dev/null || true
        cleanup_dir "$SDIR"
        die "slurmctld failed to start"
    fi
    if ! slurmd -f "$CONF" -N "$node" >"$SDIR/slurmd.out" 2>&1; then
        tail -n 30 "$SDIR/slurmd.out" "$SDIR/slurmd.log" >&2 2>/dev/null || true
        cleanup_dir "$SDIR"
        die "slurmd failed to start"
    fi
    umask 077
    cat >"$STATE" <<EOF
SDIR='$SDIR'
CONF='$CONF'
EOF
    local i
    for i in $(seq 1 60); do
        if is_running && node_up; then
            log "running: node $node ($NODE_CPUS CPUs), slurmctld on 127.0.0.1:$ctld_port in $((SECONDS - t0))s; state $STATE"
            echo "$CONF"
            return 0
        fi
        sleep 0.5
    done
    tail -n 20 "$SDIR/slurmctld.log" "$SDIR/slurmd.log" >&2 2>/dev/null || true
    SLURM_CONF="$CONF" sinfo -N -l >&2 2>/dev/null || true
    cleanup_dir "$SDIR"
    rm -f "$STATE"
    die "the cluster did not come up within 30 s"
}

cmd_stop() {
    if ! read_state; then
        log "not running (no state file $STATE)"
        rm -f "$STATE"
        return 0
    fi
    cleanup_dir "$SDIR"
    rm -f "$STATE"
    log "stopped and removed $SDIR"
}

cmd_conf() {
    if ! { read_state && is_running; }; then
        die "not running (start it with: bash scripts/slurm_throwaway.sh start)"
    fi
    echo "$CONF"
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    conf) cmd_conf ;;
    env) cmd_conf >/dev/null && printf "export SLURM_CONF='%s'\n" "$CONF" ;;
    status)
        if read_state && is_running && node_up; then log "running ($SDIR)"; else log "not running"; exit 1; fi ;;
    *) echo "usage: $0 start|stop|conf|env|status" >&2; exit 2 ;;
esac
