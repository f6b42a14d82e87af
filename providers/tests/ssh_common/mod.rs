//! Fixture shared by the `ssh_*` tests: a fleet of real OpenSSH hosts from
//! `testdata/fleet/fleet`, brought up once per test binary under a prefix and subnet of its
//! own (so test binaries and concurrent runs do not collide) and torn down when the binary
//! exits, pass or fail. It must not be used for anything but tests: it needs root.

#![allow(dead_code)] // each test binary uses a different part of it

use std::path::{Path, PathBuf};
use std::process::Command as Process;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_providers::{Command, SshConfig, SshTransport, Transport};

/// The fleet script, relative to this crate.
fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/fleet/fleet")
}

/// A running fleet; dropping it tears it down.
#[derive(Debug)]
pub struct Fleet {
    pub dir: PathBuf,
    pub prefix: String,
    pub subnet: String,
    pub hosts: usize,
}

static FLEET: Mutex<Option<Arc<Fleet>>> = Mutex::new(None);

extern "C" fn teardown_at_exit() {
    // Dropping the last reference runs `fleet down` (see `Drop for Fleet`).
    let fleet = FLEET.lock().ok().and_then(|mut f| f.take());
    drop(fleet);
}

impl Fleet {
    /// This test binary's fleet of `hosts` hosts, brought up on first use. `tag` (one letter)
    /// and the process id make its names and subnet unique.
    pub fn shared(tag: char, hosts: usize) -> Arc<Fleet> {
        let mut slot = FLEET.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(fleet) = slot.as_ref() {
            return Arc::clone(fleet);
        }
        preflight();
        let pid = std::process::id();
        let prefix = format!("b{tag}{}", base36(pid));
        let dir = std::env::temp_dir().join(format!("berth-fleet-{prefix}"));
        let _ = std::fs::remove_dir_all(&dir);
        let fleet = Fleet {
            dir,
            subnet: free_subnet(tag, pid),
            prefix,
            hosts,
        };
        // Fleets of test runs that were killed (so never reached their teardown) go first.
        let _ = fleet.script_command(&["prune"]).status();
        // From here on a failure still tears down: `fleet` is dropped while unwinding.
        fleet.run(&["up", &hosts.to_string()]);
        let fleet = Arc::new(fleet);
        *slot = Some(Arc::clone(&fleet));
        // SAFETY: registering a plain `extern "C" fn` with atexit has no preconditions.
        unsafe {
            libc::atexit(teardown_at_exit);
        }
        fleet
    }

    fn script_command(&self, args: &[&str]) -> Process {
        let mut cmd = Process::new(script());
        cmd.args(args)
            .env("BERTH_FLEET_PREFIX", &self.prefix)
            .env("BERTH_FLEET_SUBNET", &self.subnet)
            .env("BERTH_FLEET_DIR", &self.dir)
            .env("BERTH_FLEET_OWNER", std::process::id().to_string());
        cmd
    }

    /// Runs `fleet ARGS...` for this fleet; panics with its output when it fails.
    pub fn run(&self, args: &[&str]) {
        let out = self
            .script_command(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script().display()));
        assert!(
            out.status.success(),
            "fleet {} failed ({}):\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs `fleet ARGS...` and ignores failure (for clean-up that must not panic).
    pub fn run_quietly(&self, args: &[&str]) {
        let _ = self.script_command(args).output();
    }

    /// Address of host `k` (1-based).
    pub fn address(&self, k: usize) -> String {
        format!("{}.{}", self.subnet, 10 + k)
    }

    /// The fleet's client key, authorized on every host.
    pub fn key(&self) -> PathBuf {
        self.dir.join("id_ed25519")
    }

    /// known_hosts listing every host of the fleet.
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }

    /// Host `k`'s public host key, `ssh-ed25519 AAAA... hK`.
    pub fn host_key(&self, k: usize) -> String {
        let path = self
            .dir
            .join(format!("hosts/h{k}/ssh_host_ed25519_key.pub"));
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .trim()
            .to_string()
    }

    /// Host `k`'s sshd log.
    pub fn sshd_log(&self, k: usize) -> String {
        std::fs::read_to_string(self.dir.join(format!("hosts/h{k}/sshd.log"))).unwrap_or_default()
    }

    /// Adds a public key file to the fleet's authorized_keys (shared by all hosts).
    pub fn authorize(&self, public_key: &Path) {
        use std::io::Write;
        let key = std::fs::read_to_string(public_key).expect("public key readable");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.join("authorized_keys"))
            .expect("authorized_keys");
        writeln!(file, "{}", key.trim()).expect("append to authorized_keys");
    }

    /// Connection settings for host `k` with the fleet key and known_hosts.
    pub fn config(&self, k: usize) -> SshConfig {
        let mut config = SshConfig::new(format!("h{k}"), self.address(k));
        config.user = "root".to_string();
        config.key_path = Some(self.key());
        config.known_hosts = Some(self.known_hosts());
        config.connect_timeout = Duration::from_secs(5);
        config
    }

    /// A connected transport to host `k`.
    pub async fn connect(&self, k: usize) -> SshTransport {
        SshTransport::connect(self.config(k))
            .await
            .unwrap_or_else(|e| panic!("connect to h{k}: {e}"))
    }

    /// A scratch directory inside the fleet directory.
    pub fn scratch(&self, name: &str) -> PathBuf {
        let path = self.dir.join("scratch").join(name);
        std::fs::create_dir_all(&path).expect("scratch dir");
        path
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let _ = self.script_command(&["down"]).output();
        if std::env::var_os("BERTH_FLEET_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The tests need what CI has: root and network namespaces. Anything else is a failure, not
/// a silent pass.
fn preflight() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert!(
        euid == 0,
        "the ssh_* tests need root (they build a fleet of sshd hosts in network namespaces with \
         testdata/fleet/fleet); run them as root, as CI does (euid is {euid})"
    );
    let netns = Process::new("ip").args(["netns", "list"]).output();
    assert!(
        netns.as_ref().is_ok_and(|o| o.status.success()),
        "the ssh_* tests need `ip netns` (iproute2) and network namespace support: {netns:?}"
    );
    assert!(script().exists(), "{} is missing", script().display());
}

/// A /24 that no interface on this machine uses yet, from the tag and the pid.
fn free_subnet(tag: char, pid: u32) -> String {
    let second = 212 + (u32::from(tag) % 32);
    let used = Process::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    (0..250)
        .map(|i| format!("10.{second}.{}", (pid + i) % 250 + 1))
        .find(|subnet| !used.contains(&format!(" {subnet}.1/24")))
        .expect("a free 10.x.y.0/24 subnet")
}

fn base36(mut n: u32) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ascii")
}

/// Runs a script that must succeed and returns its stdout.
pub async fn run_ok(t: &dyn Transport, script: &str) -> String {
    let out = t
        .exec(Command::new(script, Duration::from_secs(20)))
        .await
        .unwrap_or_else(|e| panic!("`{script}` on {}: {e}", t.host()));
    assert!(out.success(), "`{script}` on {}: {out:?}", t.host());
    out.stdout_text()
}

/// How many processes on the machine have exactly these arguments (hosts share the pid
/// namespace, so this sees every host's processes).
pub fn processes_with_args(args: &str) -> usize {
    let out = Process::new("ps")
        .args(["-eo", "args="])
        .output()
        .expect("ps");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.trim() == args)
        .count()
}
