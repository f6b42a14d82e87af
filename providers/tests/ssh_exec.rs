//! SshTransport against real sshd hosts: commands, concurrency on one connection, timeouts
//! that reach the remote process, files, and loopback tunnels. Needs root (see ssh_common).

mod ssh_common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_providers::{Command, ProviderError, SshTransport, Transport};
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use ssh_common::{Fleet, processes_with_args, run_ok};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// h1: general commands and timeouts; h2: the concurrency test alone (it counts connections);
/// h3: files and tunnels; h4: a login shell that writes to stderr.
fn fleet() -> Arc<Fleet> {
    ssh_common::shared_fleet('x', 4)
}

const T: Duration = Duration::from_secs(20);

#[tokio::test]
async fn exec_returns_status_stdout_stderr_and_feeds_stdin() {
    let fleet = fleet();
    let t = fleet.connect(1).await;

    let out = t
        .exec(Command::new("printf out; printf err >&2; exit 7", T))
        .await
        .unwrap();
    assert_eq!(out.status, Some(7));
    assert_eq!(out.stdout_text(), "out");
    assert_eq!(out.stderr_text(), "err");

    // The script runs under POSIX sh whatever the login shell is (root's is bash here), and
    // its quoting survives the trip.
    let out = t
        .exec(Command::new(
            r#"if [ -n "$BASH_VERSION" ]; then echo bash; else echo sh; fi; printf '%s|' "a b" '$HOME' "it's""#,
            T,
        ))
        .await
        .unwrap();
    assert_eq!(out.stdout_text(), "sh\na b|$HOME|it's|");

    let out = t
        .exec(Command::new("cat; echo; cat", T).stdin(b"hello\x00world".to_vec()))
        .await
        .unwrap();
    assert_eq!(out.stdout, b"hello\x00world\n");

    // Megabytes both ways at once: stdin is fed while output is read, so neither side blocks.
    let input: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let out = t
        .exec(Command::new("tee /dev/null | wc -c; head -c 5000000 /dev/zero", T).stdin(input))
        .await
        .unwrap();
    assert!(out.success(), "{out:?}");
    assert!(
        out.stdout.starts_with(b"3000000\n"),
        "{:?}",
        &out.stdout[..20]
    );
    assert_eq!(out.stdout.len(), "3000000\n".len() + 5_000_000);

    // Killed by a signal: no exit status.
    let out = t.exec(Command::new("kill -9 $$", T)).await.unwrap();
    assert_eq!(out.status, None, "{out:?}");
}

#[tokio::test]
async fn thirty_concurrent_execs_share_one_connection_and_eight_channels() {
    let fleet = fleet();
    let mut config = fleet.config(2);
    config.max_channels = 8;
    let t = Arc::new(SshTransport::connect(config).await.unwrap());
    let dir = format!("/tmp/berth-concurrency-{}", fleet.prefix);
    run_ok(&*t, &format!("rm -rf {dir}; mkdir -p {dir}")).await;

    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..30 {
        let t = Arc::clone(&t);
        let dir = dir.clone();
        tasks.spawn(async move {
            // Each command counts the commands running beside it.
            let script = format!(
                "touch {dir}/$$; n=$(ls {dir} | wc -l); sleep 0.3; rm {dir}/$$; echo $n {i}"
            );
            t.exec(Command::new(script, Duration::from_secs(30))).await
        });
    }
    // While they run, count the TCP connections to h2's sshd: there must be exactly one.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let connections = established_ssh_connections(&fleet.address(2));

    let mut most = 0;
    while let Some(done) = tasks.join_next().await {
        let out = done.unwrap().unwrap();
        assert!(out.success(), "{out:?}");
        let n: usize = out
            .stdout_text()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        most = most.max(n);
    }
    let elapsed = started.elapsed();
    assert_eq!(
        connections, 1,
        "TCP connections to h2:22 while 30 commands ran"
    );
    assert!(most <= 8, "{most} commands ran at once with max_channels 8");
    assert!(
        most >= 2,
        "commands did not run concurrently (at most {most} at once)"
    );
    // 30 commands of 0.3 s through 8 channels take at least 4 rounds.
    assert!(elapsed >= Duration::from_millis(1200), "{elapsed:?}");
    let logins = fleet.sshd_log(2).matches("Accepted publickey").count();
    assert_eq!(logins, 1, "h2's sshd saw {logins} logins");
    eprintln!(
        "30 execs (0.3 s each) over 8 channels of one connection: {elapsed:?}, at most {most} at once"
    );
}

