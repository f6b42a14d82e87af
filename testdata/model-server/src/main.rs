//! berth-model-server: a stand-in for an OpenAI-compatible model server (llama.cpp's
//! `llama-server`, vLLM) for berth's tests and local example. It speaks the HTTP a probe sees
//! (`/health` and `/v1/models`, 503 while "loading") and can misbehave on request (crash during
//! load, fail to load, hang). It loads no model and must stay small: no GPU, no weights.

use std::convert::Infallible;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{SignalKind, signal};

/// Exit status of a simulated crash (`--exit-after-secs`).
const EXIT_CRASH: u8 = 3;
/// Exit status of a failed load or a port that cannot be bound.
const EXIT_FAILURE: u8 = 1;
/// Exit status of bad command-line arguments.
const EXIT_USAGE: u8 = 2;

/// What the command line asked for.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "berth-model-server",
    about = "A stand-in for an OpenAI-compatible model server (no model, no GPU)"
)]
struct Args {
    /// Port to listen on.
    #[arg(long)]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Model id reported by /v1/models.
    #[arg(long, default_value = "stand-in")]
    model: String,
    /// Seconds of "loading" (503) before the model is ready.
    #[arg(long = "load-secs", value_name = "SECS", value_parser = seconds, default_value = "0")]
    load: Duration,
    /// Exit with status 3 after this many seconds: a simulated crash.
    #[arg(long = "exit-after-secs", value_name = "SECS", value_parser = seconds)]
    exit_after: Option<Duration>,
    /// Accept connections but never answer.
    #[arg(long)]
    hang: bool,
    /// Exit with status 1 when loading ends: a model that fails to load.
    #[arg(long = "fail-load")]
    fail_load: bool,
    /// Ignore SIGTERM, like a server stuck in a long shutdown: only SIGKILL ends it.
    #[arg(long = "ignore-term")]
    ignore_term: bool,
    /// Answer every request with this HTTP status once loaded: a server in a broken state.
    #[arg(long = "answer-status", value_name = "CODE", value_parser = clap::value_parser!(u16).range(100..=599))]
    answer_status: Option<u16>,
}

fn seconds(value: &str) -> Result<Duration, String> {
    value
        .parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| format!("not a number of seconds: {value:?}"))
}

/// Shared by every connection.
struct State {
    model: String,
    /// `--answer-status`.
    answer_status: Option<StatusCode>,
    loaded: AtomicBool,
    requests: AtomicU64,
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { 0 });
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("berth-model-server: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    ExitCode::from(runtime.block_on(serve(args)))
}

