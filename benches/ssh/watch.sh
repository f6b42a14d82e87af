#!/usr/bin/env bash
# benches/ssh/watch.sh: `berth watch` on the fleet testbed (testdata/fleet).
#
# HOSTS hosts x MODELS running stand-ins are applied, then `berth watch --interval 1s --metrics`
# runs for SOAK_SECS. Measured: each cycle's duration (from the JSON log), the time of a scrape
# of /metrics (SCRAPES of them, spread over the soak), the watcher's resident memory and open
# file descriptors and established SSH connections after its first 10 cycles and at the end,
# and the SSH logins each host's sshd accepted during the soak (goal: one connection per host,
# kept).
# Goals: cycle < 1.5 s at 50 x 20; scrape < 50 ms; RSS growth < 5 MB over a 10-minute soak; no
# fd growth.
#
# Needs root (network namespaces). Environment: HOSTS (50), MODELS (20), SOAK_SECS (600),
# SCRAPES (50), NO_BUILD=1, KEEP=1, BERTH_FLEET_PREFIX/SUBNET/DIR (bwatch, 10.236.0, /tmp/...).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
FLEET=$ROOT/testdata/fleet/fleet

HOSTS=${HOSTS:-50}
MODELS=${MODELS:-20}
SOAK_SECS=${SOAK_SECS:-600}
SCRAPES=${SCRAPES:-50}
METRICS=${METRICS:-127.0.0.1:19464}

export BERTH_FLEET_PREFIX=${BERTH_FLEET_PREFIX:-bwatch}
export BERTH_FLEET_SUBNET=${BERTH_FLEET_SUBNET:-10.236.0}
export BERTH_FLEET_DIR=${BERTH_FLEET_DIR:-/tmp/berth-fleet-$BERTH_FLEET_PREFIX}
export BERTH_FLEET_OWNER=$$
export NO_COLOR=1

[ "$(id -u)" = 0 ] || {
	echo "watch.sh: needs root (the fleet uses network namespaces)" >&2
	exit 1
}

. "$ROOT/benches/lib.sh"

maximum() { sort -g | tail -n 1; }

WORK=$(mktemp -d /tmp/berth-bench-watch.XXXXXX)
RESULTS=$WORK/results.txt
CFG=$WORK/config
WATCH_PID=
cleanup() {
	local rc=$?
	[ -n "$WATCH_PID" ] && kill "$WATCH_PID" 2>/dev/null && wait "$WATCH_PID" 2>/dev/null || true
	[ -n "${BERTH:-}" ] && [ -d "$CFG/.berth" ] && "$BERTH" -C "$CFG" destroy --auto-approve --parallelism 64 >/dev/null 2>&1 || true
	"$FLEET" down >/dev/null 2>&1 || true
	if [ "${KEEP:-}" = 1 ] || [ $rc != 0 ]; then
		echo "work directory kept: $WORK" >&2
	else
		rm -rf "$WORK"
	fi
	exit $rc
}
trap cleanup EXIT

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
if [ "${NO_BUILD:-}" != 1 ]; then
	log "building berth and the stand-in (release)"
	(cd "$ROOT" && cargo build --release --quiet -p berth-engine -p berth-model-server)
fi
BERTH=$TARGET/release/berth
SERVER=$TARGET/release/berth-model-server

log "bringing up $HOSTS hosts ($BERTH_FLEET_PREFIX, $BERTH_FLEET_SUBNET.0/24)"
"$FLEET" prune >/dev/null 2>&1 || true
"$FLEET" down >/dev/null 2>&1 || true
"$FLEET" up "$HOSTS" >/dev/null
KEY=$BERTH_FLEET_DIR/id_ed25519
KNOWN_HOSTS=$BERTH_FLEET_DIR/known_hosts

