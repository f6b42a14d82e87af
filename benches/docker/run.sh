#!/usr/bin/env bash
# benches/docker/run.sh: berth's docker runtime against Ansible's community.docker on the fleet
# testbed (testdata/fleet), each fleet host with a private Docker engine in its own network
# namespace (so host-network containers listen on that host's address, as on real machines).
#
#  1. apply from empty: HOSTS hosts x MODELS containers whose stand-ins take LOAD_SECS to be
#     ready, timed for `berth apply --auto-approve` (fresh state, no containers each run) and for
#     the same job as an Ansible playbook (playbook.yml: community.docker.docker_container, then
#     `uri` until 200; forks = HOSTS, pipelining, ControlPersist), every container removed
#     between runs.
#     berth runs with its default settings (the probe timing too); a second series sets
#     probe_interval_ms = PROBE_MS, the polling of the playbook and of the job by hand.
#     Each run is set against the critical path measured in the same run: one container started
#     by plain `docker run` on one host, until its /v1/models answers 200; against the whole
#     job by hand: every container started at once by plain `docker run`, polled until all
#     answer; and, for one host's share of the job (its MODELS containers on h1 alone, as on a
#     real fleet where each host has its own cores), berth against the same share by hand.
#     Every run also reports the machine's busy CPU-seconds, and the engines' own work to start
#     every container at once (no polling) gives the floor no tool can beat on this many cores.
#  2. `berth drift` on HOSTS hosts x DRIFT_MODELS containers, beside the engine calls its refresh
#     makes, run by hand as one SSH command per host.
#
# Needs root, docker, fuse-overlayfs, python3 venv and PyPI (ansible + the docker SDK, into
# target/bench-ansible-docker-venv). Environment: REPS (5), HOSTS (10), MODELS (2), LOAD_SECS (2),
# PROBE_MS (100: the polling by hand, Ansible's retry delay), DRIFT_MODELS (20), DRIFT_REPS (7), SKIP_ANSIBLE=1, SKIP_DRIFT=1, BERTH (binary,
# default target/release/berth), KEEP=1. Prints the medians and writes $WORK/results.txt.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$ROOT/benches/docker
FLEET=$ROOT/testdata/fleet/fleet
REPS=${REPS:-5}
HOSTS=${HOSTS:-10}
MODELS=${MODELS:-2}
LOAD_SECS=${LOAD_SECS:-2}
PROBE_MS=${PROBE_MS:-100}
DRIFT_MODELS=${DRIFT_MODELS:-20}
DRIFT_REPS=${DRIFT_REPS:-7}
VENV=${ANSIBLE_VENV:-$ROOT/target/bench-ansible-docker-venv}
# The modules' interpreter on the hosts, with the docker SDK: made from the system python,
# which the fleet hosts see (a python under root's home would not be: each host has its own).
REMOTE_VENV=${REMOTE_VENV:-$ROOT/target/bench-docker-remote-venv}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BERTH=${BERTH:-$TARGET/release/berth}
SERVER=${SERVER:-$TARGET/release/berth-model-server}

export BERTH_FLEET_PREFIX=${BERTH_FLEET_PREFIX:-dbench}
export BERTH_FLEET_SUBNET=${BERTH_FLEET_SUBNET:-10.234.0}
export BERTH_FLEET_DIR=${BERTH_FLEET_DIR:-/tmp/berth-fleet-$BERTH_FLEET_PREFIX}
export BERTH_FLEET_OWNER=$$
export NO_COLOR=1

[ "$(id -u)" = 0 ] || { echo "run.sh: needs root" >&2; exit 1; }
. "$ROOT/benches/lib.sh"

