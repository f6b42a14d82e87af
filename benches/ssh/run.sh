#!/usr/bin/env bash
# benches/ssh/run.sh: berth against Ansible and pyinfra on the fleet testbed (testdata/fleet), side
# by side.
#
#  1. apply from empty: HOSTS hosts x MODELS models whose stand-ins take LOAD_SECS to load, timed for
#     `berth apply --auto-approve` (release build, berth's default settings, fresh state each
#     time), for the same job as an Ansible playbook (playbook.yml: forks = HOSTS, pipelining,
#     ControlPersist), run cold (no SSH master connection yet, like berth) and warm (masters
#     kept from the run before), and as a pyinfra deploy (pyinfra_deploy.py, pyinfra's
#     defaults). Everything is torn down between runs, so every run starts from empty.
#     Beside each apply's wall time, the CPU time the whole job used (the tool, the hosts' sshds
#     and every process they started: a cpuacct cgroup holds this script and all it starts), so
#     the tools compare even when other work shares the machine.
#  2. `berth drift` on HOSTS hosts x DRIFT_MODELS deployments (stand-ins with --load-secs 0),
#     with the number of SSH logins each host's sshd accepted during each run.
#
# Needs root (network namespaces), python3 with venv, and PyPI for ansible-core. Prints the
# medians at the end and writes every figure to $WORK/results.txt.
#
# Environment: REPS (5), HOSTS (10), MODELS (2 per host), LOAD_SECS (2), PROBE_MS (100: Ansible's and pyinfra's
# retry delay; berth keeps its default probe timing), DRIFT_MODELS (20), DRIFT_REPS (7), SKIP_ANSIBLE=1,
# SKIP_PYINFRA=1, SKIP_DRIFT=1, PYINFRA_VENV (target/bench-pyinfra-venv), PYINFRA (pip spec, "pyinfra"), NO_BUILD=1,
# ANSIBLE_VENV (target/bench-ansible-venv), ANSIBLE_CORE (pip spec, "ansible-core"), KEEP=1
# (keep the work directory), BERTH_FLEET_PREFIX/SUBNET/DIR (bbench, 10.233.0, /tmp/...).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$ROOT/benches/ssh
FLEET=$ROOT/testdata/fleet/fleet

REPS=${REPS:-5}
HOSTS=${HOSTS:-10}
MODELS=${MODELS:-2}
LOAD_SECS=${LOAD_SECS:-2}
PROBE_MS=${PROBE_MS:-100}
DRIFT_MODELS=${DRIFT_MODELS:-20}
DRIFT_REPS=${DRIFT_REPS:-7}
ANSIBLE_VENV=${ANSIBLE_VENV:-$ROOT/target/bench-ansible-venv}
ANSIBLE_CORE=${ANSIBLE_CORE:-ansible-core}
PYINFRA_VENV=${PYINFRA_VENV:-$ROOT/target/bench-pyinfra-venv}
PYINFRA=${PYINFRA:-pyinfra}

export BERTH_FLEET_PREFIX=${BERTH_FLEET_PREFIX:-bbench}
export BERTH_FLEET_SUBNET=${BERTH_FLEET_SUBNET:-10.233.0}
export BERTH_FLEET_DIR=${BERTH_FLEET_DIR:-/tmp/berth-fleet-$BERTH_FLEET_PREFIX}
export BERTH_FLEET_OWNER=$$
export NO_COLOR=1

[ "$(id -u)" = 0 ] || {
	echo "run.sh: needs root (the fleet uses network namespaces)" >&2
	exit 1
}

. "$ROOT/benches/lib.sh"

# CPU accounting (cgroup v1 cpuacct, or v2's cpu.stat): everything this script starts from here
# on, the fleet's sshds and the servers they start included, is counted in one cgroup.
CG=
if [ -w /sys/fs/cgroup/cpuacct ]; then
	CG=/sys/fs/cgroup/cpuacct/berth-bench-$$
	mkdir -p "$CG" && echo $$ >"$CG/cgroup.procs" || CG=