mkdir -p "$CFG"
{
	for k in $(seq 1 "$HOSTS"); do
		cat <<EOF
host "h$k" {
  connection {
    host        = "$BERTH_FLEET_SUBNET.$((10 + k))"
    user        = "root"
    key_path    = "$KEY"
    known_hosts = "$KNOWN_HOSTS"
  }
  capabilities {
    backends = ["cpu"]
  }
  run_dir = "/srv/berth/run"
}

EOF
	done
	printf 'backend "cpu" {\n  runtime = "process"\n}\n\n'
	for i in $(seq 1 "$MODELS"); do
		cat <<EOF
model "m$i" {
  source   = "/srv/berth/models/m$i.gguf"
  size_gib = 0.1
  host_policy {
    hosts    = ["h*"]
    replicas = $HOSTS
  }
  runtime_defaults {
    port = $((8400 + i))
  }
  launch {
    start_cmd         = "$SERVER --port {port} --model {model}"
    probe_http        = "/v1/models"
    probe_interval_ms = 100
  }
}

EOF
	done
} >"$CFG/main.hcl"

echo "# berth watch on $HOSTS fleet hosts x $MODELS models, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, soak ${SOAK_SECS}s" >"$RESULTS"
log "applying $HOSTS x $MODELS stand-ins"
t0=$(date +%s.%N)
"$BERTH" -C "$CFG" apply --auto-approve --parallelism 64 >"$WORK/apply.log" 2>&1
echo "apply of $((HOSTS * MODELS)) servers from empty: $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')s" | tee -a "$RESULTS" >&2

logins() { grep -c 'Accepted publickey' "$BERTH_FLEET_DIR/hosts/h$1/sshd.log" || true; }
declare -A before=()
for k in $(seq 1 "$HOSTS"); do before[$k]=$(logins "$k"); done

log "berth watch --interval 1s for ${SOAK_SECS}s"
"$BERTH" -C "$CFG" watch --interval 1s --metrics "$METRICS" --log-format json >"$WORK/watch.jsonl" 2>"$WORK/watch.err" &
WATCH_PID=$!
cycles() { grep -c '"event":"cycle"' "$WORK/watch.jsonl" || true; }
until [ "$(cycles)" -ge 10 ]; do sleep 0.5; done
rss() { awk '/^VmRSS/ { print $2 }' "/proc/$WATCH_PID/status"; }
fds() { ls "/proc/$WATCH_PID/fd" | wc -l; }
conns() { ss -tnpH state established '( dport = :22 )' | grep -c "pid=$WATCH_PID," || true; }
rss0=$(rss)
fds0=$(fds)
conns0=$(conns)
start=$(date +%s)
every=$((SOAK_SECS / SCRAPES))
[ "$every" -ge 1 ] || every=1
scrapes=()
while [ $(($(date +%s) - start)) -lt "$SOAK_SECS" ]; do
	scrapes+=("$(curl -s -o /dev/null -w '%{time_total}' "http://$METRICS/metrics")")
	sleep "$every"
done
rss1=$(rss)
fds1=$(fds)
conns1=$(conns)
kill -TERM "$WATCH_PID"
wait "$WATCH_PID" || true
WATCH_PID=
max_logins=0
for k in $(seq 1 "$HOSTS"); do
	n=$(($(logins "$k") - before[$k]))
	[ "$n" -gt "$max_logins" ] && max_logins=$n
done
durations=$(sed -n 's/.*"duration_seconds":\([0-9.e-]*\).*/\1/p' "$WORK/watch.jsonl")
{
	echo "cycles: $(cycles); duration median $(echo "$durations" | median)s, max $(echo "$durations" | maximum)s (goal < 1.5s)"
	echo "scrape of /metrics: median $(printf '%s\n' "${scrapes[@]}" | median)s, max $(printf '%s\n' "${scrapes[@]}" | maximum)s over ${#scrapes[@]} scrapes (goal < 0.05s)"
	echo "resident memory after 10 cycles ${rss0} kB, at the end ${rss1} kB: growth $((rss1 - rss0)) kB (goal < 5120 kB)"
	echo "open file descriptors after 10 cycles $fds0, at the end $fds1"
	echo "established SSH connections after 10 cycles $conns0, at the end $conns1 (goal: $HOSTS)"
	echo "SSH logins per host during the soak: max $max_logins (goal: 1)"
} | tee -a "$RESULTS"
