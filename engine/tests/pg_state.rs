//! The postgres state backend end to end, on a private PostgreSQL server: two checkouts of one
//! fleet sharing a workspace, berth killed mid-apply, a writer whose lock was taken, a sled
//! state moved to postgres, and the URL's password kept out of everything berth writes.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use berth_test_support::postgres as pg;
use common::{Background, Run, StandIn, Workdir, all_stand_ins, free_ports, wait_until};

/// Where a checkout's berth finds the database URL.
#[derive(Debug, Clone, Copy, PartialEq)]
enum UrlFrom {
    /// `BERTH_PG_URL`.
    Env,
    /// `url = var.pg_url`, a sensitive variable set by `BERTH_VAR_pg_url`.
    SensitiveVar,
}

/// One checkout of the fleet's config, with its own directory, on the shared workspace.
struct Checkout {
    work: Workdir,
    url: String,
    from: UrlFrom,
}

impl Checkout {
    fn new(
        url: &str,
        workspace: &str,
        run_dir: &std::path::Path,
        models: &[(String, u16, f64)],
    ) -> Checkout {
        Checkout::with_url_from(UrlFrom::Env, url, workspace, run_dir, models)
    }

    fn with_url_from(
        from: UrlFrom,
        url: &str,
        workspace: &str,
        run_dir: &std::path::Path,
        models: &[(String, u16, f64)],
    ) -> Checkout {
        let work = Workdir::new("berth-pg-", true);
        let checkout = Checkout {
            work,
            url: url.to_owned(),
            from,
        };
        checkout.write(workspace, run_dir, models);
        checkout
    }

    fn write(&self, workspace: &str, run_dir: &std::path::Path, models: &[(String, u16, f64)]) {
        let state = format!("backend = \"postgres\"\n    workspace = \"{workspace}\"");
        let hcl = match self.from {
            UrlFrom::Env => config(&state, run_dir, models),
            UrlFrom::SensitiveVar => format!(
                "variable \"pg_url\" {{\n  sensitive = true\n}}\n\n{}",
                config(&format!("{state}\n    url = var.pg_url"), run_dir, models)
            ),
        };
        std::fs::write(self.work.dir().join("main.hcl"), hcl).unwrap();
    }

    fn spawn(&self, args: &[&str]) -> Background {
        let url = self.url.clone();
        let from = self.from;
        self.work.spawn_with(args, move |cmd| match from {
            UrlFrom::Env => {
                cmd.env("BERTH_PG_URL", url);
            }
            UrlFrom::SensitiveVar => {
                cmd.env("BERTH_VAR_pg_url", url);
            }
        })
    }

    fn berth(&self, args: &[&str]) -> Run {
        self.spawn(args).wait(common::COMMAND_DEADLINE)
    }

    /// Runs berth with `env` as the only source of the URL (or of its variable).
    fn berth_with(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.work
            .spawn_with(args, move |cmd| {
                cmd.env_remove("BERTH_PG_URL")
                    .env_remove("BERTH_VAR_pg_url");
                cmd.envs(env);
            })
            .wait(common::COMMAND_DEADLINE)
    }
}

fn config(state: &str, run_dir: &std::path::Path, models: &[(String, u16, f64)]) -> String {
    let mut hcl = format!(
        "settings {{\n  parallelism = 10\n  state {{\n    {state}\n  }}\n}}\n\n\
         host \"local\" {{\n  connection {{\n    transport = \"local\"\n  }}\n  capabilities {{\n    backends = [\"cpu\"]\n  }}\n  run_dir = \"{}\"\n}}\n\n\
         backend \"cpu\" {{\n  runtime    = \"process\"\n  verify_cmd = \"command -v berth-model-server\"\n}}\n",
        run_dir.display()
    );
    for (id, port, load) in models {
        hcl.push_str(&format!(
            "\nmodel \"{id}\" {{\n  source   = \"/srv/models/{id}.gguf\"\n  size_gib = 0.1\n  runtime_defaults {{\n    port = {port}\n  }}\n  launch {{\n    start_cmd         = \"berth-model-server --port {{port}} --model {{model}} --load-secs {load:.2}\"\n    probe_http        = \"/v1/models\"\n    probe_timeout_sec = 30\n    probe_interval_ms = 100\n  }}\n}}\n"
        ));
    }
    hcl
}

