//! `ContainerRuntime`: runs a service as a Docker or Podman container, through the engine's CLI
//! on the host and [`Transport::exec`] only, so it behaves the same locally and over SSH. One
//! implementation serves both CLIs: what differs is the program name. It must never put an env
//! value into a script, an argv or a label, and never stop or remove a container that does not
//! carry berth's labels for the address and run_dir it was asked about.
//!
//! On the host, one container per address and run_dir:
//!
//! ```text
//! container  berth-{address, mapped}-{hash of run_dir and address}
//!            labels berth.address, berth.fingerprint, berth.owner, berth.run_dir, berth.port,
//!            berth.started_at; entrypoint `/bin/sh -c COMMAND`; `--env-file`
//! {run_dir}/containers/{container name}/
//!     env    `K=v` lines, mode 0600 (the `--env-file`)
//!     owner  {"id": CONTAINER ID, "owner": LINEAGE}, written when a state adopts the container
//!            (labels cannot change after a container is created)
//! ```
//!
//! The container runs the rendered command with `/bin/sh -c`, as the process runtime does, so
//! one `start_cmd` serves every runtime and `$VAR` reads the env file. Without `network` and
//! `ports` it joins the host's network, so the model's port is the host's port, as probes expect.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde_json::Value;

use crate::runtime::process::fnv1a;
use crate::runtime::{
    CheckStatus, ContainerSpec, Handle, HostCheck, HostTools, Instance, LaunchSpec, Liveness,
    Observed, Prerequisite, Runtime, RuntimeSpec, Survey,
};
use crate::transport::{Command, Output, Transport, quote};
use crate::{ProviderError, Result};

/// Deadline of each script the runtime runs (stop adds its grace period, a load its own).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

/// How long loading an image archive may take.
const LOAD_TIMEOUT: Duration = Duration::from_secs(900);

/// How long a previous container of the same address gets to stop when `start` replaces it.
const RESTART_GRACE: Duration = Duration::from_secs(10);

/// The restart policy of a container whose `extra_args` choose none.
const DEFAULT_RESTART: &str = "on-failure";

/// The labels berth puts on its containers.
const LABEL_ADDRESS: &str = "berth.address";
const LABEL_FINGERPRINT: &str = "berth.fingerprint";
const LABEL_OWNER: &str = "berth.owner";
const LABEL_RUN_DIR: &str = "berth.run_dir";
const LABEL_PORT: &str = "berth.port";
const LABEL_STARTED_AT: &str = "berth.started_at";
/// The id of the image the container was started from (docker's `ps` cannot show it).
const LABEL_IMAGE: &str = "berth.image";

/// The labels an observe line carries, in its order after the image fields.
const LISTED_LABELS: [&str; 5] = [
    LABEL_ADDRESS,
    LABEL_FINGERPRINT,
    LABEL_OWNER,
    LABEL_PORT,
    LABEL_STARTED_AT,
];

/// What identifies a container instance: its id (a container re-created under the same name
/// has another).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerHandle {
    pub container_id: String,
}

impl ContainerHandle {
    const KEYS: &'static [&'static str] = &["container_id"];

    /// The container identity in `handle`; `None` when it holds none.
    pub fn of(handle: &Handle) -> Option<Self> {
        Some(ContainerHandle {
            container_id: handle.get("container_id")?.as_str()?.to_string(),
        })
    }
}

impl From<ContainerHandle> for Handle {
    fn from(h: ContainerHandle) -> Self {
        Handle::new([("container_id".to_string(), Value::from(h.container_id))])
    }
}

/// Runs services as containers of one engine's CLI (`docker` or `podman`).
#[derive(Debug, Clone)]
pub struct ContainerRuntime {
    cli: &'static str,
    timeout: Duration,
}

impl ContainerRuntime {
    /// Containers run by `docker`.
    pub fn docker() -> Self {
        ContainerRuntime {
            cli: "docker",
            timeout: SCRIPT_TIMEOUT,
        }
    }

    /// Containers run by `podman`.
    pub fn podman() -> Self {
        ContainerRuntime {
            cli: "podman",
            timeout: SCRIPT_TIMEOUT,
        }
    }

