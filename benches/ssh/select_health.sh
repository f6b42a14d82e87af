#!/usr/bin/env bash
# benches/ssh/select_health.sh: `berth select` switch time and `berth health` on the fleet
# testbed (testdata/fleet).
#
#  1. select: one host, a group of two stand-ins that take LOAD_SECS to load, switched back and
#     forth REPS times. Each switch is compared with what it cannot avoid: the old server's stop
#     time (from berth's own "destroyed in" line) + LOAD_SECS + one probe interval (PROBE_MS).
#     Goal: within 0.3 s of that.
#  2. health: HOSTS hosts x HEALTH_MODELS running stand-ins, plus the default scan of 11 ports
#     (8080-8090) per host, with the SSH logins each host's sshd accepted during each run.
#     Goal: under 1 s, one SSH connection per host.
#
# Needs root (network namespaces). Prints every run and the medians, and writes them to
# $WORK/results.txt. Environment: REPS (5), HOSTS (10), HEALTH_MODELS (20), LOAD_SECS (2),
# PROBE_MS (100), NO_BUILD=1, KEEP=1, BERTH_FLEET_PREFIX/SUBNET/DIR (bsel, 10.234.0, /tmp/...).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
FLEET=$ROOT/testdata/fleet/fleet

REPS=${REPS:-5}
HOSTS=${HOSTS:-10}
HEALTH_MODELS=${HEALTH_MODELS:-20}
LOAD_SECS=${LOAD_SECS:-2}
PROBE_MS=${PROBE_MS:-100}

export BERTH_FLEET_PREFIX=${BERTH_FLEET_PREFIX:-bsel}
export BERTH_FLEET_SUBNET=${BERTH_FLEET_SUBNET:-10.234.0}
export BERTH_FLEET_DIR=${BERTH_FLEET_DIR:-/tmp/berth-fleet-$BERTH_FLEET_PREFIX}
export BERTH_FLEET_OWNER=$$
export NO_COLOR=1

[ "$(id -u)" = 0 ] || {
	echo "select_health.sh: needs root (the fleet uses network namespaces)" >&2
	exit 1
}

. "$ROOT/benches/lib.sh"

