//! `berth watch`: drives the watcher's cycles every interval, logs what each saw and did (plain
//! lines, or one JSON object a line for journald), and serves `/metrics`. SIGTERM and SIGINT
//! let the running cycle finish, then berth exits 0; SIGHUP re-reads the config.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use serde::Serialize;

use super::Invocation;
use crate::cli::signals;
use crate::error::{Error, Result};
use crate::exit_codes;
use crate::metrics::Metrics;
use crate::ops::{Cycle, HealResult, WatchRequest, Watcher};

/// How each cycle is logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// A `watch` as the user asked for it.
#[derive(Debug, Clone)]
pub struct WatchCommand {
    pub interval: Duration,
    pub heal: bool,
    pub metrics: Option<SocketAddr>,
    pub once: bool,
    pub log_format: LogFormat,
}

/// One line of the JSON log.
#[derive(Serialize)]
struct LogLine<'a> {
    /// Unix time in seconds.
    time: f64,
    event: &'static str,
    cycle: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_seconds: Option<f64>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    seen: Option<&'a Cycle>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
}

pub fn run(inv: &Invocation, cmd: &WatchCommand) -> Result<u8> {
    let mut watcher = Watcher::new(WatchRequest {
        inputs: inv.inputs(),
        heal: cmd.heal,
    })?;
    let metrics = Arc::new(Metrics::new());
    inv.block_on(async {
        if let Some(addr) = cmd.metrics {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| Error::Usage {
                    message: format!("cannot serve metrics on {addr}: {e}"),
                    help: "choose a free address with --metrics, e.g. 127.0.0.1:9464".into(),
                })?;
            let bound = listener.local_addr().unwrap_or(addr);
            log(cmd, 0, "metrics", None, None, Some(format!("serving http://{bound}/metrics")));
            tokio::spawn(serve(listener, Arc::clone(&metrics)));
        }
        // From here a signal asks the loop to stop after its cycle instead of ending berth.
        let _obeying = inv.stop.obey();
        signals::hup_reloads();
        let mut n = 0u64;
        let mut failed;
        loop {
            n += 1;
            match watcher.cycle(&inv.stop).await {
                Ok(cycle) => {
                    metrics.record(&cycle);
                    log_cycle(cmd, n, &cycle);
                    failed = !cycle.errors.is_empty()
                        || cycle.heals.iter().any(|h| h.result == HealResult::Failed);
                }
                Err(e) => {
                    metrics.record_failure();
                    log(cmd, n, "error", None, None, Some(e.to_string()));
                    failed = true;
                }
            }
            if cmd.once || inv.stop.level().is_some() {
                break;
            }
            tokio::select! {
                () = tokio::time::sleep(cmd.interval) => {}
                () = inv.stop.drained() => break,
                () = signals::reload_asked() => {
                    match watcher.reload() {
                        Ok(()) => log(cmd, n, "reload", None, None, Some("re-read the config".into())),
                        Err(e) => log(cmd, n, "error", None, None, Some(format!("the config could not be re-read; going on with the last one: {e}"))),
                    }
                }
            }
        }
        if !cmd.once
            && let Some(level) = inv.stop.level()
        {
            log(cmd, n, "stop", None, None, Some(format!("stopping on {}", inv.stop.reason(level))));
        }
        Ok(if cmd.once && failed {
            exit_codes::FAILURE
        } else {
            exit_codes::SUCCESS
        })
    })
}

/// Serves `/metrics` until berth ends.
async fn serve(listener: tokio::net::TcpListener, metrics: Arc<Metrics>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let metrics = Arc::clone(&metrics);
                async move { Ok::<_, Infallible>(answer(&req, &metrics)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

fn answer(req: &Request<hyper::body::Incoming>, metrics: &Metrics) -> Response<Full<Bytes>> {
    let mut response = Response::builder();
    let (status, body, kind) = match req.uri().path() {
        "/metrics" => (
            StatusCode::OK,
            metrics.encode(),
            crate::metrics::CONTENT_TYPE,
        ),
        "/" => (
            StatusCode::OK,
            "berth watch: metrics at /metrics\n".to_string(),
            "text/plain; charset=utf-8",
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "not found\n".to_string(),
            "text/plain; charset=utf-8",
        ),
    };
    response = response.status(status).header("content-type", kind);
    response
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response")
}

fn log_cycle(cmd: &WatchCommand, n: u64, cycle: &Cycle) {
    if cmd.log_format == LogFormat::Json {
        log(cmd, n, "cycle", Some(cycle.duration), Some(cycle), None);
        return;
    }
    let ready = cycle
        .models
        .iter()
        .filter(|m| m.state == crate::output::health::State::Ready)
        .count();
    let desired = cycle.models.iter().filter(|m| m.desired).count();
    let unreachable: Vec<&str> = cycle
        .hosts
        .iter()
        .filter(|h| !h.reachable)
        .map(|h| h.host.as_str())
        .collect();
    let mut line = format!(
        "cycle {n}: {ready}/{desired} models ready, {} drifted, {} unapplied, {:.2}s",
        cycle.drift.len(),
        cycle.unapplied.len(),
        cycle.duration.as_secs_f64()
    );
    if !unreachable.is_empty() {
        line.push_str(&format!("; unreachable: {}", unreachable.join(", ")));
    }
    outln!("{line}");
    for d in &cycle.drift {
        outln!("  drift {}: {}", d.address, d.what);
    }
    for u in &cycle.unapplied {
        outln!(
            "  unapplied {}: {} (waits for a reviewed `berth apply`)",
            u.address,
            u.reason
        );
    }
    for h in &cycle.heals {
        if h.detail.is_empty() {
            outln!("  heal {}: {}", h.address, h.result.as_str());
        } else {
            outln!("  heal {}: {}: {}", h.address, h.result.as_str(), h.detail);
        }
    }
    for e in &cycle.errors {
        outln!("  error: {e}");
    }
}

fn log(
    cmd: &WatchCommand,
    n: u64,
    event: &'static str,
    duration: Option<Duration>,
    seen: Option<&Cycle>,
    message: Option<String>,
) {
    if cmd.log_format == LogFormat::Json {
        let line = LogLine {
            time: std::time::SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64(),
            event,
            cycle: n,
            duration_seconds: duration.map(|d| d.as_secs_f64()),
            seen,
            message,
        };
        outln!("{}", serde_json::to_string(&line).expect("serialisable"));
    } else if let Some(message) = message {
        outln!("{event}: {message}");
    }
}