WORK=$(mktemp -d /tmp/berth-bench-docker.XXXXXX)
RESULTS=$WORK/results.txt
sock_of() { echo "/tmp/berth-dockerd-$BERTH_FLEET_PREFIX-h$1/docker.sock"; }
dk() { local k=$1; shift; DOCKER_HOST="unix://$(sock_of "$k")" docker "$@"; }
ip_of() { echo "$BERTH_FLEET_SUBNET.$((10 + $1))"; }
# The machine's busy CPU-seconds so far, every core summed (/proc/stat: all but idle and iowait).
cpu_busy() { awk -v hz="$(getconf CLK_TCK)" '/^cpu / { printf "%.2f\n", ($2 + $3 + $4 + $7 + $8 + $9) / hz; exit }' /proc/stat; }
# `timed T0 C0`: the seconds since timestamp T0 and the busy CPU-seconds since C0, on one line.
timed() { echo "$(elapsed "$1" "$(now)") $(awk -v a="$2" -v b="$(cpu_busy)" 'BEGIN { printf "%.2f", b - a }')"; }

remove_containers() {
	local k pids=()
	for k in $(seq 1 "$HOSTS"); do
		(ids=$(dk "$k" ps -aq 2>/dev/null || true); [ -z "$ids" ] || dk "$k" rm -f $ids >/dev/null 2>&1 || true) &
		pids+=($!)
	done
	# Only these: the engines are children of this script too.
	wait "${pids[@]}"
	rm -rf "$BERTH_FLEET_DIR"/hosts/h*/root/run
}
stop_engines() {
	local k d
	for k in $(seq 1 "$HOSTS"); do
		d=/tmp/berth-dockerd-$BERTH_FLEET_PREFIX-h$k
		[ -f "$d/dockerd.pid" ] && kill "$(cat "$d/dockerd.pid")" 2>/dev/null || true
	done
	sleep 2
	for k in $(seq 1 "$HOSTS"); do
		d=/tmp/berth-dockerd-$BERTH_FLEET_PREFIX-h$k
		grep -o "$d/[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
		rm -rf "$d"
	done
}
cleanup() {
	local rc=$?
	remove_containers 2>/dev/null || true
	stop_engines 2>/dev/null || true
	"$FLEET" down >/dev/null 2>&1 || true
	if [ "${KEEP:-}" = 1 ] || [ $rc != 0 ]; then echo "work directory kept: $WORK" >&2; else rm -rf "$WORK"; fi
	exit $rc
}
trap cleanup EXIT
trap "exit 143" TERM INT

[ -x "$BERTH" ] && [ -x "$SERVER" ] || { echo "run.sh: build first: cargo build --release -p berth-engine -p berth-model-server" >&2; exit 1; }
IMAGE=$("$ROOT/testdata/images/build-stand-in" "$SERVER" bench)
docker save -o "$WORK/image.tar" "$IMAGE"

log "bringing up $HOSTS hosts, each with its own dockerd"
"$FLEET" prune >/dev/null 2>&1 || true
"$FLEET" down >/dev/null 2>&1 || true
"$FLEET" up "$HOSTS" >/dev/null
KEY=$BERTH_FLEET_DIR/id_ed25519
KNOWN_HOSTS=$BERTH_FLEET_DIR/known_hosts
for k in $(seq 1 "$HOSTS"); do
	d=/tmp/berth-dockerd-$BERTH_FLEET_PREFIX-h$k
	mkdir -p "$d"
	echo '{}' >"$d/daemon.json"
	nsenter --net="/run/netns/$BERTH_FLEET_PREFIX-h$k" dockerd --config-file "$d/daemon.json" \
		--data-root "$d/data" --exec-root "$d/exec" --pidfile "$d/dockerd.pid" -H "unix://$d/docker.sock" \
		--bridge=none --iptables=false --ip6tables=false --storage-driver=fuse-overlayfs >"$d/dockerd.log" 2>&1 &
done
for k in $(seq 1 "$HOSTS"); do
	for _ in $(seq 1 300); do dk "$k" version >/dev/null 2>&1 && break; sleep 0.2; done
	dk "$k" load -q -i "$WORK/image.tar" >/dev/null
	"$FLEET" nsenter "$k" sh -c "docker context rm -f bench >/dev/null 2>&1; docker context create bench --docker host=unix://$(sock_of "$k") >/dev/null && docker context use bench >/dev/null"
