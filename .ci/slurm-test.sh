#!/usr/bin/env bash
# Integration test against a real single-node Slurm (issue 6): installs slurm-wlm and munge, starts
# munged, slurmctld and slurmd, runs a 3-task array sweep with a dependent merge and compares it with
# the same plan run locally; then cancels one array task mid-way, requeues it, and checks that the
# merged records are still complete, without duplicates, and equal. Stops the daemons it started.
#
# Skips (with a message, exit 0) when not root or when apt-get is unavailable.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${GIANTSTEP_BIN:-$PWD/target/debug/giantstep}

if [ "$(id -u)" != 0 ]; then
    echo "SKIP slurm integration test: it must run as root to install and start slurmctld/slurmd"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "SKIP slurm integration test: apt-get is unavailable, cannot install slurm-wlm and munge"
    exit 0
fi
[ -x "$BIN" ] || { echo "slurm test: $BIN is missing (run cargo test --workspace first)"; exit 1; }

if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
    echo "slurm test: installing slurm-wlm and munge"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq slurm-wlm munge >/dev/null
fi

WORK=$(mktemp -d /tmp/giantstep-slurm.XXXXXX)
PIDS=()
cleanup() {
    for f in "$WORK/slurmd.pid" "$WORK/slurmctld.pid" /run/munge/giantstep-munged.pid; do
        [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
    done
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

# munge: a fresh 1024-byte key, the daemon as user munge.
mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
chown munge:munge /etc/munge/munge.key /run/munge /var/lib/munge /var/log/munge
chmod 400 /etc/munge/munge.key
su -s /bin/sh munge -c "/usr/sbin/munged --pid-file=/run/munge/giantstep-munged.pid" || su -s /bin/sh munge -c /usr/sbin/munged
cp /run/munge/munged.pid /run/munge/giantstep-munged.pid 2>/dev/null || true

HOST=$(hostname)
mkdir -p /etc/slurm "$WORK/state" "$WORK/spool"
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=giantstep-ci
SlurmctldHost=$HOST
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$WORK/state
SlurmdSpoolDir=$WORK/spool
SlurmctldPidFile=$WORK/slurmctld.pid
SlurmdPidFile=$WORK/slurmd.pid
SlurmctldLogFile=$WORK/slurmctld.log
SlurmdLogFile=$WORK/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
NodeName=$HOST CPUs=2 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
slurmctld -i
slurmd
for _ in $(seq 60); do
    sinfo -h -o %T 2>/dev/null | grep -qE 'idle|mixed|allocated' && break
    sleep 1
done
sinfo -h -o "%N %T" || { echo "slurm test: the node did not come up"; cat "$WORK"/*.log; exit 1; }

cat > "$WORK/plan.toml" <<'PLAN'
name = "slurm-ci"
figure = "stairway"
[base]
target = { preset = "staircase2" }
network = { d = 96, p = 128 }
eval = { n_test = 2000 }
[axes]
"train.n" = { from = 1.0, to = 2.0, step = 0.25, power_of_d = true }
seed = "0..3"
PLAN

normalize() {
    python3 - "$1" <<'PY'
import json, sys
recs = []
for line in open(sys.argv[1]):
    r = json.loads(line)
    r.pop("wall_s", None)
    if "result" in r:
        r["result"].pop("elapsed_s", None)
    recs.append(r)
hashes = [r["hash"] for r in recs]
assert len(hashes) == len(set(hashes)), "duplicate points"
recs.sort(key=lambda r: r["hash"])
print(json.dumps(recs, sort_keys=True))
PY
}

wait_for_jobs() { # wait until none of the given job ids is in the queue
    for _ in $(seq 600); do
        [ -z "$(squeue -h -j "$1" 2>/dev/null)" ] && return 0
        sleep 1
    done
    echo "slurm test: jobs $1 did not finish"; squeue; return 1
}

echo "slurm test: local reference"
"$BIN" sweep "$WORK/plan.toml" --out "$WORK/local.jsonl" --quiet
normalize "$WORK/local.jsonl" > "$WORK/local.norm"
POINTS=$(wc -l < "$WORK/local.jsonl")

echo "slurm test: run 1 (3-task array + dependent merge)"
OUT=$("$BIN" sweep "$WORK/plan.toml" --out "$WORK/run1" --slurm --array-size 3 --submit)
echo "$OUT"
ARRAY=$(echo "$OUT" | awk '/^array job/ {print $3}')
MERGE=$(echo "$OUT" | awk '/^merge job/ {print $3}')
wait_for_jobs "$ARRAY,$MERGE"
[ -f "$WORK/run1/records.jsonl" ] || { echo "slurm test: run 1 produced no merged records"; cat "$WORK"/run1/logs/* || true; exit 1; }
normalize "$WORK/run1/records.jsonl" > "$WORK/run1.norm"
cmp -s "$WORK/local.norm" "$WORK/run1.norm" || { echo "slurm test: run 1 differs from the local sweep"; exit 1; }
[ -f "$WORK/run1/stairway.svg" ] || { echo "slurm test: the merge job drew no figure"; exit 1; }
echo "slurm test: run 1 equals the local sweep ($POINTS points)"

echo "slurm test: run 2 (cancel task 1 mid-way, requeue it)"
OUT=$("$BIN" sweep "$WORK/plan.toml" --out "$WORK/run2" --slurm --array-size 3 --submit)
ARRAY=$(echo "$OUT" | awk '/^array job/ {print $3}')
MERGE=$(echo "$OUT" | awk '/^merge job/ {print $3}')
SHARD="$WORK/run2/shards/shard-1.jsonl"
for _ in $(seq 300); do
    [ -s "$SHARD" ] && break
    sleep 0.2
done
scancel "${ARRAY}_1"
for _ in $(seq 60); do
    squeue -h -j "${ARRAY}_1" -t R,CG 2>/dev/null | grep -q . || break
    sleep 0.5
done
DONE_AT_CANCEL=$(wc -l < "$SHARD" || echo 0)
echo "slurm test: task ${ARRAY}_1 cancelled after $DONE_AT_CANCEL point(s); requeueing"
scontrol requeue "${ARRAY}_1"
wait_for_jobs "$ARRAY"
"$BIN" sweep --status "$WORK/run2"
if [ ! -f "$WORK/run2/records.jsonl" ]; then
    # A cancelled task breaks the afterok dependency of the first merge job: merge again.
    scancel "$MERGE" 2>/dev/null || true
    sbatch --wait "$WORK/run2/merge.sbatch" >/dev/null
fi
normalize "$WORK/run2/records.jsonl" > "$WORK/run2.norm"
cmp -s "$WORK/local.norm" "$WORK/run2.norm" || { echo "slurm test: run 2 differs from the local sweep"; exit 1; }
echo "slurm test: run 2 complete, no duplicates, equal to the local sweep"
echo "slurm test: PASS"
