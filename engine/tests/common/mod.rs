//! The end-to-end harness: one temp config directory per test, the real `berth` binary run as a
//! user runs it (with `berth-model-server` on PATH), the state read back through `berth state`,
//! stand-in processes found through /proc, and a guard that leaves no process behind. The
//! berth runs ([`Workdir`], [`Run`], [`Background`]) are shared with the SSH tests' harness
//! (`ssh_common`); the stand-in and its processes, free ports, polling and HTTP come from
//! berth-test-support. Real processes and real HTTP only, never mocks.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[allow(unused_imports)] // not every test binary that has this module asks for each
pub use berth_test_support::{StandIn, all_stand_ins, free_ports, http::get_models, wait_until};
use berth_test_support::{model_server, procs};
use serde_json::Value;

/// How long one berth command may run before the test gives up on it.
pub const COMMAND_DEADLINE: Duration = Duration::from_secs(180);

/// The `berth` binary cargo built for these tests.
pub fn berth_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_berth"))
}

/// PATH for berth: the stand-in's directory and berth's first, then the caller's.
fn search_path() -> String {
    let server_dir = model_server().parent().expect("bin dir").to_path_buf();
    let berth_dir = berth_bin().parent().expect("bin dir").to_path_buf();
    let rest = std::env::var("PATH").unwrap_or_default();
    format!("{}:{}:{rest}", server_dir.display(), berth_dir.display())
}

/// The state address of model `id` on the local host.
pub fn addr(id: &str) -> String {
    format!("model.{id}@local")
}

/// One model of a test config: the stand-in on `port` with extra `flags`.
#[derive(Debug, Clone)]
pub struct Model {
    pub id: String,
    pub port: u16,
    pub flags: String,
    pub depends_on: Vec<String>,
    pub probe_timeout_sec: Option<u64>,
    pub probe_interval_ms: Option<u64>,
    /// The model group, and whether this member is its default.
    pub group: Option<(String, bool)>,
}

impl Model {
    pub fn new(id: &str, port: u16, flags: &str) -> Model {
        Model {
            id: id.to_string(),
            port,
            flags: flags.to_string(),
            depends_on: Vec::new(),
            probe_timeout_sec: None,
            probe_interval_ms: None,
            group: None,
        }
    }

    /// The same model as a member of `group` (its default when `default`).
    pub fn group(mut self, group: &str, default: bool) -> Model {
        self.group = Some((group.to_string(), default));
        self
    }

    pub fn depends_on(mut self, id: &str) -> Model {
        self.depends_on.push(id.to_string());
        self
    }

    pub fn probe_timeout(mut self, secs: u64) -> Model {
        self.probe_timeout_sec = Some(secs);
        self
    }

    pub fn probe_interval(mut self, ms: u64) -> Model {
        self.probe_interval_ms = Some(ms);
        self
    }

    fn hcl(&self) -> String {
        let mut out = format!("model \"{}\" {{\n", self.id);
        if let Some((group, default)) = &self.group {
            let _ = writeln!(out, "  group      = \"{group}\"");
            if *default {
                out.push_str("  default    = true\n");
            }
        }
        if !self.depends_on.is_empty() {
            let deps: Vec<String> = self
                .depends_on
                .iter()
                .map(|d| format!("\"model.{d}\""))
                .collect();
            let _ = writeln!(out, "  depends_on = [{}]", deps.join(", "));
        }
        let _ = writeln!(out, "  source     = \"/srv/models/{}.gguf\"", self.id);
        // A known size keeps berth from measuring a file that does not exist.
        out.push_str("  size_gib   = 0.1\n");
        let _ = writeln!(out, "  runtime_defaults {{\n    port = {}\n  }}", self.port);
        out.push_str("  launch {\n");
        let _ = writeln!(
            out,
            "    start_cmd  = \"berth-model-server --port {{port}} --model {{model}} {}\"",
            self.flags
        );
        out.push_str("    probe_http = \"/v1/models\"\n");
        if let Some(t) = self.probe_timeout_sec {
            let _ = writeln!(out, "    probe_timeout_sec = {t}");
        }
        if let Some(i) = self.probe_interval_ms {
            let _ = writeln!(out, "    probe_interval_ms = {i}");
        }
        out.push_str("  }\n}\n\n");
        out
    }
}