done

# `write_config DIR [N] [PROBE_MS]`: the job's config on hosts h1..hN (default all), one model a
# line of stdin ("NAME PORT SERVER-FLAGS"), with berth's default probe timing, or with
# probe_interval_ms = PROBE_MS when given.
write_config() {
	local dir=$1 n=${2:-$HOSTS} probe=${3:-} k name port flags interval=""
	[ -z "$probe" ] || interval="
    probe_interval_ms = $probe"
	mkdir -p "$dir"
	{
		for k in $(seq 1 "$n"); do
			cat <<EOF
host "h$k" {
  connection {
    host        = "$(ip_of "$k")"
    user        = "root"
    key_path    = "$KEY"
    known_hosts = "$KNOWN_HOSTS"
  }
  capabilities {
    backends = ["ctr"]
  }
  run_dir = "/srv/berth/run"
}

EOF
		done
		cat <<EOF
backend "ctr" {
  runtime = "docker"
  container {
    image = "$IMAGE"
  }
}

EOF
		while read -r name port flags; do
			cat <<EOF
model "$name" {
  source   = "/models/$name.gguf"
  size_gib = 0.1
  host_policy {
    hosts    = ["h*"]
    replicas = $n
  }
  runtime_defaults {
    port = $port
  }
  launch {
    start_cmd  = "berth-model-server --port {port} --model {model} $flags"
    probe_http = "/v1/models"$interval
  }
}

EOF
		done
	} >"$dir/main.hcl"
}

job_models() { for i in $(seq 1 "$MODELS"); do printf 'm%s %s --load-secs %s\n' "$i" $((8079 + i)) "$LOAD_SECS"; done; }
APPLY_CFG=$WORK/apply
job_models | write_config "$APPLY_CFG"
# The same job probed every PROBE_MS, as the by-hand job and the playbook poll.
POLLED_CFG=$WORK/apply-polled
job_models | write_config "$POLLED_CFG" "$HOSTS" "$PROBE_MS"
# One host's share of the job: h1 with its MODELS containers, alone.
SHARE_CFG=$WORK/apply-share
job_models | write_config "$SHARE_CFG" 1
for cfg in "$APPLY_CFG" "$POLLED_CFG" "$SHARE_CFG"; do "$BERTH" -C "$cfg" validate >/dev/null; done
echo "# berth docker runtime vs Ansible community.docker, $HOSTS hosts x $MODELS containers, --load-secs $LOAD_SECS, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores" >"$RESULTS"

