//! `ProcessRuntime`: runs a service as a detached process group, recorded in a directory on
//! the host. It works only through [`Transport::exec`] and POSIX `sh` scripts, so it behaves
//! the same locally and over SSH; it must never put an env value into a script or an argv, and
//! never signal a process it did not start.
//!
//! Layout on the host, one directory per berth address:
//!
//! ```text
//! {run_dir}/deployments/{dir_name(address)}/
//!     meta.json   the Instance (address, fingerprint, owner, port, pid, start_ticks, started_at)
//!     env         `export K='v'` lines, mode 0600, sourced by the launcher
//!     log         stdout and stderr of the service, appended
//! ```
//!
//! The service runs in its deployment directory, with the environment of the login (over SSH)
//! or the one [`crate::LocalTransport`] builds, plus its env file.
//!
//! The recorded pid leads the service's own session and process group: it is the `sh -c` that
//! runs the command (or the command itself, where the shell execs a simple command), and the
//! whole group is the service. So the instance runs while its leader runs with the recorded
//! start ticks, or, once the leader is gone, while any process of its group does: a shell
//! wrapper that dies leaves a server that still runs and answers. Liveness and pid reuse are
//! read from `/proc/PID/stat` (Linux).

use std::fmt::Write as _;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use crate::runtime::{
    Handle, HostTools, Instance, LaunchSpec, Liveness, MarkerProblem, Observed, Runtime,
    RuntimeSpec, Survey,
};
use crate::transport::{Command, Output, Transport, quote};
use crate::{ProviderError, Result};

/// Deadline of each script the runtime runs (stop adds its grace period on top).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a previous instance of the same address gets to stop when `start` replaces it.
const RESTART_GRACE: Duration = Duration::from_secs(10);

/// Longest directory name taken from an address as is; longer ones are cut and hashed.
const MAX_DIR_NAME: usize = 100;

/// Shell functions shared by the scripts below. They read `/proc/PID/stat`, whose second field
/// (the command name) may hold spaces and parentheses: fields are taken after the last ") ".
/// `berth_stop DIR GRACE_NAPS [PID TICKS]`: stops the instance recorded in DIR (TERM, then KILL
/// after GRACE_NAPS tenths of a second) and removes DIR; returns 7 when the group survives
/// SIGKILL. PID and TICKS, the identity berth's state recorded, stand in for a marker that is
/// missing or unreadable; an unreadable marker without them returns 8, saying why on stderr.
const STOP_FUNCTION: &str = r#"
berth_stop() {
  dir=$1
  grace_naps=$2
  fb_pid=${3:-}
  fb_ticks=${4:-}
  m_pid=
  m_ticks=
  marker=none
  if [ -e "$dir/meta.json" ]; then
    if berth_meta "$dir/meta.json" && [ -n "$m_pid" ] && [ -n "$m_ticks" ]; then marker=read; else marker=bad; fi
  fi
  found=$m_pid:$m_ticks
  if [ "$marker" = read ]; then
    pid=$m_pid
    want=$m_ticks
  elif [ -n "$fb_pid" ] && [ -n "$fb_ticks" ]; then
    pid=$fb_pid
    want=$fb_ticks
  elif [ "$marker" = bad ]; then
    berth_marker_problem "$dir/meta.json" >&2
    return 8
  else
    [ -e "$dir" ] || return 0
    pid=
    want=
  fi
  case $pid in ''|*[!0-9]*|0|1) pid=;; esac
  # Ours: the recorded process with its recorded start time, or, once that leader is gone, what
  # is left of its group (the kernel never reuses an id while a group of that id exists). A
  # live process with the pid but another start time is someone else's and is left alone.
  berth_ours() {
    if berth_live "$pid"; then [ "$st_ticks" = "$want" ]; return; fi
    berth_group_alive "$pid"
  }
  if [ -n "$pid" ] && berth_ours; then
    kill -TERM -"$pid" 2>/dev/null
    if berth_live "$pid" && [ "$st_ticks" = "$want" ]; then kill -TERM "$pid" 2>/dev/null; fi
    n=0
    while berth_ours && [ "$n" -lt "$grace_naps" ]; do berth_nap 0.1; n=$((n + 1)); done
    if berth_ours; then
      kill -KILL -"$pid" 2>/dev/null
      if berth_live "$pid" && [ "$st_ticks" = "$want" ]; then kill -KILL "$pid" 2>/dev/null; fi
      n=0
      while berth_ours && [ "$n" -lt 50 ]; do berth_nap 0.1; n=$((n + 1)); done
      if berth_ours; then echo "process group $pid survived SIGKILL" >&2; return 7; fi
    fi
  fi
  # The stop of a berth killed meanwhile goes on without it, and a later apply may have started
  # a new instance here since: the directory goes only while it holds what this stop found (the
  # same record, or no record and no start in progress).
  # The check and the removal hold the deployments lock, as a start's creation does, so that
  # no start slips in between them.
  berth_locked "$dir" berth_remove_if_unchanged
}
berth_remove_if_unchanged() {
  if [ -e "$dir/meta.json" ]; then
    berth_meta "$dir/meta.json"
    [ "$m_pid:$m_ticks" = "$found" ] || return 0
  elif [ -f "$dir/starting" ]; then
    berth_starter=
    { read -r berth_starter < "$dir/starting"; } 2>/dev/null
    [ "$berth_starter" != "$$" ] && berth_live "$berth_starter" && return 0
  fi
  rm -rf -- "$dir"
}
# `berth_locked DIR CMD...`: runs CMD in a subshell holding `flock` on `{run_dir}/.deployments.lock`
# for deployment DIR (`{run_dir}/deployments/NAME`), where flock(1) exists (util-linux and busybox
# provide it). Every deployment of the host shares that lock: what it guards takes microseconds.
berth_locked() {
  berth_lock_file="${1%/*/*}/.deployments.lock"
  shift
  if command -v flock >/dev/null 2>&1 && { [ -d "${berth_lock_file%/*}" ] || mkdir -p -- "${berth_lock_file%/*}" 2>/dev/null; }; then
    ( flock 9 && "$@" ) 9>>"$berth_lock_file"
  else
    "$@"
  fi
}
"#;