fn models(ports: &[u16], load: f64) -> Vec<(String, u16, f64)> {
    ports
        .iter()
        .enumerate()
        .map(|(i, p)| (format!("m{i:02}"), *p, load))
        .collect()
}

/// Kills the stand-ins on this test's ports when the test ends, however it ends.
struct Ports(Vec<u16>);

impl Ports {
    fn stand_ins(&self) -> Vec<StandIn> {
        all_stand_ins()
            .into_iter()
            .filter(|s| self.0.contains(&s.port))
            .collect()
    }

    fn by_port(&self) -> BTreeMap<u16, usize> {
        let mut by_port = BTreeMap::new();
        for s in self.stand_ins() {
            *by_port.entry(s.port).or_default() += 1;
        }
        by_port
    }
}

impl Drop for Ports {
    fn drop(&mut self) {
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

fn run_dir(name: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::Builder::new().prefix(name).tempdir().unwrap();
    let dir = tmp.path().join("run");
    (tmp, dir)
}

/// Every serial the workspace's versions hold, in order.
fn version_serials(db: &str) -> Vec<u64> {
    pg::server()
        .psql(db, "SELECT serial FROM berth.versions ORDER BY serial")
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.trim().parse().unwrap())
        .collect()
}

fn workspace_serial(db: &str, workspace: &str) -> u64 {
    pg::server()
        .psql(
            db,
            &format!("SELECT serial FROM berth.workspaces WHERE name = '{workspace}'"),
        )
        .trim()
        .parse()
        .unwrap()
}

/// The versions are 1..=n with no gap or double, and the workspace is at the last one.
#[track_caller]
fn assert_versions_whole(db: &str, workspace: &str, context: &str) {
    let serials = version_serials(db);
    let expected: Vec<u64> = (1..=serials.len() as u64).collect();
    assert_eq!(serials, expected, "{context}: versions lost or doubled");
    assert_eq!(
        workspace_serial(db, workspace),
        serials.len() as u64,
        "{context}: the workspace's serial is not its last version"
    );
}

#[test]
fn two_checkouts_share_one_workspace_and_the_second_apply_names_the_first() {
    let server = pg::server();
    let db = server.fresh_database("two_checkouts");
    let url = server.url(&db);
    let ports = Ports(free_ports(3));
    let (_tmp, run) = run_dir("berth-pg-run-");
    let fleet = models(&ports.0, 2.0);
    let first = Checkout::new(&url, "prod", &run, &fleet);
    let second = Checkout::new(&url, "prod", &run, &fleet);
    first.berth(&["state", "init"]).expect(0);

    let mut running = first.spawn(&["apply", "--auto-approve"]);
    assert!(
        wait_until(Duration::from_secs(20), || {
            server.psql(&db, "SELECT count(*) FROM berth.locks").trim() == "1"
        }),
        "the first apply never took the lock"
    );
    let started = Instant::now();
    let refused = second.berth(&["apply", "--auto-approve"]);
    assert_eq!(refused.code, Some(1), "{}", refused.all());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "it must fail fast: {:?}",
        started.elapsed()
    );
    let host = gethostname();
    for part in [
        "state is locked".to_owned(),
        format!("@{host} pid {}", running.pid()),
        "(apply".to_owned(),
        "berth force-unlock".to_owned(),
    ] {
        assert!(
            refused.stderr.contains(&part),
            "{part:?} missing: {}",
            refused.stderr
        );
    }

    running.wait(common::COMMAND_DEADLINE).expect(0);
    let after = second.berth(&["apply", "--auto-approve"]);
    after.expect(0);
    assert!(after.stdout.contains("No changes"), "{}", after.all());
    assert_eq!(
        ports.by_port().values().copied().collect::<Vec<_>>(),
        [1, 1, 1]
    );
    let history = second.berth(&["state", "history", "--json"]);
    history.expect(0);
    let entries = history.json().as_array().cloned().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["changes"].to_string().contains("\"model.m00@local\"")),
        "the first checkout's apply is in the shared history: {}",
        history.stdout
    );
    assert_versions_whole(&db, "prod", "after two applies");
}

fn gethostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_owned()
}