/// The host and backend every test config shares: the local machine, plain processes.
fn main_hcl(parallelism: usize) -> String {
    format!(
        r#"settings {{
  state_dir   = ".berth"
  parallelism = {parallelism}
}}

host "local" {{
  connection {{
    transport = "local"
  }}
  capabilities {{
    backends = ["cpu"]
  }}
}}

backend "cpu" {{
  runtime    = "process"
  verify_cmd = "command -v berth-model-server"
}}
"#
    )
}

/// What one berth command did.
#[derive(Debug, Clone)]
pub struct Run {
    /// The exit code; `None` when a signal ended it.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    pub args: Vec<String>,
}

impl Run {
    /// Stdout then stderr, for messages that may go to either.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// Panics with the whole output unless the command exited with `code`.
    #[track_caller]
    pub fn expect(&self, code: i32) -> &Run {
        assert_eq!(
            self.code,
            Some(code),
            "`berth {}` exited with {:?} (expected {code}) after {:.1}s\n--- stdout\n{}\n--- stderr\n{}",
            self.args.join(" "),
            self.code,
            self.elapsed.as_secs_f64(),
            self.stdout,
            self.stderr
        );
        self
    }

    /// Stdout parsed as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "`berth {}` printed no JSON ({e}):\n{}\n--- stderr\n{}",
                self.args.join(" "),
                self.stdout,
                self.stderr
            )
        })
    }
}

/// A berth command running in the background; dropping it kills it.
pub struct Background {
    child: Option<Child>,
    out: PathBuf,
    err: PathBuf,
    started: Instant,
    args: Vec<String>,
}