WORK=$(mktemp -d /tmp/berth-bench-select.XXXXXX)
RESULTS=$WORK/results.txt
SEL_CFG=$WORK/select
HEALTH_CFG=$WORK/health
cleanup() {
	local rc=$?
	[ -n "${BERTH:-}" ] && [ -d "$SEL_CFG/.berth" ] && "$BERTH" -C "$SEL_CFG" destroy --auto-approve >/dev/null 2>&1 || true
	[ -n "${BERTH:-}" ] && [ -d "$HEALTH_CFG/.berth" ] && "$BERTH" -C "$HEALTH_CFG" destroy --auto-approve >/dev/null 2>&1 || true
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
ip_of() { echo "$BERTH_FLEET_SUBNET.$((10 + $1))"; }

hosts_hcl() {
	local k
	for k in $(seq 1 "$1"); do
		cat <<EOF
host "h$k" {
  connection {
    host        = "$(ip_of "$k")"
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
	cat <<EOF
backend "cpu" {
  runtime = "process"
}

EOF
}

model_hcl() { # name port hosts flags [group default]
	local group="" default=""
	[ -n "${5:-}" ] && group="  group   = \"$5\""
	[ -n "${6:-}" ] && default="  default = true"
	cat <<EOF
model "$1" {
  source   = "/srv/berth/models/$1.gguf"
  size_gib = 0.1
  host_policy {
    hosts    = ["h*"]
    replicas = $3
  }
  runtime_defaults {
    port = $2
  }
  launch {
    start_cmd         = "$SERVER --port {port} --model {model} $4"
    probe_http        = "/v1/models"
    probe_interval_ms = $PROBE_MS
  }
$group
$default
}

EOF
}

echo "# berth select and health on $HOSTS fleet hosts, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores" >"$RESULTS"

# --- 1. select switch time -----------------------------------------------------------------------
mkdir -p "$SEL_CFG"
{
	hosts_hcl 1
	model_hcl a 8200 1 "--load-secs $LOAD_SECS" pair yes
	model_hcl b 8200 1 "--load-secs $LOAD_SECS" pair
} >"$SEL_CFG/main.hcl"
"$BERTH" -C "$SEL_CFG" apply --auto-approve >"$WORK/select-apply.log" 2>&1
log "berth select: a group of two stand-ins (--load-secs $LOAD_SECS, probe every $PROBE_MS ms), $REPS switches"
excess=()
totals=()
for rep in $(seq 1 "$REPS"); do
	if [ $((rep % 2)) = 1 ]; then to=b; else to=a; fi
	t0=$(now)
	"$BERTH" -C "$SEL_CFG" select --model "$to" >"$WORK/select-$rep.log" 2>&1
	t=$(elapsed "$t0" "$(now)")
	stop=$(sed -n 's/.*: destroyed in \([0-9.]*\)s.*/\1/p' "$WORK/select-$rep.log" | head -n 1)
	floor=$(awk -v s="$stop" -v l="$LOAD_SECS" -v p="$PROBE_MS" 'BEGIN { printf "%.3f", s + l + p / 1000 }')
	over=$(awk -v t="$t" -v f="$floor" 'BEGIN { printf "%.3f", t - f }')
	totals+=("$t")
	excess+=("$over")
	echo "select $to run $rep: ${t}s; stop ${stop}s + load ${LOAD_SECS}s + probe interval ${PROBE_MS}ms = ${floor}s; over by ${over}s" | tee -a "$RESULTS" >&2
done
"$BERTH" -C "$SEL_CFG" destroy --auto-approve >/dev/null 2>&1

# --- 2. health ------------------------------------------------------------------------------------
mkdir -p "$HEALTH_CFG"
{
	hosts_hcl "$HOSTS"
	for i in $(seq 1 "$HEALTH_MODELS"); do model_hcl "m$i" $((8300 + i)) "$HOSTS" ""; done
} >"$HEALTH_CFG/main.hcl"
log "applying $HOSTS hosts x $HEALTH_MODELS stand-ins for health"
"$BERTH" -C "$HEALTH_CFG" apply --auto-approve >"$WORK/health-apply.log" 2>&1
logins() { grep -c 'Accepted publickey' "$BERTH_FLEET_DIR/hosts/h$1/sshd.log" || true; }
health_times=()
max_logins=0
for rep in $(seq 1 "$REPS"); do
	declare -A before=()
	for k in $(seq 1 "$HOSTS"); do before[$k]=$(logins "$k"); done
	t0=$(now)
	rc=0
	"$BERTH" -C "$HEALTH_CFG" health --json >"$WORK/health-$rep.json" 2>"$WORK/health-$rep.err" || rc=$?
	t=$(elapsed "$t0" "$(now)")
	[ "$rc" = 0 ] || {
		echo "berth health exited $rc; see $WORK/health-$rep.json" >&2
		exit 1
	}
	per_host=""
	for k in $(seq 1 "$HOSTS"); do
		n=$(($(logins "$k") - before[$k]))
		per_host="$per_host $n"
		[ "$n" -gt "$max_logins" ] && max_logins=$n
	done
	ready=$(grep -c '"state": "ready"' "$WORK/health-$rep.json" || true)
	health_times+=("$t")
	echo "berth health run $rep: ${t}s; $ready models ready; SSH logins per host:$per_host" | tee -a "$RESULTS" >&2
done

{
	echo
	echo "== medians ($REPS runs)"
	echo "berth select switch: $(printf '%s\n' "${totals[@]}" | median)s in all, $(printf '%s\n' "${excess[@]}" | median)s over stop + ${LOAD_SECS}s + one probe interval (goal <= 0.3s)"
	echo "berth health, $HOSTS hosts x $HEALTH_MODELS models + 11 scanned ports per host: $(printf '%s\n' "${health_times[@]}" | median)s (goal < 1s); SSH logins per host per run: max $max_logins (goal: 1)"
} | tee -a "$RESULTS"
