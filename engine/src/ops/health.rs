//! `health` and `endpoints`: read-only looks at what answers on the hosts. Every host is
//! checked at once over its own single connection (a slow or unreachable host costs at most
//! its connect timeout); each placed model is asked at `/v1/models`, then `/health`, on the
//! host's 127.0.0.1 through the transport; scanned ports show servers the config does not
//! place. Neither takes the state lock for longer than a read, nor changes anything.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use berth_providers::probe::{self, HttpAnswer};
use berth_providers::{Command, Transport};
use futures_util::future::join_all;

use super::request::Inputs;
use super::snapshot::snapshot;
use super::stop::{Stop, StopLevel};
use crate::config::TransportKind;
use crate::connections::Connections;
use crate::error::{Error, Result};
use crate::output::endpoints::Endpoint;
use crate::output::health::{Discovered, Host, Model, Report, State};
use crate::workspace::Workspace;

/// How long one HTTP request to a model may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a scanned port may take to answer: most are closed and refuse at once.
const SCAN_TIMEOUT: Duration = Duration::from_secs(2);
/// The ports scanned when the caller names none (plus every port the config places).
const DEFAULT_SCAN: std::ops::RangeInclusive<u16> = 8080..=8090;
/// The most ports one scan may cover.
pub const MAX_SCAN_PORTS: usize = 1024;

/// A health check.
#[derive(Debug, Clone, Default)]
pub struct HealthRequest {
    pub inputs: Inputs,
    /// Ports to scan for servers the config does not place; `None`: 8080-8090 and the
    /// configured ports.
    pub scan_ports: Option<Vec<u16>>,
}

/// Parses a port list: `8000-8100`, `8080,8081`, or both mixed (`8080,9000-9010`).
pub fn parse_ports(spec: &str) -> std::result::Result<Vec<u16>, String> {
    let mut ports = BTreeSet::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let port = |text: &str| {
            text.trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("`{text}` is not a port (1-65535)"))
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (port(a)?, port(b)?);
                if a > b {
                    return Err(format!("`{part}`: the range ends before it starts"));
                }
                ports.extend(a..=b);
            }
            None => {
                ports.insert(port(part)?);
            }
        }
        if ports.len() > MAX_SCAN_PORTS {
            return Err(format!(
                "`{spec}` covers more than {MAX_SCAN_PORTS} ports; scan a smaller range"
            ));
        }
    }
    if ports.is_empty() {
        return Err("no port given: use a range like 8000-8100 or a list like 8080,8081".into());
    }
    Ok(ports.into_iter().collect())
}

/// Probes every placed model and scans the hosts' ports.
pub async fn health(req: &HealthRequest, stop: &Stop) -> Result<Report> {
    let snap = snapshot(&req.inputs, "health")?;
    let ws = &snap.ws;
    let conns = Connections::new(&ws.config);
    let hosts = hosts_with_models(ws);
    let checks = join_all(
        hosts
            .iter()
            .map(|h| check_host(ws, &conns, h, req.scan_ports.as_deref(), true)),
    );
    let checked = tokio::select! {
        checked = checks => checked,
        () = stop.cancelled() => {
            return Err(Error::Cancelled { reason: stop.reason(StopLevel::Cancel) });
        }
    };
    let mut report = Report {
        hosts: Vec::new(),
        discovered: Vec::new(),
        warnings: snap.warnings,
    };
    for (host, found) in checked {
        report.hosts.push(host);
        report.discovered.extend(found);
    }
    Ok(report)
}

/// The enabled hosts that have active placements, in config order.
pub(super) fn hosts_with_models(ws: &Workspace) -> Vec<String> {
    let placed: BTreeSet<&str> = ws
        .placements
        .iter()
        .filter(|p| p.active)
        .map(|p| p.host.as_str())
        .collect();
    ws.config
        .hosts
        .iter()
        .filter(|h| h.enabled && placed.contains(h.id.value.as_str()))
        .map(|h| h.id.value.clone())
        .collect()
}

