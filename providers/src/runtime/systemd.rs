//! `SystemdRuntime`: runs a service as a systemd unit, `berth-<model>.service` (or
//! `berth-<model>-<port>.service` when that name is taken on the host by another deployment), in
//! the system manager or in the login's `--user` manager. It works only through
//! [`Transport::exec`] and POSIX `sh` scripts calling `systemctl` and `journalctl`; it must never
//! put an env value into a unit file, a script or an argv, and never touch a unit that does not
//! carry berth's keys.
//!
//! On the host:
//!
//! ```text
//! /etc/systemd/system/berth-<model>.service          system scope (root, or sudo -n)
//! ~/.config/systemd/user/berth-<model>.service       user scope
//!     [Unit] X-Berth-Address, X-Berth-Fingerprint, X-Berth-Owner, X-Berth-Port,
//!            X-Berth-RunDir, X-Berth-Started: the instance (systemd ignores X- keys)
//!     [Service] ExecStart=/bin/sh -c "<rendered command>", EnvironmentFile, Restart=on-failure
//! {run_dir}/systemd/{dir_name(address)}/env           KEY="value" lines, mode 0600
//! ```
//!
//! A start writes the env file and the unit, reloads the manager only when it holds an older
//! version of the unit (`NeedDaemonReload`: a reload costs PID 1 about half a second, and
//! reloads do not overlap), then `enable --now`s it.
//!
//! A unit belongs to the `run_dir` its `X-Berth-RunDir` names: observing one run_dir never
//! reports the units of another. The instance runs while the unit is active, and also while
//! systemd restarts it after a crash (`Restart=on-failure`): a crash that systemd heals is not
//! drift, a unit stopped by hand is. Its handle is the unit name and the `InvocationID`, which
//! changes on every (re)start, so the probe gate notices a crash during a start.

use std::fmt::Write as _;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use crate::runtime::process::dir_name;
use crate::runtime::{
    Handle, HostCheck, HostTools, Instance, LaunchSpec, Liveness, Observed, Runtime, RuntimeSpec,
    SystemdSpec,
};
use crate::transport::{Command, Output, Transport, quote};
use crate::{ProviderError, Result};

/// Deadline of each script the runtime runs (stop adds its grace period on top).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a running unit of the same address gets to stop when `start` replaces it.
const RESTART_GRACE: Duration = Duration::from_secs(10);

/// The handle keys: the unit's name and its current invocation.
const UNIT: &str = "unit";
const INVOCATION: &str = "invocation_id";

/// Shell functions of every script. `berth_scope S` sets `$sc` (the systemctl of scope S),
/// `$jc` and `$unit_dir` for reading, or fails when that scope has no manager this login can
/// reach; `berth_writable` then makes them fit for changes: in the system scope a login other
/// than root goes through `sudo -n` (`$ur` prefixes the commands that write `$unit_dir`), and
/// it fails when that login may not use sudo without a password. `berth_keys F` reads a unit
/// file's X-Berth-* keys into `$k_address` ... with shell builtins only. `berth_find ADDRESS
/// RUN_DIR` finds the unit of an address in every scope: `$scope`, `$name`.
const SH_FUNCTIONS: &str = r#"
berth_user_env() {
  : "${XDG_RUNTIME_DIR:=/run/user/$(id -u)}"
  export XDG_RUNTIME_DIR
}
berth_scope() {
  ur=
  case $1 in
    system)
      [ -d /run/systemd/system ] || return 1
      sc="systemctl"
      jc="journalctl"
      unit_dir=/etc/systemd/system
      ;;
    user)
      berth_user_env
      [ -S "$XDG_RUNTIME_DIR/systemd/private" ] || return 1
      sc="systemctl --user"
      jc="journalctl --user"
      unit_dir=${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user
      ;;
  esac
}
# Asked only by a script that changes units: sudo is never run to read.
berth_writable() {
  [ "$unit_dir" = /etc/systemd/system ] || return 0
  [ "$(id -u)" = 0 ] && return 0
  if [ -z "${berth_sudo-}" ]; then
    berth_sudo=no
    if ! command -v sudo >/dev/null 2>&1; then
      berth_sudo_says="sudo is not installed"
    elif berth_sudo_says=$(sudo -n true 2>&1 </dev/null); then
      berth_sudo=yes
    fi
  fi
  [ "$berth_sudo" = yes ] || return 1
  ur="sudo -n"
  sc="sudo -n systemctl"
  jc="sudo -n journalctl"
}
berth_not_writable() {
  echo "system units need root: $(id -un) (uid $(id -u)) is not root and may not use sudo without a password here ($(printf '%s' "$berth_sudo_says" | tr '\n' ' ')); connect as root, allow $(id -un) passwordless sudo, or use scope = \"user\"" >&2
  exit 4
}
berth_keys() {
  k_address= k_fingerprint= k_owner= k_port= k_run_dir= k_started=
  while IFS= read -r berth_l || [ -n "$berth_l" ]; do
    case $berth_l in
      X-Berth-Address=*) k_address=${berth_l#*=};;
      X-Berth-Fingerprint=*) k_fingerprint=${berth_l#*=};;
      X-Berth-Owner=*) k_owner=${berth_l#*=};;
      X-Berth-Port=*) k_port=${berth_l#*=};;
      X-Berth-RunDir=*) k_run_dir=${berth_l#*=};;
      X-Berth-Started=*) k_started=${berth_l#*=};;
      '[Service]') break;;
    esac
  done < "$1"
}
berth_find() {
  scope= name=
  for berth_s in system user; do
    berth_scope "$berth_s" || continue
    for berth_f in "$unit_dir"/berth-*.service; do
      [ -f "$berth_f" ] || continue
      berth_keys "$berth_f"
      if [ "$k_address" = "$1" ] && [ "$k_run_dir" = "$2" ]; then
        scope=$berth_s
        name=${berth_f##*/}
        return 0
      fi
    done
  done
  return 1
}
berth_nap() { sleep "$1" 2>/dev/null || sleep 1; }
# Reloads the manager of the current scope when it holds another version of unit $name than
# its file (changed or removed).
berth_reload_if_needed() {
  case $($sc show -p NeedDaemonReload --value -- "$name" 2>/dev/null) in
    no|'') return 0;;
  esac
  $sc daemon-reload || return 5
}
# Stops unit $name of the current scope: TERM through systemd, SIGKILL to what is left after
# $1 naps of 0.1 s; systemd restarts nothing that is being stopped.
berth_stop_unit() {
  $sc stop --no-block -- "$name" 2>/dev/null
  n=0
  while [ "$n" -lt "$1" ]; do
    case $($sc show -p ActiveState --value -- "$name" 2>/dev/null) in inactive|failed|'') return 0;; esac
    berth_nap 0.1
    n=$((n + 1))
  done
  $sc kill --signal=SIGKILL -- "$name" 2>/dev/null
  n=0
  while [ "$n" -lt 50 ]; do
    case $($sc show -p ActiveState --value -- "$name" 2>/dev/null) in inactive|failed|'') return 0;; esac
    berth_nap 0.1
    n=$((n + 1))
  done
  echo "unit $name did not stop after SIGKILL" >&2
  return 7
}
"#;

