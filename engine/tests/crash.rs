//! Crash safety: `berth apply` killed with SIGKILL at a pseudo-random moment (before, during or
//! after the probe gates of a 20-model fleet) must leave hosts and state such that
//! `berth apply --force` takes the stale lock over and converges: every endpoint answers,
//! drift is clean, and exactly one stand-in serves each port, running the configured command
//! (no orphan, no duplicate). Set BERTH_CRASH_SEED to replay a run.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Fleet, Model, addr, free_ports, get_models, wait_until};
use serde_json::Value;

const MODELS: usize = 20;
const TRIALS: usize = 20;
const PARALLELISM: usize = 5;
/// Kills land between 0 and this many milliseconds after apply starts.
const MAX_DELAY_MS: u64 = 3000;

/// SplitMix64: a small deterministic generator, so a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A load time between 0.2 and 1.5 s, in hundredths.
    fn load(&mut self) -> f64 {
        (20 + self.below(131)) as f64 / 100.0
    }
}

fn id(i: usize) -> String {
    format!("m{i:02}")
}

/// Twenty stand-ins; chains of dependencies `m00 <- m01 <- m02 <- m04` (and likewise from
/// m05, m10, m15), the rest independent.
fn fleet_models(ports: &[u16], loads: &[f64]) -> Vec<Model> {
    (0..MODELS)
        .map(|i| {
            let m = Model::new(&id(i), ports[i], &format!("--load-secs {:.2}", loads[i]))
                .probe_timeout(30)
                .probe_interval(100);
            match i % 5 {
                1 | 2 => m.depends_on(&id(i - 1)),
                4 => m.depends_on(&id(i - 2)),
                _ => m,
            }
        })
        .collect()
}

/// Where in the killed apply's life the kill landed, from what it printed.
fn landed(stdout: &str, finished: bool) -> &'static str {
    if finished {
        "after the apply ended"
    } else if !stdout.contains("berth will:") && !stdout.contains("No changes") {
        "while planning"
    } else if stdout.contains("probing") || stdout.contains("starting") {
        "during gates"
    } else {
        "before any gate"
    }
}

