//! Refresh: observe what runs on every host that the config or the state involves, in one
//! batched round trip per host plus one probe per running instance, all hosts at once. It
//! reads hosts and never changes them or the state.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use berth_providers::probe::{self, Probe};
use berth_providers::{Liveness, ProbeOutcome};
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
    Observations {
        hosts: hosts.into_iter().zip(observed).collect(),
    }
}

async fn observe_host(
    ws: &Workspace,
    conns: &Connections,
    host: &str,
    probes: &BTreeMap<String, (Probe, u16)>,
) -> HostObservation {
    let run_dir = ws
        .config
        .host(host)
        .map(|h| h.run_dir.clone())
        .unwrap_or_default();
    let transport = match conns.transport(host).await {
        Ok(t) => t,
        Err(why) => return HostObservation::Unreachable(why),
    };
    let runtime = match conns.runtime(RuntimeKind::Process) {
        Ok(r) => r,
        Err(why) => return HostObservation::Unreachable(why),
    };
    let found = match runtime.observe_all(transport.as_ref(), &run_dir).await {
        Ok(found) => found,
        Err(e) => return HostObservation::Unreachable(crate::connections::error_text(&e)),
    };
    let checks = found.into_iter().map(|o| {
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
    HostObservation::Reached(join_all(checks).await.into_iter().collect())
}

/// True when a probe outcome says ready.
pub fn is_ready(outcome: &Option<ProbeOutcome>) -> bool {
    matches!(outcome, Some(ProbeOutcome::Ready))
}
