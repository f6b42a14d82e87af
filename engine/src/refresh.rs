//! Refresh: observe what runs on every host that the config or the state involves, in one
//! batched round trip per host plus one probe per running instance, all hosts at once. It
//! reads hosts and never changes them or the state.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use berth_providers::probe::{self, Probe};
use berth_providers::{Liveness, MarkerProblem, ProbeOutcome};
use futures_util::future::join_all;

use crate::config::RuntimeKind;
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
        .map(|r| (r.address.clone(), (provider_probe(&r.probe), r.port)))
        .collect();
    let observed = join_all(hosts.iter().map(|h| observe_host(ws, conns, h, &probes))).await;
    let mut warnings = Vec::new();
    let hosts = hosts
        .into_iter()
        .zip(observed)
        .map(|(host, (observation, problems))| {
            warnings.extend(problems.iter().map(|p| marker_warning(&host, p)));
            (host, observation)
        })
        .collect();
    Observations { hosts, warnings }
}

/// What the user reads about a deployment whose marker cannot be used.
fn marker_warning(host: &str, problem: &MarkerProblem) -> String {
    format!(
        "host {host}: {} {}: berth cannot tell which server runs there; it can stop one only through the pid and start ticks its state recorded (docs/troubleshooting.md, 4.2)",
        problem.path, problem.detail
    )
}

/// One host's instances, and the markers there that cannot be read.
async fn observe_host(
    ws: &Workspace,
    conns: &Connections,
    host: &str,
    probes: &BTreeMap<String, (Probe, u16)>,
) -> (HostObservation, Vec<MarkerProblem>) {
    let run_dir = ws
        .config
        .host(host)
        .map(|h| h.run_dir.clone())
        .unwrap_or_default();
    let unreachable = |why| (HostObservation::Unreachable(why), Vec::new());
    let transport = match conns.transport(host).await {
        Ok(t) => t,
        Err(why) => return unreachable(why),
    };
    let runtime = match conns.runtime(RuntimeKind::Process) {
        Ok(r) => r,
        Err(why) => return unreachable(why),
    };
    let survey = match runtime.survey(transport.as_ref(), &run_dir).await {
        Ok(survey) => survey,
        Err(e) => return unreachable(crate::connections::error_text(&e)),
    };
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
                },
            )
        }
    });
    (
        HostObservation::Reached(join_all(checks).await.into_iter().collect()),
        survey.problems,
    )
}

/// True when a probe outcome says ready.
pub fn is_ready(outcome: &Option<ProbeOutcome>) -> bool {
    matches!(outcome, Some(ProbeOutcome::Ready))
}