const SH_FUNCTIONS: &str = r#"
berth_stat() {
  case $1 in ''|*[!0-9]*) return 1;; esac
  { read -r berth_s < "/proc/$1/stat"; } 2>/dev/null || return 1
  berth_s=${berth_s##*") "}
  set -f; set -- $berth_s; set +f
  st_state=$1 st_pgrp=$3 st_ticks=${20:-}
}
berth_live() {
  berth_stat "$1" || return 1
  case $st_state in Z|X|x) return 1;; esac
}
berth_group_alive() {
  berth_g=$1
  case $berth_g in ''|*[!0-9]*|0|1) return 1;; esac
  kill -0 -"$berth_g" 2>/dev/null || return 1
  for berth_f in /proc/[0-9]*/stat; do
    berth_p=${berth_f#/proc/}
    berth_p=${berth_p%/stat}
    if berth_live "$berth_p" && [ "$st_pgrp" = "$berth_g" ]; then return 0; fi
  done
  return 1
}
berth_nap() { sleep "$1" 2>/dev/null || sleep 1; }
# Says why marker $1, which berth_meta could not use, is unreadable.
berth_marker_problem() {
  if [ ! -r "$1" ] || [ -d "$1" ]; then echo "it cannot be read"
  elif [ ! -s "$1" ]; then echo "it is empty"
  else echo "it holds no pid and start_ticks"; fi
}
# Reads meta.json $1 into $meta (its lines joined), its pid into $m_pid and its start_ticks
# into $m_ticks, with shell builtins only: observing a host forks nothing per deployment.
berth_meta() {
  meta= m_pid= m_ticks=
  { while IFS= read -r berth_l || [ -n "$berth_l" ]; do meta="$meta$berth_l"; done < "$1"; } 2>/dev/null || return 1
  [ -n "$meta" ] || return 1
  berth_field pid; m_pid=$berth_v
  berth_field start_ticks; m_ticks=$berth_v
}
# The number after the JSON key $1 in $meta into $berth_v (empty if there is none).
berth_field() {
  berth_v=${meta#*"\"$1\""}
  if [ "$berth_v" = "$meta" ]; then berth_v=; return; fi
  berth_v=${berth_v#"${berth_v%%[![:space:]:]*}"}
  berth_v=${berth_v%%[!0-9]*}
}
"#;

/// What identifies a process-runtime instance: the leader of its process group and the
/// leader's start time, which tells it from an unrelated process that reused its pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessHandle {
    /// Process id of the group leader; also the id of the group.
    pub pid: u32,
    /// Kernel start time of `pid` in clock ticks since boot (`/proc/PID/stat` field 22).
    pub start_ticks: u64,
}

impl ProcessHandle {
    const KEYS: &'static [&'static str] = &["pid", "start_ticks"];

    /// The process identity in `handle`; `None` when it holds none (another runtime's, or a
    /// record that lost a field).
    pub fn of(handle: &Handle) -> Option<Self> {
        Some(ProcessHandle {
            pid: u32::try_from(handle.get("pid")?.as_u64()?).ok()?,
            start_ticks: handle.get("start_ticks")?.as_u64()?,
        })
    }
}

