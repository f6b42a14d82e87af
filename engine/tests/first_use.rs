//! What a new user hits first, each test named after the problem it pins: saved plans that
//! carry their variables, a history that tells the truth after a Ctrl-C, read-only commands that
//! never wait behind an apply, outcome lines that survive a pipe, `validate` reporting every
//! finding in one run, and a probe answering 404 saying what to fix.

mod common;

use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_test_support::procs::signal;
use common::{Fleet, Model, Workdir, addr, berth_bin, free_ports, wait_until};

/// Adds `text` to the config as its own file.
fn add_file(fleet: &Fleet, name: &str, text: &str) {
    std::fs::write(fleet.dir().join(name), text).expect("config file");
}

#[test]
fn a_saved_plan_made_with_var_applies_with_no_extra_flags() {
    let ports = free_ports(1);
    let fleet = Fleet::new(&[Model::new("m", ports[0], "--load-secs 0.2")], 1);
    // The variable decides the model's source, so a plan made without it differs.
    add_file(
        &fleet,
        "vars.hcl",
        "variable \"flavour\" {\n  default = \"plain\"\n}\n",
    );
    let models = std::fs::read_to_string(fleet.dir().join("models.hcl")).unwrap();
    std::fs::write(
        fleet.dir().join("models.hcl"),
        models.replace("/srv/models/m.gguf", "/srv/models/m-${var.flavour}.gguf"),
    )
    .unwrap();
    let plan_file = fleet.path("tonight.plan");
    let plan_path = plan_file.to_str().unwrap();

    let plan = fleet.berth(&["--var", "flavour=spicy", "plan", "--out", plan_path]);
    plan.expect(0);
    let hint = format!("berth apply {plan_path}");
    assert!(plan.stdout.contains(&hint), "{}", plan.all());

    // Exactly the printed hint: no --var.
    let apply = fleet.berth(&["apply", plan_path]);
    apply.expect(0);
    let record = fleet.state_show(&addr("m"));
    assert!(
        record.to_string().contains("m-spicy.gguf"),
        "the plan's variable value was applied: {record}"
    );
    fleet.berth(&["destroy", "--auto-approve"]).expect(0);
}

#[test]
fn a_saved_plan_asks_for_its_sensitive_variable_by_name() {
    let ports = free_ports(1);
    let fleet = Fleet::new(&[Model::new("m", ports[0], "--load-secs 0.2")], 1);
    add_file(
        &fleet,
        "vars.hcl",
        "variable \"api_key\" {\n  sensitive = true\n}\n",
    );
    let models = std::fs::read_to_string(fleet.dir().join("models.hcl")).unwrap();
    std::fs::write(
        fleet.dir().join("models.hcl"),
        models.replacen(
            "  launch {",
            "  env = { API_KEY = var.api_key }\n  launch {",
            1,
        ),
    )
    .unwrap();
    let plan_file = fleet.path("p.plan");
    let plan_path = plan_file.to_str().unwrap();
    fleet
        .berth(&[
            "--var",
            "api_key=hunter2-secret",
            "plan",
            "--out",
            plan_path,
        ])
        .expect(0);
    let saved = std::fs::read_to_string(&plan_file).unwrap();
    assert!(!saved.contains("hunter2"), "the plan stores no secret");

    // No terminal to ask on: the error names the variable and how to give it.
    let run = fleet.berth(&["apply", plan_path]);
    run.expect(1);
    assert!(run.stderr.contains("`api_key`"), "{}", run.all());
    assert!(run.stderr.contains("--var api_key="), "{}", run.all());
    assert!(!run.all().contains("hunter2"), "{}", run.all());

    // Another value than the plan was made with is refused by name, before anything runs.
    let run = fleet.berth(&["apply", plan_path, "--var", "api_key=wrong"]);
    run.expect(1);
    assert!(
        run.stderr
            .contains("sensitive variable `api_key` is not the one the plan"),
        "{}",
        run.all()
    );
    assert!(fleet.stand_ins().is_empty(), "nothing started");

    fleet
        .berth(&["apply", plan_path, "--var", "api_key=hunter2-secret"])
        .expect(0);
    assert_eq!(fleet.stand_ins().len(), 1);
    fleet
        .berth(&["--var", "api_key=x", "destroy", "--auto-approve"])
        .expect(0);
}