# The critical path of the job: one container started by plain `docker run` on one host of the
# testbed, timed until its /v1/models answers 200 on the host's 127.0.0.1 (polled every 20 ms
# inside the host's network namespace). Every container of the job needs at least this much.
critical_path() {
	local t0 c0 url code
	dk 1 rm -f bench-critical >/dev/null 2>&1 || true
	url="http://127.0.0.1:8079/v1/models"
	t0=$(now) c0=$(cpu_busy)
	dk 1 run -d --pull=never --name bench-critical --network=host --entrypoint /bin/sh "$IMAGE" \
		-c "berth-model-server --port 8079 --model cp --load-secs $LOAD_SECS" >/dev/null
	for _ in $(seq 1 3000); do
		code=$(nsenter --net="/run/netns/$BERTH_FLEET_PREFIX-h1" curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$url" || true)
		[ "$code" = 200 ] && break
		sleep 0.02
	done
	[ "$code" = 200 ] || { echo "the critical-path container never answered 200" >&2; exit 1; }
	timed "$t0" "$c0"
	dk 1 rm -f bench-critical >/dev/null 2>&1
}

# `runs ARRAY LABEL N COMMAND...`: N runs of COMMAND, which prints its seconds and, after them,
# the machine's busy CPU-seconds during the run when it measured them; the times go into ARRAY,
# the CPU-seconds into ARRAY_cpu (declared by the caller), both into the results file.
runs() {
	local -n times=$1
	local label=$2 n=$3 rep t c
	local -n cpus=${1}_cpu
	shift 3
	for rep in $(seq 1 "$n"); do
		read -r t c < <("$@") || true
		[ -n "$t" ] || exit 1
		times+=("$t")
		if [ -n "$c" ]; then
			cpus+=("$c")
			echo "$label run $rep: ${t}s, ${c} CPU-s" | tee -a "$RESULTS" >&2
		else
			echo "$label run $rep: ${t}s" | tee -a "$RESULTS" >&2
		fi
	done
}
# `from_empty COMMAND...`: COMMAND, run after every container is removed.
from_empty() {
	remove_containers
	"$@"
}

log "critical path: plain docker run + ${LOAD_SECS}s load on h1, $REPS runs"
critical_times=()
critical_times_cpu=()
runs critical_times "critical path" "$REPS" from_empty critical_path

# The whole job by hand, with no tool: every container of the job started at once by plain
# `docker run` (all hosts and all models in parallel), each polled every PROBE_MS on its host
# until /v1/models answers 200, timed until the last one does. This is what the engines and the
# load cost when the job's containers start together on this machine; what a tool adds is what
# it takes beyond this. `by_hand N` does it on hosts h1..hN only (default all).
by_hand() {
	local t0 c0 k i n=${1:-$HOSTS} pids=()
	t0=$(now) c0=$(cpu_busy)
	for k in $(seq 1 "$n"); do
		for i in $(seq 1 "$MODELS"); do
			(
				port=$((8079 + i))
				dk "$k" run -d --pull=never --name "bench-hand-$i" --network=host --entrypoint /bin/sh "$IMAGE" \
					-c "berth-model-server --port $port --model m$i --load-secs $LOAD_SECS" >/dev/null
				for _ in $(seq 1 3000); do
					code=$(nsenter --net="/run/netns/$BERTH_FLEET_PREFIX-h$k" curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$port/v1/models" || true)
					[ "$code" = 200 ] && exit 0
					sleep "$(awk -v ms="$PROBE_MS" 'BEGIN { print ms / 1000 }')"
				done
				exit 1
			) &
			pids+=($!)
		done
	done
	for p in "${pids[@]}"; do wait "$p" || { echo "a container of the by-hand job never answered 200" >&2; exit 1; }; done
	timed "$t0" "$c0"
}

log "by hand: all $((HOSTS * MODELS)) containers started at once with plain docker run, $REPS runs"
hand_times=()
hand_times_cpu=()
runs hand_times "by hand" "$REPS" from_empty by_hand

# The engines' own work to start the job, which no tool can avoid: every container of the job
# started at once by plain `docker run -d`, with no polling; then LOAD_SECS for their servers to
# exec and load (a timer: the stand-in spends no CPU on it). Prints the machine's busy
# CPU-seconds over that, less those of LOAD_SECS + 1 s with nothing started (the idle engines
# and testbed). Every container must be started LOAD_SECS before the job can be done, so on C
# cores no tool finishes the job in less than LOAD_SECS + (these CPU-seconds) / C.
start_work() {
	local c0 idle k i pids=()
	c0=$(cpu_busy)
	sleep "$(awk -v l="$LOAD_SECS" 'BEGIN { print l + 1 }')"
	idle=$(awk -v a="$c0" -v b="$(cpu_busy)" 'BEGIN { print b - a }')
	c0=$(cpu_busy)
	for k in $(seq 1 "$HOSTS"); do
		for i in $(seq 1 "$MODELS"); do
			dk "$k" run -d --pull=never --name "bench-hand-$i" --network=host --entrypoint /bin/sh "$IMAGE" \
				-c "berth-model-server --port $((8079 + i)) --model m$i --load-secs $LOAD_SECS" >/dev/null &
			pids+=($!)
		done
	done
	for p in "${pids[@]}"; do wait "$p" || { echo "a docker run of the start work failed" >&2; exit 1; }; done
	sleep "$(awk -v l="$LOAD_SECS" 'BEGIN { print l + 1 }')"
	awk -v a="$c0" -v b="$(cpu_busy)" -v idle="$idle" 'BEGIN { printf "%.2f\n", b - a - idle }'
}

log "the engines' work to start all $((HOSTS * MODELS)) containers at once, $REPS runs"
start_cpus=()
for rep in $(seq 1 "$REPS"); do
	remove_containers
	c=$(start_work)
	start_cpus+=("$c")
	echo "start work run $rep: ${c} CPU-s" | tee -a "$RESULTS" >&2
done

# `berth_apply CONFIG`: one `berth apply --auto-approve` of CONFIG from empty (no containers, no
# state), in seconds.
berth_apply() {
	local t0 c0 log
	remove_containers
	rm -rf "$1/.berth"
	log=$WORK/$(basename "$1")-$(date +%s%N).log
	t0=$(now) c0=$(cpu_busy)
	"$BERTH" -C "$1" apply --auto-approve >"$log" 2>&1 || { echo "berth apply failed; see $log" >&2; exit 1; }
	timed "$t0" "$c0"
}

log "berth apply: $HOSTS hosts x $MODELS containers, $REPS runs"
berth_times=()
berth_times_cpu=()
runs berth_times "berth apply" "$REPS" berth_apply "$APPLY_CFG"
log "berth apply with probe_interval_ms = $PROBE_MS: $HOSTS hosts x $MODELS containers, $REPS runs"
polled_times=()
polled_times_cpu=()
runs polled_times "berth apply (probe_interval_ms = $PROBE_MS)" "$REPS" berth_apply "$POLLED_CFG"

# One host's share, alone: on a real fleet every host has its own cores, so a host's critical
# path is its own MODELS containers; here all HOSTS hosts share this machine's cores.
log "one host's share: $MODELS containers on h1 by hand, then by berth, $REPS runs each"
share_hand_times=()
share_hand_times_cpu=()
runs share_hand_times "one host by hand" "$REPS" from_empty by_hand 1
share_times=()
share_times_cpu=()
runs share_times "one host berth apply" "$REPS" berth_apply "$SHARE_CFG"
remove_containers

ansible_times=()
ansible_times_cpu=()
if [ "${SKIP_ANSIBLE:-}" != 1 ]; then
	if [ ! -x "$VENV/bin/ansible-playbook" ]; then
		log "installing ansible and the docker SDK from PyPI into $VENV"
		python3 -m venv "$VENV"
		"$VENV/bin/pip" install --quiet ansible docker requests
	fi
	if [ ! -x "$REMOTE_VENV/bin/python3" ]; then
		/usr/bin/python3 -m venv "$REMOTE_VENV"
		"$REMOTE_VENV/bin/pip" install --quiet docker requests
	fi
	echo "# $("$VENV/bin/ansible" --version 2>/dev/null | head -n 1), community.docker $("$VENV/bin/ansible-galaxy" collection list community.docker 2>/dev/null | awk '/community.docker/ { print $2 }')" >>"$RESULTS"
	mkdir -p "$WORK/ansible" "$WORK/cp"
	{
		echo "[fleet]"
		for k in $(seq 1 "$HOSTS"); do echo "h$k ansible_host=$(ip_of "$k") docker_sock=unix://$(sock_of "$k")"; done
		echo
		echo "[fleet:vars]"
		echo "ansible_user=root"
		echo "ansible_ssh_private_key_file=$KEY"
		echo "ansible_python_interpreter=$REMOTE_VENV/bin/python3"
	} >"$WORK/ansible/inventory.ini"
	cat >"$WORK/ansible/ansible.cfg" <<EOF
[defaults]
inventory = $WORK/ansible/inventory.ini
forks = $HOSTS
host_key_checking = True
retry_files_enabled = False

[ssh_connection]
pipelining = True
ssh_args = -o ControlMaster=auto -o ControlPersist=120s -o UserKnownHostsFile=$KNOWN_HOSTS -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes
control_path = $WORK/cp/%%C
EOF
	log "ansible-playbook: $HOSTS hosts x $MODELS containers, $REPS runs"
	for rep in $(seq 1 "$REPS"); do
		remove_containers
		t0=$(now) c0=$(cpu_busy)
		ANSIBLE_CONFIG=$WORK/ansible/ansible.cfg "$VENV/bin/ansible-playbook" "$HERE/playbook.yml" \
			-e "image=$IMAGE models=$MODELS load_secs=$LOAD_SECS probe_ms=$PROBE_MS" >"$WORK/ansible-$rep.log" 2>&1 || { echo "ansible failed; see $WORK/ansible-$rep.log" >&2; exit 1; }
		read -r t c < <(timed "$t0" "$c0")
		ansible_times+=("$t")
		ansible_times_cpu+=("$c")
		echo "ansible run $rep: ${t}s, ${c} CPU-s" | tee -a "$RESULTS" >&2
	done
	remove_containers
fi

# One `berth drift` of the drift fleet, in seconds; differences are an error.
berth_drift() {
	local t0
	t0=$(now)
	"$BERTH" -C "$DRIFT_CFG" drift >"$WORK/drift.log" 2>&1 || { echo "drift found differences; see $WORK/drift.log" >&2; exit 1; }
	elapsed "$t0" "$(now)"
}
# The engine call berth's refresh makes on a host whose containers run the image their name
# resolves to (one `ps` of berth's containers with their state, image and labels), done by
# hand: as one SSH command to host K (what the engines and the SSH logins cost, without
# berth's probes), or straight to host K's engine socket (the engines' own share).
ENGINE_CALLS="docker ps -a --no-trunc --filter label=berth.address --format '{{.ID}} {{.State}} {{.Status}} {{.Image}} {{.Labels}}' >/dev/null"
calls_over_ssh() {
	ssh -q -i "$KEY" -o UserKnownHostsFile="$KNOWN_HOSTS" -o StrictHostKeyChecking=yes -o BatchMode=yes "root@$(ip_of "$1")" "$ENGINE_CALLS"
}
calls_direct() {
	DOCKER_HOST="unix://$(sock_of "$1")" sh -c "$ENGINE_CALLS"
}
# `on_every_host FUNCTION`: FUNCTION K for every host K at once; prints the seconds until the last
# one is done.
on_every_host() {
	local t0 k p pids=()
	t0=$(now)
	for k in $(seq 1 "$HOSTS"); do
		"$1" "$k" &
		pids+=($!)
	done
	for p in "${pids[@]}"; do wait "$p" || { echo "$1 failed" >&2; exit 1; }; done
	elapsed "$t0" "$(now)"
}

drift_times=()
drift_times_cpu=()
drift_hand_times=()
drift_hand_times_cpu=()
drift_engine_times=()
drift_engine_times_cpu=()
if [ "${SKIP_DRIFT:-}" != 1 ]; then
	DRIFT_CFG=$WORK/drift
	for i in $(seq 1 "$DRIFT_MODELS"); do printf 'd%s %s --load-secs 0\n' "$i" $((8099 + i)); done | write_config "$DRIFT_CFG"
	log "berth drift: $HOSTS hosts x $DRIFT_MODELS containers"
	"$BERTH" -C "$DRIFT_CFG" apply --auto-approve >"$WORK/drift-apply.log" 2>&1 || { echo "apply for drift failed; see $WORK/drift-apply.log" >&2; exit 1; }
	runs drift_times "berth drift" "$DRIFT_REPS" berth_drift
	log "by hand: the same engine calls over ssh, all hosts at once"
	runs drift_hand_times "by hand observe" "$DRIFT_REPS" on_every_host calls_over_ssh
	log "by hand: the same engine calls, no SSH, all engines at once"
	runs drift_engine_times "by hand engine calls" "$DRIFT_REPS" on_every_host calls_direct
fi

beyond() { awk -v a="$1" -v c="$2" 'BEGIN { printf "%.3fs beyond it, %.2fx", a - c, a / c }'; }
CRITICAL=$(printf '%s\n' "${critical_times[@]}" | median)
BERTH_MEDIAN=$(printf '%s\n' "${berth_times[@]}" | median)
{
	echo "median critical path (docker run + ${LOAD_SECS}s load, one container): ${CRITICAL}s"
	HAND=$(printf '%s\n' "${hand_times[@]}" | median)
	echo "median by hand, every container started at once: ${HAND}s ($(beyond "$HAND" "$CRITICAL"))"
	START_CPU=$(printf '%s\n' "${start_cpus[@]}" | median)
	FLOOR=$(awk -v l="$LOAD_SECS" -v w="$START_CPU" -v n="$(nproc)" 'BEGIN { printf "%.3f", l + w / n }')
	echo "median engines' work to start every container at once: ${START_CPU} CPU-s; on $(nproc) cores no tool can finish the job in less than ${LOAD_SECS} s + ${START_CPU} / $(nproc) = ${FLOOR}s ($(awk -v f="$FLOOR" -v c="$CRITICAL" 'BEGIN { printf "%.2fx", f / c }') the critical path)"
	echo "median berth apply: ${BERTH_MEDIAN}s ($(beyond "$BERTH_MEDIAN" "$CRITICAL"); $(beyond "$BERTH_MEDIAN" "$HAND" | sed 's/beyond it/beyond by hand/'))"
	POLLED_MEDIAN=$(printf '%s\n' "${polled_times[@]}" | median)
	echo "median berth apply, probe_interval_ms = $PROBE_MS: ${POLLED_MEDIAN}s ($(beyond "$POLLED_MEDIAN" "$CRITICAL"))"
	SHARE_HAND=$(printf '%s\n' "${share_hand_times[@]}" | median)
	SHARE_MEDIAN=$(printf '%s\n' "${share_times[@]}" | median)
	echo "one host's share ($MODELS containers on h1): by hand ${SHARE_HAND}s ($(beyond "$SHARE_HAND" "$CRITICAL")); berth apply ${SHARE_MEDIAN}s ($(beyond "$SHARE_MEDIAN" "$CRITICAL"); $(beyond "$SHARE_MEDIAN" "$SHARE_HAND" | sed 's/beyond it/beyond by hand/'))"
	if [ ${#ansible_times[@]} != 0 ]; then
		ANSIBLE_MEDIAN=$(printf '%s\n' "${ansible_times[@]}" | median)
		echo "median ansible-playbook: ${ANSIBLE_MEDIAN}s ($(beyond "$ANSIBLE_MEDIAN" "$CRITICAL"))"
	fi
	cpu_of() { local -n a=$1; [ ${#a[@]} = 0 ] || echo "  $2: $(printf '%s\n' "${a[@]}" | median) CPU-s"; }
	echo "median busy CPU-seconds of the machine during a run:"
	cpu_of critical_times_cpu "critical path"
	cpu_of hand_times_cpu "by hand"
	cpu_of berth_times_cpu "berth apply"
	cpu_of polled_times_cpu "berth apply, probe_interval_ms = $PROBE_MS"
	cpu_of share_hand_times_cpu "one host's share by hand"
	cpu_of share_times_cpu "one host's share, berth apply"
	cpu_of ansible_times_cpu "ansible-playbook"
	[ ${#drift_times[@]} = 0 ] || echo "median berth drift ($HOSTS x $DRIFT_MODELS): $(printf '%s\n' "${drift_times[@]}" | median)s"
	[ ${#drift_hand_times[@]} = 0 ] || echo "median by-hand engine calls over ssh ($HOSTS hosts): $(printf '%s\n' "${drift_hand_times[@]}" | median)s"
	[ ${#drift_engine_times[@]} = 0 ] || echo "median by-hand engine calls without ssh ($HOSTS engines): $(printf '%s\n' "${drift_engine_times[@]}" | median)s"
} | tee -a "$RESULTS"