impl From<ProcessHandle> for Handle {
    fn from(h: ProcessHandle) -> Self {
        Handle::new([
            ("pid".to_string(), Value::from(h.pid)),
            ("start_ticks".to_string(), Value::from(h.start_ticks)),
        ])
    }
}

/// Runs services as plain processes, each the leader of its own session and process group.
#[derive(Debug, Clone)]
pub struct ProcessRuntime {
    timeout: Duration,
}

impl Default for ProcessRuntime {
    fn default() -> Self {
        Self::new()
    }
}

impl ProcessRuntime {
    /// A process runtime with the default script deadline (30 s).
    pub fn new() -> Self {
        ProcessRuntime {
            timeout: SCRIPT_TIMEOUT,
        }
    }

    /// Sets the deadline of each script the runtime runs on the host.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The directory on the host that holds the instance of `address` under `run_dir`.
    pub fn deployment_dir(run_dir: &str, address: &str) -> String {
        let base = run_dir.trim_end_matches('/');
        format!("{base}/deployments/{}", dir_name(address))
    }

    async fn run(&self, transport: &dyn Transport, script: String, what: String) -> Result<Output> {
        self.run_with_input(transport, script, Vec::new(), self.timeout, what)
            .await
    }

    async fn run_with_input(
        &self,
        transport: &dyn Transport,
        script: String,
        stdin: Vec<u8>,
        timeout: Duration,
        what: String,
    ) -> Result<Output> {
        super::run_script(transport, Command::new(script, timeout).stdin(stdin), what).await
    }

    /// Observes the deployment directories that `dirs` (a quoted prefix and an unquoted glob,
    /// or one quoted directory) names under `run_dir`, in one script.
    async fn observe_dirs(
        &self,
        transport: &dyn Transport,
        run_dir: &str,
        dirs: &str,
        what: String,
    ) -> Result<Survey> {
        // One line per deployment, named by its directory: D <tab> pid <tab> live start ticks,
        // "g" (the leader is gone but its group runs) or "-" <tab> name <tab> meta.json with its lines joined (last: tabs in it are JSON
        // whitespace); U <tab> name <tab> why, for a marker berth cannot use; M <tab> name, for
        // a directory with no marker and no start in progress.
        let script = format!(
            r#"# berth: process observe
{SH_FUNCTIONS}
for d in {dirs}; do
  d=${{d%/}}
  name=${{d##*/}}
  m=$d/meta.json
  if [ -e "$m" ]; then
    if berth_meta "$m" && [ -n "$m_pid" ]; then
      ticks=-
      if berth_live "$m_pid"; then ticks=${{st_ticks:--}}
      elif berth_group_alive "$m_pid"; then ticks=g; fi
      printf 'D\t%s\t%s\t%s\t%s\n' "$m_pid" "$ticks" "$name" "$meta"
    else
      printf 'U\t%s\t%s\n' "$name" "$(berth_marker_problem "$m")"
    fi
  elif [ -d "$d" ]; then
    starter=
    {{ read -r starter < "$d/starting"; }} 2>/dev/null
    berth_live "$starter" || printf 'M\t%s\n' "$name"
  fi
done
"#
        );
        let out = self.run(transport, script, what).await?;
        Ok(parse_observed(run_dir, &out.stdout_text()))
    }
}

#[async_trait]
impl Runtime for ProcessRuntime {
    fn name(&self) -> &'static str {
        "process"
    }

    fn host_tools(&self) -> HostTools {
        HostTools {
            commands: &["sh", "setsid", "flock", "kill", "tail", "du", "stat"],
            paths: &["/proc/self"],
            help: "install them (setsid and flock are in util-linux)",
        }
    }

    fn handle_keys(&self) -> &'static [&'static str] {
        ProcessHandle::KEYS
    }