fn established_ssh_connections(address: &str) -> usize {
    let out = std::process::Command::new("ss")
        .args([
            "-Htn",
            "state",
            "established",
            "dst",
            &format!("{address}:22"),
        ])
        .output()
        .expect("ss");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[tokio::test]
async fn timeout_signals_the_remote_command_and_its_children() {
    let fleet = fleet();
    let t = fleet.connect(1).await;
    let started = Instant::now();
    let err = t
        .exec(Command::new(
            "sleep 4321 & sleep 4322; echo never",
            Duration::from_secs(1),
        ))
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(&err, ProviderError::Timeout { host, secs: 1, .. } if host == "h1"),
        "{err:?}"
    );
    assert!(err.to_string().contains("sleep 4321"), "{err}");
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
    // The signal went to the whole process group, the background child included.
    wait_until_gone(&["sleep 4321", "sleep 4322"]).await;
    // The connection is still good.
    assert_eq!(run_ok(&t, "echo ok").await, "ok\n");
}

#[tokio::test]
async fn dropping_an_exec_future_kills_the_remote_command() {
    let fleet = fleet();
    let t = fleet.connect(1).await;
    let abandoned = tokio::time::timeout(
        Duration::from_millis(700),
        t.exec(Command::new("sleep 4331", Duration::from_secs(60))),
    )
    .await;
    assert!(
        abandoned.is_err(),
        "the command should still have been running"
    );
    wait_until_gone(&["sleep 4331"]).await;
}

/// A hard stop (the second Ctrl-C) reaches the host: the command's process group is killed
/// there, children included, and the exec ends as cancelled instead of waiting for it.
#[tokio::test]
async fn a_cancel_kills_the_remote_process_group_and_ends_as_cancelled() {
    let fleet = fleet();
    let t = fleet.connect(1).await;
    let token = tokio_util::sync::CancellationToken::new();
    let trigger = {
        let token = token.clone();
        async move {
            while processes_with_args("sleep 4352") == 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            token.cancel();
        }
    };
    let started = Instant::now();
    let (result, ()) = tokio::join!(
        t.exec(
            Command::new(
                "sleep 4351 & sleep 4352; echo never",
                Duration::from_secs(60)
            )
            .cancel_on(token)
        ),
        trigger
    );
    let err = result.unwrap_err();
    assert!(
        matches!(&err, ProviderError::Cancelled { host, .. } if host == "h1"),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    wait_until_gone(&["sleep 4351", "sleep 4352"]).await;
    assert_eq!(
        run_ok(&t, "echo ok").await,
        "ok\n",
        "the connection is still good"
    );
}

#[tokio::test]
async fn login_shell_noise_does_not_hide_the_process_group() {
    let fleet = fleet();
    // Debian's bash reads ~/.bashrc even for `ssh host command`; real hosts print locale
    // warnings and the like there.
    std::fs::write(
        fleet.dir.join("hosts/h4/home/.bashrc"),
        "echo 'bash: warning: setlocale: LC_ALL: cannot change locale' >&2\n",
    )
    .unwrap();
    let t = fleet.connect(4).await;
    let out = t
        .exec(Command::new("echo out; echo err >&2", T))
        .await
        .unwrap();
    assert_eq!(out.stdout_text(), "out\n");
    assert_eq!(
        out.stderr_text(),
        "bash: warning: setlocale: LC_ALL: cannot change locale\nerr\n"
    );
    let err = t
        .exec(Command::new("sleep 4341", Duration::from_secs(1)))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Timeout { .. }), "{err:?}");
    wait_until_gone(&["sleep 4341"]).await;
}