elif [ -f /sys/fs/cgroup/cgroup.controllers ] && [ -w /sys/fs/cgroup ]; then
	CG=/sys/fs/cgroup/berth-bench-$$
	mkdir -p "$CG" && echo $$ >"$CG/cgroup.procs" || CG=
fi
# CPU seconds used so far by the job (empty without a cgroup).
cpu_now() {
	if [ -z "$CG" ]; then
		echo 0
	elif [ -f "$CG/cpuacct.usage" ]; then
		awk '{ printf "%.3f", $1 / 1e9 }' "$CG/cpuacct.usage"
	else
		awk '$1 == "usage_usec" { printf "%.3f", $2 / 1e6 }' "$CG/cpu.stat"
	fi
}

WORK=$(mktemp -d /tmp/berth-bench-ssh.XXXXXX)
RESULTS=$WORK/results.txt
cleanup() {
	local rc=$?
	kill_stand_ins 2>/dev/null || true
	if [ -d "$WORK/cp" ]; then
		for s in "$WORK"/cp/*/*; do
			if [ -S "$s" ]; then ssh -o ControlPath="$s" -O exit dummy 2>/dev/null || true; fi
		done
	fi
	"$FLEET" down >/dev/null 2>&1 || true
	if [ -n "$CG" ]; then
		parent=$(dirname "$CG")
		while read -r p; do echo "$p" >"$parent/cgroup.procs" 2>/dev/null || true; done <"$CG/cgroup.procs"
		rmdir "$CG" 2>/dev/null || true
	fi
	if [ "${KEEP:-}" = 1 ] || [ $rc != 0 ]; then
		echo "work directory kept: $WORK" >&2
	else
		rm -rf "$WORK"
	fi
	exit $rc
}
trap cleanup EXIT

# --- binaries ----------------------------------------------------------------------------------
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
if [ "${NO_BUILD:-}" != 1 ]; then
	log "building berth and the stand-in (release)"
	(cd "$ROOT" && cargo build --release --quiet -p berth-engine -p berth-model-server)
fi
BERTH=$TARGET/release/berth
SERVER=$TARGET/release/berth-model-server
if [ ! -x "$BERTH" ] || [ ! -x "$SERVER" ]; then
	echo "run.sh: $BERTH or $SERVER is missing" >&2
	exit 1
fi

# --- the fleet ---------------------------------------------------------------------------------
log "bringing up $HOSTS hosts ($BERTH_FLEET_PREFIX, $BERTH_FLEET_SUBNET.0/24)"
"$FLEET" prune >/dev/null 2>&1 || true
"$FLEET" down >/dev/null 2>&1 || true
"$FLEET" up "$HOSTS" >/dev/null
KEY=$BERTH_FLEET_DIR/id_ed25519
KNOWN_HOSTS=$BERTH_FLEET_DIR/known_hosts
ip_of() { echo "$BERTH_FLEET_SUBNET.$((10 + $1))"; }

# Every stand-in living in one of the fleet's network namespaces, killed; and the hosts' run
# directories emptied: the state every run starts from.
kill_stand_ins() {
	local k p left
	for _ in $(seq 1 50); do
		left=0
		for k in $(seq 1 "$HOSTS"); do
			for p in $(ip netns pids "$BERTH_FLEET_PREFIX-h$k" 2>/dev/null); do
				if tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q berth-model-server; then
					kill -KILL "$p" 2>/dev/null || true
					left=$((left + 1))
				fi
			done
		done
		[ "$left" = 0 ] && break
		sleep 0.1
	done
	rm -rf "$BERTH_FLEET_DIR"/hosts/h*/root/run "$BERTH_FLEET_DIR"/hosts/h*/root/ansible "$BERTH_FLEET_DIR"/hosts/h*/root/pyinfra
}

