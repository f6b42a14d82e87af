//! The Prometheus metrics of `berth watch`: one registry, filled from each cycle's result and
//! encoded in the text exposition format. Every label takes its values from the config (hosts,
//! models, groups) or from a fixed list (states, results), never from anything that grows on
//! its own. It neither serves HTTP nor runs cycles.

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::UNIX_EPOCH;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::ops::{Cycle, HealResult};
use crate::output::health::State;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    model: String,
    host: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    model: String,
    host: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HostLabels {
    host: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SelectionLabels {
    group: String,
    host: String,
    model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// The states `berth_model_state` shows for every placement.
const STATES: [State; 4] = [State::Ready, State::Loading, State::Down, State::Unknown];

/// The metrics of one watcher.
pub struct Metrics {
    registry: Registry,
    /// Held while a cycle's result is written and while the registry is encoded, so a scrape
    /// never sees half a cycle.
    writing: Mutex<()>,
    model_desired: Family<ModelLabels, Gauge>,
    model_state: Family<StateLabels, Gauge>,
    host_up: Family<HostLabels, Gauge>,
    selected: Family<SelectionLabels, Gauge>,
    drift: Family<KindLabels, Gauge>,
    heals: Family<ResultLabels, Counter>,
    cycles: Family<ResultLabels, Counter>,
    flapping: Gauge,
    lock_held: Gauge,
    last_success: Gauge<f64, AtomicU64>,
    cycle_duration: Histogram,
    probe_duration: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry with every metric, before any cycle.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("berth");
        let m = Metrics {
            registry: Registry::default(),
            writing: Mutex::new(()),
            model_desired: Family::default(),
            model_state: Family::default(),
            host_up: Family::default(),
            selected: Family::default(),
            drift: Family::default(),
            heals: Family::default(),
            cycles: Family::default(),
            flapping: Gauge::default(),
            lock_held: Gauge::default(),
            last_success: Gauge::default(),
            cycle_duration: Histogram::new(exponential_buckets(0.05, 2.0, 10)),
            probe_duration: Histogram::new(exponential_buckets(0.005, 2.0, 12)),
        };
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register(
            "build_info",
            "The berth that runs the watcher (always 1)",
            build,
        );
        registry.register(
            "model_desired",
            "1 when the config wants the model running on the host (an active placement on an enabled host)",
            m.model_desired.clone(),
        );
        registry.register(
            "model_state",
            "1 for the state the model's server is in on the host (ready, loading, down, unknown)",
            m.model_state.clone(),
        );
        registry.register(
            "host_up",
            "1 when the host could be reached in the last cycle",
            m.host_up.clone(),
        );
        registry.register(
            "selected_model",
            "1 for the model the state selects in its group on the host",
            m.selected.clone(),
        );
        registry.register(
            "drift_resources",
            "Resources that drifted from what was applied (kind=drifted) or whose config change nobody applied (kind=unapplied)",
            m.drift.clone(),
        );
        registry.register(
            "heals",
            "Heal decisions by result (healed, failed, flapping, backoff, lock_busy)",
            m.heals.clone(),
        );
        registry.register(
            "cycles",
            "Watch cycles by result (ok, error)",
            m.cycles.clone(),
        );
        registry.register(
            "flapping_resources",
            "Resources left failed because they were healed too often within the window",
            m.flapping.clone(),
        );
        registry.register(
            "state_lock_held",
            "1 when another berth held the state lock as the last cycle read the state",
            m.lock_held.clone(),
        );
        registry.register_with_unit(
            "last_successful_cycle_timestamp",
            "When the last cycle that observed every host ended, in Unix time",
            Unit::Seconds,
            m.last_success.clone(),
        );
        registry.register_with_unit(
            "cycle_duration",
            "How long a watch cycle took",
            Unit::Seconds,
            m.cycle_duration.clone(),
        );
        registry.register_with_unit(
            "probe_duration",
            "How long probing every placed model on one host took",
            Unit::Seconds,
            m.probe_duration.clone(),
        );
        for result in HealResult::ALL {
            m.heals
                .get_or_create(&ResultLabels {
                    result: result.as_str(),
                })
                .inc_by(0);
        }
        for result in ["ok", "error"] {
            m.cycles.get_or_create(&ResultLabels { result }).inc_by(0);
        }
        Metrics { registry, ..m }
    }

    /// Records what a cycle saw and did.
    pub fn record(&self, cycle: &Cycle) {
        let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        // Placements, hosts and selections may have left the config (SIGHUP): start afresh.
        self.model_desired.clear();
        self.model_state.clear();
        self.host_up.clear();
        self.selected.clear();
        for m in &cycle.models {
            let labels = ModelLabels {
                model: m.model.clone(),
                host: m.host.clone(),
            };
            self.model_desired
                .get_or_create(&labels)
                .set(i64::from(m.desired));
            for state in STATES {
                self.model_state
                    .get_or_create(&StateLabels {
                        model: m.model.clone(),
                        host: m.host.clone(),
                        state: state.as_str(),
                    })
                    .set(i64::from(m.state == state));
            }
        }
        for h in &cycle.hosts {
            self.host_up
                .get_or_create(&HostLabels {
                    host: h.host.clone(),
                })
                .set(i64::from(h.reachable));
            self.probe_duration.observe(h.probe.as_secs_f64());
        }
        for s in &cycle.selections {
            self.selected
                .get_or_create(&SelectionLabels {
                    group: s.group.clone(),
                    host: s.host.clone(),
                    model: s.model.clone(),
                })
                .set(1);
        }
        self.drift
            .get_or_create(&KindLabels { kind: "drifted" })
            .set(cycle.drift.len() as i64);
        self.drift
            .get_or_create(&KindLabels { kind: "unapplied" })
            .set(cycle.unapplied.len() as i64);
        for heal in &cycle.heals {
            self.heals
                .get_or_create(&ResultLabels {
                    result: heal.result.as_str(),
                })
                .inc();
        }
        self.flapping.set(
            cycle
                .heals
                .iter()
                .filter(|h| h.result == HealResult::Flapping)
                .count() as i64,
        );
        self.lock_held.set(i64::from(cycle.lock_holder.is_some()));
        self.cycle_duration.observe(cycle.duration.as_secs_f64());
        let complete = cycle.errors.is_empty() && cycle.hosts.iter().all(|h| h.reachable);
        self.cycles
            .get_or_create(&ResultLabels {
                result: if complete { "ok" } else { "error" },
            })
            .inc();
        if complete {
            let at = cycle
                .finished_at
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            self.last_success.set(at.as_secs_f64());
        }
    }

    /// Records a cycle that could not run at all (an unreadable config or state).
    pub fn record_failure(&self) {
        let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        self.cycles
            .get_or_create(&ResultLabels { result: "error" })
            .inc();
    }

    /// The registry in the Prometheus text exposition format (version 0.0.4).
    pub fn encode(&self) -> String {
        let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        to_prometheus_text(&text)
    }
}

/// The content type of [`Metrics::encode`].
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// OpenMetrics, as prometheus-client writes it, in the classic Prometheus text format that
/// every scraper and `promtool check metrics` read: a counter's HELP and TYPE name its
/// `_total` series, and the OpenMetrics-only `# UNIT` and `# EOF` lines go.
fn to_prometheus_text(open_metrics: &str) -> String {
    let counters: Vec<&str> = open_metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(open_metrics.len());
    for line in open_metrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(&name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(line) => out.push_str(&line),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_by_their_total_series_and_open_metrics_lines_go() {
        let text = "# HELP berth_heals Heals.\n# TYPE berth_heals counter\nberth_heals_total{result=\"healed\"} 1\n# HELP berth_cycle_duration_seconds Cycles.\n# TYPE berth_cycle_duration_seconds histogram\n# UNIT berth_cycle_duration_seconds seconds\n# EOF\n";
        assert_eq!(
            to_prometheus_text(text),
            "# HELP berth_heals_total Heals.\n# TYPE berth_heals_total counter\nberth_heals_total{result=\"healed\"} 1\n# HELP berth_cycle_duration_seconds Cycles.\n# TYPE berth_cycle_duration_seconds histogram\n"
        );
    }
}
