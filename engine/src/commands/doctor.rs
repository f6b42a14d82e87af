//! `berth hosts test ID` and `berth hosts doctor [ID]`: can berth work on a host, and if not,
//! what to fix. Read-only: nothing is started, stopped or recorded (doctor writes and removes
//! one probe file in run_dir to check it is writable).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use berth_providers::probe::source_size;
use berth_providers::{CheckStatus, Command, Liveness, Transport};
use futures_util::future::join_all;

use super::Invocation;
use super::ui::{Ui, table};
use crate::config::Host;
use crate::connections::{Connections, error_text};
use crate::error::{Error, Result};
use crate::exit_codes;
use crate::launch;
use crate::output::{
    self,
    doctor::{Check, HostDoctor, HostTest, Status},
};
use crate::placement::Previous;
use crate::transport_quote as quote;
use crate::workspace::Workspace;

const CHECK_TIMEOUT: Duration = Duration::from_secs(30);

fn open(inv: &Invocation) -> Result<Workspace> {
    Workspace::open(&inv.dir, &inv.vars, &Previous::default())
}

pub(crate) fn host_or_err<'a>(ws: &'a Workspace, id: &str) -> Result<&'a Host> {
    ws.config.host(id).ok_or_else(|| {
        let known: Vec<&str> = ws
            .config
            .hosts
            .iter()
            .map(|h| h.id.value.as_str())
            .collect();
        let help = crate::config::did_you_mean(id, known.iter().copied())
            .map(|s| format!("did you mean `{s}`?"))
            .unwrap_or_else(|| format!("hosts: {}", known.join(", ")));
        Error::NotFound {
            kind: "host",
            place: "the config",
            id: id.to_string(),
            help,
        }
    })
}

fn endpoint(host: &Host) -> String {
    match host.connection.transport {
        crate::config::TransportKind::Local => "this machine".into(),
        crate::config::TransportKind::Ssh => format!(
            "{}:{}",
            host.connection.host.as_deref().unwrap_or("?"),
            host.connection.port
        ),
    }
}

/// `berth hosts test ID`
pub fn test(inv: &Invocation, id: &str, json: bool, ui: &Ui) -> Result<u8> {
    let ws = open(inv)?;
    let host = host_or_err(&ws, id)?;
    let conns = Connections::new(&ws.config);
    let result: std::result::Result<(Duration, Duration, String), String> = inv.block_on(async {
        let start = Instant::now();
        let t = conns.transport(id).await?;
        let connected = start.elapsed();
        let start = Instant::now();
        let out = t
            .exec(Command::new("echo ok; uname -sr", Duration::from_secs(10)))
            .await
            .map_err(|e| error_text(&e))?;
        let rtt = start.elapsed();
        if !out.success() {
            return Err(format!(
                "`echo ok` exited with {:?}: {}",
                out.status,
                out.stderr_text().trim()
            ));
        }
        Ok((
            connected,
            rtt,
            out.stdout_text().lines().nth(1).unwrap_or("").to_string(),
        ))
    });
    match result {
        Ok((connected, rtt, system)) => {
            if json {
                outln!("{}", one_line(&test_ok(id, connected, rtt, system)));
            } else {
                outln!(
                    "{} host {id} ({}): connected in {} ms, command round trip {} ms ({system})",
                    ui.green("✓"),
                    endpoint(host),
                    connected.as_millis(),
                    rtt.as_millis()
                );
            }
            Ok(exit_codes::SUCCESS)
        }
        Err(why) => {
            if json {
                outln!("{}", one_line(&test_failed(id, why)));
            } else {
                if why.contains(&format!("host {id}")) || why.starts_with(&format!("{id}:")) {
                    errln!("{} {why}", ui.red("✗"));
                } else {
                    errln!("{} host {id} ({}): {why}", ui.red("✗"), endpoint(host));
                }
            }
            Ok(exit_codes::FAILURE)
        }
    }
}

/// The `hosts test` document of a host that answered.
fn test_ok(id: &str, connected: Duration, rtt: Duration, system: String) -> HostTest {
    HostTest {
        command_ms: Some(rtt.as_millis() as u64),
        connect_ms: Some(connected.as_millis() as u64),
        error: None,
        host: id.to_string(),
        ok: true,
        system: Some(system),
    }
}

/// The `hosts test` document of a host that did not.
fn test_failed(id: &str, why: String) -> HostTest {
    HostTest {
        command_ms: None,
        connect_ms: None,
        error: Some(why),
        host: id.to_string(),
        ok: false,
        system: None,
    }
}