# Whether the stand-in on host k's port answers 200 (asked from inside the host).
ready_on() {
	"$FLEET" nsenter "$1" curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$2/v1/models" >/dev/null 2>&1
}
all_ready() {
	local k port
	for k in $(seq 1 "$HOSTS"); do
		for port in "$@"; do ready_on "$k" "$port" || return 1; done
	done
}

# --- configs -----------------------------------------------------------------------------------
# berth config: HOSTS hosts; models given as "name port flags" lines on stdin. Settings are
# berth's defaults, as a user would leave them; a second argument sets probe_interval_ms.
write_config() {
	local dir=$1 probe=${2:-} k name port flags interval=""
	[ -z "$probe" ] || interval="
    probe_interval_ms = $probe"
	mkdir -p "$dir"
	{
		for k in $(seq 1 "$HOSTS"); do
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
  runtime    = "process"
  verify_cmd = "test -x $SERVER"
}

EOF
		while read -r name port flags; do
			cat <<EOF
model "$name" {
  source   = "/srv/berth/models/$name.gguf"
  size_gib = 0.1
  host_policy {
    hosts    = ["h*"]
    replicas = $HOSTS
  }
  runtime_defaults {
    port = $port
  }
  launch {
    start_cmd  = "$SERVER --port {port} --model {model} $flags"
    probe_http = "/v1/models"$interval
  }
}

EOF
		done
	} >"$dir/main.hcl"
}

APPLY_CFG=$WORK/apply
PORTS=()
for i in $(seq 1 "$MODELS"); do PORTS+=($((8079 + i))); done
job_models() { for i in $(seq 1 "$MODELS"); do printf 'm%s %s --load-secs %s\n' "$i" $((8079 + i)) "$LOAD_SECS"; done; }
job_models | write_config "$APPLY_CFG"
# The same job probed every PROBE_MS, as the playbooks poll: run after each default run.
POLLED_CFG=$WORK/apply-polled
job_models | write_config "$POLLED_CFG" "$PROBE_MS"
"$BERTH" -C "$APPLY_CFG" validate >/dev/null
"$BERTH" -C "$POLLED_CFG" validate >/dev/null

echo "# berth vs Ansible and pyinfra on $HOSTS fleet hosts, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores" >"$RESULTS"
echo "# apply: $MODELS models per host, --load-secs $LOAD_SECS; berth with its default probe timing, Ansible and pyinfra retrying every $PROBE_MS ms" >>"$RESULTS"

# --- 1a. berth apply from empty ----------------------------------------------------------------
# `berth_apply CONFIG LABEL TIMES CPU`: one apply of CONFIG from empty; its wall and CPU
# seconds are appended to the arrays TIMES and CPU.
berth_apply() {
	local cfg=$1 label=$2 c0 c1 t0 t1 t log
	local -n times=$3 cpus=$4
	kill_stand_ins
	rm -rf "$cfg/.berth"
	log=$WORK/$(basename "$cfg")-$rep.log
	c0=$(cpu_now)
	t0=$(now)
	"$BERTH" -C "$cfg" apply --auto-approve >"$log" 2>&1 || {
		echo "berth apply failed; see $log" >&2
		exit 1
	}
	t1=$(now)
	c1=$(cpu_now)
	t=$(elapsed "$t0" "$t1")
	all_ready "${PORTS[@]}" || {
		echo "berth apply exited 0 but not every endpoint answers" >&2
		exit 1
	}
	times+=("$t")
	cpus+=("$(elapsed "$c0" "$c1")")
	echo "$label run $rep: ${t}s, CPU ${cpus[-1]}s" | tee -a "$RESULTS" >&2
	"$BERTH" -C "$cfg" destroy --auto-approve >"$WORK/destroy-$(basename "$cfg")-$rep.log" 2>&1 || true
}