#[test]
fn history_after_a_ctrl_c_lists_the_cancelled_resource() {
    let ports = free_ports(2);
    let fleet = Fleet::new(
        &[
            Model::new("first", ports[0], "--load-secs 2").probe_interval(100),
            Model::new("second", ports[1], "--load-secs 0.2")
                .probe_interval(100)
                .depends_on("first"),
        ],
        1,
    );
    let mut apply = fleet.spawn(&["apply", "--auto-approve"]);
    assert!(
        wait_until(Duration::from_secs(20), || apply
            .stdout_so_far()
            .contains("model.first@local: probing")),
        "{}",
        apply.stdout_so_far()
    );
    signal(apply.pid(), libc::SIGINT);
    let run = apply.wait(Duration::from_secs(30));
    run.expect(1);
    assert!(
        run.stdout
            .contains("Apply interrupted: 1 done, 0 failed, 0 skipped, 1 cancelled."),
        "the summary counts the plan's two changes, not the verify_cmd check:\n{}",
        run.all()
    );

    let history = fleet.berth(&["state", "history", "--json"]);
    history.expect(0);
    let entries = history.json();
    let last = entries
        .as_array()
        .unwrap()
        .last()
        .expect("one entry")
        .clone();
    assert_eq!(last["interrupted"], true, "{last}");
    let changes: Vec<(String, String)> = last["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["address"].as_str().unwrap().to_string(),
                c["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        vec![
            (addr("first"), "created".to_string()),
            (addr("second"), "cancelled".to_string()),
        ],
        "as many changes as the plan had, each with how it ended: {last}"
    );

    let text = fleet.berth(&["state", "history"]);
    text.expect(0);
    assert!(
        text.stdout.contains("interrupted: 1 created, 1 cancelled"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout
            .contains(&format!("cancelled  {}", addr("second"))),
        "{}",
        text.stdout
    );
    fleet.berth(&["destroy", "--auto-approve"]).expect(0);
}

#[test]
fn state_list_answers_in_under_a_second_while_an_apply_holds_the_lock() {
    let ports = free_ports(2);
    let fleet = Fleet::new(
        &[
            Model::new("quick", ports[0], "--load-secs 0.1").probe_interval(100),
            Model::new("slow", ports[1], "--load-secs 8")
                .probe_interval(200)
                .depends_on("quick"),
        ],
        2,
    );
    let mut apply = fleet.spawn(&["apply", "--auto-approve"]);
    assert!(
        wait_until(Duration::from_secs(30), || apply
            .stdout_so_far()
            .contains("model.slow@local: probing")),
        "{}",
        apply.stdout_so_far()
    );
    assert!(fleet.lock_holder().is_some(), "the apply holds the lock");

    let started = Instant::now();
    let list = fleet.berth(&["state", "list", "--json"]);
    let took = started.elapsed();
    list.expect(0);
    assert!(took < Duration::from_secs(1), "state list took {took:?}");
    let addresses: Vec<String> = list
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["address"].as_str().unwrap().to_string())
        .collect();
    assert!(
        addresses.contains(&addr("quick")),
        "the committed record of the finished model: {addresses:?}"
    );
    assert!(
        list.stderr.contains("holds the state lock"),
        "it says the state may be moving: {}",
        list.stderr
    );

    // The other read-only commands do not wait either.
    for args in [
        &["state", "history"][..],
        &["state", "show", &addr("quick")][..],
        &["endpoints", "--json"][..],
        &["hosts", "show", "local"][..],
    ] {
        let started = Instant::now();
        fleet.berth(args).expect(0);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "`berth {}` waited {:?}",
            args.join(" "),
            started.elapsed()
        );
    }
    let hosts = fleet.berth(&["hosts", "show", "local"]);
    assert!(
        hosts
            .stdout
            .lines()
            .any(|l| l.contains("quick") && l.contains("ready"))
            && hosts
                .stdout
                .lines()
                .any(|l| l.contains("slow") && l.contains("not applied")),
        "hosts show says what the state records:\n{}",
        hosts.stdout
    );

    apply.wait(Duration::from_secs(60)).expect(0);
    fleet.berth(&["destroy", "--auto-approve"]).expect(0);
    let hosts = fleet.berth(&["hosts", "show", "local"]);
    assert!(
        !hosts.stdout.contains("ready") && !hosts.stdout.contains("running"),
        "after a destroy nothing is shown as running:\n{}",
        hosts.stdout
    );
}