    /// The container name of `address` under `run_dir`: readable, valid for both engines, and
    /// distinct for two run_dirs (two berth states) on one host.
    pub fn container_name(run_dir: &str, address: &str) -> String {
        let mut name = String::from("berth-");
        for c in address.chars().take(100) {
            name.push(if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            });
        }
        let key = format!("{}\0{address}", run_dir.trim_end_matches('/'));
        let _ = write!(name, "-{:010x}", fnv1a(key.as_bytes()) >> 24);
        name
    }

    /// The directory on the host that holds the env file of `address`'s container.
    pub fn container_dir(run_dir: &str, address: &str) -> String {
        format!(
            "{}/containers/{}",
            run_dir.trim_end_matches('/'),
            Self::container_name(run_dir, address)
        )
    }

    fn spec<'a>(&self, spec: &'a LaunchSpec) -> Result<&'a ContainerSpec> {
        match &spec.runtime {
            RuntimeSpec::Container(c) if !c.image.is_empty() => Ok(c),
            RuntimeSpec::Container(_) => Err(ProviderError::InvalidSpec {
                address: spec.address.clone(),
                message: "the container has no image".into(),
            }),
            _ => Err(ProviderError::InvalidSpec {
                address: spec.address.clone(),
                message: format!(
                    "the {} runtime was handed another runtime's launch",
                    self.cli
                ),
            }),
        }
    }

    async fn run(
        &self,
        transport: &dyn Transport,
        cmd: Command,
        what: impl Into<String>,
    ) -> Result<Output> {
        super::run_script(transport, cmd, what.into())
            .await
            .map_err(|e| self.explain(e))
    }

    /// A script's failure, with the fix when the SSH user may not use the daemon's socket.
    fn explain(&self, e: ProviderError) -> ProviderError {
        match e {
            ProviderError::CommandFailed {
                host,
                what,
                status,
                stderr,
            } if stderr.contains("permission denied") && stderr.contains(".sock") => {
                ProviderError::CommandFailed {
                    host,
                    what,
                    status,
                    stderr: format!(
                        "{stderr} (the SSH user may not use the {cli} daemon: add it to the `{cli}` group, or connect as root)",
                        cli = self.cli
                    ),
                }
            }
            e => e,
        }
    }

    /// Shell functions shared by the scripts: `berth_remove NAME ADDRESS RUN_DIR GRACE` stops
    /// and removes container NAME when its labels say it is berth's ADDRESS under RUN_DIR;
    /// returns 9 (saying why) when a container of that name is someone else's.
    fn functions(&self) -> String {
        let cli = self.cli;
        let format = quote(&format!(
            "{{{{index .Config.Labels \"{LABEL_ADDRESS}\"}}}}\t{{{{index .Config.Labels \"{LABEL_RUN_DIR}\"}}}}"
        ))
        .expect("a constant quotes");
        format!(
            r#"
berth_remove() {{
  berth_labels=$({cli} container inspect --format {format} "$1" 2>/dev/null) || return 0
  if [ "$berth_labels" != "$2	$3" ]; then
    echo "a container named $1 exists but is not berth's $2 (run_dir $3); berth leaves it alone: remove or rename it" >&2
    return 9
  fi
  {cli} stop -t "$4" "$1" >/dev/null 2>&1
  {cli} rm -f "$1" >/dev/null || return 7
}}
"#
        )
    }

    /// The `run` arguments after `run -d`, env file and labels: network, ports, GPUs, volumes,
    /// extra arguments, the entrypoint, the image and the command.
    fn run_args(&self, c: &ContainerSpec, command: &str) -> Vec<String> {
        let mut args = Vec::new();
        match (&c.network, c.ports.is_empty()) {
            (Some(network), _) => args.push(format!("--network={network}")),
            (None, true) => args.push("--network=host".to_string()),
            (None, false) => {}
        }
        for p in &c.ports {
            args.extend(["--publish".to_string(), p.clone()]);
        }
        if let Some(gpus) = &c.gpus {
            if self.cli == "podman" {
                // Podman reaches NVIDIA GPUs through CDI.
                let device = if gpus == "all" {
                    "nvidia.com/gpu=all".to_string()
                } else {
                    format!("nvidia.com/gpu={gpus}")
                };
                args.extend(["--device".to_string(), device]);
            } else {
                args.extend(["--gpus".to_string(), gpus.clone()]);
            }
        }
        for v in &c.volumes {
            args.extend(["--volume".to_string(), v.clone()]);
        }
        // As a unit with `Restart=on-failure`: the engine brings a crashed server back (a
        // non-zero exit), while one that exits 0 or is stopped by hand stays down (drift, until
        // apply replaces it). `extra_args` may choose another policy, or `--rm`.
        let chooses_own = c.extra_args.iter().any(|a| {
            a == "--rm" || a.starts_with("--rm=") || a == "--restart" || a.starts_with("--restart=")
        });
        if !chooses_own {
            args.push(format!("--restart={DEFAULT_RESTART}"));
        }
        args.extend(c.extra_args.iter().cloned());
        args.extend([
            "--entrypoint".to_string(),
            "/bin/sh".to_string(),
            c.image.clone(),
            "-c".to_string(),
            command.to_string(),
        ]);
        args
    }

    fn labels(spec: &LaunchSpec, started_at: u64) -> Vec<(&'static str, String)> {
        vec![
            (LABEL_ADDRESS, spec.address.clone()),
            (LABEL_FINGERPRINT, spec.fingerprint.clone()),
            (LABEL_OWNER, spec.owner.clone()),
            (
                LABEL_RUN_DIR,
                spec.run_dir.trim_end_matches('/').to_string(),
            ),
            (LABEL_PORT, spec.port.to_string()),
            (LABEL_STARTED_AT, started_at.to_string()),
        ]
    }

    /// Whether the engine lists a container under the image name it was started with only
    /// while that name still resolves to the container's image (docker), so that a listing
    /// also resolves the name. Podman lists the name whatever it resolves to now.
    fn listing_resolves_names(&self) -> bool {
        self.cli == "docker"
    }

    /// The `ps --format` template of an observe line: `C`, id, state, exit code (docker: the
    /// status text, which holds it), the image as the engine lists it, `P` and the image id
    /// the container runs, then the values of [`LISTED_LABELS`], tab-separated. `ps` answers
    /// from the engine's listing, far cheaper than `inspect` of every container.
    fn ps_format(&self) -> String {
        let podman = self.cli == "podman";
        let label = |key: &str| {
            if podman {
                format!("{{{{index .Labels \"{key}\"}}}}")
            } else {
                format!("{{{{.Label \"{key}\"}}}}")
            }
        };
        let mut format = if podman {
            // Podman's `.State` is the status text; the embedded listing holds the state.
            "C\t{{.ID}}\t{{.ListContainer.State}}\t{{.ExitCode}}\t{{.Image}}\tP{{.ImageID}}"
                .to_string()
        } else {
            format!(
                "C\t{{{{.ID}}}}\t{{{{.State}}}}\t{{{{.Status}}}}\t{{{{.Image}}}}\tP{}",
                label(LABEL_IMAGE)
            )
        };
        for key in LISTED_LABELS {
            format.push('\t');
            format.push_str(&label(key));
        }
        format
    }

    /// Observes every berth container under `run_dir` (or only `address`'s; nothing without
    /// a run_dir) and resolves the images of `specs`, in one script.
    async fn inspect(
        &self,
        transport: &dyn Transport,
        run_dir: Option<&str>,
        address: Option<&str>,
        specs: &[LaunchSpec],
    ) -> Result<(Vec<Observed>, Vec<Prerequisite>)> {
        let cli = self.cli;
        let images = self.images(specs);
        // Images to resolve need the CLI; otherwise without it no container of berth's can
        // exist here.
        let absent = if images.is_empty() { 0 } else { 3 };
        let mut script = format!(
            "# berth: {cli} observe\ncommand -v {cli} >/dev/null 2>&1 || {{ echo '{cli} is not installed' >&2; exit {absent}; }}\n"
        );
        let run_dir = run_dir.map(|d| d.trim_end_matches('/'));
        if let Some(run_dir) = run_dir {
            let mut filters = format!(
                "--filter {}",
                quote(&format!("label={LABEL_RUN_DIR}={run_dir}"))?
            );
            if let Some(address) = address {
                let _ = write!(
                    filters,
                    " --filter {}",
                    quote(&format!("label={LABEL_ADDRESS}={address}"))?
                );
            }
            // Containers started before berth labelled their image id are inspected (`L`).
            let _ = write!(
                script,
                r#"out=$({cli} ps -a --no-trunc {filters} --format {format}) || exit 3
[ -z "$out" ] || printf '%s\n' "$out"
case $out in *"	P	"*) {cli} container inspect --format 'L	{{{{.Id}}}}	{{{{.Image}}}}' $(printf '%s\n' "$out" | cut -f2) 2>/dev/null;; esac
for f in {dir}/containers/*/owner; do
  [ -f "$f" ] || continue
  printf 'O\t'; cat -- "$f"; echo
done
"#,
                dir = quote(run_dir)?,
                format = quote(&self.ps_format())?,
            );
        }
        if run_dir.is_none() && !images.is_empty() {
            // A daemon that does not answer is not an image that is missing.
            let _ = writeln!(script, "{cli} version >/dev/null || exit 3");
        }
        // A missing image prints an empty id. Docker lists a container's image by the name it
        // was started with only while that name still resolves to the image the container
        // runs: a container listed so already tells the image's id.
        for image in &images {
            let q = quote(image)?;
            let resolve = format!(
                "printf 'I\\t%s\\t%s\\n' {q} \"$({cli} image inspect --format '{{{{.Id}}}}' {q} 2>/dev/null)\""
            );
            if self.listing_resolves_names() && run_dir.is_some() {
                let _ = writeln!(
                    script,
                    "case $out in *{listed}*) ;; *) {resolve};; esac",
                    listed = quote(&format!("\t{image}\tPsha256:"))?,
                );
            } else {
                let _ = writeln!(script, "{resolve}");
            }
        }
        script.push_str("exit 0\n");
        let what = match (address, run_dir) {
            (Some(a), _) => format!("observe {a}"),
            (None, Some(run_dir)) => format!("observe {cli} containers of {run_dir}"),
            (None, None) => format!("resolve {cli} images"),
        };
        let out = self
            .run(transport, Command::new(script, self.timeout), what)
            .await?;
        let text = out.stdout_text();
        let listing = Listing::parse(&text);
        let mut found = listing.observed();
        found.sort_by(|a, b| a.instance.address.cmp(&b.instance.address));
        Ok((found, listing.prerequisites(self, specs)))
    }

    /// Shell lines that set `img` to the id of `c`'s image, loading it from its archive when
    /// it is missing; exit 4, saying why, when it cannot be had.
    fn ensure_image(&self, c: &ContainerSpec) -> Result<String> {
        let cli = self.cli;
        let image = quote(&c.image)?;
        let load = match &c.image_archive {
            Some(archive) => {
                let archive = quote(archive)?;
                format!(
                    r#"  [ -f {archive} ] || {{ echo "image "{image}" is not on this host, and its image_archive "{archive}" does not exist there" >&2; exit 4; }}
  {cli} load -i {archive} >&2 || {{ echo "loading image_archive "{archive}" failed" >&2; exit 4; }}
  img=$({cli} image inspect --format '{{{{.Id}}}}' {image} 2>/dev/null) || {{ echo "image_archive "{archive}" was loaded but holds no image "{image} >&2; exit 4; }}"#
                )
            }
            None => format!(
                r#"  echo "image "{image}" is not on this host and the backend sets no image_archive" >&2; exit 4"#
            ),
        };
        Ok(format!(
            "if ! img=$({cli} image inspect --format '{{{{.Id}}}}' {image} 2>/dev/null); then\n{load}\nfi"
        ))
    }

    /// The error of a start or prepare script: a missing image (exit 4) is its own error.
    fn start_failure(
        &self,
        transport: &dyn Transport,
        spec: &LaunchSpec,
        c: &ContainerSpec,
        step: &str,
        out: &Output,
    ) -> ProviderError {
        let cli = self.cli;
        if out.status != Some(4) {
            return self.explain(super::command_failed(
                transport,
                format!("{step} {}", spec.address),
                out,
            ));
        }
        ProviderError::MissingPrerequisite {
            host: transport.host().to_string(),
            address: spec.address.clone(),
            message: out
                .stderr_text()
                .trim()
                .lines()
                .last()
                .unwrap_or("")
                .to_string(),
            help: match &c.image_archive {
                Some(archive) => format!(
                    "copy the archive to {archive} on {} (made with `{cli} save -o FILE {}`), or load the image there by hand",
                    transport.host(),
                    c.image
                ),
                None => format!(
                    "load it on {} (`{cli} load -i FILE` or `{cli} pull {}`), or set image_archive in the backend's container block",
                    transport.host(),
                    c.image
                ),
            },
        }
    }

    /// The distinct images of `specs`, sorted.
    fn images<'a>(&self, specs: &'a [LaunchSpec]) -> Vec<&'a str> {
        let mut images: Vec<&str> = specs
            .iter()
            .filter_map(|s| self.spec(s).ok())
            .map(|c| c.image.as_str())
            .collect();
        images.sort();
        images.dedup();
        images
    }
}

#[async_trait]
impl Runtime for ContainerRuntime {
    fn name(&self) -> &'static str {
        self.cli
    }

    fn host_tools(&self) -> HostTools {
        HostTools {
            commands: if self.cli == "podman" {
                &["sh", "podman"]
            } else {
                &["sh", "docker"]
            },
            paths: &[],
            help: if self.cli == "podman" {
                "install Podman (apt-get install podman)"
            } else {
                "install Docker Engine (apt-get install docker.io, or Docker's own packages)"
            },
        }
    }

    fn handle_keys(&self) -> &'static [&'static str] {
        ContainerHandle::KEYS
    }

    fn render(&self, spec: &LaunchSpec) -> String {
        let keys: Vec<&str> = spec.env.iter().map(|(k, _)| k.as_str()).collect();
        let env = if keys.is_empty() {
            "(none)".to_string()
        } else {
            format!("{} (values not shown)", keys.join(", "))
        };
        let name = Self::container_name(&spec.run_dir, &spec.address);
        let args = match &spec.runtime {
            RuntimeSpec::Container(c) => self
                .run_args(c, &spec.command)
                .iter()
                .map(|a| quote(a).unwrap_or_else(|_| a.clone()))
                .collect::<Vec<_>>()
                .join(" "),
            _ => String::new(),
        };
        format!(
            "{cli} run -d --name {name} --env-file {dir}/env {args}\nenv:     {env}\nport:    {port}\n",
            cli = self.cli,
            dir = Self::container_dir(&spec.run_dir, &spec.address),
            port = spec.port,
        )
    }

    async fn prerequisites(
        &self,
        transport: &dyn Transport,
        specs: &[LaunchSpec],
    ) -> Result<Vec<Prerequisite>> {
        if self.images(specs).is_empty() {
            return Ok(Vec::new());
        }
        let (_, needs) = self.inspect(transport, None, None, specs).await?;
        Ok(needs)
    }

    async fn prepare(&self, transport: &dyn Transport, spec: &LaunchSpec) -> Result<()> {
        let c = self.spec(spec)?;
        let script = format!(
            "# berth: {cli} prepare\n{ensure}\n",
            cli = self.cli,
            ensure = self.ensure_image(c)?
        );
        let out = transport.exec(Command::new(script, LOAD_TIMEOUT)).await?;
        if out.success() {
            return Ok(());
        }
        Err(self.start_failure(transport, spec, c, "prepare", &out))
    }

    async fn diagnose(&self, transport: &dyn Transport, specs: &[LaunchSpec]) -> Vec<HostCheck> {
        let cli = self.cli;
        let mut checks = Vec::new();
        let check = |check: String, status, detail: String, fix: Option<String>| HostCheck {
            check,
            status,
            detail,
            fix,
        };
        let script = format!(
            "# berth: {cli} doctor\n{cli} version --format '{{{{.Server.Version}}}}' 2>&1 || {cli} version 2>&1 | tail -n 3"
        );
        let daemon = transport.exec(Command::new(script, self.timeout)).await;
        let name = format!("{cli} daemon");
        match daemon {
            Ok(out) if out.success() => {
                let version = out.stdout_text().trim().to_string();
                checks.push(check(
                    name,
                    CheckStatus::Ok,
                    format!("answers (server {version})"),
                    None,
                ));
            }
            Ok(out) => {
                let text = out.stdout_text().trim().to_string();
                let fix = if text.contains("permission denied") {
                    format!(
                        "let the SSH user use {cli}: `usermod -aG {cli} USER` (then log in again), or connect as root"
                    )
                } else if cli == "podman" {
                    "check `podman info` on the host (rootless: subuid/subgid ranges for the user, see docs/runtimes/docker.md)".to_string()
                } else {
                    "start the daemon: `systemctl start docker`".to_string()
                };
                checks.push(check(
                    name,
                    CheckStatus::Fail,
                    text.lines().last().unwrap_or("").to_string(),
                    Some(fix),
                ));
                return checks;
            }
            Err(e) => {
                checks.push(check(name, CheckStatus::Fail, e.to_string(), None));
                return checks;
            }
        }
        match self.prerequisites(transport, specs).await {
            Ok(prereqs) => {
                let mut seen = std::collections::BTreeSet::new();
                for p in prereqs {
                    if !seen.insert(p.what.clone()) {
                        continue;
                    }
                    match (&p.digest, &p.source) {
                        (Some(d), _) => checks.push(check(p.what, CheckStatus::Ok, d.clone(), None)),
                        (None, Some(archive)) => checks.push(check(
                            p.what,
                            CheckStatus::Warn,
                            format!("missing; apply loads it from {archive}"),
                            None,
                        )),
                        (None, None) => checks.push(check(
                            p.what.clone(),
                            CheckStatus::Fail,
                            "missing, and the backend sets no image_archive".into(),
                            Some(format!(
                                "load it on the host (`{cli} load -i FILE` or `{cli} pull {}`), or set image_archive",
                                p.what.trim_start_matches("image ")
                            )),
                        )),
                    }
                }
            }
            Err(e) => checks.push(check(
                "images".into(),
                CheckStatus::Fail,
                e.to_string(),
                None,
            )),
        }
        if specs
            .iter()
            .filter_map(|s| self.spec(s).ok())
            .any(|c| c.gpus.is_some())
        {
            let script = if cli == "podman" {
                "# berth: podman gpu check\nls /etc/cdi/nvidia.yaml /var/run/cdi/nvidia.yaml 2>/dev/null | head -n 1".to_string()
            } else {
                "# berth: docker gpu check\ndocker info --format '{{json .Runtimes}}' 2>/dev/null | grep -o nvidia | head -n 1".to_string()
            };
            let found = transport
                .exec(Command::new(script, self.timeout))
                .await
                .map(|o| !o.stdout_text().trim().is_empty())
                .unwrap_or(false);
            checks.push(if found {
                check("gpus".into(), CheckStatus::Ok, format!("{cli} can reach NVIDIA GPUs"), None)
            } else {
                check(
                    "gpus".into(),
                    CheckStatus::Fail,
                    format!("a backend sets `gpus`, but {cli} has no NVIDIA runtime here"),
                    Some(if cli == "podman" {
                        "install the NVIDIA Container Toolkit and generate the CDI spec: `nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml`".into()
                    } else {
                        "install the NVIDIA Container Toolkit, then `nvidia-ctk runtime configure --runtime=docker && systemctl restart docker`".into()
                    }),
                )
            });
        }
        checks
    }

    async fn start(&self, transport: &dyn Transport, spec: &LaunchSpec) -> Result<Instance> {
        let c = self.spec(spec)?;
        let text = env_file(spec)?;
        let cli = self.cli;
        let name = Self::container_name(&spec.run_dir, &spec.address);
        let dir = Self::container_dir(&spec.run_dir, &spec.address);
        let started_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut run = format!("{cli} run -d --pull=never --name {}", quote(&name)?);
        for (key, value) in Self::labels(spec, started_at) {
            let _ = write!(run, " --label {}", quote(&format!("{key}={value}"))?);
        }
        let _ = write!(
            run,
            " --label \"{LABEL_IMAGE}=$img\" --env-file \"$dir/env\""
        );
        for arg in self.run_args(c, &spec.command) {
            run.push(' ');
            run.push_str(&quote(&arg)?);
        }
        // One script: the image (loaded from its archive when missing), the env file, the
        // run. A container left under the name (a restart, a crash) goes only when the run
        // finds the name taken, so a first start costs no extra engine call.
        let script = format!(
            r#"# berth: {cli} start
{functions}
dir={qdir}
{ensure}
umask 077
mkdir -p -- "$dir" || exit 5
rm -f -- "$dir/owner"
# Env values arrive on stdin into a file created mode 0600, never in an argv.
cat > "$dir/env.tmp" && mv -f -- "$dir/env.tmp" "$dir/env" || exit 5
if ! id=$({run} 2>"$dir/run.err"); then
  grep -q 'already in use' "$dir/run.err" || {{ cat "$dir/run.err" >&2; exit 6; }}
  berth_remove {qname} {qaddress} {qrun_dir} {grace} || exit $?
  id=$({run}) || exit 6
fi
rm -f -- "$dir/run.err"
printf '%s\n%s\n' "$id" "$img"
"#,
            functions = self.functions(),
            ensure = self.ensure_image(c)?,
            qdir = quote(&dir)?,
            qname = quote(&name)?,
            qaddress = quote(&spec.address)?,
            qrun_dir = quote(spec.run_dir.trim_end_matches('/'))?,
            grace = RESTART_GRACE.as_secs(),
        );
        let timeout = self.timeout
            + RESTART_GRACE
            + if c.image_archive.is_some() {
                LOAD_TIMEOUT
            } else {
                Duration::ZERO
            };
        let out = transport
            .exec(Command::new(script, timeout).stdin(text.into_bytes()))
            .await?;
        if !out.success() {
            return Err(self.start_failure(transport, spec, c, "start", &out));
        }
        let text = out.stdout_text();
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        let (Some(id), image) = (lines.next(), lines.next()) else {
            return Err(super::malformed(
                transport,
                &format!("start {}", spec.address),
                &text,
            ));
        };
        Ok(Instance {
            address: spec.address.clone(),
            fingerprint: spec.fingerprint.clone(),
            owner: spec.owner.clone(),
            port: spec.port,
            handle: ContainerHandle {
                container_id: id.to_string(),
            }
            .into(),
            started_at,
            pinned: image.map(str::to_string),
        })
    }

    async fn observe_all(&self, transport: &dyn Transport, run_dir: &str) -> Result<Vec<Observed>> {
        Ok(self.inspect(transport, Some(run_dir), None, &[]).await?.0)
    }

    async fn survey_with_prerequisites(
        &self,
        transport: &dyn Transport,
        run_dir: &str,
        specs: &[LaunchSpec],
    ) -> Result<(Survey, Vec<Prerequisite>)> {
        let (found, needs) = self.inspect(transport, Some(run_dir), None, specs).await?;
        Ok((
            Survey {
                found,
                problems: Vec::new(),
            },
            needs,
        ))
    }

    async fn observe(
        &self,
        transport: &dyn Transport,
        run_dir: &str,
        address: &str,
    ) -> Result<Option<Observed>> {
        Ok(self
            .inspect(transport, Some(run_dir), Some(address), &[])
            .await?
            .0
            .into_iter()
            .find(|o| o.instance.address == address))
    }

    async fn still_mine(
        &self,
        transport: &dyn Transport,
        run_dir: &str,
        started: &Instance,
    ) -> Result<Option<u64>> {
        let Some(handle) = ContainerHandle::of(&started.handle) else {
            return Ok(None);
        };
        // The gate asks this between probes: one engine call on the container's name. The id
        // is the container berth started, so its labels need no second look. A container the
        // engine restarts after a crash keeps its id: its restart count tells the crash, and
        // while it waits to be restarted its status is `restarting`.
        let cli = self.cli;
        let script = format!(
            "# berth: {cli} still mine\n{cli} container inspect --format '{{{{.Id}}}} {{{{.State.Status}}}} {{{{.RestartCount}}}}' {} 2>/dev/null\nexit 0\n",
            quote(&Self::container_name(run_dir, &started.address))?
        );
        let out = self
            .run(
                transport,
                Command::new(script, self.timeout),
                format!("observe {}", started.address),
            )
            .await?;
        let text = out.stdout_text();
        let mut words = text.split_whitespace();
        let mine =
            words.next() == Some(handle.container_id.as_str()) && words.next() == Some("running");
        Ok(mine.then(|| words.next().and_then(|n| n.parse().ok()).unwrap_or(0)))
    }

    async fn stop_with(
        &self,
        transport: &dyn Transport,
        run_dir: &str,
        address: &str,
        _recorded: Option<&Handle>,
        grace: Duration,
    ) -> Result<()> {
        // The container's name and labels identify it; the id berth's state recorded adds
        // nothing a lost record would need.
        let cli = self.cli;
        let script = format!(
            r#"# berth: {cli} stop
{functions}
berth_remove {qname} {qaddress} {qrun_dir} {grace} || exit $?
rm -rf -- {qdir}
"#,
            functions = self.functions(),
            qname = quote(&Self::container_name(run_dir, address))?,
            qaddress = quote(address)?,
            qrun_dir = quote(run_dir.trim_end_matches('/'))?,
            qdir = quote(&Self::container_dir(run_dir, address))?,
            grace = grace.as_secs().max(1),
        );
        self.run(
            transport,
            Command::new(script, self.timeout + grace),
            format!("stop {address}"),
        )
        .await?;
        Ok(())
    }

    async fn claim(
        &self,
        transport: &dyn Transport,
        run_dir: &str,
        instance: &Instance,
        owner: &str,
    ) -> Result<()> {
        let address = &instance.address;
        let Some(id) = ContainerHandle::of(&instance.handle) else {
            return Err(ProviderError::InvalidSpec {
                address: address.clone(),
                message: "the instance to claim holds no container id".into(),
            });
        };
        let cli = self.cli;
        let record = serde_json::json!({ "id": id.container_id, "owner": owner }).to_string();
        // Only while the container observed still runs under the name: a restart in between
        // keeps its own labels.
        let script = format!(
            r#"# berth: {cli} claim
now=$({cli} container inspect --format '{{{{.Id}}}}' {qname} 2>/dev/null)
if [ "$now" != {qid} ]; then
  echo "its container changed since it was observed (another berth restarted it?); plan again" >&2
  exit 9
fi
umask 077
mkdir -p -- {qdir} && cat > {qdir}/owner.tmp && mv -f -- {qdir}/owner.tmp {qdir}/owner
"#,
            qname = quote(&Self::container_name(run_dir, address))?,
            qid = quote(&id.container_id)?,
            qdir = quote(&Self::container_dir(run_dir, address))?,
        );
        self.run(
            transport,
            Command::new(script, self.timeout).stdin(record.into_bytes()),
            format!("claim {address}"),
        )
        .await?;
        Ok(())
    }

    async fn logs(
        &self,
        transport: &dyn Transport,
        run_dir: &str,
        address: &str,
        lines: usize,
    ) -> Result<String> {
        let cli = self.cli;
        let name = Self::container_name(run_dir, address);
        let script = format!(
            r#"# berth: {cli} logs
want={qaddress}
have=$({cli} container inspect --format '{{{{index .Config.Labels "{LABEL_ADDRESS}"}}}}' {qname} 2>/dev/null) || exit 0
[ "$have" = "$want" ] || exit 0
{cli} logs --tail {lines} {qname} 2>&1
"#,
            qaddress = quote(address)?,
            qname = quote(&name)?,
        );
        let out = self
            .run(
                transport,
                Command::new(script, self.timeout),
                format!("logs {address}"),
            )
            .await?;
        Ok(out.stdout_text())
    }
}

/// The `--env-file`: one `K=v` line per variable, read literally by both engines (no quoting,
/// no expansion). Keys must be shell names; a value may not hold a newline. Errors name the
/// key, never the value.
fn env_file(spec: &LaunchSpec) -> Result<String> {
    let mut text = String::new();
    for (key, value) in &spec.env {
        super::check_env_key(spec, key)?;
        if value.contains(['\n', '\r', '\0']) {
            return Err(ProviderError::InvalidSpec {
                address: spec.address.clone(),
                message: format!(
                    "the value of env {key} holds a line break or NUL byte, which a container env file cannot carry"
                ),
            });
        }
        let _ = writeln!(text, "{key}={value}");
    }
    Ok(text)
}

/// One `C` line of an observe script (see [`ContainerRuntime::ps_format`]).
struct Listed<'a> {
    id: &'a str,
    state: &'a str,
    /// The exit code (podman), or the status text that holds it (docker).
    exit: &'a str,
    /// The image as the engine lists it.
    image: &'a str,
    /// The id of the image the container runs; empty when its labels do not say.
    pinned: &'a str,
    labels: [&'a str; LISTED_LABELS.len()],
}

impl<'a> Listed<'a> {
    fn parse(line: &'a str) -> Option<Listed<'a>> {
        let mut parts = line.split('\t');
        if parts.next()? != "C" {
            return None;
        }
        let (id, state, exit, image) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let pinned = parts.next()?.strip_prefix('P')?;
        let mut labels = [""; LISTED_LABELS.len()];
        for label in &mut labels {
            *label = parts.next()?;
        }
        parts.next().is_none().then_some(Listed {
            id,
            state,
            exit,
            image,
            pinned,
            labels,
        })
    }

    fn label(&self, key: &str) -> &'a str {
        LISTED_LABELS
            .iter()
            .position(|k| *k == key)
            .map_or("", |i| self.labels[i])
    }

    /// The exit code: podman lists it, docker's status text holds it (`Exited (137) ...`).
    fn exit_code(&self) -> Option<&'a str> {
        let code = match self.exit.split_once('(') {
            Some((_, rest)) => rest.split_once(')')?.0,
            None => self.exit,
        };
        (!code.is_empty() && code.bytes().all(|b| b.is_ascii_digit())).then_some(code)
    }
}

/// The observe script's output, parsed once: `C` lines from `ps`, `L` lines with the image ids
/// of containers that do not label theirs, `O` lines from owner files, `I` lines with the ids
/// images resolve to (empty: missing).
struct Listing<'a> {
    containers: Vec<Listed<'a>>,
    /// Container id -> the image id an `L` line gives it.
    image_ids: BTreeMap<&'a str, &'a str>,
    /// Container id -> the state that adopted it (owner files win over the label).
    owners: BTreeMap<String, String>,
    /// Image -> its id on the host, from `image inspect`.
    resolved: BTreeMap<&'a str, Option<&'a str>>,
}

impl<'a> Listing<'a> {
    fn parse(stdout: &'a str) -> Listing<'a> {
        let mut listing = Listing {
            containers: Vec::new(),
            image_ids: BTreeMap::new(),
            owners: BTreeMap::new(),
            resolved: BTreeMap::new(),
        };
        for line in stdout.lines() {
            if let Some(record) = line.strip_prefix("O\t") {
                if let Ok(v) = serde_json::from_str::<Value>(record.trim())
                    && let (Some(id), Some(owner)) = (v["id"].as_str(), v["owner"].as_str())
                {
                    listing.owners.insert(id.to_string(), owner.to_string());
                }
            } else if let Some(record) = line.strip_prefix("L\t") {
                if let Some((id, image)) = record.split_once('\t') {
                    listing.image_ids.insert(id, image.trim());
                }
            } else if let Some(record) = line.strip_prefix("I\t") {
                if let Some((image, id)) = record.split_once('\t') {
                    let id = id.trim();
                    listing
                        .resolved
                        .insert(image, (!id.is_empty()).then_some(id));
                }
            } else if let Some(c) = Listed::parse(line) {
                listing.containers.push(c);
            }
        }
        listing
    }

    /// Every listed container that carries an address.
    fn observed(&self) -> Vec<Observed> {
        self.containers
            .iter()
            .filter(|c| !c.label(LABEL_ADDRESS).is_empty())
            .map(|c| {
                let liveness = match c.state {
                    // A container the engine restarts after a crash is still the one berth
                    // started.
                    "running" | "restarting" => Liveness::Running,
                    _ => Liveness::Exited,
                };
                let pinned = match c.pinned {
                    "" => self.image_ids.get(c.id).copied().unwrap_or_default(),
                    pinned => pinned,
                };
                Observed {
                    instance: Instance {
                        address: c.label(LABEL_ADDRESS).to_string(),
                        fingerprint: c.label(LABEL_FINGERPRINT).to_string(),
                        owner: self
                            .owners
                            .get(c.id)
                            .cloned()
                            .unwrap_or_else(|| c.label(LABEL_OWNER).to_string()),
                        port: c.label(LABEL_PORT).parse().unwrap_or(0),
                        handle: ContainerHandle {
                            container_id: c.id.to_string(),
                        }
                        .into(),
                        started_at: c.label(LABEL_STARTED_AT).parse().unwrap_or(0),
                        pinned: (!pinned.is_empty()).then(|| pinned.to_string()),
                    },
                    liveness,
                    state: match (liveness, c.state, c.exit_code()) {
                        (Liveness::Running, "restarting", Some(code)) => Some(format!(
                            "container restarting after a crash (exit code {code})"
                        )),
                        (Liveness::Running, "restarting", None) => {
                            Some("container restarting after a crash".to_string())
                        }
                        (Liveness::Running, _, _) => None,
                        (_, state, Some(code)) => {
                            Some(format!("container {state} (exit code {code})"))
                        }
                        (_, state, None) => Some(format!("container {state}")),
                    },
                }
            })
            .collect()
    }

    /// What each of `specs` needs: its image's id from an `I` line or, where the engine's
    /// listing resolves names, from a container listed under the image's own name.
    fn prerequisites(&self, rt: &ContainerRuntime, specs: &[LaunchSpec]) -> Vec<Prerequisite> {
        let digest = |image: &str| -> Option<String> {
            if let Some(id) = self.resolved.get(image) {
                return id.map(str::to_string);
            }
            if !rt.listing_resolves_names() {
                return None;
            }
            self.containers
                .iter()
                .find(|c| c.image == image && c.pinned.starts_with("sha256:"))
                .map(|c| c.pinned.to_string())
        };
        specs
            .iter()
            .filter_map(|s| Some((s, rt.spec(s).ok()?)))
            .map(|(s, c)| Prerequisite {
                address: s.address.clone(),
                what: format!("image {}", c.image),
                digest: digest(&c.image),
                source: c.image_archive.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_valid_readable_and_distinct_per_run_dir() {
        let a = ContainerRuntime::container_name("/var/lib/berth", "model.qwen2.5-7b@gpu-a");
        assert!(a.starts_with("berth-model.qwen2.5-7b_gpu-a-"), "{a}");
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        );
        assert_ne!(
            a,
            ContainerRuntime::container_name("/srv/berth", "model.qwen2.5-7b@gpu-a")
        );
        assert_eq!(
            a,
            ContainerRuntime::container_name("/var/lib/berth/", "model.qwen2.5-7b@gpu-a")
        );
    }

    #[test]
    fn env_files_are_literal_and_refuse_line_breaks() {
        let mut spec = LaunchSpec {
            owner: "o".into(),
            address: "m@h".into(),
            run_dir: "/r".into(),
            command: "true".into(),
            env: vec![("A".into(), "it's $HOME = x".into())],
            port: 1,
            fingerprint: "f".into(),
            runtime: RuntimeSpec::Container(ContainerSpec::default()),
        };
        assert_eq!(env_file(&spec).unwrap(), "A=it's $HOME = x\n");
        spec.env = vec![("K".into(), "s3cret\nB=1".into())];
        let err = env_file(&spec).unwrap_err().to_string();
        assert!(err.contains('K') && !err.contains("s3cret"), "{err}");
    }

    #[test]
    fn a_container_being_restarted_runs_and_says_why() {
        let out = "C\tc1\trestarting\tRestarting (3) 1 second ago\timg:1\tPsha256:aa\tmodel.a@h\tfp\tL1\t8080\t12\n";
        let found = Listing::parse(out).observed();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].liveness, Liveness::Running);
        assert_eq!(
            found[0].state.as_deref(),
            Some("container restarting after a crash (exit code 3)")
        );
    }

    #[test]
    fn listed_lines_are_parsed_and_owner_files_win() {
        let docker = ContainerRuntime::docker();
        let labels = "model.a@h\tfp\tL1\t8080\t12";
        let out = format!(
            "O\t{{\"id\":\"c1\",\"owner\":\"L2\"}}\n\
             C\tc1\trunning\tUp 3 seconds\tregistry/img:1\tPsha256:aa\t{labels}\n\
             C\tc2\texited\tExited (137) 2 minutes ago\tsha256:bb\tPsha256:bb\t{labels}\n\
             C\tc3\tcreated\tCreated\timg:2\tP\t{labels}\n\
             L\tc3\tsha256:cc\n\
             C\tc4\trunning\tUp 1 second\timg:2\tPsha256:dd\t\t\t\t\t\n\
             C\tc5\trunning\ttoo\tfew\tfields\n"
        );
        let found = Listing::parse(&out).observed();
        assert_eq!(found.len(), 3, "{found:?}");
        let [a, b, c] = &found[..] else {
            unreachable!()
        };
        assert_eq!(a.instance.owner, "L2");
        assert_eq!(a.instance.port, 8080);
        assert_eq!(a.instance.started_at, 12);
        assert_eq!(a.instance.pinned.as_deref(), Some("sha256:aa"));
        assert_eq!(a.liveness, Liveness::Running);
        assert_eq!(b.instance.owner, "L1");
        assert_eq!(b.liveness, Liveness::Exited);
        assert_eq!(b.state.as_deref(), Some("container exited (exit code 137)"));
        // A container without berth's image label: its id comes from the `L` line.
        assert_eq!(c.instance.pinned.as_deref(), Some("sha256:cc"));
        assert_eq!(c.state.as_deref(), Some("container created"));

        // Docker lists a container under its image's name only while the name resolves to
        // the container's image: that id is the image's digest, with no `image inspect`.
        let spec = |image: &str| LaunchSpec {
            owner: "o".into(),
            address: format!("model.{image}@h"),
            run_dir: "/r".into(),
            command: "true".into(),
            env: Vec::new(),
            port: 1,
            fingerprint: "f".into(),
            runtime: RuntimeSpec::Container(ContainerSpec {
                image: image.into(),
                ..ContainerSpec::default()
            }),
        };
        let specs = [spec("registry/img:1"), spec("img:2"), spec("img:3")];
        let out = format!("{out}I\timg:3\t\n");
        let digests: Vec<Option<String>> = Listing::parse(&out)
            .prerequisites(&docker, &specs)
            .into_iter()
            .map(|p| p.digest)
            .collect();
        assert_eq!(
            digests,
            [
                Some("sha256:aa".to_string()),
                Some("sha256:dd".to_string()),
                None
            ]
        );
        // Podman lists the image as it was started from, whatever the name resolves to now.
        let podman: Vec<Option<String>> = Listing::parse(&out)
            .prerequisites(&ContainerRuntime::podman(), &specs)
            .into_iter()
            .map(|p| p.digest)
            .collect();
        assert_eq!(podman, [None, None, None]);
    }
}