log "berth apply --auto-approve: $HOSTS hosts x $MODELS models, $REPS runs, each followed by one with probe_interval_ms = $PROBE_MS"
berth_times=()
berth_cpu=()
polled_times=()
polled_cpu=()
for rep in $(seq 1 "$REPS"); do
	berth_apply "$APPLY_CFG" "berth apply" berth_times berth_cpu
	berth_apply "$POLLED_CFG" "berth apply (probe_interval_ms = $PROBE_MS)" polled_times polled_cpu
done

# --- 1b. the same job with Ansible -------------------------------------------------------------
ansible_cold=()
ansible_warm=()
if [ "${SKIP_ANSIBLE:-}" != 1 ]; then
	if [ ! -x "$ANSIBLE_VENV/bin/ansible-playbook" ]; then
		log "installing $ANSIBLE_CORE from PyPI into $ANSIBLE_VENV"
		python3 -m venv "$ANSIBLE_VENV"
		"$ANSIBLE_VENV/bin/pip" install --quiet --upgrade pip
		"$ANSIBLE_VENV/bin/pip" install --quiet "$ANSIBLE_CORE"
	fi
	ANSIBLE_VERSION=$("$ANSIBLE_VENV/bin/ansible" --version | head -n 1)
	echo "# $ANSIBLE_VERSION" >>"$RESULTS"
	mkdir -p "$WORK/ansible" "$WORK/cp"
	{
		echo "[fleet]"
		for k in $(seq 1 "$HOSTS"); do echo "h$k ansible_host=$(ip_of "$k")"; done
		echo
		echo "[fleet:vars]"
		echo "ansible_user=root"
		echo "ansible_ssh_private_key_file=$KEY"
		echo "ansible_python_interpreter=/usr/bin/python3"
	} >"$WORK/ansible/inventory.ini"
	cat >"$WORK/ansible/ansible.cfg" <<EOF
[defaults]
inventory = $WORK/ansible/inventory.ini
forks = $HOSTS
host_key_checking = True
interpreter_python = /usr/bin/python3
retry_files_enabled = False
stdout_callback = default

[ssh_connection]
pipelining = True
ssh_args = -o ControlMaster=auto -o ControlPersist=120s -o UserKnownHostsFile=$KNOWN_HOSTS -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes
EOF
	export ANSIBLE_CONFIG=$WORK/ansible/ansible.cfg
	models_json=$(for i in $(seq 1 "$MODELS"); do printf '{"name": "m%s", "port": %s}\n' "$i" $((8079 + i)); done | paste -sd, -)
	extra=$(printf '{"model_server": "%s", "load_secs": %s, "probe_delay": %s, "models": [%s]}' \
		"$SERVER" "$LOAD_SECS" "$(awk -v ms="$PROBE_MS" 'BEGIN { printf "%.3f", ms / 1000 }')" "$models_json")
	run_ansible() { # label rep control-path-dir
		local label=$1 rep=$2 cpdir=$3 t0 t1 t
		kill_stand_ins
		mkdir -p "$cpdir"
		t0=$(now)
		ANSIBLE_SSH_CONTROL_PATH_DIR=$cpdir "$ANSIBLE_VENV/bin/ansible-playbook" -e "$extra" "$HERE/playbook.yml" \
			>"$WORK/ansible-$label-$rep.log" 2>&1 || {
			echo "ansible-playbook failed; see $WORK/ansible-$label-$rep.log" >&2
			exit 1
		}
		t1=$(now)
		t=$(elapsed "$t0" "$t1")
		all_ready "${PORTS[@]}" || {
			echo "the playbook ended but not every endpoint answers" >&2
			exit 1
		}
		echo "$t"
	}
	log "ansible-playbook, cold (no SSH master yet): $REPS runs"
	for rep in $(seq 1 "$REPS"); do
		t=$(run_ansible cold "$rep" "$WORK/cp/cold-$rep")
		ansible_cold+=("$t")
		echo "ansible cold run $rep: ${t}s" | tee -a "$RESULTS" >&2
	done
	log "ansible-playbook, warm (ControlPersist masters from the run before): $REPS runs"
	run_ansible warm 0 "$WORK/cp/warm" >/dev/null # opens the masters
	for rep in $(seq 1 "$REPS"); do
		t=$(run_ansible warm "$rep" "$WORK/cp/warm")
		ansible_warm+=("$t")
		echo "ansible warm run $rep: ${t}s" | tee -a "$RESULTS" >&2
	done
	kill_stand_ins
