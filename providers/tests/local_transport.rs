//! LocalTransport against real processes: exit status, output, stdin, timeouts that kill the
//! whole process group, abandoned commands, files through the trait's default `cat` helpers,
//! and loopback connections.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use berth_providers::{Command, LocalTransport, ProviderError, Transport};
use common::{alive, wait_until};

const T: Duration = Duration::from_secs(10);

fn local() -> LocalTransport {
    LocalTransport::new("local-test")
}

#[tokio::test]
async fn exec_collects_status_stdout_and_stderr() {
    let out = local()
        .exec(Command::new("echo out; echo err >&2; exit 3", T))
        .await
        .unwrap();
    assert_eq!(out.status, Some(3));
    assert_eq!(out.stdout_text(), "out\n");
    assert_eq!(out.stderr_text(), "err\n");
    assert!(!out.success());

    let ok = local().exec(Command::new("true", T)).await.unwrap();
    assert!(ok.success());
}

#[tokio::test]
async fn exec_feeds_stdin_and_closes_it() {
    // Binary data, bigger than a pipe buffer, so feeding and reading must overlap.
    let input: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    let out = local()
        .exec(Command::new("cat", T).stdin(input.clone()))
        .await
        .unwrap();
    assert!(out.success());
    assert_eq!(out.stdout, input);

    // `wc` only ends when stdin is closed.
    let out = local()
        .exec(Command::new("wc -c", T).stdin(b"hello".to_vec()))
        .await
        .unwrap();
    assert_eq!(out.stdout_text().trim(), "5");

    // A script that ignores a large input is not an error.
    let out = local()
        .exec(Command::new("exit 0", T).stdin(vec![b'x'; 4_000_000]))
        .await
        .unwrap();
    assert!(out.success());
}

#[tokio::test]
async fn a_signalled_script_has_no_status() {
    let out = local().exec(Command::new("kill -9 $$", T)).await.unwrap();
    assert_eq!(out.status, None);
}

#[tokio::test]
async fn timeout_kills_the_whole_group() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let q = berth_providers::transport::quote(pids.to_str().unwrap()).unwrap();
    // Two background children, one of which ignores SIGTERM, and a foreground sleep.
    let script = format!(
        "# test: sleepers\n\
         sleep 100 & echo $! >> {q}\n\
         sh -c 'trap \"\" TERM; while :; do sleep 1; done' & echo $! >> {q}\n\
         echo $$ >> {q}\n\
         sleep 100"
    );
    let started = Instant::now();
    let err = local()
        .exec(Command::new(script, Duration::from_millis(500)))
        .await
        .unwrap_err();
    let took = started.elapsed();
    match &err {
        ProviderError::Timeout { host, what, secs } => {
            assert_eq!(host, "local-test");
            assert_eq!(what, "test: sleepers");
            assert_eq!(*secs, 1);
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(took < Duration::from_secs(5), "took {took:?}");

    let pids: Vec<u32> = std::fs::read_to_string(&pids)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 3);
    for pid in pids {
        assert!(
            wait_until(Duration::from_secs(2), || !alive(pid)),
            "pid {pid} survived the timeout"
        );
    }
}

#[tokio::test]
async fn leftovers_of_a_finished_script_are_killed() {
    let out = local()
        .exec(Command::new("sleep 100 >/dev/null 2>&1 & echo $!", T))
        .await
        .unwrap();
    let pid: u32 = out.stdout_text().trim().parse().unwrap();
    assert!(wait_until(Duration::from_secs(2), || !alive(pid)));
}

#[tokio::test]
async fn an_abandoned_exec_kills_its_group() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let q = berth_providers::transport::quote(pid_file.to_str().unwrap()).unwrap();
    let transport = local();
    let script = format!("sleep 100 & echo $! > {q}; wait");
    // The caller gives up (its future is dropped) long before the command's own deadline.
    let abandoned = tokio::time::timeout(
        Duration::from_millis(300),
        transport.exec(Command::new(script, Duration::from_secs(100))),
    )
    .await;
    assert!(abandoned.is_err());
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(wait_until(Duration::from_secs(2), || !alive(pid)));
}

#[tokio::test]
async fn files_round_trip_with_their_mode() {
    let dir = tempfile::tempdir().unwrap();
    // A path that needs quoting, in a directory that does not exist yet.
    let path = dir.path().join("a dir/it's $HOME;`x`.bin");
    let path = path.to_str().unwrap();
    let contents: Vec<u8> = b"line 1\nline 2\n\0\xff binary\n".to_vec();
    let t = local();

    assert_eq!(t.read_file(path, T).await.unwrap(), None);
    t.write_file(path, &contents, 0o600, T).await.unwrap();
    assert_eq!(t.read_file(path, T).await.unwrap(), Some(contents.clone()));
    let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // Overwriting replaces contents and mode; no temporary file is left behind.
    t.write_file(path, b"", 0o644, T).await.unwrap();
    assert_eq!(t.read_file(path, T).await.unwrap(), Some(Vec::new()));
    let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
    let names: Vec<_> = std::fs::read_dir(dir.path().join("a dir"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

#[tokio::test]
async fn connect_loopback_reaches_a_local_port() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).unwrap();
        s.write_all(&buf).unwrap();
    });
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = local().connect_loopback(port).await.unwrap();
    stream.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    stream.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
    server.join().unwrap();
}

#[tokio::test]
async fn connect_loopback_to_a_closed_port_is_refused() {
    let port = common::free_port();
    let Err(err) = local().connect_loopback(port).await else {
        panic!("connected to a closed port");
    };
    match err {
        ProviderError::Io { source, .. } => {
            assert_eq!(source.kind(), std::io::ErrorKind::ConnectionRefused)
        }
        other => panic!("unexpected error {other:?}"),
    }
}

/// A script sees a login's environment (PATH, HOME, ...), never the rest of berth's, and starts
/// in the home directory rather than in berth's working directory.
#[tokio::test]
async fn scripts_get_a_login_environment_in_the_home_directory() {
    // SAFETY: the other tests of this binary touch the environment only by spawning through
    // std, which reads it under the lock that set_var takes.
    unsafe {
        std::env::set_var("BERTH_VAR_local_transport_secret", "v");
        std::env::set_var("SSH_AUTH_SOCK", "/tmp/agent.sock");
    }
    let out = local()
        .exec(Command::new("env; echo \"cwd=$(pwd)\"", T))
        .await
        .unwrap();
    let text = out.stdout_text();
    assert!(!text.contains("BERTH_VAR_local_transport_secret"), "{text}");
    assert!(!text.contains("SSH_AUTH_SOCK"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("PATH=")), "{text}");
    let home = std::env::var("HOME").unwrap_or_else(|_| "/".into());
    assert!(text.lines().any(|l| l == format!("cwd={home}")), "{text}");
}