#[test]
fn an_apply_killed_at_any_moment_is_converged_by_the_next_apply() {
    let seed: u64 = std::env::var("BERTH_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_b347);
    eprintln!("crash trials with BERTH_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let started = Instant::now();
    let ports = free_ports(MODELS);
    let mut loads: Vec<f64> = (0..MODELS).map(|_| rng.load()).collect();
    let fleet = Fleet::new(&fleet_models(&ports, &loads), PARALLELISM);
    let mut landings: BTreeMap<&str, usize> = BTreeMap::new();

    for trial in 0..TRIALS {
        // Give the killed apply something to do: every fifth trial starts from nothing (20
        // creates), the others change the load time of half of the models (replaces).
        if trial % 5 == 4 {
            fleet.berth(&["destroy", "--auto-approve"]).expect(0);
        } else if trial > 0 {
            let group = trial % 2;
            for (i, load) in loads.iter_mut().enumerate() {
                if i % 2 == group {
                    *load = rng.load();
                }
            }
        }
        fleet.set_models(&fleet_models(&ports, &loads));
        // Spread the kills over the whole window, with some jitter.
        let slot = MAX_DELAY_MS / TRIALS as u64;
        let delay = Duration::from_millis(trial as u64 * slot + rng.below(slot));

        let mut victim = fleet.spawn(&["apply", "--auto-approve"]);
        let victim_pid = victim.pid();
        std::thread::sleep(delay);
        let finished = victim.finished();
        let killed = victim.kill9();
        let place = landed(&killed.stdout, finished);
        *landings.entry(place).or_default() += 1;

        // A lock left by the killed apply is reported as stale to a command without --force.
        let stale = fleet
            .lock_holder()
            .is_some_and(|h| h["pid"].as_u64() == Some(u64::from(victim_pid)));
        if stale {
            let blocked = fleet.berth(&["plan", "--refresh=false"]);
            assert_eq!(blocked.code, Some(1), "trial {trial}: {}", blocked.all());
            assert!(
                blocked.stderr.contains("stale"),
                "trial {trial}: {}",
                blocked.stderr
            );
        }

        let converge = fleet.berth(&["apply", "--auto-approve", "--force"]);
        assert_eq!(
            converge.code,
            Some(0),
            "trial {trial} (seed {seed}, killed after {delay:?}, {place}): the converging apply \
             failed\n--- killed apply's output\n{}\n--- converging apply\n{}",
            killed.stdout,
            converge.all()
        );

        // Exactly one stand-in per port, running what the config says now.
        let mut by_port: BTreeMap<u16, Vec<common::StandIn>> = BTreeMap::new();
        for s in fleet.stand_ins() {
            by_port.entry(s.port).or_default().push(s);
        }
        let problems: Vec<String> = (0..MODELS)
            .filter_map(|i| {
                let want = format!("{:.2}", loads[i]);
                match by_port.get(&ports[i]).map(Vec::as_slice) {
                    None | Some([]) => Some(format!("{}: no process on port {}", id(i), ports[i])),
                    Some([one]) if one.flag("--load-secs") == Some(want.as_str()) => None,
                    Some([one]) => Some(format!(
                        "{}: runs {:?}, the config says --load-secs {want}",
                        id(i),
                        one.argv
                    )),
                    Some(many) => Some(format!(
                        "{}: {} processes on port {}: {many:?}",
                        id(i),
                        many.len(),
                        ports[i]
                    )),
                }
            })
            .collect();
        assert!(
            problems.is_empty() && by_port.len() == MODELS,
            "trial {trial} (seed {seed}, killed after {delay:?}, {place}):\n{}\n\
             ports of this test in use: {:?}\n--- killed apply's output\n{}\n--- converging apply\n{}",
            problems.join("\n"),
            by_port.keys().collect::<Vec<_>>(),
            killed.stdout,
            converge.stdout
        );

        // Every endpoint answers with its model; drift is clean; the state says ready.
        let endpoints = fleet.endpoints();
        assert_eq!(endpoints.len(), MODELS, "trial {trial}: {endpoints:#?}");
        for e in &endpoints {
            let url = e["url"].as_str().unwrap();
            let (status, body) = get_models(url)
                .unwrap_or_else(|err| panic!("trial {trial}: {url} does not answer: {err}"));
            assert_eq!(status, 200, "trial {trial}: {url}: {body}");
            let json: Value = serde_json::from_str(&body).expect("JSON");
            assert_eq!(json["data"][0]["id"], e["model"], "trial {trial}: {body}");
        }
        let drift = fleet.berth(&["drift"]);
        assert_eq!(
            drift.code,
            Some(0),
            "trial {trial} (seed {seed}, {place}): drift after converging:\n{}",
            drift.all()
        );
        let statuses = fleet.statuses();
        for i in 0..MODELS {
            assert_eq!(
                statuses.get(&addr(&id(i))).map(String::as_str),
                Some("ready"),
                "trial {trial}: {statuses:?}"
            );
        }
        eprintln!(
            "trial {trial:2}: killed after {:4} ms ({place}); converged in {:.1}s",
            delay.as_millis(),
            converge.elapsed.as_secs_f64()
        );
    }

    // After the last converge no interrupted change is left behind in the state.
    let plan = fleet.berth(&["plan", "--detailed-exitcode"]);
    plan.expect(0);
    assert!(
        !plan.stdout.contains("interrupted"),
        "a converged fleet still warns of an interrupted apply:\n{}",
        plan.stdout
    );

    fleet.berth(&["destroy", "--auto-approve"]).expect(0);
    assert!(
        wait_until(Duration::from_secs(10), || fleet.stand_ins().is_empty()),
        "left running: {:?}",
        fleet.stand_ins()
    );
    assert!(fleet.state_list().is_empty());
    assert!(fleet.deployments().is_empty(), "{:?}", fleet.deployments());
    eprintln!(
        "{TRIALS} trials in {:.0}s; kills landed: {landings:?}",
        started.elapsed().as_secs_f64()
    );
    assert!(
        landings.get("during gates").copied().unwrap_or(0) >= 5,
        "too few kills landed during gates to mean much: {landings:?}"
    );
}