/// Runs services as systemd units.
#[derive(Debug, Clone)]
pub struct SystemdRuntime {
    timeout: Duration,
}

impl Default for SystemdRuntime {
    fn default() -> Self {
        Self::new()
    }
}

impl SystemdRuntime {
    /// A systemd runtime with the default script deadline (60 s).
    pub fn new() -> Self {
        SystemdRuntime {
            timeout: SCRIPT_TIMEOUT,
        }
    }

    /// The unit name berth gives `address` when the host has no other unit of that name:
    /// `berth-<model>.service`.
    pub fn unit_name(address: &str) -> String {
        format!("berth-{}.service", unit_word(address))
    }

    /// The directory on the host that holds the env file of `address` under `run_dir`.
    pub fn env_dir(run_dir: &str, address: &str) -> String {
        format!(
            "{}/systemd/{}",
            run_dir.trim_end_matches('/'),
            dir_name(address)
        )
    }

    /// The unit file berth writes for `spec` (without a secret: values live in the env file).
    pub fn unit_file(spec: &LaunchSpec, started_at: u64) -> Result<String> {
        let systemd = systemd_spec(spec)?;
        let run_dir = spec.run_dir.trim_end_matches('/');
        let dir = Self::env_dir(run_dir, &spec.address);
        let path = |what: &str, p: &str| -> Result<String> {
            if p.chars()
                .any(|c| c.is_whitespace() || c.is_control() || "\"'\\".contains(c))
            {
                return Err(ProviderError::InvalidSpec {
                    address: spec.address.clone(),
                    message: format!(
                        "{what} {p:?} cannot be written into a unit file (it holds whitespace, a quote or a backslash)"
                    ),
                });
            }
            Ok(p.replace('%', "%%"))
        };
        let key = |what: &str, v: &str| -> Result<String> {
            if v.chars().any(char::is_control) {
                return Err(ProviderError::InvalidSpec {
                    address: spec.address.clone(),
                    message: format!("{what} holds a control character"),
                });
            }
            Ok(v.to_string())
        };
        let mut text = String::new();
        let _ = writeln!(
            text,
            "# Written by berth for {}; the next apply replaces any change made here.",
            key("the address", &spec.address)?
        );
        text.push_str("[Unit]\n");
        let _ = writeln!(
            text,
            "Description=berth {}",
            spec.address.replace('%', "%%")
        );
        let _ = writeln!(text, "X-Berth-Address={}", spec.address);
        let _ = writeln!(
            text,
            "X-Berth-Fingerprint={}",
            key("the fingerprint", &spec.fingerprint)?
        );
        let _ = writeln!(text, "X-Berth-Owner={}", key("the owner", &spec.owner)?);
        let _ = writeln!(text, "X-Berth-Port={}", spec.port);
        let _ = writeln!(text, "X-Berth-RunDir={}", key("run_dir", run_dir)?);
        let _ = writeln!(text, "X-Berth-Started={started_at}");
        text.push_str("\n[Service]\nType=simple\n");
        let _ = writeln!(text, "EnvironmentFile={}/env", path("run_dir", &dir)?);
        let _ = writeln!(text, "WorkingDirectory={}", path("run_dir", &dir)?);
        let _ = writeln!(text, "ExecStart=/bin/sh -c {}", exec_quote(&spec.command));
        text.push_str("Restart=on-failure\nRestartSec=1\n");
        for (k, v) in &systemd.options {
            let valid = !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric());
            if !valid || v.contains('\n') {
                return Err(ProviderError::InvalidSpec {
                    address: spec.address.clone(),
                    message: format!("unit option {k:?} is not a unit key with a one-line value"),
                });
            }
            let _ = writeln!(text, "{k}={v}");
        }
        text.push_str("\n[Install]\n");
        let target = if systemd.user {
            "default.target"
        } else {
            "multi-user.target"
        };
        let _ = writeln!(text, "WantedBy={target}");
        Ok(text)
    }

    async fn run(
        &self,
        transport: &dyn Transport,
        script: String,
        stdin: Vec<u8>,
        timeout: Duration,
        what: String,
    ) -> Result<Output> {
        super::run_script(transport, Command::new(script, timeout).stdin(stdin), what).await
    }

    /// The berth units of `run_dir` in every scope this login reaches (only `address`'s when
    /// given), with what `systemctl show` says of each, in one script.
    async fn observe_units(
        &self,
        transport: &dyn Transport,
        run_dir: &str,
        address: Option<&str>,
    ) -> Result<Vec<Observed>> {
        let run_dir = run_dir.trim_end_matches('/');
        let want = match address {
            Some(a) => quote(a)?,
            None => "''".to_string(),
        };
        // K <tab> scope <tab> unit <tab> address <tab> fingerprint <tab> owner <tab> port <tab>
        // started, for every unit file; then S <tab> scope and that scope's `systemctl show`.
        let script = format!(
            r#"# berth: systemd observe
{SH_FUNCTIONS}
want={want}
for s in system user; do
  berth_scope "$s" || continue
  set --
  for f in "$unit_dir"/berth-*.service; do
    [ -f "$f" ] || continue
    berth_keys "$f"
    [ -n "$k_address" ] && [ "$k_run_dir" = {qrun} ] || continue
    [ -z "$want" ] || [ "$k_address" = "$want" ] || continue
    printf 'K\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$s" "${{f##*/}}" "$k_address" "$k_fingerprint" "$k_owner" "$k_port" "$k_started"
    set -- "$@" "${{f##*/}}"
  done
  [ "$#" -gt 0 ] || continue
  printf 'S\t%s\n' "$s"
  $sc show -p Id,LoadState,ActiveState,SubState,MainPID,NRestarts,InvocationID -- "$@" || exit 5
done
"#,
            qrun = quote(run_dir)?,
        );
        let what = match address {
            Some(a) => format!("observe {a}"),
            None => format!("observe units of {run_dir}"),
        };
        let out = self
            .run(transport, script, Vec::new(), self.timeout, what)
            .await?;
        Ok(parse_observed(&out.stdout_text()))
    }
}

