//! Progress of an apply for people: on a terminal, a spinner per resource in flight with its
//! phase ("probing 12s/120s: loading (503)"); elsewhere one plain line per event, with probe
//! ticks only when their answer changes or every 10 s. Outcome lines go to stdout whenever
//! stdout is not a terminal (`berth apply | tee log` keeps them), even while spinners run on a
//! terminal's stderr; spinners never outlive the run.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use berth_state::Address;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::events::{ApplyEvent, Outcome, Phase, Subscriber};
use crate::ops::StopLevel;
use crate::paint::{Paint, Tone};
use crate::plan::Action;

/// How often an unchanged probe answer is repeated in plain output.
const QUIET: Duration = Duration::from_secs(10);

/// The apply's progress display.
pub struct Display {
    multi: Option<MultiProgress>,
    /// Outcome lines go to stdout as plain lines, not above the spinners.
    lines_to_stdout: bool,
    bars: Mutex<HashMap<Address, ProgressBar>>,
    last_tick: Mutex<HashMap<Address, (String, Instant)>>,
    paint: Paint,
}

impl Display {
    /// Spinners on stderr when `stderr_tty`; outcome lines above them when stdout is a terminal
    /// too, otherwise plain lines on stdout.
    pub fn new(stderr_tty: bool, stdout_tty: bool, color: bool) -> Self {
        let multi =
            stderr_tty.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Display {
            lines_to_stdout: multi.is_none() || !stdout_tty,
            multi,
            bars: Mutex::default(),
            last_tick: Mutex::default(),
            paint: Paint { color },
        }
    }

    fn line(&self, text: String) {
        match &self.multi {
            Some(m) if !self.lines_to_stdout => {
                let _ = m.println(text);
            }
            _ => outln!("{text}"),
        }
    }

    /// Removes every spinner still drawn.
    fn clear(&self) {
        for (_, bar) in self.bars.lock().expect("lock").drain() {
            bar.finish_and_clear();
        }
        if let Some(m) = &self.multi {
            let _ = m.clear();
        }
    }
}

fn verb(action: Action) -> (&'static str, &'static str) {
    match action {
        Action::Create => ("creating", "created"),
        Action::Replace => ("replacing", "replaced"),
        Action::Update => ("updating", "updated"),
        Action::Destroy => ("destroying", "destroyed"),
        Action::Reuse => ("re-probing", "ready"),
        Action::Verify => ("verifying", "verified"),
        Action::NoOp => ("checking", "unchanged"),
    }
}

impl Subscriber for Display {
    fn on_event(&self, event: &ApplyEvent) -> Result<(), String> {
        match event {
            ApplyEvent::Started { address, action } => {
                let (doing, _) = verb(*action);
                match &self.multi {
                    Some(m) => {
                        let bar = m.add(ProgressBar::new_spinner());
                        bar.set_style(
                            ProgressStyle::with_template("{spinner} {prefix}: {msg} [{elapsed}]")
                                .expect("valid template"),
                        );
                        bar.set_prefix(address.to_string());
                        bar.set_message(doing);
                        bar.enable_steady_tick(Duration::from_millis(120));
                        self.bars.lock().expect("lock").insert(address.clone(), bar);
                    }
                    None => self.line(format!("{address}: {doing}")),
                }
            }
            ApplyEvent::Phase { address, phase } => {
                if let Some(bar) = self.bars.lock().expect("lock").get(address) {
                    bar.set_message(phase.to_string());
                    return Ok(());
                }
                if self.multi.is_some() {
                    return Ok(());
                }
                if let Phase::Probing(tick) = phase {
                    let mut last = self.last_tick.lock().expect("lock");
                    let now = Instant::now();
                    let text = tick.outcome.to_string();
                    let repeat = last
                        .get(address)
                        .is_some_and(|(t, at)| *t == text && now.duration_since(*at) < QUIET);
                    if repeat {
                        return Ok(());
                    }
                    last.insert(address.clone(), (text, now));
                }
                self.line(format!("{address}: {phase}"));
            }
            ApplyEvent::Finished {
                address,
                action,
                outcome,
                ..
            } => {
                if let Some(bar) = self.bars.lock().expect("lock").remove(address) {
                    bar.finish_and_clear();
                }
                let text = match outcome {
                    Outcome::Done { elapsed } => format!(
                        "{} {address}: {} in {:.1}s",
                        self.paint.paint("✓", Tone::Added),
                        verb(*action).1,
                        elapsed.as_secs_f64()
                    ),
                    Outcome::Failed(error) => {
                        format!(
                            "{} {address}: {error}",
                            self.paint.paint("✗", Tone::Removed)
                        )
                    }
                    Outcome::Skipped { because } => {
                        format!(
                            "{} {address}: skipped ({because})",
                            self.paint.paint("-", Tone::Changed)
                        )
                    }
                    Outcome::Cancelled => format!(
                        "{} {address}: cancelled",
                        self.paint.paint("-", Tone::Changed)
                    ),
                };
                self.line(text);
            }
            ApplyEvent::HostLockTakenOver { host, previous } => {
                self.line(format!(
                    "{} host {host}: took over the expired host lock of {previous}",
                    self.paint.paint("!", Tone::Changed)
                ));
            }
            ApplyEvent::CancelBegan {
                level: StopLevel::Drain,
                reason,
                ..
            } => {
                self.line(format!("Interrupt: finishing what is running and starting nothing new ({reason}; press Ctrl-C again to stop now)"));
            }
            ApplyEvent::CancelBegan {
                level: StopLevel::Cancel,
                reason,
                ..
            } => {
                self.line(format!("Second interrupt: cancelling running steps and stopping their commands on the hosts ({reason}); then the state is saved"));
            }
            ApplyEvent::RunFinished { .. } => self.clear(),
            ApplyEvent::RunStarted { .. }
            | ApplyEvent::Intent { .. }
            | ApplyEvent::IntentDone { .. }
            | ApplyEvent::Record(_)
            | ApplyEvent::Forget { .. } => {}
        }
        Ok(())
    }
}