fi

# --- 1c. the same job with pyinfra -------------------------------------------------------------
pyinfra_times=()
pyinfra_cpu=()
if [ "${SKIP_PYINFRA:-}" != 1 ]; then
	if [ ! -x "$PYINFRA_VENV/bin/pyinfra" ]; then
		log "installing $PYINFRA from PyPI into $PYINFRA_VENV"
		python3 -m venv "$PYINFRA_VENV"
		"$PYINFRA_VENV/bin/pip" install --quiet --upgrade pip
		"$PYINFRA_VENV/bin/pip" install --quiet "$PYINFRA"
	fi
	echo "# pyinfra $("$PYINFRA_VENV/bin/pyinfra" --version 2>&1 | tail -n 1)" >>"$RESULTS"
	mkdir -p "$WORK/pyinfra"
	{
		echo "fleet = ["
		for k in $(seq 1 "$HOSTS"); do
			printf '    ("%s", {"ssh_user": "root", "ssh_key": "%s", "ssh_known_hosts_file": "%s", "ssh_strict_host_key_checking": "yes"}),\n' \
				"$(ip_of "$k")" "$KEY" "$KNOWN_HOSTS"
		done
		echo "]"
	} >"$WORK/pyinfra/inventory.py"
	export BERTH_BENCH_JOB
	BERTH_BENCH_JOB=$(printf '{"model_server": "%s", "load_secs": %s, "probe_delay": %s, "models": [%s]}' \
		"$SERVER" "$LOAD_SECS" "$(awk -v ms="$PROBE_MS" 'BEGIN { printf "%.3f", ms / 1000 }')" \
		"$(for i in $(seq 1 "$MODELS"); do printf '{"name": "m%s", "port": %s}\n' "$i" $((8079 + i)); done | paste -sd, -)")
	log "pyinfra (defaults): $REPS runs"
	for rep in $(seq 1 "$REPS"); do
		kill_stand_ins
		c0=$(cpu_now)
		t0=$(now)
		"$PYINFRA_VENV/bin/pyinfra" -y "$WORK/pyinfra/inventory.py" "$HERE/pyinfra_deploy.py" \
			>"$WORK/pyinfra-$rep.log" 2>&1 || {
			echo "pyinfra failed; see $WORK/pyinfra-$rep.log" >&2
			exit 1
		}
		t1=$(now)
		c1=$(cpu_now)
		t=$(elapsed "$t0" "$t1")
		all_ready "${PORTS[@]}" || {
			echo "pyinfra ended but not every endpoint answers" >&2
			exit 1
		}
		pyinfra_times+=("$t")
		pyinfra_cpu+=("$(elapsed "$c0" "$c1")")
		echo "pyinfra run $rep: ${t}s, CPU ${pyinfra_cpu[-1]}s" | tee -a "$RESULTS" >&2
	done
	kill_stand_ins
fi

# --- 2. berth drift on HOSTS x DRIFT_MODELS ----------------------------------------------------
drift_times=()
max_logins=0
min_logins=0
if [ "${SKIP_DRIFT:-}" != 1 ]; then
log "berth drift: $HOSTS hosts x $DRIFT_MODELS deployments"
kill_stand_ins
DRIFT_CFG=$WORK/drift
for i in $(seq 1 "$DRIFT_MODELS"); do printf 'd%02d %s --load-secs 0\n' "$i" $((9000 + i)); done |
	write_config "$DRIFT_CFG"