/// The systemd part of a launch, or the error of a launch meant for another runtime.
fn systemd_spec(spec: &LaunchSpec) -> Result<&SystemdSpec> {
    match &spec.runtime {
        RuntimeSpec::Systemd(s) => Ok(s),
        _ => Err(ProviderError::InvalidSpec {
            address: spec.address.clone(),
            message: "the systemd runtime was handed another runtime's launch".into(),
        }),
    }
}

/// The model id of a model address (`model.<id>@<host>`), or the address mapped to unit-name
/// characters when it is not one.
fn unit_word(address: &str) -> String {
    let id = address
        .strip_prefix("model.")
        .and_then(|rest| rest.rsplit_once('@'))
        .map_or(address, |(id, _)| id);
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `text` as one double-quoted word of `ExecStart=`: quotes and backslashes escaped, `$` and
/// `%` doubled (so systemd expands neither variables nor specifiers), control characters as C
/// escapes. The shell then sees the command exactly as rendered.
fn exec_quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '$' => out.push_str("$$"),
            '%' => out.push_str("%%"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The env file: one `KEY="value"` line per variable, in systemd's double-quoted form (`\`,
/// `"`, `` ` `` and `$` escaped; newlines kept). Errors name the key, never the value.
fn env_file(spec: &LaunchSpec) -> Result<String> {
    let mut text = String::from("# berth: environment of one unit, read by systemd\n");
    for (key, value) in &spec.env {
        super::check_env_key(spec, key)?;
        if value.contains('\0') {
            return Err(ProviderError::InvalidSpec {
                address: spec.address.clone(),
                message: format!("the value of env {key} holds a NUL byte"),
            });
        }
        text.push_str(key);
        text.push_str("=\"");
        for c in value.chars() {
            if matches!(c, '\\' | '"' | '`' | '$') {
                text.push('\\');
            }
            text.push(c);
        }
        text.push_str("\"\n");
    }
    Ok(text)
}

/// Parses the observe script's output.
fn parse_observed(stdout: &str) -> Vec<Observed> {
    struct Keys {
        scope: String,
        unit: String,
        instance: Instance,
    }
    let mut keys: Vec<Keys> = Vec::new();
    // (scope, unit) -> properties
    let mut shown: Vec<(String, std::collections::BTreeMap<String, String>)> = Vec::new();
    let mut scope = String::new();
    let mut current: Option<std::collections::BTreeMap<String, String>> = None;
    let mut flush = |current: &mut Option<std::collections::BTreeMap<String, String>>,
                     scope: &str| {
        if let Some(props) = current.take()
            && props.contains_key("Id")
        {
            shown.push((scope.to_string(), props));
        }
    };
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("K\t") {
            let f: Vec<&str> = rest.split('\t').collect();
            let [s, unit, address, fingerprint, owner, port, started] = f[..] else {
                continue;
            };
            keys.push(Keys {
                scope: s.to_string(),
                unit: unit.to_string(),
                instance: Instance {
                    address: address.to_string(),
                    fingerprint: fingerprint.to_string(),
                    owner: owner.to_string(),
                    port: port.parse().unwrap_or(0),
                    handle: Handle::default(),
                    started_at: started.parse().unwrap_or(0),
                    pinned: None,
                },
            });
        } else if let Some(s) = line.strip_prefix("S\t") {
            flush(&mut current, &scope);
            scope = s.to_string();
        } else if line.is_empty() {
            flush(&mut current, &scope);
        } else if let Some((k, v)) = line.split_once('=') {
            current
                .get_or_insert_with(Default::default)
                .insert(k.to_string(), v.to_string());
        }
    }
    flush(&mut current, &scope);
    let mut found: Vec<Observed> = keys
        .into_iter()
        .map(|k| {
            let props = shown
                .iter()
                .find(|(s, p)| *s == k.scope && p.get("Id") == Some(&k.unit))
                .map(|(_, p)| p);
            let prop = |name: &str| props.and_then(|p| p.get(name)).map(String::as_str);
            let running = prop("LoadState") == Some("loaded")
                && match prop("ActiveState") {
                    Some("active" | "reloading") => true,
                    // Starting, or waiting out RestartSec after a crash: systemd brings it back.
                    Some("activating") => true,
                    _ => false,
                };
            let mut instance = k.instance;
            let unit = k.unit.clone();
            instance.handle = Handle::new([
                (UNIT.to_string(), Value::from(k.unit)),
                (
                    INVOCATION.to_string(),
                    Value::from(prop("InvocationID").unwrap_or_default()),
                ),
            ]);
            let state = if !running {
                Some(format!(
                    "unit {unit} stopped (ActiveState={}, SubState={})",
                    prop("ActiveState").unwrap_or("unknown"),
                    prop("SubState").unwrap_or("unknown"),
                ))
            } else if prop("SubState") == Some("auto-restart") {
                Some(format!(
                    "unit {unit} restarting after a crash (SubState=auto-restart, NRestarts={})",
                    prop("NRestarts").unwrap_or("unknown"),
                ))
            } else {
                None
            };
            Observed {
                instance,
                liveness: if running {
                    Liveness::Running
                } else {
                    Liveness::Exited
                },
                state,
            }
        })
        .collect();
    found.sort_by(|a, b| a.instance.address.cmp(&b.instance.address));
    found
}

#[async_trait]
impl Runtime for SystemdRuntime {
    fn name(&self) -> &'static str {
        "systemd"
    }

    fn host_tools(&self) -> HostTools {
        HostTools {
            commands: &["sh", "systemctl", "journalctl"],
            paths: &["/run/systemd"],
            help: "run the model on a host booted with systemd (systemctl and journalctl are in the systemd package)",
        }
    }

    fn handle_keys(&self) -> &'static [&'static str] {
        &[UNIT, INVOCATION]
    }

    fn render(&self, spec: &LaunchSpec) -> String {
        let keys: Vec<&str> = spec.env.iter().map(|(k, _)| k.as_str()).collect();
        let env = if keys.is_empty() {
            "(none)".to_string()
        } else {
            format!("{} (values not shown)", keys.join(", "))
        };
        let scope = match &spec.runtime {
            RuntimeSpec::Systemd(s) if s.user => "user",
            _ => "system",
        };
        format!(
            "unit:    {} ({scope} scope)\ncommand: {}\nenv:     {env}\nport:    {}\nenv dir: {}\n",
            Self::unit_name(&spec.address),
            spec.command,
            spec.port,
            Self::env_dir(&spec.run_dir, &spec.address)
        )
    }

    async fn start(&self, transport: &dyn Transport, spec: &LaunchSpec) -> Result<Instance> {
        let systemd = systemd_spec(spec)?;
        let started_at = super::unix_now();
        let unit = Self::unit_file(spec, started_at)?;
        let env = env_file(spec)?;
        let run_dir = spec.run_dir.trim_end_matches('/');
        let scope = if systemd.user { "user" } else { "system" };
        let script = format!(
            r#"# berth: systemd start
{SH_FUNCTIONS}
berth_scope {scope} || {{
  if [ {scope} = user ]; then
    echo "no systemd user manager for $(id -un) (XDG_RUNTIME_DIR=$XDG_RUNTIME_DIR): run \`loginctl enable-linger $(id -un)\` as root" >&2
  else
    echo "system units need a host booted with systemd: /run/systemd/system is missing (PID 1 is $(cat /proc/1/comm 2>/dev/null))" >&2
  fi
  exit 4
}}
berth_writable || berth_not_writable
address={qaddress}
run_dir={qrun}
dir={qdir}
# The unit this address already has in this scope keeps its name; otherwise the model's name,
# or the name with the port when another deployment (another address, or the same address of
# another run_dir: another berth state) holds that one.
found=
if berth_find "$address" "$run_dir" && [ "$scope" = {scope} ]; then found=$name; fi
berth_scope {scope}
berth_writable
name=$found
if [ -z "$name" ]; then
  for n in {qname} {qname_port}; do
    f=$unit_dir/$n
    if [ -f "$f" ]; then
      berth_keys "$f"
      [ "$k_address" = "$address" ] && [ "$k_run_dir" = "$run_dir" ] || continue
    fi
    name=$n
    break
  done
  [ -n "$name" ] || {{ echo "unit names {qname} and {qname_port} are both taken in $unit_dir by other deployments" >&2; exit 6; }}
fi
# A running instance of the address goes first (even one whose unit file was deleted: systemd
# keeps running what it loaded).
case $($sc show -p ActiveState --value -- "$name" 2>/dev/null) in
  inactive|failed|'') ;;
  *) berth_stop_unit {restart_naps} || exit $?;;
