//! A private PostgreSQL 15 server for the tests of one process: `initdb` into a fresh directory
//! (as the `postgres` user when the tests run as root, since PostgreSQL refuses to run as
//! root), password logins only, listening on a Unix socket in that directory and nowhere else.
//! It is stopped and its directory removed when the test process ends, however it ends: a
//! watchdog shell waits on a pipe whose writing end only this process holds.
//!
//! Child processes that a test starts (a second berth, the conformance suite's roles) reach the
//! same server: its coordinates are exported in `BERTH_TEST_PG_SERVER` before any child runs.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

const SERVER_ENV: &str = "BERTH_TEST_PG_SERVER";
/// Ports this suite may name its socket after.
const PORTS: std::ops::Range<u16> = 55400..55500;

/// A running private server.
#[derive(Debug)]
pub struct PgServer {
    /// Holds the data directory and the socket.
    pub dir: PathBuf,
    pub port: u16,
    /// The superuser `postgres`'s password.
    pub password: String,
    _watchdog: Option<Mutex<ChildStdin>>,
}

/// Where the binaries of PostgreSQL 15 are (Debian's layout), or `pg_config --bindir`.
pub fn bin_dir() -> PathBuf {
    let debian = PathBuf::from("/usr/lib/postgresql/15/bin");
    if debian.join("postgres").exists() {
        return debian;
    }
    let out = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .expect("PostgreSQL is not installed: run scripts/test, which installs it");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// The server of this test process, started on first use.
pub fn server() -> &'static PgServer {
    static SERVER: OnceLock<PgServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        if let Ok(coords) = std::env::var(SERVER_ENV) {
            return PgServer::from_coords(&coords);
        }
        let server = PgServer::start();
        // SAFETY: set once, before any child is spawned with it; std serialises its own
        // environment accesses, and the tests read no variable through libc meanwhile.
        unsafe { std::env::set_var(SERVER_ENV, server.coords()) };
        server
    })
}

impl PgServer {
    fn coords(&self) -> String {
        format!("{}|{}|{}", self.dir.display(), self.port, self.password)
    }

    fn from_coords(coords: &str) -> PgServer {
        let mut parts = coords.splitn(3, '|');
        let (Some(dir), Some(port), Some(password)) = (parts.next(), parts.next(), parts.next())
        else {
            panic!("{SERVER_ENV} is DIR|PORT|PASSWORD");
        };
        PgServer {
            dir: dir.into(),
            port: port.parse().expect("port"),
            password: password.to_owned(),
            _watchdog: None,
        }
    }

    fn start() -> PgServer {
        let bin = bin_dir();
        let root = unsafe { libc::geteuid() } == 0;
        let dir = std::env::temp_dir().join(format!(
            "berth-pg-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos()
        ));
        std::fs::create_dir_all(&dir).expect("create the server directory");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let password = format!("pw-{:x}", std::process::id() as u64 * 7919 + now_nanos());
        let pwfile = dir.join("pwfile");
        std::fs::write(&pwfile, &password).unwrap();
        if root {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .expect("chown");
            assert!(status.success(), "chown the server directory to postgres");
        }
        let as_owner = |program: &Path| {
            let mut cmd = if root {
                let mut cmd = Command::new("setpriv");
                cmd.args([
                    "--reuid=postgres",
                    "--regid=postgres",
                    "--init-groups",
                    "--",
                ])
                .arg(program);
                cmd
            } else {
                Command::new(program)
            };
            cmd.current_dir(&dir);
            cmd
        };
        let data = dir.join("data");
        let out = as_owner(&bin.join("initdb"))
            .args(["-U", "postgres", "--auth=scram-sha-256", "--no-sync"])
            .arg("--pwfile")
            .arg(&pwfile)
            .arg("-D")
            .arg(&data)
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = std::fs::remove_file(&pwfile);
        let port = pick_port(&dir);
        let postgres = as_owner(&bin.join("postgres"));
        let prefix: Vec<String> = std::iter::once(postgres.get_program())
            .chain(postgres.get_args())
            .map(|a| shell_quote(&a.to_string_lossy()))
            .collect();
        let script = format!(
            "{} -D {} -k {} -p {port} -c listen_addresses= -c max_connections=200 \
             >{}/server.log 2>&1 & pid=$!\n\
             read _ignored || true\nkill -INT $pid\nwait $pid\nrm -rf {}\n",
            prefix.join(" "),
            shell_quote(&data.to_string_lossy()),
            shell_quote(&dir.to_string_lossy()),
            shell_quote(&dir.to_string_lossy()),
            shell_quote(&dir.to_string_lossy()),
        );
        let mut child = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start postgres");
        let stdin = child.stdin.take().expect("watchdog pipe");
        // The shell is reaped by nobody; it ends with this process anyway.
        std::mem::forget(child);
        let server = PgServer {
            dir,
            port,
            password,
            _watchdog: Some(Mutex::new(stdin)),
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = self.psql_command("postgres", "SELECT 1").output().unwrap();
            if out.status.success() {
                return;
            }
            if Instant::now() >= deadline {
                let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
                panic!(
                    "postgres did not start: {}\n{log}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A connection URL for `database` as `user` with `password`.
    pub fn url_as(&self, user: &str, password: &str, database: &str) -> String {
        format!(
            "postgres://{user}:{password}@localhost:{}/{database}?host={}",
            self.port,
            self.dir.display()
        )
    }

    /// A connection URL for `database` as the superuser.
    pub fn url(&self, database: &str) -> String {
        self.url_as("postgres", &self.password, database)
    }

    fn psql_command(&self, database: &str, sql: &str) -> Command {
        let mut cmd = Command::new(bin_dir().join("psql"));
        cmd.args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-U",
            "postgres",
        ])
        .arg("-h")
        .arg(&self.dir)
        .arg("-p")
        .arg(self.port.to_string())
        .arg("-d")
        .arg(database)
        .arg("-c")
        .arg(sql)
        .env("PGPASSWORD", &self.password)
        .stdin(Stdio::null());
        cmd
    }

    /// Runs `sql` in `database` as the superuser and returns what it printed (unaligned, tuples
    /// only); panics when it fails.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let out = self.psql_command(database, sql).output().expect("run psql");
        assert!(
            out.status.success(),
            "psql {sql:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A new, empty database with a name no other test of this process uses.
    pub fn fresh_database(&self, hint: &str) -> String {
        static COUNT: Mutex<u32> = Mutex::new(0);
        let n = {
            let mut count = COUNT.lock().unwrap_or_else(|e| e.into_inner());
            *count += 1;
            *count
        };
        let name: String = format!("{hint}_{}_{n}", std::process::id())
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        name
    }

    /// The server's log, for a failing test's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if let Some(stdin) = &self._watchdog {
            let mut stdin = stdin.lock().unwrap_or_else(|e| e.into_inner());
            let _ = stdin.write_all(b"stop\n");
        }
    }
}

fn pick_port(dir: &Path) -> u16 {
    let start = PORTS.start + (std::process::id() % 100) as u16;
    (0..100u16)
        .map(|i| PORTS.start + (start - PORTS.start + i) % 100)
        .find(|port| {
            !dir.join(format!(".s.PGSQL.{port}")).exists()
                && std::net::TcpListener::bind(("127.0.0.1", *port)).is_ok()
        })
        .expect("a free port in 55400-55499")
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}