/// One host: its placed models and, when `scan`, the servers on other ports.
pub(super) async fn check_host(
    ws: &Workspace,
    conns: &Connections,
    host: &str,
    scan_ports: Option<&[u16]>,
    scan: bool,
) -> (Host, Vec<Discovered>) {
    let active: Vec<_> = ws.placements_on(host).filter(|p| p.active).collect();
    let placed_ports: BTreeSet<u16> = ws.placements_on(host).map(|p| p.port).collect();
    let scanned: Vec<u16> = if scan {
        match scan_ports {
            Some(ports) => ports.to_vec(),
            None => DEFAULT_SCAN.chain(placed_ports.iter().copied()).collect(),
        }
        .into_iter()
        .filter(|p| !placed_ports.contains(p))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
    } else {
        Vec::new()
    };
    let transport = match conns.transport(host).await {
        Ok(t) => t,
        Err(why) => {
            let models = active
                .iter()
                .map(|p| Model {
                    address: p.address().to_string(),
                    model: p.model.clone(),
                    port: p.port,
                    state: State::Unknown,
                    http_status: None,
                    detail: "host unreachable".into(),
                    serves: Vec::new(),
                })
                .collect();
            return (
                Host {
                    host: host.to_string(),
                    reachable: false,
                    error: Some(why),
                    models,
                    scanned_ports: scanned,
                },
                Vec::new(),
            );
        }
    };
    let t = transport.as_ref();
    let models = join_all(active.iter().map(|p| async move {
        let (state, http_status, detail, serves) = probe_model(t, p.port).await;
        Model {
            address: p.address().to_string(),
            model: p.model.clone(),
            port: p.port,
            state,
            http_status,
            detail,
            serves,
        }
    }));
    let found = join_all(scanned.iter().map(|&port| async move {
        match probe::http_get(t, port, "/v1/models", SCAN_TIMEOUT).await {
            Ok(answer) if answer.status == 200 => Some(Discovered {
                host: host.to_string(),
                port,
                models: model_ids(&answer),
            }),
            _ => None,
        }
    }));
    let (models, found) = tokio::join!(models, found);
    (
        Host {
            host: host.to_string(),
            reachable: true,
            error: None,
            models,
            scanned_ports: scanned,
        },
        found.into_iter().flatten().collect(),
    )
}

/// Asks the server on `port` at `/v1/models`, then at `/health` when that gave no verdict.
async fn probe_model(t: &dyn Transport, port: u16) -> (State, Option<u16>, String, Vec<String>) {
    let first = probe::http_get(t, port, "/v1/models", REQUEST_TIMEOUT).await;
    let answer = match first {
        Err(why) => return (State::Down, None, why, Vec::new()),
        Ok(a) => a,
    };
    match answer.status {
        200 => {
            return (
                State::Ready,
                Some(200),
                "200 /v1/models".into(),
                model_ids(&answer),
            );
        }
        503 => {
            return (
                State::Loading,
                Some(503),
                "503 /v1/models".into(),
                Vec::new(),
            );
        }
        _ => {}
    }
    match probe::http_get(t, port, "/health", REQUEST_TIMEOUT).await {
        Ok(h) if h.status == 200 => (State::Ready, Some(200), "200 /health".into(), Vec::new()),
        Ok(h) if h.status == 503 => (State::Loading, Some(503), "503 /health".into(), Vec::new()),
        Ok(h) => (
            State::Unknown,
            Some(answer.status),
            format!("{} /v1/models, {} /health", answer.status, h.status),
            Vec::new(),
        ),
        Err(why) => (
            State::Unknown,
            Some(answer.status),
            format!("{} /v1/models; /health: {why}", answer.status),
            Vec::new(),
        ),
    }
}

/// The model ids of an OpenAI-style `/v1/models` answer (`{"data": [{"id": ...}]}`).
fn model_ids(answer: &HttpAnswer) -> Vec<String> {
    serde_json::from_str::<serde_json::Value>(&answer.body)
        .ok()
        .and_then(|v| {
            v.get("data")?.as_array().map(|items| {
                items
                    .iter()
                    .filter_map(|i| i.get("id")?.as_str().map(str::to_string))
                    .collect()
            })
        })
        .unwrap_or_default()
}

/// An endpoints listing.
#[derive(Debug, Clone, Default)]
pub struct EndpointsRequest {
    pub inputs: Inputs,
}