esac
umask 077
mkdir -p -- "$dir" || exit 5
$ur mkdir -p -- "$unit_dir" || exit 5
# Env values arrive on stdin into a file created mode 0600, never in an argv or the unit.
cat > "$dir/env.tmp" && chmod 600 "$dir/env.tmp" && mv -f -- "$dir/env.tmp" "$dir/env" || exit 5
printf '%s' {qunit} | $ur tee -- "$unit_dir/$name.tmp" >/dev/null && $ur chmod 644 -- "$unit_dir/$name.tmp" && $ur mv -f -- "$unit_dir/$name.tmp" "$unit_dir/$name" || exit 5
# systemd loads a unit file it has not loaded yet on first use; one it holds an older version
# of needs a daemon-reload (which takes PID 1 half a second, serialised: only when needed).
berth_reload_if_needed || exit 5
$sc reset-failed -- "$name" 2>/dev/null
$sc enable --now --no-reload --quiet -- "$name" || exit 5
printf 'U\t%s\n' "$name"
$sc show -p InvocationID --value -- "$name"
"#,
            qaddress = quote(&spec.address)?,
            qrun = quote(run_dir)?,
            qdir = quote(&Self::env_dir(run_dir, &spec.address))?,
            qname = quote(&Self::unit_name(&spec.address))?,
            qname_port = quote(&format!(
                "berth-{}-{}.service",
                unit_word(&spec.address),
                spec.port
            ))?,
            qunit = quote(&unit)?,
            restart_naps = RESTART_GRACE.as_millis().div_ceil(100),
        );
        let what = format!("start {}", spec.address);
        let out = self
            .run(
                transport,
                script,
                env.into_bytes(),
                self.timeout + RESTART_GRACE,
                what.clone(),
            )
            .await?;
        let text = out.stdout_text();
        let mut lines = text.lines();
        let name = lines
            .next()
            .and_then(|l| l.strip_prefix("U\t"))
            .ok_or_else(|| super::malformed(transport, &what, &text))?;
        let invocation = lines.next().unwrap_or_default().trim();
        Ok(Instance {
            address: spec.address.clone(),
            fingerprint: spec.fingerprint.clone(),
            owner: spec.owner.clone(),
            port: spec.port,
            handle: Handle::new([
                (UNIT.to_string(), Value::from(name)),
                (INVOCATION.to_string(), Value::from(invocation)),
            ]),
            started_at,
            pinned: None,
        })
    }

    async fn observe_all(&self, transport: &dyn Transport, run_dir: &str) -> Result<Vec<Observed>> {
        self.observe_units(transport, run_dir, None).await
    }

    async fn observe(
        &self,
        transport: &dyn Transport,
        run_dir: &str,
        address: &str,
    ) -> Result<Option<Observed>> {
        let found = self
            .observe_units(transport, run_dir, Some(address))
            .await?;
        Ok(found.into_iter().find(|o| o.instance.address == address))
    }

    async fn stop_with(
        &self,
        transport: &dyn Transport,
        run_dir: &str,
        address: &str,
        recorded: Option<&Handle>,
        grace: Duration,
    ) -> Result<()> {
        let run_dir = run_dir.trim_end_matches('/');
        let recorded_unit = recorded
            .and_then(|h| h.get(UNIT))
            .and_then(Value::as_str)
            .filter(|u| u.starts_with("berth-") && u.ends_with(".service") && !u.contains('/'))
            .unwrap_or_default();
        let script = format!(
            r#"# berth: systemd stop
{SH_FUNCTIONS}
dir={qdir}
if ! berth_find {qaddress} {qrun}; then
  # The unit file is gone; a unit the state recorded may still be loaded and running.
  name={qrecorded}
  scope=
  if [ -n "$name" ]; then
    for s in system user; do
      berth_scope "$s" || continue
      case $($sc show -p LoadState --value -- "$name" 2>/dev/null) in loaded) scope=$s; break;; esac
    done
  fi
  if [ -z "$scope" ]; then rm -rf -- "$dir"; exit 0; fi
fi
berth_scope "$scope"
berth_writable || berth_not_writable
berth_stop_unit {naps} || exit $?
$sc disable --no-reload --quiet -- "$name" 2>/dev/null
$ur rm -f -- "$unit_dir/$name"
$sc reset-failed -- "$name" 2>/dev/null
berth_reload_if_needed
rm -rf -- "$dir"
exit 0
"#,
            qdir = quote(&Self::env_dir(run_dir, address))?,
            qaddress = quote(address)?,
            qrun = quote(run_dir)?,
            qrecorded = quote(recorded_unit)?,
            naps = grace.as_millis().div_ceil(100),
        );
        self.run(
            transport,
            script,
            Vec::new(),
            self.timeout + grace,
            format!("stop {address}"),
        )
        .await
        .map(|_| ())
    }

    async fn claim(
        &self,
        transport: &dyn Transport,
        run_dir: &str,
        instance: &Instance,
        owner: &str,
    ) -> Result<()> {
        if owner.chars().any(char::is_control) {
            return Err(ProviderError::InvalidSpec {
                address: instance.address.clone(),
                message: "the owner holds a control character".into(),
            });
        }
        let run_dir = run_dir.trim_end_matches('/');
        // The owner line is rewritten only while the host still runs the instance that was
        // observed: the unit file records the same fingerprint and start, and the unit the same
        // invocation (a start within the same second writes the same keys, but systemd gives
        // every start its own InvocationID). A restart in between keeps its own record.
        let invocation = instance
            .handle
            .get(INVOCATION)
            .and_then(Value::as_str)
            .unwrap_or_default();
        let script = format!(
            r#"# berth: systemd claim
{SH_FUNCTIONS}
berth_find {qaddress} {qrun} || {{ echo "its unit is gone since it was observed; plan again" >&2; exit 9; }}
berth_scope "$scope"
berth_writable || berth_not_writable
f=$unit_dir/$name
berth_keys "$f"
if [ "$k_fingerprint:$k_started" != {want} ] ||
  {{ [ -n {qinvocation} ] && [ "$($sc show -p InvocationID --value -- "$name" 2>/dev/null)" != {qinvocation} ]; }}; then
  echo "its unit $f changed since it was observed (another berth restarted it?); plan again" >&2
  exit 9
fi
while IFS= read -r l || [ -n "$l" ]; do
  case $l in X-Berth-Owner=*) l=X-Berth-Owner={qowner};; esac
  printf '%s\n' "$l"
done < "$f" | $ur tee -- "$f.tmp" >/dev/null && $ur chmod 644 -- "$f.tmp" && $ur mv -f -- "$f.tmp" "$f" || exit 5
$sc daemon-reload
"#,
            qaddress = quote(&instance.address)?,
            qrun = quote(run_dir)?,
            want = quote(&format!("{}:{}", instance.fingerprint, instance.started_at))?,
            qowner = quote(owner)?,
            qinvocation = quote(invocation)?,
        );
        self.run(
            transport,
            script,
            Vec::new(),
            self.timeout,
            format!("claim {}", instance.address),
        )
        .await
        .map(|_| ())
    }

    async fn logs(
        &self,
        transport: &dyn Transport,
        run_dir: &str,
        address: &str,
        lines: usize,
    ) -> Result<String> {
        let script = format!(
            r#"# berth: systemd logs
{SH_FUNCTIONS}
berth_find {qaddress} {qrun} || exit 0
berth_scope "$scope"
if [ "$scope" = user ]; then
  journalctl --user-unit="$name" -n {lines} --no-pager -o cat 2>/dev/null || $jc -u "$name" -n {lines} --no-pager -o cat
else
  # A login outside the journal's groups reads the system journal through sudo when it may.
  case " $(id -Gn 2>/dev/null) " in *" systemd-journal "*|*" adm "*) ;; *) berth_writable;; esac
  $jc -u "$name" -n {lines} --no-pager -o cat