async fn wait_until_gone(commands: &[&str]) {
    for _ in 0..50 {
        if commands.iter().all(|c| processes_with_args(c) == 0) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for c in commands {
        assert_eq!(processes_with_args(c), 0, "`{c}` still runs on the host");
    }
}

#[tokio::test]
async fn read_and_write_files_with_mode() {
    let fleet = fleet();
    let t = fleet.connect(3).await;
    let path = "/srv/berth/files/sub dir/it's.bin";
    let data: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    t.write_file(path, &data, 0o640, T).await.unwrap();
    assert_eq!(
        t.read_file(path, T).await.unwrap().as_deref(),
        Some(&data[..])
    );
    let mode = run_ok(
        &t,
        &format!("stat -c %a {}", shlex::try_quote(path).unwrap()),
    )
    .await;
    assert_eq!(mode.trim(), "640");
    t.write_file(path, b"short", 0o600, T).await.unwrap();
    assert_eq!(
        t.read_file(path, T).await.unwrap().as_deref(),
        Some(&b"short"[..])
    );
    assert_eq!(
        t.read_file("/srv/berth/files/missing", T).await.unwrap(),
        None
    );

    // /srv/berth is private to each host: h1 does not see h3's file.
    let h1 = fleet.connect(1).await;
    assert_eq!(h1.read_file(path, T).await.unwrap(), None);
    assert!(
        fleet
            .dir
            .join("hosts/h3/root/files/sub dir/it's.bin")
            .exists(),
        "h3's /srv/berth is the fleet's hosts/h3/root"
    );
}

#[tokio::test]
async fn loopback_tunnel_reaches_only_that_hosts_127_0_0_1() {
    let fleet = fleet();
    let t = fleet.connect(3).await;
    // Free in this namespace too (the demo's servers, say, use 18080-18082), so that the
    // check below that this namespace cannot reach h3's server means something.
    let port = berth_test_support::free_port();
    // A server on h3's own 127.0.0.1, in h3's network namespace.
    run_ok(
        &t,
        &format!(
            "cd /srv/berth && (setsid python3 -m http.server {port} --bind 127.0.0.1 \
             >/srv/berth/http.log 2>&1 </dev/null & echo $! >/srv/berth/http.pid)"
        ),
    )
    .await;

    let mut ready = false;
    for _ in 0..100 {
        if t.connect_loopback(port).await.is_ok() {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "http.server did not start on h3");

    // Raw HTTP/1.0 over the tunnel.
    let mut stream = t.connect_loopback(port).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await.unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.0 200"), "{reply}");
    assert!(
        reply.contains("http.pid"),
        "the listing of h3's /srv/berth: {reply}"
    );

    // hyper's HTTP/1 client over the same kind of stream, as the probe uses it.
    let stream = t.connect_loopback(port).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
            .await
            .unwrap();
    let driver = tokio::spawn(conn);
    let request = hyper::Request::get("/http.log")
        .header(hyper::header::HOST, "127.0.0.1")
        .body(Empty::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    drop(sender);
    let _ = driver.await;

    // Nothing listens on h1's 127.0.0.1 at that port: refused, as a local connect would say.
    let h1 = fleet.connect(1).await;
    match h1.connect_loopback(port).await {
        Err(ProviderError::Io { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::ConnectionRefused)
        }
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("h1 must not reach h3's loopback server"),
    }
    // Nor is the server reachable from this (root) namespace, by any address.
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
    );
    assert!(
        tokio::net::TcpStream::connect((fleet.address(3), port))
            .await
            .is_err()
    );

    run_ok(&t, "kill $(cat /srv/berth/http.pid)").await;
}

#[tokio::test]
async fn exec_round_trip_latency() {
    let fleet = fleet();
    let t = fleet.connect(1).await;
    run_ok(&t, "true").await;
    let n = 50;
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let out = t.exec(Command::new("true", T)).await.unwrap();
        times.push(started.elapsed());
        assert!(out.success());
    }
    times.sort();
    let mean = times.iter().sum::<Duration>() / n as u32;
    eprintln!(
        "exec round trip over one connection ({n} runs of `true`): median {:?}, mean {mean:?}, max {:?}",
        times[n / 2],
        times[n - 1]
    );
    // Generous: it is a few milliseconds here; Nagle or a reconnect per command would show.
    assert!(times[n / 2] < Duration::from_millis(200), "{times:?}");
}