    fn render(&self, spec: &LaunchSpec) -> String {
        let keys: Vec<&str> = spec.env.iter().map(|(k, _)| k.as_str()).collect();
        let env = if keys.is_empty() {
            "(none)".to_string()
        } else {
            format!("{} (values not shown)", keys.join(", "))
        };
        format!(
            "command: {}\nenv:     {env}\nport:    {}\ndir:     {}\n",
            spec.command,
            spec.port,
            Self::deployment_dir(&spec.run_dir, &spec.address)
        )
    }

    async fn start(&self, transport: &dyn Transport, spec: &LaunchSpec) -> Result<Instance> {
        if spec.runtime != RuntimeSpec::Process {
            return Err(ProviderError::InvalidSpec {
                address: spec.address.clone(),
                message: "the process runtime was handed another runtime's launch".into(),
            });
        }
        let env = env_file(spec)?;
        let dir = Self::deployment_dir(&spec.run_dir, &spec.address);

        let meta_prefix = format!(
            "{{\"address\":{},\"fingerprint\":{},\"owner\":{},\"port\":{}",
            serde_json::Value::String(spec.address.clone()),
            serde_json::Value::String(spec.fingerprint.clone()),
            serde_json::Value::String(spec.owner.clone()),
            spec.port
        );
        let script = format!(
            r#"# berth: process start
{SH_FUNCTIONS}
{STOP_FUNCTION}
command -v setsid >/dev/null 2>&1 || {{ echo 'setsid not found on this host (util-linux or busybox provides it)' >&2; exit 4; }}
# Whatever is recorded for this address goes first: a running instance is stopped, the record
# and log of a dead one are removed. One script does it all: a start is one round trip.
berth_stop {qdir} {restart_naps} || exit $?
dir={qdir}
umask 077
# Marks a start in progress until meta.json exists, so that no stop removes this directory
# (a stop left running by a killed berth checks for it under the same lock).
berth_create() {{ mkdir -p -- "$dir" && echo "$$" > "$dir/starting"; }}
berth_locked "$dir" berth_create || exit 5
# Env values arrive on stdin into a file created mode 0600 (the directory is new), never in
# an argv; copied line by line with builtins (the file always ends with a line break).
while IFS= read -r berth_l || [ -n "$berth_l" ]; do printf '%s\n' "$berth_l"; done > "$dir/env" || exit 5
# The service: a subshell sources its env file (the exported values reach the command, this
# script's variables do not), moves to its deployment directory, and becomes through setsid
# the leader of a new session and process group (so berth, the SSH channel and this script
# can all go away), then the command. Every step is an exec in the same process, so the pid
# recorded below stays the group leader; env values never reach an argv.
( . "$dir/env" && cd -- "$dir" && exec setsid sh -c {qcmd} berth-service ) >>"$dir/log" 2>&1 </dev/null &
pid=$!
# The start time in clock ticks is fixed at the fork: the record is written while setsid runs.
ticks=0
berth_stat "$pid" && ticks=${{st_ticks:-0}}
now={started_at}
printf '%s,"pid":%s,"start_ticks":%s,"started_at":%s}}\n' {qprefix} "$pid" "$ticks" "$now" >"$dir/meta.json.tmp" &&
  mv -f -- "$dir/meta.json.tmp" "$dir/meta.json" || exit 6
# Then wait until the service leads its own group, so that stop can signal the group and this
# script's group (which may be killed when it ends) no longer holds it. setsid has mostly run
# by now; when not, short naps (no spinning: on a busy host the service needs that CPU to get
# there). A service that already died is recorded anyway; the probe gate notices.
n=0
while berth_stat "$pid"; do
  case $st_state in Z|X|x) break;; esac
  [ "$st_pgrp" = "$pid" ] && break
  n=$((n + 1))
  [ "$n" -ge 500 ] && break
  berth_nap 0.01
done
printf '%s %s %s\n' "$pid" "$ticks" "$now"
"#,
            qdir = quote(&dir)?,
            qcmd = quote(&spec.command)?,
            qprefix = quote(&meta_prefix)?,
            restart_naps = RESTART_GRACE.as_millis().div_ceil(100),
            started_at = super::unix_now(),
        );
        let what = format!("start {}", spec.address);
        let out = transport
            .exec(Command::new(script, self.timeout + RESTART_GRACE).stdin(env.into_bytes()))
            .await?;
        if !out.success() {
            return Err(stop_failure(transport, &spec.address, &dir, what, &out));
        }
        let text = out.stdout_text();
        let fields: Vec<u64> = text
            .split_whitespace()
            .map(str::parse)
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| super::malformed(transport, &what, &text))?;
        let [pid, start_ticks, started_at] = fields[..] else {
            return Err(super::malformed(transport, &what, &text));
        };
        let pid = u32::try_from(pid).map_err(|_| super::malformed(transport, &what, &text))?;
        Ok(Instance {
            address: spec.address.clone(),
            fingerprint: spec.fingerprint.clone(),
            owner: spec.owner.clone(),
            port: spec.port,
            handle: ProcessHandle { pid, start_ticks }.into(),
            started_at,
            pinned: None,
        })
    }

    async fn observe_all(&self, transport: &dyn Transport, run_dir: &str) -> Result<Vec<Observed>> {
        Ok(self.survey(transport, run_dir).await?.found)
    }

    async fn survey(&self, transport: &dyn Transport, run_dir: &str) -> Result<Survey> {
        let base = run_dir.trim_end_matches('/');
        let dirs = format!("{}/deployments/*/", quote(base)?);
        let mut survey = self
            .observe_dirs(transport, run_dir, &dirs, format!("observe {run_dir}"))
            .await?;
        survey
            .found
            .sort_by(|a, b| a.instance.address.cmp(&b.instance.address));
        Ok(survey)
    }

    async fn observe(
        &self,
        transport: &dyn Transport,
        run_dir: &str,
        address: &str,
    ) -> Result<Option<Observed>> {
        let dir = Self::deployment_dir(run_dir, address);
        let survey = self
            .observe_dirs(
                transport,
                run_dir,
                &quote(&dir)?,
                format!("observe {address}"),
            )
            .await?;
        Ok(survey
            .found
            .into_iter()
            .find(|o| o.instance.address == address))
    }

    async fn stop_with(
        &self,
        transport: &dyn Transport,
        run_dir: &str,
        address: &str,
        recorded: Option<&Handle>,
        grace: Duration,
    ) -> Result<()> {
        let dir = Self::deployment_dir(run_dir, address);
        // Counted in naps of 0.1 s rather than by the clock: `date +%s` has whole seconds only.
        let grace_naps = grace.as_millis().div_ceil(100);
        let identity = recorded
            .and_then(ProcessHandle::of)
            .map(|id| format!(" {} {}", id.pid, id.start_ticks))
            .unwrap_or_default();
        let script = format!(
            r#"# berth: process stop
{SH_FUNCTIONS}
{STOP_FUNCTION}
berth_stop {qdir} {grace_naps}{identity}
"#,
            qdir = quote(&dir)?,
        );
        let out = transport
            .exec(Command::new(script, self.timeout + grace))
            .await?;
        if out.success() {
            Ok(())
        } else {
            Err(stop_failure(
                transport,
                address,
                &dir,
                format!("stop {address}"),
                &out,
            ))
        }
    }

    async fn claim(
        &self,
        transport: &dyn Transport,
        run_dir: &str,
        instance: &Instance,
        owner: &str,
    ) -> Result<()> {
        let address = &instance.address;
        let Some(id) = ProcessHandle::of(&instance.handle) else {
            return Err(ProviderError::InvalidSpec {
                address: address.clone(),
                message: "the instance to claim holds no process identity".into(),
            });
        };
        let dir = Self::deployment_dir(run_dir, address);
        let claimed = Instance {
            owner: owner.to_string(),
            ..instance.clone()
        };
        let mut meta = serde_json::to_string(&claimed).expect("an instance serialises");
        meta.push('\n');
        // The new record arrives on stdin and replaces meta.json in one rename, under the
        // deployments lock and only while meta.json still records the instance that was
        // observed: a restart in between keeps its own record.
        let script = format!(
            r#"# berth: process claim
{SH_FUNCTIONS}
{STOP_FUNCTION}
dir={qdir}
berth_claim() {{
  [ -f "$dir/meta.json" ] || return 0
  berth_meta "$dir/meta.json"
  if [ "$m_pid:$m_ticks" != {want} ]; then
    echo "its record $dir/meta.json changed since it was observed (another berth restarted it?); plan again" >&2
    return 9
  fi
  cat > "$dir/meta.json.tmp" && mv -f -- "$dir/meta.json.tmp" "$dir/meta.json"
}}
berth_locked "$dir" berth_claim
"#,
            qdir = quote(&dir)?,
            want = quote(&format!("{}:{}", id.pid, id.start_ticks))?,
        );
        super::run_script(
            transport,
            Command::new(script, self.timeout).stdin(meta.into_bytes()),
            format!("claim {address}"),
        )
        .await
        .map(drop)
    }

    async fn logs(
        &self,
        transport: &dyn Transport,
        run_dir: &str,
        address: &str,
        lines: usize,
    ) -> Result<String> {
        let dir = Self::deployment_dir(run_dir, address);
        let script = format!(
            "# berth: process logs\nf={}/log\n[ -f \"$f\" ] || exit 0\ntail -n {lines} -- \"$f\"\n",
            quote(&dir)?
        );
        let out = self
            .run(transport, script, format!("logs {address}"))
            .await?;
        Ok(out.stdout_text())
    }
}