/// A pseudo-terminal: (the side berth writes to, the side read back).
fn pty() -> (OwnedFd, OwnedFd) {
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty fills two descriptors it opened; null name/termios/winsize are allowed.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty");
    // Close-on-exec, so that no process started later (berth's servers) keeps the terminal
    // open: the reader sees its end when berth ends.
    for fd in [master, slave] {
        // SAFETY: fd was just opened by openpty.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    // SAFETY: both descriptors were just opened and are owned here alone.
    unsafe { (OwnedFd::from_raw_fd(slave), OwnedFd::from_raw_fd(master)) }
}

#[test]
fn apply_piped_to_cat_carries_one_outcome_line_per_resource() {
    let ports = free_ports(3);
    let fleet = Fleet::new(
        &[
            Model::new("a", ports[0], "--load-secs 0.3").probe_interval(100),
            Model::new("b", ports[1], "--load-secs 0.3").probe_interval(100),
            Model::new("c", ports[2], "--load-secs 0.3")
                .probe_interval(100)
                .depends_on("a"),
        ],
        2,
    );
    // `berth apply --auto-approve | cat` in a terminal: stderr is the terminal, stdout a pipe.
    let (terminal, reader) = pty();
    let mut drained = std::fs::File::from(reader);
    let drain = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let _ = drained.read_to_end(&mut seen);
        seen
    });
    let path = format!(
        "{}:{}:{}",
        berth_test_support::model_server()
            .parent()
            .unwrap()
            .display(),
        berth_bin().parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(berth_bin())
        .arg("-C")
        .arg(fleet.dir())
        .args(["apply", "--auto-approve"])
        .env("PATH", path)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stderr(Stdio::from(terminal))
        .output()
        .expect("run berth");
    // The terminal closes with berth; the reader then sees the end.
    let on_terminal = String::from_utf8_lossy(&drain.join().unwrap()).into_owned();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{on_terminal}");
    for id in ["a", "b", "c"] {
        let lines = stdout
            .lines()
            .filter(|l| l.starts_with(&format!("✓ {}: created", addr(id))))
            .count();
        assert_eq!(lines, 1, "one outcome line for {id} in the pipe:\n{stdout}");
    }
    assert!(stdout.contains("Apply complete: 3 done."), "{stdout}");
    fleet.berth(&["destroy", "--auto-approve"]).expect(0);
}

#[test]
fn validate_reports_one_mistake_of_every_kind_in_one_run() {
    let work = Workdir::new("berth-validate-", false);
    std::fs::write(
        work.dir().join("main.hcl"),
        r#"host "local" {
  connection {
    transport = "local"
  }
  capabilities {
    backends = ["cpu", "cdua"]
  }
  labls = { a = "b" }
}

backend "cpu" {
  runtime    = "process"
  verify_cmd = "true {nope}"
}

model "a" {
  source   = "${var.undefined_dir}/a.gguf"
  size_gib = 0.1
  runtime_defaults { port = 8080 }
  launch {
    start_cmd  = "server --port {port} --bogus {placeholder}"
    probe_http = "/v1/models"
  }
  depends_on = ["model.missing"]
}

model "b" {
  source   = "/srv/b.gguf"
  size_gib = 0.1
  runtime_defaults { port = 8081 }
  launch {
    start_cmd  = "server --port {port} {what}"
    probe_http = "/v1/models"
  }
  backend_policy { prefer = ["rocm"] }
  depends_on = ["model.c"]
}

model "c" {
  source = "/srv/c.gguf"
  launch {
    start_cmd  = "server {port}"
    probe_http = "/v1/models"
  }
  depends_on = ["model.b"]
}
"#,
    )
    .unwrap();
    let run = work.berth(&["validate", "--json"]);
    run.expect(1);
    let report = run.json();
    let mut codes: Vec<String> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            f["code"]
                .as_str()
                .unwrap()
                .trim_start_matches("berth::config::")
                .to_string()
        })
        .collect();
    codes.sort();
    assert_eq!(
        codes,
        [
            "dependency_cycle",
            "undefined_backend",
            "undefined_backend",
            "undefined_model",
            "undefined_variable",
            "unknown_key",
            "unknown_template_var",
            "unknown_template_var",
            "unknown_template_var",
        ],
        "every mistake in one run: {report}"
    );
}