fi
"#,
            qaddress = quote(address)?,
            qrun = quote(run_dir.trim_end_matches('/'))?,
        );
        let out = self
            .run(
                transport,
                script,
                Vec::new(),
                self.timeout,
                format!("logs {address}"),
            )
            .await?;
        Ok(out.stdout_text())
    }

    async fn diagnose(&self, transport: &dyn Transport, specs: &[LaunchSpec]) -> Vec<HostCheck> {
        // Once for each way the host's backends use systemd (system or user scope).
        let mut seen: Vec<&RuntimeSpec> = Vec::new();
        let mut checks = Vec::new();
        for spec in specs {
            if !seen.contains(&&spec.runtime) {
                seen.push(&spec.runtime);
                checks.extend(doctor(transport, &spec.runtime, self.timeout).await);
            }
        }
        checks
    }
}

/// The checks of one scope (system or user) on a host, for `hosts doctor`.
async fn doctor(
    transport: &dyn Transport,
    spec: &RuntimeSpec,
    timeout: Duration,
) -> Vec<HostCheck> {
    let user = matches!(spec, RuntimeSpec::Systemd(s) if s.user);
    let scope = if user { "user" } else { "system" };
    let script = format!(
        r#"# berth: systemd doctor
{SH_FUNCTIONS}
if [ -d /run/systemd/system ]; then
  printf 'pid1\tok\t%s\n' "$(systemctl is-system-running 2>/dev/null || true)"
else
  printf 'pid1\tfail\t%s\n' "$(cat /proc/1/comm 2>/dev/null)"
fi
if berth_scope {scope} && berth_writable; then
  printf 'manager\tok\t%s\t%s\t%s\n' "$unit_dir" "$ur" "$(id -un)"
  if $ur mkdir -p -- "$unit_dir" 2>/dev/null && $ur test -w "$unit_dir"; then printf 'units\tok\t%s\n' "$unit_dir"; else printf 'units\tfail\t%s\n' "$unit_dir"; fi
  if $jc -n 0 --no-pager >/dev/null 2>&1; then printf 'journal\tok\t\n'; else printf 'journal\tfail\t%s\n' "$($jc -n 0 --no-pager 2>&1 | head -n 1)"; fi
elif [ {scope} = user ] || [ -d /run/systemd/system ]; then
  # (A host without systemd as PID 1 has failed the first check already.)
  printf 'manager\tfail\t%s\t%s\t%s\n' "$(id -un)" "$(id -u)" "$(printf '%s' "${{berth_sudo_says-}}" | tr '\n\t' '  ')"
fi
"#
    );
    let out = match transport.exec(Command::new(script, timeout)).await {
        Ok(out) => out,
        Err(e) => {
            return vec![HostCheck::fail("systemd", e.to_string(), None)];
        }
    };
    let mut checks = Vec::new();
    for line in out.stdout_text().lines() {
        let f: Vec<&str> = line.split('\t').collect();
        match (f.first().copied(), f.get(1).copied()) {
            (Some("pid1"), Some("ok")) => checks.push(HostCheck::ok(
                "systemd",
                format!(
                    "systemd is PID 1 (state: {})",
                    f.get(2).copied().filter(|s| !s.is_empty()).unwrap_or("unknown")
                ),
            )),
            (Some("pid1"), _) => checks.push(HostCheck::fail(
                "systemd",
                format!(
                    "systemd is not PID 1 here (PID 1 is {:?})",
                    f.get(2).copied().unwrap_or_default()
                ),
                Some("use runtime = \"process\" on hosts without systemd".into()),
            )),
            (Some("manager"), Some("ok")) => {
                let unit_dir = f.get(2).copied().unwrap_or_default();
                checks.push(HostCheck::ok(
                    format!("systemd {scope} manager"),
                    match f.get(3).copied().filter(|s| !s.is_empty()) {
                        Some(sudo) => format!(
                            "reachable through `{sudo}` as {}; units go to {unit_dir}",
                            f.get(4).copied().unwrap_or("the login")
                        ),
                        None => format!("reachable; units go to {unit_dir}"),
                    },
                ))
            }
            (Some("manager"), _) => {
                let login = f.get(2).copied().unwrap_or("USER");
                let uid = f.get(3).copied().unwrap_or_default();
                checks.push(if user {
                    HostCheck::fail(
                        "systemd user manager",
                        format!("no user manager runs for {login} (no /run/user/{uid}/systemd/private)"),
                        Some(format!("as root on the host: loginctl enable-linger {login}")),
                    )
                } else {
                    HostCheck::fail(
                        "systemd system manager",
                        match f.get(4).copied().filter(|s| !s.is_empty()) {
                            Some(sudo) => format!("system units need root; {login} (uid {uid}) is not root and may not use sudo without a password ({sudo})"),
                            None => format!("system units need root; {login} (uid {uid}) is not root and may not use sudo without a password"),
                        },
                        Some(format!("connect as root, allow {login} passwordless sudo (sudoers: `{login} ALL=(root) NOPASSWD: ALL`), or set `systemd {{ scope = \"user\" }}` in the backend")),
                    )
                });
            }
            (Some("units"), Some("ok")) => {}
            (Some("units"), _) => checks.push(HostCheck::fail(
                "unit directory",
                format!("{} is not writable", f.get(2).unwrap_or(&"")),
                None,
            )),
            (Some("journal"), Some("ok")) => {
                checks.push(HostCheck::ok("journald", "journalctl reads the journal"))
            }
            (Some("journal"), _) => checks.push(HostCheck::fail(
                "journald",
                format!(
                    "journalctl cannot read the journal: {}",
                    f.get(2).unwrap_or(&"")
                ),
                Some("add the login to the systemd-journal group, or check that systemd-journald runs".into()),
            )),
            _ => {}
        }
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> LaunchSpec {
        LaunchSpec {
            address: "model.qwen2.5-7b@gpu-a".into(),
            run_dir: "/var/lib/berth/".into(),
            command: "srv --port '8080' --say \"hi\" $HOME 100% a\\b".into(),
            env: vec![("API_KEY".into(), "s3cret \"x\" $y `z` \\ end".into())],
            port: 8080,
            fingerprint: "sha256:ab".into(),
            owner: "lineage-1".into(),
            runtime: RuntimeSpec::Systemd(SystemdSpec::default()),
        }
    }

    #[test]
    fn units_are_named_after_the_model() {
        assert_eq!(
            SystemdRuntime::unit_name("model.qwen2.5-7b@gpu-a"),
            "berth-qwen2.5-7b.service"
        );
        assert_eq!(
            SystemdRuntime::unit_name("odd name"),
            "berth-odd_name.service"
        );
    }

    #[test]
    fn the_unit_carries_berth_keys_and_no_env_value() {
        let unit = SystemdRuntime::unit_file(&spec(), 7).unwrap();
        for line in [
            "X-Berth-Address=model.qwen2.5-7b@gpu-a",
            "X-Berth-Fingerprint=sha256:ab",
            "X-Berth-Owner=lineage-1",
            "X-Berth-Port=8080",
            "X-Berth-RunDir=/var/lib/berth",
            "X-Berth-Started=7",
            "Restart=on-failure",
            "EnvironmentFile=/var/lib/berth/systemd/model.qwen2.5-7b_gpu-a_",
            "WantedBy=multi-user.target",
        ] {
            assert!(unit.contains(line), "{line} in\n{unit}");
        }
        assert!(
            unit.contains(
                r#"ExecStart=/bin/sh -c "srv --port '8080' --say \"hi\" $$HOME 100%% a\\b""#
            ),
            "{unit}"
        );
        assert!(!unit.contains("s3cret"), "{unit}");
    }

    #[test]
    fn env_values_are_escaped_for_systemd() {
        let text = env_file(&spec()).unwrap();
        assert!(
            text.ends_with("API_KEY=\"s3cret \\\"x\\\" \\$y \\`z\\` \\\\ end\"\n"),
            "{text}"
        );
        let mut bad = spec();
        bad.env = vec![("BAD-KEY".into(), "s3cret".into())];
        let err = env_file(&bad).unwrap_err().to_string();
        assert!(err.contains("BAD-KEY") && !err.contains("s3cret"), "{err}");
    }

    #[test]
    fn show_output_is_classified() {
        let out = "K\tsystem\tberth-a.service\tmodel.a@h\tsha256:1\tL\t8080\t5\n\
                   K\tsystem\tberth-b.service\tmodel.b@h\tsha256:2\tL\t8081\t6\n\
                   K\tsystem\tberth-c.service\tmodel.c@h\tsha256:3\t\t8082\t7\n\
                   S\tsystem\n\
                   Id=berth-a.service\nLoadState=loaded\nActiveState=active\nSubState=running\nMainPID=42\nNRestarts=0\nInvocationID=aa\n\n\
                   Id=berth-b.service\nLoadState=loaded\nActiveState=activating\nSubState=auto-restart\nMainPID=0\nNRestarts=3\nInvocationID=bb\n\n\
                   Id=berth-c.service\nLoadState=loaded\nActiveState=inactive\nSubState=dead\nMainPID=0\nNRestarts=0\nInvocationID=\n";
        let found = parse_observed(out);
        let l: Vec<Liveness> = found.iter().map(|o| o.liveness).collect();
        assert_eq!(l, [Liveness::Running, Liveness::Running, Liveness::Exited]);
        assert_eq!(found[0].instance.port, 8080);
        assert_eq!(found[0].instance.started_at, 5);
        assert_eq!(
            found[0].instance.handle.get(INVOCATION),
            Some(&Value::from("aa"))
        );
        assert_eq!(found[2].instance.owner, "");
        let states: Vec<Option<&str>> = found.iter().map(|o| o.state.as_deref()).collect();
        assert_eq!(
            states,
            [
                None,
                Some(
                    "unit berth-b.service restarting after a crash (SubState=auto-restart, NRestarts=3)"
                ),
                Some("unit berth-c.service stopped (ActiveState=inactive, SubState=dead)"),
            ]
        );
    }
}