/// The base URL of every placed model that answers ready now, with the id it serves; a server
/// on a remote host that listens on 127.0.0.1 only is flagged, since its URL cannot be reached
/// from elsewhere.
pub async fn endpoints(
    req: &EndpointsRequest,
    stop: &Stop,
) -> Result<(Vec<Endpoint>, Vec<String>)> {
    let snap = snapshot(&req.inputs, "endpoints")?;
    let ws = &snap.ws;
    let conns = Connections::new(&ws.config);
    let hosts = hosts_with_models(ws);
    let work = join_all(hosts.iter().map(|h| {
        let conns = &conns;
        async move {
            let (checked, _) = check_host(ws, conns, h, None, false).await;
            let ready: Vec<Model> = checked
                .models
                .into_iter()
                .filter(|m| m.state == State::Ready)
                .collect();
            let remote = ws
                .config
                .host(h)
                .is_some_and(|c| c.connection.transport == TransportKind::Ssh);
            let listening = if remote && !ready.is_empty() {
                match conns.transport(h).await {
                    Ok(t) => listeners(t.as_ref()).await,
                    Err(_) => None,
                }
            } else {
                None
            };
            (h.clone(), ready, listening)
        }
    }));
    let done = tokio::select! {
        done = work => done,
        () = stop.cancelled() => {
            return Err(Error::Cancelled { reason: stop.reason(StopLevel::Cancel) });
        }
    };
    let mut items = Vec::new();
    for (host, ready, listening) in done {
        let Some(config) = ws.config.host(&host) else {
            continue;
        };
        let address = match config.connection.transport {
            TransportKind::Local => "127.0.0.1".to_string(),
            TransportKind::Ssh => config.connection.host.clone().unwrap_or_default(),
        };
        let authority = if address.contains(':') {
            format!("[{address}]")
        } else {
            address.clone()
        };
        for m in ready {
            let loopback_only = listening
                .as_ref()
                .and_then(|l| l.get(&m.port))
                .is_some_and(|addrs| addrs.iter().all(|a| a.is_loopback()));
            let hint = loopback_only.then(|| {
                format!(
                    "the server listens on 127.0.0.1 only, so http://{authority}:{} cannot be reached from other machines: start it on all addresses (for llama-server and vLLM add `--host 0.0.0.0` to start_cmd, then `berth apply`), or reach it through `ssh -L {}:127.0.0.1:{} {address}`",
                    m.port, m.port, m.port
                )
            });
            items.push(Endpoint {
                address: m.address,
                host: host.clone(),
                loopback_only,
                hint,
                model: m.model,
                serves: m.serves,
                url: format!("http://{authority}:{}/v1", m.port),
            });
        }
    }
    Ok((items, snap.warnings))
}

/// Listening TCP sockets on the host by port, read from `/proc/net/tcp{,6}` in one command;
/// `None` when the host does not say.
async fn listeners(t: &dyn Transport) -> Option<BTreeMap<u16, Vec<std::net::IpAddr>>> {
    let out = t
        .exec(Command::new(
            "cat /proc/net/tcp /proc/net/tcp6 2>/dev/null",
            REQUEST_TIMEOUT,
        ))
        .await
        .ok()?;
    Some(parse_proc_net_tcp(&out.stdout_text()))
}

/// The listening sockets of `/proc/net/tcp` and `/proc/net/tcp6` text, by port.
fn parse_proc_net_tcp(text: &str) -> BTreeMap<u16, Vec<std::net::IpAddr>> {
    const LISTEN: &str = "0A";
    let mut by_port: BTreeMap<u16, Vec<std::net::IpAddr>> = BTreeMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 4 || fields[3] != LISTEN {
            continue;
        }
        let Some((addr, port)) = fields[1].split_once(':') else {
            continue;
        };
        let Ok(port) = u16::from_str_radix(port, 16) else {
            continue;
        };
        let ip = match addr.len() {
            8 => u32::from_str_radix(addr, 16)
                .ok()
                .map(|n| std::net::IpAddr::from(n.to_le_bytes())),
            32 => {
                let mut bytes = [0u8; 16];
                let ok = (0..4).all(|w| {
                    u32::from_str_radix(&addr[w * 8..w * 8 + 8], 16)
                        .map(|n| bytes[w * 4..w * 4 + 4].copy_from_slice(&n.to_le_bytes()))
                        .is_ok()
                });
                ok.then(|| {
                    let v6 = std::net::Ipv6Addr::from(bytes);
                    match v6.to_ipv4_mapped() {
                        Some(v4) => std::net::IpAddr::V4(v4),
                        None => std::net::IpAddr::V6(v6),
                    }
                })
            }
            _ => None,
        };
        if let Some(ip) = ip {
            by_port.entry(port).or_default().push(ip);
        }
    }
    by_port
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_lists_and_ranges() {
        assert_eq!(parse_ports("8080,8081").unwrap(), [8080, 8081]);
        assert_eq!(parse_ports("8000-8003").unwrap(), [8000, 8001, 8002, 8003]);
        assert_eq!(parse_ports("9000, 8080-8081").unwrap(), [8080, 8081, 9000]);
        assert!(parse_ports("8081-8080").is_err());
        assert!(parse_ports("http").is_err());
        assert!(parse_ports("0").is_err());
        assert!(parse_ports("1-65535").unwrap_err().contains("more than"));
    }

    #[test]
    fn listeners_from_proc_net_tcp() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:46B4 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 100 0 0 10 0
   2: 0100007F:46B5 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0000000000000000 100 0 0 10 0
  sl  local_address                         remote_address                        st
   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4 1
";
        let l = parse_proc_net_tcp(text);
        assert_eq!(
            l[&0x46B4],
            ["127.0.0.1".parse::<std::net::IpAddr>().unwrap()]
        );
        assert_eq!(l[&22], ["0.0.0.0".parse::<std::net::IpAddr>().unwrap()]);
        assert!(
            !l.contains_key(&0x46B5),
            "an established socket is no listener"
        );
        assert!(l[&8080][0].is_loopback(), "::1 listens on 8080");
    }
}