/// SplitMix64, so that a failing run can be replayed with BERTH_CRASH_SEED.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn an_apply_killed_at_any_moment_releases_the_lock_and_loses_no_version() {
    const TRIALS: usize = 20;
    let seed: u64 = std::env::var("BERTH_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x9e5_b347);
    eprintln!("crash trials with BERTH_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let server = pg::server();
    let db = server.fresh_database("killed");
    let url = server.url(&db);
    let ports = Ports(free_ports(6));
    let (_tmp, run) = run_dir("berth-pg-kill-");
    let mut load = 0.3;
    let checkout = Checkout::new(&url, "prod", &run, &models(&ports.0, load));
    checkout.berth(&["state", "init"]).expect(0);

    for trial in 0..TRIALS {
        // Every trial replaces every model (a new load time), so the killed apply writes.
        load = 0.2 + rng.below(80) as f64 / 100.0;
        checkout.write("prod", &run, &models(&ports.0, load));
        let delay = Duration::from_millis(rng.below(2500));
        let mut victim = checkout.spawn(&["apply", "--auto-approve"]);
        let victim_pid = victim.pid();
        std::thread::sleep(delay);
        let killed = victim.kill9();

        // The server ends the killed berth's session, and with it the advisory lock: the row
        // left behind names a holder that is gone, which --force takes over.
        let holder = server.psql(&db, "SELECT holder->>'pid' FROM berth.locks");
        if holder.trim() == victim_pid.to_string() {
            let blocked = checkout.berth(&["plan", "--refresh=false"]);
            assert_eq!(blocked.code, Some(1), "trial {trial}: {}", blocked.all());
            assert!(
                blocked.stderr.contains("stale"),
                "trial {trial}: {}",
                blocked.stderr
            );
        }
        let converge = checkout.berth(&["apply", "--auto-approve", "--force"]);
        assert_eq!(
            converge.code,
            Some(0),
            "trial {trial} (seed {seed}, killed after {delay:?}): \n--- killed\n{}\n--- converge\n{}",
            killed.stdout,
            converge.all()
        );
        let by_port = ports.by_port();
        assert_eq!(
            by_port.len(),
            ports.0.len(),
            "trial {trial}: a placement has no server: {by_port:?}"
        );
        assert!(
            by_port.values().all(|n| *n == 1),
            "trial {trial}: a placement has several servers: {by_port:?}"
        );
        for s in ports.stand_ins() {
            assert_eq!(
                s.flag("--load-secs"),
                Some(format!("{load:.2}").as_str()),
                "trial {trial}: {s:?}"
            );
        }
        assert_versions_whole(&db, "prod", &format!("trial {trial} (seed {seed})"));
        let rows = server.psql(&db, "SELECT count(*) FROM berth.locks");
        assert_eq!(
            rows.trim(),
            "0",
            "trial {trial}: the converging apply released its lock"
        );
    }
}

#[test]
fn a_berth_whose_lock_was_taken_stops_at_its_next_write() {
    let server = pg::server();
    let db = server.fresh_database("stolen_apply");
    let url = server.url(&db);
    let ports = Ports(free_ports(4));
    let (_tmp, run) = run_dir("berth-pg-stolen-");
    let checkout = Checkout::new(&url, "prod", &run, &models(&ports.0, 0.2));
    checkout.berth(&["state", "init"]).expect(0);
    checkout.berth(&["apply", "--auto-approve"]).expect(0);

    // A slow replace: its writes come seconds after it took the lock.
    checkout.write("prod", &run, &models(&ports.0, 3.0));
    let mut victim = checkout.spawn(&["apply", "--auto-approve"]);
    assert!(
        wait_until(Duration::from_secs(20), || victim
            .stdout_so_far()
            .contains("probing")
            || victim.stdout_so_far().contains("starting")),
        "the apply never started: {}",
        victim.stdout_so_far()
    );
    // Its lock connection is cut (as by a network loss); another berth removes the lock and
    // writes.
    let id = server
        .psql(&db, "SELECT lock_id FROM berth.locks")
        .trim()
        .to_owned();
    server.psql(
        &db,
        "SELECT pg_terminate_backend(backend_pid) FROM berth.locks",
    );
    let other = Checkout::new(&url, "prod", &run, &models(&ports.0, 3.0));
    let unlocked = loop {
        let r = other.berth(&["force-unlock", &id]);
        if r.code == Some(0) || !r.stderr.contains("running berth") {
            break r;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    unlocked.expect(0);
    other.berth(&["state", "rm", "model.m00@local"]).expect(0);

    let stopped = victim.wait(common::COMMAND_DEADLINE);
    assert_eq!(stopped.code, Some(1), "{}", stopped.all());
    assert!(
        stopped.stderr.contains("was changed by another writer"),
        "{}",
        stopped.all()
    );
    assert_versions_whole(&db, "prod", "after the stolen apply");
    let last = server.psql(
        &db,
        "SELECT lock_id FROM berth.versions ORDER BY serial DESC LIMIT 1",
    );
    assert_ne!(
        last.trim(),
        id,
        "nothing the first berth wrote comes after the other's write"
    );
    let rm = other.berth(&["state", "show", "model.m00@local"]);
    assert_eq!(
        rm.code,
        Some(1),
        "the other berth's change stands: {}",
        rm.all()
    );
}

#[test]
fn a_sled_state_moved_to_postgres_keeps_records_and_history_and_plans_no_change() {
    let server = pg::server();
    let db = server.fresh_database("migrate");
    let url = server.url(&db);
    let ports = Ports(free_ports(3));
    let (_tmp, run) = run_dir("berth-pg-migrate-");
    let fleet = models(&ports.0, 0.2);
    let checkout = Checkout::new(&url, "prod", &run, &fleet);
    std::fs::write(
        checkout.work.dir().join("main.hcl"),
        config("backend = \"sled\"", &run, &fleet),
    )
    .unwrap();
    checkout.berth(&["apply", "--auto-approve"]).expect(0);
    checkout
        .berth(&["state", "rm", "model.m02@local"])
        .expect(0);
    checkout.berth(&["apply", "--auto-approve"]).expect(0);
    let sled_list = checkout.berth(&["state", "list", "--json"]).json();
    let sled_history = checkout.berth(&["state", "history", "--json"]).json();

    checkout.write("prod", &run, &fleet);
    let copied = checkout.berth(&["state", "migrate", "--to", "postgres"]);
    copied.expect(0);
    let records = sled_list.as_array().unwrap().len();
    assert!(
        copied
            .stdout
            .contains(&format!("Copied {records} resource(s)")),
        "{}",
        copied.stdout
    );
    assert_eq!(
        checkout.berth(&["state", "list", "--json"]).json(),
        sled_list
    );
    assert_eq!(
        checkout.berth(&["state", "history", "--json"]).json(),
        sled_history
    );
    let plan = checkout.berth(&["plan", "--detailed-exitcode"]);
    assert_eq!(
        plan.code,
        Some(0),
        "a plan after the move proposes nothing: {}",
        plan.all()
    );

    // Another state's copy is refused and changes nothing.
    let other = Checkout::new(&url, "prod", &run, &fleet);
    std::fs::write(
        other.work.dir().join("main.hcl"),
        config("backend = \"sled\"", &run, &[]),
    )
    .unwrap();
    other.berth(&["state", "list"]).expect(0);
    other.write("prod", &run, &[]);
    let refused = other.berth(&["state", "migrate", "--to", "postgres"]);
    assert_eq!(refused.code, Some(1), "{}", refused.all());
    assert!(
        refused.stderr.contains("holds another state"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        checkout.berth(&["state", "list", "--json"]).json(),
        sled_list
    );
}

#[test]
fn the_password_of_the_url_appears_nowhere() {
    assert_the_password_appears_nowhere(UrlFrom::Env, "secret");
}

#[test]
fn the_password_of_a_url_from_a_sensitive_variable_appears_nowhere() {
    assert_the_password_appears_nowhere(UrlFrom::SensitiveVar, "secret_var");
}

/// Runs many commands with a URL whose password is the database user's, then looks for the
/// password in their outputs, the saved plan, every table, the run and config directories, the
/// server's log and the model servers' environments and command lines.
fn assert_the_password_appears_nowhere(from: UrlFrom, name: &str) {
    let server = pg::server();
    let db = server.fresh_database(name);
    let password = "Pa55-zebra-quartz";
    let role = format!("berth_{name}");
    server.psql(
        "postgres",
        &format!(
            "CREATE ROLE {role} LOGIN PASSWORD '{password}'; ALTER DATABASE {db} OWNER TO {role}"
        ),
    );
    let url = server.url_as(&role, password, &db);
    let ports = Ports(free_ports(2));
    let (tmp, run) = run_dir("berth-pg-secret-");
    let checkout = Checkout::with_url_from(from, &url, "prod", &run, &models(&ports.0, 0.2));
    let plan_file = tmp.path().join("saved.plan");
    let plan_arg = plan_file.to_str().unwrap();

    let mut runs = vec![
        checkout.berth(&["state", "init"]),
        checkout.berth(&["plan", "--out", plan_arg]),
    ];
    if from == UrlFrom::SensitiveVar {
        // The saved plan keeps no value of the variable: applying it without one is refused
        // before anything is read, naming what is missing.
        let refused = checkout.berth_with(&["apply", plan_arg], &[]);
        assert_ne!(refused.code, Some(0), "{}", refused.all());
        assert!(refused.stderr.contains("pg_url"), "{}", refused.all());
        runs.push(refused);
    }
    let applied = checkout.berth(&["apply", plan_arg]);
    applied.expect(0);
    runs.push(applied);
    runs.extend([
        checkout.berth(&["plan", "--format", "json"]),
        checkout.berth(&["plan", "--format", "markdown"]),
        checkout.berth(&["state", "list", "--json"]),
        checkout.berth(&["state", "show", "model.m00@local"]),
        checkout.berth(&["state", "history", "--json"]),
        checkout.berth(&["drift", "--json"]),
        checkout.berth(&["endpoints", "--json"]),
        checkout.berth(&["validate", "--json"]),
        checkout.berth(&["force-unlock", "0badc0de"]),
    ]);
    if from == UrlFrom::SensitiveVar {
        // The other ways to set a variable: a var file, and --var.
        let var_file = tmp.path().join("secret.hcl");
        std::fs::write(&var_file, format!("pg_url = \"{url}\"\n")).unwrap();
        let by_file = checkout.berth_with(
            &[
                "plan",
                "--detailed-exitcode",
                "--var-file",
                var_file.to_str().unwrap(),
            ],
            &[],
        );
        assert_eq!(by_file.code, Some(0), "{}", by_file.all());
        runs.push(by_file);
        let by_flag = checkout.berth_with(
            &[
                "plan",
                "--detailed-exitcode",
                "--var",
                &format!("pg_url={url}"),
            ],
            &[],
        );
        assert_eq!(by_flag.code, Some(0), "{}", by_flag.all());
        runs.push(by_flag);
        std::fs::remove_file(&var_file).unwrap();
        // BERTH_PG_URL wins over the variable.
        let wrong = url.replace(password, "Pa55-wrong");
        let env_wins = checkout.berth_with(
            &["plan", "--detailed-exitcode"],
            &[("BERTH_PG_URL", &url), ("BERTH_VAR_pg_url", &wrong)],
        );
        assert_eq!(env_wins.code, Some(0), "{}", env_wins.all());
        runs.push(env_wins);
    }
    // Failures print the server's name too: a missing workspace, a wrong password.
    let missing = Checkout::with_url_from(from, &url, "nope", &run, &[]);
    runs.push(missing.berth(&["plan"]));
    let wrong = Checkout::with_url_from(
        from,
        &url.replace(password, "Pa55-wrong"),
        "prod",
        &run,
        &[],
    );
    runs.push(wrong.berth(&["plan"]));
    // The diagnostic may wrap anywhere (its width follows the URL's length): read it as words.
    let words: Vec<&str> = runs[runs.len() - 1]
        .stderr
        .split_whitespace()
        .filter(|w| *w != "|")
        .collect();
    assert!(
        words.join(" ").contains("refused the login"),
        "{}",
        runs[runs.len() - 1].stderr
    );
    for r in &runs {
        assert!(
            !r.all().contains(password),
            "{:?} shows the password:\n{}",
            r.args,
            r.all()
        );
    }
    let mut written = vec![std::fs::read(&plan_file).unwrap()];
    let dump = server.psql(
        &db,
        "SELECT row_to_json(t)::text FROM (SELECT * FROM berth.workspaces) t UNION ALL \
         SELECT row_to_json(t)::text FROM (SELECT * FROM berth.versions) t UNION ALL \
         SELECT row_to_json(t)::text FROM (SELECT * FROM berth.resources) t UNION ALL \
         SELECT row_to_json(t)::text FROM (SELECT * FROM berth.selections) t UNION ALL \
         SELECT row_to_json(t)::text FROM (SELECT * FROM berth.intents) t UNION ALL \
         SELECT row_to_json(t)::text FROM (SELECT * FROM berth.locks) t UNION ALL \
         SELECT row_to_json(t)::text FROM (SELECT * FROM berth.history) t",
    );
    assert!(
        dump.contains("model.m00@local"),
        "the dump holds the state: {dump}"
    );
    written.push(dump.into_bytes());
    for entry in walk(&run).into_iter().chain(walk(&checkout.work.dir())) {
        written.push(std::fs::read(entry).unwrap_or_default());
    }
    written.push(server.log().into_bytes());
    for s in ports.stand_ins() {
        written.push(s.environ().join("\n").into_bytes());
        written.push(s.argv.join(" ").into_bytes());
    }
    let needle = password.as_bytes();
    for (i, bytes) in written.iter().enumerate() {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "written item {i} holds the password"
        );
    }
}

#[test]
fn a_plan_ended_by_a_signal_during_its_refresh_leaves_no_lock_row() {
    let server = pg::server();
    let db = server.fresh_database("signalled");
    let url = server.url(&db);
    // A host whose SSH server never answers: the plan's refresh waits on it, holding the lock.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("id_ed25519");
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(made.success());
    let known_hosts = keys.path().join("known_hosts");
    std::fs::write(&known_hosts, "").unwrap();
    let checkout = Checkout::new(&url, "prod", &keys.path().join("run"), &[]);
    let hcl = format!(
        "settings {{\n  state {{\n    backend = \"postgres\"\n    workspace = \"prod\"\n  }}\n}}\n\n\
         host \"silent\" {{\n  connection {{\n    host = \"127.0.0.1\"\n    port = {port}\n    user = \"berth\"\n    key_path = \"{}\"\n    known_hosts = \"{}\"\n    connect_timeout_sec = 120\n  }}\n  capabilities {{\n    backends = [\"cpu\"]\n  }}\n}}\n\n\
         backend \"cpu\" {{\n  runtime = \"process\"\n}}\n\n\
         model \"m\" {{\n  source   = \"/srv/models/m.gguf\"\n  size_gib = 0.1\n  runtime_defaults {{\n    port = 18999\n  }}\n  launch {{\n    start_cmd  = \"berth-model-server --port {{port}} --model {{model}}\"\n    probe_http = \"/v1/models\"\n  }}\n}}\n",
        key.display(),
        known_hosts.display()
    );
    std::fs::write(checkout.work.dir().join("main.hcl"), hcl).unwrap();
    checkout.berth(&["state", "init"]).expect(0);
    let locks = || {
        server
            .psql(&db, "SELECT count(*) FROM berth.locks")
            .trim()
            .to_owned()
    };

    for (signal, name) in [(libc::SIGTERM, "SIGTERM"), (libc::SIGINT, "SIGINT")] {
        let mut planning = checkout.spawn(&["plan"]);
        assert!(
            wait_until(Duration::from_secs(20), || locks() == "1"),
            "{name}: the plan never took the lock: {}",
            planning.stdout_so_far()
        );
        // Into the refresh, which waits on the silent host.
        std::thread::sleep(Duration::from_millis(500));
        berth_test_support::procs::signal(planning.pid(), signal);
        let ended = planning.wait(Duration::from_secs(20));
        assert_eq!(ended.code, Some(130), "{name}: {}", ended.all());
        assert_eq!(
            locks(),
            "0",
            "{name}: the holder row of the ended plan is gone"
        );
        let next = checkout.berth(&["plan", "--refresh=false"]);
        next.expect(0);
        assert!(
            !next.stderr.contains("stale"),
            "{name}: the next plan found a stale lock: {}",
            next.stderr
        );
    }
    drop(silent);
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}
