//! The stand-in as a real process over real HTTP: loading, ready, routes, crash, failed load,
//! a taken port and SIGTERM.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_test_support::{free_port, http, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_berth-model-server");

fn spawn(args: &[&str]) -> Child {
    Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// One request (a GET, or a POST of a JSON `body`); returns (status, body).
fn request(port: u16, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let url = format!("http://127.0.0.1:{port}{path}");
    match method {
        "GET" => http::get(&url),
        "POST" => http::post_json(&url, body),
        other => panic!("no {other} requests here"),
    }
    .ok()
}

fn wait_for(port: u16) {
    assert!(
        wait_until(Duration::from_secs(5), || TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .is_ok()),
        "nothing listens on {port}"
    );
}

fn finish(child: Child) -> (Option<i32>, String, String) {
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn loads_serves_and_stops_on_sigterm() {
    let port = free_port();
    let p = port.to_string();
    let child = spawn(&["--port", &p, "--model", "qwen-test", "--load-secs", "0.5"]);
    wait_for(port);
    let (status, body) = request(port, "GET", "/health", "").unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"error\""), "{body}");
    assert_eq!(request(port, "GET", "/v1/models", "").unwrap().0, 503);

    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(
        request(port, "GET", "/health", "").unwrap(),
        (200, r#"{"status":"ok"}"#.to_string())
    );
    let (status, body) = request(port, "GET", "/v1/models", "").unwrap();
    assert_eq!(status, 200);
    let models: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "qwen-test");
    assert_eq!(models["data"][0]["owned_by"], "berth-model-server");

    let chat = r#"{"model":"qwen-test","messages":[{"role":"user","content":"hello"}]}"#;
    let (status, body) = request(port, "POST", "/v1/chat/completions", chat).unwrap();
    assert_eq!(status, 200);
    let reply: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reply["object"], "chat.completion");
    assert_eq!(reply["choices"][0]["message"]["role"], "assistant");
    assert_eq!(reply["choices"][0]["message"]["content"], "echo: hello");
    assert_eq!(request(port, "GET", "/nope", "").unwrap().0, 404);
    assert_eq!(
        request(port, "POST", "/v1/chat/completions", "{")
            .unwrap()
            .0,
        400
    );

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let (code, stdout, _) = finish(child);
    assert_eq!(code, Some(0));
    assert!(
        stdout.contains(&format!("listening on 127.0.0.1:{port}")),
        "{stdout}"
    );
    assert!(stdout.contains("loaded after 0.5 s"), "{stdout}");
    assert!(stdout.contains("GET /health 503"), "{stdout}");
    assert!(stdout.contains("POST /v1/chat/completions 200"), "{stdout}");
    assert!(stdout.contains("received SIGTERM"), "{stdout}");
}

#[test]
fn crashes_on_request() {
    let p = free_port().to_string();
    let begun = Instant::now();
    let (code, _, stderr) = finish(spawn(&[
        "--port",
        &p,
        "--exit-after-secs",
        "0.3",
        "--load-secs",
        "5",
    ]));
    assert_eq!(code, Some(3));
    assert!(stderr.contains("simulated crash"), "{stderr}");
    assert!(begun.elapsed() < Duration::from_secs(3));
}

#[test]
fn fails_to_load_on_request() {
    let p = free_port().to_string();
    let (code, _, stderr) = finish(spawn(&["--port", &p, "--fail-load", "--load-secs", "0.2"]));
    assert_eq!(code, Some(1));
    assert!(stderr.contains("failed to load model stand-in"), "{stderr}");
}

#[test]
fn a_taken_port_is_a_clear_error() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let p = taken.local_addr().unwrap().port().to_string();
    let (code, _, stderr) = finish(spawn(&["--port", &p]));
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{p}")),
        "{stderr}"
    );
}

#[test]
fn hang_accepts_but_never_answers() {
    let port = free_port();
    let p = port.to_string();
    let mut child = spawn(&["--port", &p, "--hang"]);
    wait_for(port);
    let url = format!("http://127.0.0.1:{port}/health");
    let err = http::get_within(&url, Duration::from_millis(500)).unwrap_err();
    assert!(err.contains("timeout"), "{err}");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn port_is_required() {
    let (code, _, stderr) = finish(spawn(&[]));
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("required") && stderr.contains("--port <PORT>"),
        "{stderr}"
    );
}