/// The env file: one `export K='v'` line per variable. Keys must be shell names (they are not
/// quoted); values are quoted. Errors name the key, never the value.
fn env_file(spec: &LaunchSpec) -> Result<String> {
    let mut text = String::from("# berth: environment of one service, sourced by its launcher\n");
    for (key, value) in &spec.env {
        super::check_env_key(spec, key)?;
        let quoted = quote(value).map_err(|_| ProviderError::InvalidSpec {
            address: spec.address.clone(),
            message: format!("the value of env {key} holds a NUL byte"),
        })?;
        let _ = writeln!(text, "export {key}={quoted}");
    }
    Ok(text)
}

/// The directory name for an address: the address itself when it only holds `[A-Za-z0-9.-]`
/// (and does not start with a dot), otherwise every other character mapped to `_`, followed by
/// `_` and a hash of the whole address. Names without a hash never hold `_`, so two addresses
/// never share a directory (short of a 48-bit hash collision).
pub(crate) fn dir_name(address: &str) -> String {
    let mut name = String::with_capacity(address.len().min(MAX_DIR_NAME) + 13);
    let mut mapped = address.is_empty() || address.len() > MAX_DIR_NAME;
    for (i, c) in address.chars().enumerate() {
        let keep = c.is_ascii_alphanumeric() || c == '-' || (c == '.' && i > 0);
        if !keep {
            mapped = true;
        }
        if name.len() < MAX_DIR_NAME {
            name.push(if keep { c } else { '_' });
        }
    }
    if mapped {
        let _ = write!(name, "_{:012x}", fnv1a(address.as_bytes()) >> 16);
    }
    name
}