#[test]
fn a_probe_answering_404_says_to_fix_probe_http_not_to_raise_the_timeout() {
    let ports = free_ports(1);
    let fleet = Fleet::new(&[Model::new("m", ports[0], "").probe_timeout(2)], 1);
    let models = std::fs::read_to_string(fleet.dir().join("models.hcl")).unwrap();
    std::fs::write(
        fleet.dir().join("models.hcl"),
        models.replace("probe_http = \"/v1/models\"", "probe_http = \"/v1/modelz\""),
    )
    .unwrap();
    let run = fleet.berth(&["apply", "--auto-approve"]);
    run.expect(1);
    let all = run.all();
    assert!(all.contains("answers the probe with HTTP 404"), "{all}");
    assert!(all.contains("fix `probe_http`"), "{all}");
    assert!(!all.contains("raise probe_timeout_sec"), "{all}");
    fleet.berth(&["destroy", "--auto-approve"]).expect(0);
}

#[test]
fn plan_out_into_a_missing_directory_fails_before_planning() {
    let fleet = Fleet::new(&[Model::new("m", free_ports(1)[0], "")], 1);
    let target = fleet.path("no/such/dir/p.plan");
    let started = Instant::now();
    let run = fleet.berth(&["plan", "--out", target.to_str().unwrap()]);
    run.expect(1);
    assert!(run.stderr.contains("does not exist"), "{}", run.all());
    assert!(
        !run.all().contains(".tmp"),
        "no temporary file name: {}",
        run.all()
    );
    assert!(
        !run.stdout.contains("berth will"),
        "nothing was planned: {}",
        run.all()
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn terraform_style_flags_get_a_tip_naming_the_berth_flag() {
    let work = Workdir::new("berth-tip-", false);
    let run = work.berth(&["apply", "-auto-approve"]);
    run.expect(64);
    assert!(run.stderr.contains("`--auto-approve`"), "{}", run.stderr);
    let run = work.berth(&["plan", "-out=tonight.plan"]);
    run.expect(64);
    assert!(
        run.stderr.contains("`--out tonight.plan`"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_config_with_no_hosts_says_so() {
    let work = Workdir::new("berth-nohosts-", false);
    std::fs::write(
        work.dir().join("main.hcl"),
        "settings {\n  state_dir = \".berth\"\n}\n",
    )
    .unwrap();
    let run = work.berth(&["validate"]);
    assert!(run.all().contains("defines no hosts"), "{}", run.all());
    let run = work.berth(&["plan"]);
    run.expect(0);
    assert!(run.all().contains("defines no hosts"), "{}", run.all());
}

#[test]
fn completions_offer_the_configs_addresses_and_ids() {
    let fleet = Fleet::new(&[Model::new("qwen2.5-7b", free_ports(1)[0], "")], 1);
    let complete = |words: &[&str]| -> Vec<String> {
        let out = Command::new(berth_bin())
            .env("COMPLETE", "fish")
            .arg("--")
            .arg("berth")
            .arg("-C")
            .arg(fleet.dir())
            .args(words)
            .stdin(Stdio::null())
            .output()
            .expect("run berth");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.split('\t').next().unwrap_or_default().to_string())
            .collect()
    };
    assert_eq!(
        complete(&["plan", "--target", "model."]),
        vec!["model.qwen2.5-7b", "model.qwen2.5-7b@local"]
    );
    assert_eq!(complete(&["models", "show", "qw"]), vec!["qwen2.5-7b"]);
    assert_eq!(
        complete(&["apply", "--replace", "host."]),
        vec!["host.local"]
    );
}

#[test]
fn verbose_logs_each_remote_command_with_its_exit_status() {
    let fleet = Fleet::new(&[Model::new("m", free_ports(1)[0], "")], 1);
    let quiet = fleet.berth(&["plan"]);
    quiet.expect(0);
    assert!(
        !quiet.stderr.contains("DEBUG"),
        "off by default: {}",
        quiet.stderr
    );
    let run = fleet.berth(&["-v", "plan"]);
    run.expect(0);
    assert!(run.stderr.contains("DEBUG"), "{}", run.stderr);
    assert!(run.stderr.contains("ran `"), "{}", run.stderr);
    assert!(run.stderr.contains("status=0"), "{}", run.stderr);
}

#[test]
fn an_os_error_is_printed_once() {
    let fleet = Fleet::new(&[Model::new("m", free_ports(1)[0], "")], 1);
    let missing = fleet.path("nope.plan");
    let run = fleet.berth(&["apply", missing.to_str().unwrap()]);
    run.expect(1);
    assert_eq!(
        run.stderr.matches("No such file or directory").count(),
        1,
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("nope.plan"), "{}", run.stderr);
}
