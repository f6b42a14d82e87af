#!/usr/bin/env bash
# benches/systemd/run.sh: berth's systemd runtime at default settings on one systemd host (a
# container of testdata/systemd-host/build-image: systemd as PID 1, journald, sshd, reached over
# SSH on a published loopback port), UNITS units of the stand-in model server:
#
#  1. `berth apply --auto-approve` from empty (fresh state, no units on the host);
#  2. `berth drift` with every unit running;
#  3. `berth destroy --auto-approve`.
#
# Each REPS times; prints the medians and writes $WORK/results.txt. Needs root and docker.
# Environment: REPS (5), UNITS (20), LOAD_SECS (0), BERTH (binary, default target/release/berth),
# SERVER (stand-in, default target/release/berth-model-server), KEEP=1 keeps the work directory.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
REPS=${REPS:-5}
UNITS=${UNITS:-20}
LOAD_SECS=${LOAD_SECS:-0}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BERTH=${BERTH:-$TARGET/release/berth}
SERVER=$(realpath "${SERVER:-$TARGET/release/berth-model-server}")
BERTH=$(realpath "$BERTH")
export NO_COLOR=1

[ "$(id -u)" = 0 ] || { echo "run.sh: needs root" >&2; exit 1; }
[ -x "$BERTH" ] && [ -x "$SERVER" ] || { echo "run.sh: build first: cargo build --release -p berth-engine -p berth-model-server" >&2; exit 1; }
. "$ROOT/benches/lib.sh"

WORK=$(mktemp -d /tmp/berth-bench-systemd.XXXXXX)
RESULTS=$WORK/results.txt
NAME=berth-bench-systemd-$$
cleanup() {
	local rc=$?
	docker rm -f -v "$NAME" >/dev/null 2>&1 || true
	if [ "${KEEP:-}" = 1 ] || [ $rc != 0 ]; then echo "work directory kept: $WORK" >&2; else rm -rf "$WORK"; fi
	exit $rc
}
trap cleanup EXIT
trap "exit 143" TERM INT

IMAGE=$("$ROOT/testdata/systemd-host/build-image")
BIN_DIR=/opt/berth/bin
log "starting systemd host $NAME"
docker run -d --name "$NAME" --hostname sdbench --cap-add SYS_ADMIN --cgroupns=host \
	-v /sys/fs/cgroup:/sys/fs/cgroup:rw --tmpfs /run --tmpfs /run/lock -e container=docker \
	-v "$(dirname "$SERVER"):$BIN_DIR:ro" -p 127.0.0.1::22 "$IMAGE" /lib/systemd/systemd >/dev/null
PORT=$(docker port "$NAME" 22/tcp | sed -n 's/^127\.0\.0\.1://p' | head -n 1)
for _ in $(seq 1 450); do
	case $(docker exec "$NAME" systemctl is-system-running 2>/dev/null || true) in running | degraded) break ;; esac
	sleep 0.2
done
ssh-keygen -q -t ed25519 -N '' -C berth-bench -f "$WORK/id_ed25519"
docker exec "$NAME" sh -c "printf '%s\n' '$(cat "$WORK/id_ed25519.pub")' > /root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys"
HOST_KEY=$(docker exec "$NAME" cat /etc/ssh/ssh_host_ed25519_key.pub | awk '{ print $1 " " $2 }')

CFG=$WORK/config
mkdir -p "$CFG"
{
	cat <<HCL
host "sd" {
  connection {
    host     = "127.0.0.1"
    port     = $PORT
    user     = "root"
    key_path = "$WORK/id_ed25519"
    host_key = "$HOST_KEY"
  }
  capabilities {
    backends = ["units"]
  }
  run_dir = "/var/lib/berth"
}

backend "units" {
  runtime = "systemd"
}
HCL
	for i in $(seq 1 "$UNITS"); do
		cat <<HCL

model "u$i" {
  source   = "/models/u$i.gguf"
  size_gib = 0.1
  host_policy {
    hosts = ["sd"]
  }
  runtime_defaults {
    port = $((8199 + i))
  }
  launch {
    start_cmd  = "$BIN_DIR/berth-model-server --port {port} --model {model} --load-secs $LOAD_SECS"
    probe_http = "/v1/models"
  }
}
HCL
	done
} >"$CFG/main.hcl"
"$BERTH" -C "$CFG" validate >/dev/null
for _ in $(seq 1 100); do "$BERTH" -C "$CFG" hosts test sd >/dev/null 2>&1 && break; sleep 0.2; done

echo "# berth systemd runtime, 1 host x $UNITS units, --load-secs $LOAD_SECS, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores" >"$RESULTS"
apply_times=() drift_times=() destroy_times=()
for rep in $(seq 1 "$REPS"); do
	rm -rf "$CFG/.berth"
	t0=$(now)
	"$BERTH" -C "$CFG" apply --auto-approve >"$WORK/apply-$rep.log" 2>&1 || { echo "apply failed; see $WORK/apply-$rep.log" >&2; exit 1; }
	t=$(elapsed "$t0" "$(now)"); apply_times+=("$t")
	t0=$(now)
	"$BERTH" -C "$CFG" drift >"$WORK/drift-$rep.log" 2>&1 || { echo "drift found differences; see $WORK/drift-$rep.log" >&2; exit 1; }
	d=$(elapsed "$t0" "$(now)"); drift_times+=("$d")
	t0=$(now)
	"$BERTH" -C "$CFG" destroy --auto-approve >"$WORK/destroy-$rep.log" 2>&1 || { echo "destroy failed; see $WORK/destroy-$rep.log" >&2; exit 1; }
	x=$(elapsed "$t0" "$(now)"); destroy_times+=("$x")
	left=$(docker exec "$NAME" sh -c "ls /etc/systemd/system | grep -c '^berth-' || true")
	[ "$left" = 0 ] || { echo "destroy left $left units" >&2; exit 1; }
	echo "run $rep: apply ${t}s, drift ${d}s, destroy ${x}s" | tee -a "$RESULTS" >&2
done
{
	echo "median berth apply ($UNITS units, from empty): $(printf '%s\n' "${apply_times[@]}" | median)s"
	echo "median berth drift ($UNITS units): $(printf '%s\n' "${drift_times[@]}" | median)s"
	echo "median berth destroy ($UNITS units): $(printf '%s\n' "${destroy_times[@]}" | median)s"
} | tee -a "$RESULTS"