impl Background {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("not reaped").id()
    }

    /// What it printed to stdout so far.
    pub fn stdout_so_far(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// SIGKILL, then reap it (an unreaped zombie would still look alive to berth's lock).
    pub fn kill9(&mut self) -> Run {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
        }
        self.wait(Duration::from_secs(30))
    }

    /// Whether it has exited (reaping it).
    pub fn finished(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => child.try_wait().ok().flatten().is_some(),
            None => true,
        }
    }

    /// Waits for it to end (killing it after `timeout`) and returns what it did.
    pub fn wait(&mut self, timeout: Duration) -> Run {
        let end = Instant::now() + timeout;
        let mut code = None;
        if let Some(mut child) = self.child.take() {
            loop {
                match child.try_wait() {
                    Ok(Some(status)) => {
                        code = status.code();
                        break;
                    }
                    Ok(None) if Instant::now() < end => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        panic!(
                            "`berth {}` did not finish within {timeout:?}\n--- stdout\n{}\n--- stderr\n{}",
                            self.args.join(" "),
                            self.stdout_so_far(),
                            std::fs::read_to_string(&self.err).unwrap_or_default()
                        );
                    }
                }
            }
        }
        Run {
            code,
            stdout: std::fs::read_to_string(&self.out).unwrap_or_default(),
            stderr: std::fs::read_to_string(&self.err).unwrap_or_default(),
            elapsed: self.started.elapsed(),
            args: self.args.clone(),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Sends SIGKILL to the one process `pid`, as the OOM killer or an operator would.
pub fn kill_pid9(pid: u32) {
    procs::signal(pid, libc::SIGKILL);
}

/// A temp directory with one config (`config/`, its state in `config/.berth`) and the output
/// of every berth command run against it (`out/`): the berth runs both harnesses share.
pub struct Workdir {
    root: tempfile::TempDir,
    runs: Mutex<u32>,
    /// Whether berth runs with the stand-in's directory and berth's first on PATH.
    stand_in_on_path: bool,
}

impl Workdir {
    /// A new temp directory named `prefix...` holding empty `config` and `out` directories.
    pub fn new(prefix: &str, stand_in_on_path: bool) -> Workdir {
        let root = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .expect("temp dir");
        std::fs::create_dir_all(root.path().join("config")).expect("config dir");
        std::fs::create_dir_all(root.path().join("out")).expect("out dir");
        Workdir {
            root,
            runs: Mutex::new(0),
            stand_in_on_path,
        }
    }

    /// The config directory.
    pub fn dir(&self) -> PathBuf {
        self.root.path().join("config")
    }

    /// A scratch path beside the config (not part of it).
    pub fn path(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    /// The state directory (`settings.state_dir`).
    pub fn state_dir(&self) -> PathBuf {
        self.dir().join(".berth")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(berth_bin());
        cmd.arg("-C").arg(self.dir()).args(args);
        if self.stand_in_on_path {
            cmd.env("PATH", search_path());
        }
        cmd.env("NO_COLOR", "1")
            .env("COLUMNS", "200")
            .stdin(Stdio::null());
        cmd
    }

    fn output_files(&self) -> (PathBuf, PathBuf) {
        let mut n = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        *n += 1;
        let base = self.root.path().join("out");
        (
            base.join(format!("{:03}.stdout", *n)),
            base.join(format!("{:03}.stderr", *n)),
        )
    }

    /// Starts `berth -C DIR ARGS...` in the background (stdin not a terminal).
    pub fn spawn(&self, args: &[&str]) -> Background {
        self.spawn_with(args, |_| {})
    }

    /// Like [`Workdir::spawn`], with `adjust` changing the command first (its environment,
    /// the user it runs as).
    pub fn spawn_with(&self, args: &[&str], adjust: impl FnOnce(&mut Command)) -> Background {
        let (out, err) = self.output_files();
        let mut cmd = self.command(args);
        adjust(&mut cmd);
        let child = cmd
            .stdout(std::fs::File::create(&out).expect("stdout file"))
            .stderr(std::fs::File::create(&err).expect("stderr file"))
            .spawn()
            .expect("run berth");
        Background {
            child: Some(child),
            out,
            err,
            started: Instant::now(),
            args: args.iter().map(|a| a.to_string()).collect(),
        }
    }

    /// Starts `berth -C DIR ARGS...` with stdout and stderr going to pipes whose readers are
    /// already gone, as behind `| head` or a log collector that died.
    pub fn spawn_with_closed_output(&self, args: &[&str]) -> Background {
        let (out, err) = self.output_files();
        let closed_pipe = || {
            let (reader, writer) = std::io::pipe().expect("pipe");
            drop(reader);
            writer
        };
        let child = self
            .command(args)
            .stdout(closed_pipe())
            .stderr(closed_pipe())
            .spawn()
            .expect("run berth");
        Background {
            child: Some(child),
            out,
            err,
            started: Instant::now(),
            args: args.iter().map(|a| a.to_string()).collect(),
        }
    }

    /// Runs `berth -C DIR ARGS...` to its end.
    pub fn berth(&self, args: &[&str]) -> Run {
        self.spawn(args).wait(COMMAND_DEADLINE)
    }

    /// `berth state list --json`.
    pub fn state_list(&self) -> Vec<Value> {
        let run = self.berth(&["state", "list", "--json"]);
        run.expect(0);
        run.json().as_array().cloned().expect("a JSON array")
    }

    /// `berth state show ADDRESS` as JSON.
    pub fn state_show(&self, address: &str) -> Value {
        let run = self.berth(&["state", "show", address]);
        run.expect(0);
        run.json()
    }

    /// `berth endpoints --json`.
    pub fn endpoints(&self) -> Vec<Value> {
        let run = self.berth(&["endpoints", "--json"]);
        run.expect(0);
        run.json().as_array().cloned().expect("a JSON array")
    }

    /// The holder recorded in the state lock file, while a command holds it.
    pub fn lock_holder(&self) -> Option<Value> {
        let text = std::fs::read_to_string(self.state_dir().join("berth.lock")).ok()?;
        serde_json::from_str(text.trim()).ok()
    }
}

/// One test's config directory and everything it started. Dropping it kills what is left.
/// The berth runs are its [`Workdir`]'s.
pub struct Fleet {
    work: Workdir,
    parallelism: usize,
    /// Every port any version of the config used: what the guard cleans up.
    ports: Mutex<Vec<u16>>,
}

impl std::ops::Deref for Fleet {
    type Target = Workdir;

    fn deref(&self) -> &Workdir {
        &self.work
    }
}

impl Fleet {
    /// A config dir holding the shared host/backend and `models`.
    pub fn new(models: &[Model], parallelism: usize) -> Fleet {
        // Build (or find) the stand-in before any berth command needs it on PATH.
        model_server();
        let fleet = Fleet {
            work: Workdir::new("berth-e2e-", true),
            parallelism,
            ports: Mutex::new(Vec::new()),
        };
        std::fs::write(fleet.dir().join("main.hcl"), main_hcl(parallelism)).expect("main.hcl");
        fleet.set_models(models);
        fleet
    }

    /// Where the process runtime keeps its deployments for the local host (the default
    /// run_dir, beside the state directory).
    pub fn deployments_dir(&self) -> PathBuf {
        self.dir().join(".berth-run/local/deployments")
    }
    /// The deployments recorded on the host (directory names).
    pub fn deployments(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.deployments_dir())
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Rewrites models.hcl with `models`.
    pub fn set_models(&self, models: &[Model]) {
        let mut text = String::new();
        for m in models {
            text.push_str(&m.hcl());
        }
        std::fs::write(self.dir().join("models.hcl"), text).expect("models.hcl");
        let mut ports = self.ports.lock().unwrap_or_else(|e| e.into_inner());
        for m in models {
            if !ports.contains(&m.port) {
                ports.push(m.port);
            }
        }
    }

    /// Address -> status (`ready`, `failed`) of every record.
    pub fn statuses(&self) -> BTreeMap<String, String> {
        self.state_list()
            .iter()
            .map(|r| {
                (
                    r["address"].as_str().unwrap_or_default().to_string(),
                    r["status"]["state"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                )
            })
            .collect()
    }

    /// The ports this test's configs used.
    pub fn ports(&self) -> Vec<u16> {
        self.ports.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Live stand-ins serving one of this test's ports.
    pub fn stand_ins(&self) -> Vec<StandIn> {
        let ports = self.ports();
        all_stand_ins()
            .into_iter()
            .filter(|s| ports.contains(&s.port))
            .collect()
    }

    /// Port -> pids of the stand-ins of this test.
    pub fn stand_ins_by_port(&self) -> BTreeMap<u16, Vec<u32>> {
        let mut map: BTreeMap<u16, Vec<u32>> = BTreeMap::new();
        for s in self.stand_ins() {
            map.entry(s.port).or_default().push(s.pid);
        }
        map
    }

    /// The one stand-in serving `port`; panics unless there is exactly one.
    #[track_caller]
    pub fn stand_in(&self, port: u16) -> StandIn {
        let found: Vec<StandIn> = self
            .stand_ins()
            .into_iter()
            .filter(|s| s.port == port)
            .collect();
        assert_eq!(found.len(), 1, "stand-ins on port {port}: {found:?}");
        found[0].clone()
    }

    /// Kills every stand-in of this test and waits until they are gone.
    pub fn kill_stand_ins(&self) {
        for _ in 0..3 {
            let left = self.stand_ins();
            if left.is_empty() {
                return;
            }
            for s in &left {
                s.kill9();
            }
            wait_until(Duration::from_secs(5), || self.stand_ins().is_empty());
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let left = self.stand_ins();
        self.kill_stand_ins();
        if !left.is_empty() && !std::thread::panicking() {
            eprintln!("note: killed stand-ins the test left behind: {left:?}");
        }
    }
}

/// Heals that a `berth watch` log (text format) reports as done.
pub fn heals_logged(log: &str) -> usize {
    log.lines().filter(|l| l.ends_with(": healed")).count()
}