/// `hosts test --json` is one line, so a script can read one host per line.
fn one_line(test: &HostTest) -> String {
    serde_json::to_string(test).expect("documents serialise")
}

fn check(
    name: impl Into<String>,
    status: Status,
    detail: impl Into<String>,
    fix: Option<String>,
) -> Check {
    Check {
        check: name.into(),
        status,
        detail: detail.into(),
        fix,
    }
}

/// `berth hosts doctor [ID]`
pub fn doctor(inv: &Invocation, id: Option<&str>, json: bool, ui: &Ui) -> Result<u8> {
    let ws = open(inv)?;
    let hosts: Vec<&Host> = match id {
        Some(id) => vec![host_or_err(&ws, id)?],
        None => ws.config.hosts.iter().filter(|h| h.enabled).collect(),
    };
    let conns = Connections::new(&ws.config);
    let reports: Vec<Vec<Check>> =
        inv.block_on(join_all(hosts.iter().map(|h| diagnose(&ws, &conns, h))));
    let failed = reports.iter().flatten().any(|c| c.status == Status::Fail);
    if json {
        let doc: Vec<HostDoctor> = hosts
            .iter()
            .zip(reports)
            .map(|(h, checks)| HostDoctor {
                checks,
                host: h.id.value.clone(),
            })
            .collect();
        outln!("{}", output::to_json(&doc));
    } else {
        for (h, checks) in hosts.iter().zip(&reports) {
            outln!(
                "{} ({})",
                ui.bold(&berth_state::Address::host(&h.id.value)),
                endpoint(h)
            );
            let rows: Vec<Vec<String>> = checks
                .iter()
                .map(|c| {
                    let status = match c.status {
                        Status::Ok => ui.green("ok"),
                        Status::Warn => ui.yellow("warn"),
                        Status::Fail => ui.red("FAIL"),
                        Status::Skipped => ui.dim("skipped"),
                    };
                    vec![
                        c.check.clone(),
                        status,
                        c.detail.clone(),
                        c.fix.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            for line in table(&["CHECK", "STATUS", "DETAIL", "FIX"], &rows).lines() {
                outln!("  {line}");
            }
            outln!();
        }
    }
    Ok(if failed {
        exit_codes::FAILURE
    } else {
        exit_codes::SUCCESS
    })
}

async fn diagnose(ws: &Workspace, conns: &Connections, host: &Host) -> Vec<Check> {
    let id = host.id.value.as_str();
    let mut checks = Vec::new();
    let start = Instant::now();
    let t = match conns.transport(id).await {
        Ok(t) => t,
        Err(why) => {
            checks.push(check("reachable", Status::Fail, why, Some("check the address, port, user, key and known_hosts; `berth hosts test` retries just this".into())));
            checks.push(check(
                "other checks",
                Status::Skipped,
                "host not reachable",
                None,
            ));
            return checks;
        }
    };
    checks.push(check(
        "reachable",
        Status::Ok,
        format!("authenticated in {} ms", start.elapsed().as_millis()),
        None,
    ));
    let exec = |script: String| {
        let t = t.clone();
        async move { t.exec(Command::new(script, CHECK_TIMEOUT)).await }
    };

    // run_dir writable.
    let run_dir = host.run_dir.as_str();
    let Ok(q) = quote(run_dir) else {
        checks.push(check(
            "run_dir",
            Status::Fail,
            "run_dir holds a NUL byte",
            Some("fix run_dir".into()),
        ));
        return checks;
    };
    let probe_file =
        quote(&format!("{run_dir}/.berth-doctor-{}", std::process::id())).unwrap_or_default();
    match exec(format!(
        "mkdir -p -- {q} && : > {probe_file} && rm -f -- {probe_file}"
    ))
    .await
    {
        Ok(out) if out.success() => checks.push(check(
            "run_dir",
            Status::Ok,
            format!("{run_dir} is writable"),
            None,
        )),
        Ok(out) => checks.push(check(
            "run_dir",
            Status::Fail,
            format!("{run_dir}: {}", out.stderr_text().trim()),
            Some(format!(
                "create it and let the SSH user write it: sudo install -d -o {} {run_dir}",
                host.connection.user.as_deref().unwrap_or("USER")
            )),
        )),
        Err(e) => checks.push(check("run_dir", Status::Fail, error_text(&e), None)),
    }

    // Tools of the runtimes the host's placements use, as each runtime declares them.
    let placements: Vec<_> = ws.placements_on(id).collect();
    let runtimes: BTreeSet<&str> = placements
        .iter()
        .filter_map(|p| ws.config.backend(&p.backend))
        .map(|b| b.runtime.as_str())
        .collect();
    for name in &runtimes {
        let runtime = match conns.runtime(name) {
            Ok(runtime) => runtime,
            Err(_) => {
                checks.push(check(
                    format!("runtime {name}"),
                    Status::Fail,
                    "this berth cannot run this runtime yet",
                    Some("use runtime = \"process\"".into()),
                ));
                continue;
            }
        };
        let needs = runtime.host_tools();
        // The names are the runtime's own constants, plain words and paths.
        let script = format!(
            "for t in {}; do command -v \"$t\" >/dev/null 2>&1 || echo \"$t\"; done; for p in {}; do [ -e \"$p\" ] || echo \"$p\"; done",
            needs.commands.join(" "),
            needs.paths.join(" ")
        );
        let shown = needs.commands.join(", ");
        match exec(script).await {
            Ok(out) if out.success() && out.stdout_text().trim().is_empty() => {
                checks.push(check(format!("tools ({name})"), Status::Ok, shown, None))
            }
            Ok(out) => {
                let missing = out
                    .stdout_text()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(", ");
                checks.push(check(
                    format!("tools ({name})"),
                    Status::Fail,
                    format!("missing: {missing}"),
                    Some(needs.help.into()),
                ));
            }
            Err(e) => checks.push(check(
                format!("tools ({name})"),
                Status::Fail,
                error_text(&e),
                None,
            )),
        }
    }

    // What each runtime finds wrong beyond missing tools (its daemon, images, GPU support).
    for name in &runtimes {
        let Ok(runtime) = conns.runtime(name) else {
            continue;
        };
        let specs: Vec<_> = placements
            .iter()
            .filter(|p| {
                ws.config
                    .backend(&p.backend)
                    .is_some_and(|b| b.runtime.as_str() == *name)
            })
            .filter_map(|p| launch::render(&ws.config, p).ok())
            .map(|r| r.launch_spec("", ""))
            .collect();
        for c in runtime.diagnose(t.as_ref(), &specs).await {
            let status = match c.status {
                CheckStatus::Ok => Status::Ok,
                CheckStatus::Warn => Status::Warn,
                CheckStatus::Fail => Status::Fail,
            };
            checks.push(check(c.check, status, c.detail, c.fix));
        }
    }

    // verify_cmd of every backend used here.
    let backends: BTreeSet<&str> = placements.iter().map(|p| p.backend.as_str()).collect();
    let secrets: Vec<&str> = ws.config.secrets().collect();
    for b in backends {
        match launch::render_verify(&ws.config, b, id) {
            None => checks.push(check(
                format!("verify {b}"),
                Status::Ok,
                "no verify_cmd",
                None,
            )),
            Some(Err(e)) => checks.push(check(
                format!("verify {b}"),
                Status::Fail,
                e.to_string(),
                None,
            )),
            Some(Ok(cmd)) => match exec(cmd.reveal().to_string()).await {
                Ok(out) if out.success() => checks.push(check(
                    format!("verify {b}"),
                    Status::Ok,
                    cmd.display(),
                    None,
                )),
                Ok(out) => {
                    let tail = crate::apply::tail(&out.stderr_text(), 1);
                    checks.push(check(
                        format!("verify {b}"),
                        Status::Fail,
                        format!(
                            "exit {:?}: {}",
                            out.status.unwrap_or(-1),
                            launch::scrub(tail.trim(), &secrets)
                        ),
                        Some(format!("make `{}` succeed on the host", cmd.display())),
                    ));
                }
                Err(e) => checks.push(check(
                    format!("verify {b}"),
                    Status::Fail,
                    error_text(&e),
                    None,
                )),
            },
        }
    }

    // Model files.
    for p in &placements {
        let Some(model) = ws.config.model(&p.model) else {
            continue;
        };
        let source = &model.source.value;
        let name = format!("source {}", p.model);
        match source_size(t.as_ref(), source, CHECK_TIMEOUT).await {
            Ok(Some(bytes)) => checks.push(check(
                name,
                Status::Ok,
                format!("{} ({})", model.source.display(), gib(bytes)),
                None,
            )),
            Ok(None)
                if ws
                    .config
                    .backend(&p.backend)
                    .is_some_and(|b| b.runtime.is_container()) =>
            {
                checks.push(check(
                    name,
                    Status::Warn,
                    format!("{} is not a file on the host", model.source.display()),
                    Some("fine if a volume of the container block maps it, or the server downloads it".into()),
                ))
            }
            Ok(None) if source.starts_with('/') || source.starts_with('~') => checks.push(check(
                name,
                Status::Fail,
                format!("{} is missing", model.source.display()),
                Some("copy the model file to the host".into()),
            )),
            Ok(None) => checks.push(check(
                name,
                Status::Warn,
                format!("{} is not a file on the host", model.source.display()),
                Some("fine if the server downloads it by name".into()),
            )),
            Err(e) => checks.push(check(name, Status::Fail, error_text(&e), None)),
        }
    }

    // Ports: free, or held by berth's own deployment of that model.
    let mut ours = Vec::new();
    for runtime in runtimes.iter().filter_map(|name| conns.runtime(name).ok()) {
        ours.extend(
            runtime
                .observe_all(t.as_ref(), run_dir)
                .await
                .unwrap_or_default(),
        );
    }
    let listening = listening_ports(t.as_ref()).await;
    for p in placements.iter().filter(|p| p.active) {
        let name = format!("port {}", p.port);
        let mine = ours
            .iter()
            .find(|o| o.instance.port == p.port && o.liveness == Liveness::Running);
        match (&listening, mine) {
            (_, Some(o)) if o.instance.address == p.address() => checks.push(check(
                name,
                Status::Ok,
                format!("held by berth ({})", p.address()),
                None,
            )),
            (_, Some(o)) => checks.push(check(
                name,
                Status::Warn,
                format!("held by berth's {}; apply replaces it", o.instance.address),
                None,
            )),
            (Ok(ports), None) if ports.contains(&p.port) => checks.push(check(
                name,
                Status::Fail,
                format!("taken by another process (wanted by {})", p.address()),
                Some(format!(
                    "stop what listens on {}, or give the model another port",
                    p.port
                )),
            )),
            (Ok(_), None) => checks.push(check(
                name,
                Status::Ok,
                format!("free (for {})", p.address()),
                None,
            )),
            (Err(why), None) => checks.push(check(name, Status::Warn, why.clone(), None)),
        }
    }

    // Free disk.
    match exec(format!("df -Pk -- {q} | tail -n 1")).await {
        Ok(out) if out.success() => {
            let avail_kib: Option<u64> = out
                .stdout_text()
                .split_whitespace()
                .nth(3)
                .and_then(|v| v.parse().ok());
            match avail_kib {
                Some(k) if k < 100 * 1024 => checks.push(check(
                    "disk",
                    Status::Fail,
                    format!("{} free under {run_dir}", gib(k * 1024)),
                    Some("free some disk space".into()),
                )),
                Some(k) if k < 1024 * 1024 => checks.push(check(
                    "disk",
                    Status::Warn,
                    format!("{} free under {run_dir}", gib(k * 1024)),
                    Some("logs need room to grow".into()),
                )),
                Some(k) => checks.push(check(
                    "disk",
                    Status::Ok,
                    format!("{} free under {run_dir}", gib(k * 1024)),
                    None,
                )),
                None => checks.push(check(
                    "disk",
                    Status::Warn,
                    "could not read df output",
                    None,
                )),
            }
        }
        Ok(out) => checks.push(check(
            "disk",
            Status::Warn,
            out.stderr_text().trim().to_string(),
            None,
        )),
        Err(e) => checks.push(check("disk", Status::Warn, error_text(&e), None)),
    }
    checks
}

/// TCP ports in LISTEN state on the host, from /proc/net/tcp{,6}.
async fn listening_ports(t: &dyn Transport) -> std::result::Result<BTreeSet<u16>, String> {
    let out = t
        .exec(Command::new(
            "cat /proc/net/tcp /proc/net/tcp6 2>/dev/null",
            CHECK_TIMEOUT,
        ))
        .await
        .map_err(|e| error_text(&e))?;
    let mut ports = BTreeSet::new();
    for line in out.stdout_text().lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() > 3
            && fields[3] == "0A"
            && let Some(port) = fields[1]
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok())
        {
            ports.insert(port);
        }
    }
    if ports.is_empty() && out.stdout.is_empty() {
        return Err("could not read /proc/net/tcp".into());
    }
    Ok(ports)
}

fn gib(bytes: u64) -> String {
    let g = bytes as f64 / (1024.0 * 1024.0 * 1024.0);
    if g >= 10.0 {
        format!("{g:.0} GiB")
    } else if g >= 0.1 {
        format!("{g:.1} GiB")
    } else {
        format!("{} MiB", bytes / (1024 * 1024))
    }
}
