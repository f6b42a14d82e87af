//! Refresh: observe what runs on every host that the config or the state involves, in one
//! batched round trip per host and runtime (what runs there and what the wanted launches need
//! there) plus one probe per running instance, all hosts at once. On each host it asks every
//! runtime that the backends placed there or the state's records there name. It reads hosts
//! and never changes them or the state.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use berth_providers::probe::{self, Probe};
use berth_providers::{LaunchSpec, Liveness, MarkerProblem, Prerequisite, ProbeOutcome, Survey};
use berth_state::ResourceKind;
use futures_util::future::join_all;
use serde_json::Value;

use crate::connections::Connections;
use crate::launch::{self, RenderedProbe};
use crate::plan::{HostObservation, Observations, ObservedInstance, StateView};
use crate::workspace::Workspace;

/// How long one refresh probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// The provider form of a rendered probe.
pub fn provider_probe(p: &RenderedProbe) -> Probe {
    match p {
        RenderedProbe::Cmd(cmd) => Probe::Cmd(cmd.reveal().to_string()),
        RenderedProbe::Http(path) => Probe::Http { path: path.clone() },
    }
}

/// Observes the hosts of the config's placements and of the state's records.
pub async fn refresh(ws: &Workspace, state: &StateView, conns: &Connections) -> Observations {
    let mut hosts: BTreeSet<String> = ws
        .placements
        .iter()
        .filter(|p| p.active)
        .map(|p| p.host.clone())
        .collect();
    hosts.extend(state.records.values().map(|r| r.host.clone()));
    let hosts: Vec<String> = hosts
        .into_iter()
        .filter(|h| ws.config.host(h).is_some_and(|h| h.enabled))
        .collect();
    let probes: BTreeMap<String, (Probe, u16)> = ws
        .placements
        .iter()
        .filter(|p| p.active)
        .filter_map(|p| launch::render(&ws.config, p).ok())
        .map(|r| (r.address.to_string(), (provider_probe(&r.probe), r.port)))
        .collect();
    let probes = &probes;
    // The wanted launches by host and runtime, for what they need on their host.
    let mut launches: BTreeMap<(String, String), Vec<LaunchSpec>> = BTreeMap::new();
    for r in ws
        .placements
        .iter()
        .filter(|p| p.active)
        .filter_map(|p| launch::render(&ws.config, p).ok())
    {
        launches
            .entry((r.host.clone(), r.runtime.as_str().to_string()))
            .or_default()
            .push(r.launch_spec("", ""));
    }
    let launches = &launches;
    let observed = join_all(hosts.iter().map(|h| {
        let runtimes = runtimes_on(ws, state, h);
        async move { observe_host(ws, conns, h, &runtimes, probes, launches).await }
    }))
    .await;
    let mut warnings = Vec::new();
    let mut prerequisites = BTreeMap::new();
    let hosts = hosts
        .into_iter()
        .zip(observed)
        .map(|(host, (observation, problems, needs))| {
            warnings.extend(problems.iter().map(|p| marker_warning(&host, p)));
            prerequisites.extend(needs.into_iter().map(|p| (p.address.clone(), p)));
            (host, observation)
        })
        .collect();
    Observations {
        hosts,
        warnings,
        prerequisites,
    }
}

/// The names of the runtimes that may run something of berth's on `host`: those of the backends
/// placed there and those the state's records there hold.
pub fn runtimes_on(ws: &Workspace, state: &StateView, host: &str) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = ws
        .placements_on(host)
        .filter_map(|p| ws.config.backend(&p.backend))
        .map(|b| b.runtime.as_str().to_string())
        .collect();
    names.extend(
        state
            .records
            .values()
            .filter(|r| r.kind == ResourceKind::Model && r.host == host)
            .filter_map(|r| r.attributes.get("runtime").and_then(Value::as_str))
            .map(str::to_string),
    );
    names
}

/// What the user reads about a deployment whose marker cannot be used.
fn marker_warning(host: &str, problem: &MarkerProblem) -> String {
    format!(
        "host {host}: {} {}: berth cannot tell which server runs there; it can stop one only through the pid and start ticks its state recorded (docs/troubleshooting.md, 4.2)",
        problem.path, problem.detail
    )
}

/// One host's instances, the markers there that cannot be read, and what the wanted launches
/// there need on it.
async fn observe_host(
    ws: &Workspace,
    conns: &Connections,
    host: &str,
    runtimes: &BTreeSet<String>,
    probes: &BTreeMap<String, (Probe, u16)>,
    launches: &BTreeMap<(String, String), Vec<LaunchSpec>>,
) -> (HostObservation, Vec<MarkerProblem>, Vec<Prerequisite>) {
    let run_dir = ws
        .config
        .host(host)
        .map(|h| h.run_dir.clone())
        .unwrap_or_default();
    let unreachable = |why| (HostObservation::Unreachable(why), Vec::new(), Vec::new());
    let transport = match conns.transport(host).await {
        Ok(t) => t,
        Err(why) => return unreachable(why),
    };
    // A runtime this berth lacks cannot have started anything here (and plan refuses the
    // backends that name one), so there is nothing of it to observe.
    // One round trip per runtime: what runs there and what the wanted launches need.
    let surveys = join_all(
        runtimes
            .iter()
            .filter_map(|name| Some((name, conns.runtime(name).ok()?)))
            .map(|(name, runtime)| {
                let (transport, run_dir) = (transport.clone(), &run_dir);
                let specs = launches
                    .get(&(host.to_string(), name.clone()))
                    .map_or(&[][..], Vec::as_slice);
                async move {
                    runtime
                        .survey_with_prerequisites(transport.as_ref(), run_dir, specs)
                        .await
                }
            }),
    )
    .await;
    let mut survey = Survey::default();
    let mut prerequisites = Vec::new();
    for s in surveys {
        match s {
            Ok((s, needs)) => {
                survey.found.extend(s.found);
                survey.problems.extend(s.problems);
                prerequisites.extend(needs);
            }
            Err(e) => return unreachable(crate::connections::error_text(&e)),
        }
    }
    let checks = survey.found.into_iter().map(|o| {
        let transport = transport.clone();
        async move {
            let probe = match (o.liveness, probes.get(&o.instance.address)) {
                (Liveness::Running, Some((probe, port))) => {
                    Some(probe::probe_once(transport.as_ref(), probe, *port, PROBE_TIMEOUT).await)
                }
                _ => None,
            };
            (
                o.instance.address.clone(),
                ObservedInstance {
                    fingerprint: o.instance.fingerprint,
                    owner: o.instance.owner,
                    liveness: o.liveness,
                    port: o.instance.port,
                    probe,
                    pinned: o.instance.pinned,
                    state: o.state,
                },
            )
        }
    });
    (
        HostObservation::Reached(join_all(checks).await.into_iter().collect()),
        survey.problems,
        prerequisites,
    )
}

/// True when a probe outcome says ready.
pub fn is_ready(outcome: &Option<ProbeOutcome>) -> bool {
    matches!(outcome, Some(ProbeOutcome::Ready))
}