async fn serve(args: Args) -> u8 {
    let listener = match TcpListener::bind((args.host.as_str(), args.port)).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!(
                "berth-model-server: cannot listen on {}:{}: {e}",
                args.host, args.port
            );
            return EXIT_FAILURE;
        }
    };
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(term), Ok(int)) => (term, int),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("berth-model-server: cannot handle signals: {e}");
            return EXIT_FAILURE;
        }
    };
    println!(
        "listening on {}:{} (model {}{})",
        args.host,
        args.port,
        args.model,
        if args.hang { ", hanging" } else { "" }
    );

    let state = Arc::new(State {
        model: args.model.clone(),
        answer_status: args
            .answer_status
            .and_then(|code| StatusCode::from_u16(code).ok()),
        // Without a load time it is ready as soon as it listens: a request accepted before the
        // zero-length load below has fired must not see "loading".
        loaded: AtomicBool::new(args.load.is_zero() && !args.fail_load),
        requests: AtomicU64::new(0),
    });
    let load = tokio::time::sleep(args.load);
    tokio::pin!(load);
    let mut loading = true;
    let crash = tokio::time::sleep(args.exit_after.unwrap_or(Duration::MAX / 4));
    tokio::pin!(crash);

    loop {
        tokio::select! {
            _ = term.recv() => {
                if args.ignore_term {
                    println!("received SIGTERM, ignoring it (--ignore-term)");
                    continue;
                }
                println!("received SIGTERM, shutting down");
                return 0;
            }
            _ = int.recv() => {
                println!("received SIGINT, shutting down");
                return 0;
            }
            () = &mut crash, if args.exit_after.is_some() => {
                eprintln!(
                    "berth-model-server: exiting with status {EXIT_CRASH} after {} s \
                     (--exit-after-secs): simulated crash",
                    args.exit_after.unwrap_or_default().as_secs_f64()
                );
                return EXIT_CRASH;
            }
            () = &mut load, if loading => {
                loading = false;
                if args.fail_load {
                    eprintln!(
                        "berth-model-server: error: failed to load model {}: simulated failure \
                         (--fail-load)",
                        args.model
                    );
                    return EXIT_FAILURE;
                }
                state.loaded.store(true, Ordering::SeqCst);
                println!("loaded after {} s", args.load.as_secs_f64());
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) if args.hang => {
                    tokio::spawn(hold(stream));
                }
                Ok((stream, _)) => {
                    let state = Arc::clone(&state);
                    tokio::spawn(async move {
                        let service = service_fn(move |req| handle(req, Arc::clone(&state)));
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
                Err(e) => eprintln!("berth-model-server: accept failed: {e}"),
            },
        }
    }
}

/// `--hang`: keeps the connection open and reads what comes, never answering.
async fn hold(mut stream: TcpStream) {
    let mut buf = [0u8; 1024];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<State>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let loaded = state.loaded.load(Ordering::SeqCst);
    let known = matches!(
        (&method, path.as_str()),
        (&Method::GET, "/health")
            | (&Method::GET, "/v1/models")
            | (&Method::POST, "/v1/chat/completions")
    );
    let (status, body) = if !known {
        (
            StatusCode::NOT_FOUND,
            error_body(
                404,
                "not_found_error",
                &format!("no route for {method} {path}"),
            ),
        )
    } else if !loaded {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            error_body(503, "unavailable_error", "Loading model"),
        )
    } else if let Some(status) = state.answer_status {
        (
            status,
            error_body(status.as_u16(), "server_error", "--answer-status"),
        )
    } else {
        match path.as_str() {
            "/health" => (StatusCode::OK, json!({"status": "ok"})),
            "/v1/models" => (
                StatusCode::OK,
                json!({
                    "object": "list",
                    "data": [{"id": state.model, "object": "model", "owned_by": "berth-model-server"}],
                }),
            ),
            _ => chat(req, &state).await,
        }
    };
    println!("{method} {path} {}", status.as_u16());
    let bytes = Bytes::from(body.to_string());
    let mut response = Response::new(Full::new(bytes));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// An OpenAI-shaped reply that echoes the last message.
async fn chat(req: Request<Incoming>, state: &State) -> (StatusCode, Value) {
    let body = match req.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                error_body(
                    400,
                    "invalid_request_error",
                    &format!("cannot read body: {e}"),
                ),
            );
        }
    };
    let request: Value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                error_body(
                    400,
                    "invalid_request_error",
                    &format!("body is not JSON: {e}"),
                ),
            );
        }
    };
    let last = request["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_str())
        .unwrap_or("");
    let n = state.requests.fetch_add(1, Ordering::SeqCst) + 1;
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let reply = format!("echo: {last}");
    (
        StatusCode::OK,
        json!({
            "id": format!("chatcmpl-berth-{n}"),
            "object": "chat.completion",
            "created": created,
            "model": state.model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": reply},
                "finish_reason": "stop",
            }],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        }),
    )
}

fn error_body(code: u16, kind: &str, message: &str) -> Value {
    json!({"error": {"code": code, "message": message, "type": kind}})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("berth-model-server").chain(args.iter().copied()))
    }

    #[test]
    fn flags() {
        let a = parse(&[
            "--port",
            "8080",
            "--load-secs=1.5",
            "--model",
            "m",
            "--hang",
        ])
        .unwrap();
        assert_eq!(a.port, 8080);
        assert_eq!(a.load, Duration::from_millis(1500));
        assert_eq!(a.model, "m");
        assert!(a.hang && !a.fail_load && a.exit_after.is_none());
        assert_eq!(a.host, "127.0.0.1");
    }

    #[test]
    fn bad_flags() {
        assert!(parse(&[]).unwrap_err().to_string().contains("--port"));
        assert!(parse(&["--port", "x"]).is_err());
        assert!(parse(&["--port", "1", "--load-secs", "-1"]).is_err());
        assert!(parse(&["--port", "1", "--bogus"]).is_err());
        assert!(parse(&["--port"]).is_err());
    }
}