t0=$(now)
"$BERTH" -C "$DRIFT_CFG" apply --auto-approve >"$WORK/drift-apply.log" 2>&1 || {
	echo "apply of the drift config failed; see $WORK/drift-apply.log" >&2
	exit 1
}
t1=$(now)
echo "berth apply of $((HOSTS * DRIFT_MODELS)) deployments (--load-secs 0): $(elapsed "$t0" "$t1")s" | tee -a "$RESULTS" >&2
logins() { grep -c 'Accepted publickey' "$BERTH_FLEET_DIR/hosts/h$1/sshd.log" || true; }
min_logins=999999
for rep in $(seq 1 "$DRIFT_REPS"); do
	before=()
	for k in $(seq 1 "$HOSTS"); do before[k]=$(logins "$k"); done
	t0=$(now)
	rc=0
	"$BERTH" -C "$DRIFT_CFG" drift >"$WORK/drift-$rep.log" 2>&1 || rc=$?
	t1=$(now)
	[ "$rc" = 0 ] || {
		echo "berth drift exited $rc; see $WORK/drift-$rep.log" >&2
		exit 1
	}
	per_host=""
	for k in $(seq 1 "$HOSTS"); do
		n=$(($(logins "$k") - before[k]))
		per_host="$per_host $n"
		[ "$n" -gt "$max_logins" ] && max_logins=$n
		[ "$n" -lt "$min_logins" ] && min_logins=$n
	done
	t=$(elapsed "$t0" "$t1")
	drift_times+=("$t")
	echo "berth drift run $rep: ${t}s; SSH logins per host:$per_host" | tee -a "$RESULTS" >&2
done
"$BERTH" -C "$DRIFT_CFG" destroy --auto-approve >"$WORK/drift-destroy.log" 2>&1 || true
fi

# --- summary -----------------------------------------------------------------------------------
b=$(printf '%s\n' "${berth_times[@]}" | median)
d=$(printf '%s\n' "${drift_times[@]}" | median)
{
	echo
	echo "== medians ($REPS runs; drift $DRIFT_REPS runs)"
	echo "berth apply, $HOSTS hosts x $MODELS models, ${LOAD_SECS}s load: ${b}s ($(awk -v b="$b" -v l="$LOAD_SECS" 'BEGIN { printf "%.2f", b / l }')x the ${LOAD_SECS}s critical path; goal <= 1.2x); CPU $(printf '%s\n' "${berth_cpu[@]}" | median)s"
	p=$(printf '%s\n' "${polled_times[@]}" | median)
	echo "berth apply with probe_interval_ms = $PROBE_MS: ${p}s ($(awk -v b="$p" -v l="$LOAD_SECS" 'BEGIN { printf "%.2f", b / l }')x); CPU $(printf '%s\n' "${polled_cpu[@]}" | median)s"
	if [ ${#ansible_cold[@]} -gt 0 ]; then
		c=$(printf '%s\n' "${ansible_cold[@]}" | median)
		w=$(printf '%s\n' "${ansible_warm[@]}" | median)
		echo "ansible-playbook, cold SSH: ${c}s (berth is $(awk -v a="$c" -v b="$b" 'BEGIN { printf "%.1f", a / b }')x faster; goal >= 5x)"
		echo "ansible-playbook, warm SSH (ControlPersist): ${w}s (berth is $(awk -v a="$w" -v b="$b" 'BEGIN { printf "%.1f", a / b }')x faster)"
	fi
	if [ ${#pyinfra_times[@]} -gt 0 ]; then
		py=$(printf '%s\n' "${pyinfra_times[@]}" | median)
		echo "pyinfra (defaults): ${py}s (berth is $(awk -v a="$py" -v b="$b" 'BEGIN { printf "%.1f", a / b }')x faster); CPU $(printf '%s\n' "${pyinfra_cpu[@]}" | median)s"
	fi
	[ "${SKIP_DRIFT:-}" = 1 ] || echo "berth drift, $HOSTS hosts x $DRIFT_MODELS deployments: ${d}s (goal < 0.3s); SSH logins per host per run: min $min_logins, max $max_logins (goal: 1)"
} | tee -a "$RESULTS"