/// FNV-1a, 64 bits: stable across versions and platforms, unlike `DefaultHasher`.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The error of a script that ran `berth_stop`: an unreadable marker (exit 8) is its own error.
fn stop_failure(
    transport: &dyn Transport,
    address: &str,
    dir: &str,
    what: String,
    out: &Output,
) -> ProviderError {
    let stderr = out.stderr_text().trim().to_string();
    if out.status == Some(8) {
        return ProviderError::UnreadableMarker {
            host: transport.host().to_string(),
            address: address.to_string(),
            path: format!("{dir}/meta.json"),
            dir: dir.to_string(),
            detail: stderr.lines().last().unwrap_or("unreadable").to_string(),
        };
    }
    super::command_failed(transport, what, out)
}

/// Parses the observe script's lines. A record that cannot be read becomes a problem to report
/// rather than hiding every other deployment on the host.
fn parse_observed(run_dir: &str, stdout: &str) -> Survey {
    let base = run_dir.trim_end_matches('/');
    let marker = |name: &str| format!("{base}/deployments/{name}/meta.json");
    let mut survey = Survey::default();
    let mut problem = |path: String, detail: String| {
        survey.problems.push(MarkerProblem { path, detail });
    };
    let mut found = Vec::new();
    for line in stdout.lines() {
        let mut parts = line.splitn(5, '\t');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("U"), Some(name), Some(why)) => {
                problem(marker(name), format!("is unreadable ({why})"))
            }
            (Some("M"), Some(name), None) => problem(
                format!("{base}/deployments/{name}"),
                "has no meta.json".to_string(),
            ),
            (Some("D"), Some(pid), Some(ticks)) => {
                let (Some(name), Some(meta)) = (parts.next(), parts.next()) else {
                    problem(
                        format!("{base}/deployments"),
                        format!("holds a record berth cannot parse: {line:?}"),
                    );
                    continue;
                };
                let instance: Instance = match serde_json::from_str(meta) {
                    Ok(instance) => instance,
                    Err(error) => {
                        problem(marker(name), format!("is unreadable ({error})"));
                        continue;
                    }
                };
                let Some(id) =
                    ProcessHandle::of(&instance.handle).filter(|id| pid == id.pid.to_string())
                else {
                    problem(marker(name), format!("is unreadable (its pid {pid:?})"));
                    continue;
                };
                let liveness = match ticks {
                    // The leader is gone, but its group (the server under a shell that died)
                    // runs on.
                    "g" => Liveness::Running,
                    _ => match ticks.parse::<u64>() {
                        Err(_) => Liveness::Exited,
                        Ok(t) if t == id.start_ticks => Liveness::Running,
                        Ok(_) => Liveness::Replaced,
                    },
                };
                found.push(Observed {
                    instance,
                    liveness,
                    state: None,
                });
            }
            _ => {}
        }
    }
    survey.found = found;
    survey
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_addresses_keep_their_name() {
        assert_eq!(dir_name("model.qwen-7b"), "model.qwen-7b");
    }

    #[test]
    fn mapped_addresses_get_a_hash_and_never_collide() {
        let a = dir_name("model.x@gpu-a");
        assert!(a.starts_with("model.x_gpu-a_"), "{a}");
        assert_eq!(a.len(), "model.x_gpu-a_".len() + 12);
        // Same mapped text, different addresses.
        assert_ne!(dir_name("a@b"), dir_name("a b"));
        assert_ne!(dir_name("a_b"), dir_name("a@b"));
        // An unmapped name can never look like a mapped one: it holds no '_'.
        assert!(!dir_name("a-b").contains('_'));
        assert_eq!(dir_name("a@b"), dir_name("a@b"));
    }

    #[test]
    fn dots_and_slashes_cannot_escape() {
        for bad in ["", ".", "..", "../x", "a/../../b", ".hidden"] {
            let name = dir_name(bad);
            assert!(!name.starts_with('.'), "{bad:?} -> {name}");
            assert!(!name.contains('/'), "{bad:?} -> {name}");
            assert!(!name.is_empty());
        }
    }

    #[test]
    fn long_addresses_are_cut() {
        let long = "m".repeat(300);
        assert!(dir_name(&long).len() <= MAX_DIR_NAME + 13);
    }

    #[test]
    fn env_file_quotes_values_and_checks_keys() {
        let mut spec = LaunchSpec {
            owner: "test-state".into(),
            address: "m@h".into(),
            run_dir: "/r".into(),
            command: "true".into(),
            env: vec![("A".into(), "it's $HOME".into())],
            port: 1,
            fingerprint: "f".into(),
            runtime: RuntimeSpec::Process,
        };
        let text = env_file(&spec).unwrap();
        // Sourced by a real shell, the value comes back byte for byte.
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{text}printf %s \"$A\""))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "it's $HOME");
        spec.env = vec![("BAD-KEY".into(), "s3cret".into())];
        let err = env_file(&spec).unwrap_err().to_string();
        assert!(err.contains("BAD-KEY") && !err.contains("s3cret"), "{err}");
        spec.env = vec![("K".into(), "s3cret\0".into())];
        let err = env_file(&spec).unwrap_err().to_string();
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn observe_lines_are_classified() {
        let meta =
            r#"{"address":"a","fingerprint":"f","port":1,"pid":42,"start_ticks":7,"started_at":0}"#;
        let out = format!(
            "D\t42\t7\ta\t{meta}\nD\t42\t8\ta\t{meta}\nD\t42\t-\ta\t{meta}\nD\t42\tg\ta\t{meta}\nD\t42\t-\tb\tnot json\nU\tc\tit is empty\nM\td\n"
        );
        let survey = parse_observed("/r/", &out);
        let kinds: Vec<Liveness> = survey.found.iter().map(|o| o.liveness).collect();
        assert_eq!(
            kinds,
            [
                Liveness::Running,
                Liveness::Replaced,
                Liveness::Exited,
                Liveness::Running
            ]
        );
        assert_eq!(
            ProcessHandle::of(&survey.found[0].instance.handle),
            Some(ProcessHandle {
                pid: 42,
                start_ticks: 7
            })
        );
        let paths: Vec<&str> = survey.problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/r/deployments/b/meta.json",
                "/r/deployments/c/meta.json",
                "/r/deployments/d"
            ]
        );
        assert_eq!(survey.problems[1].detail, "is unreadable (it is empty)");
    }
}
