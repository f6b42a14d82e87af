//! Placement: which models run on which hosts with which backend. Deterministic for a given
//! config and state: hosts are ranked by rendezvous hashing, hosts a model already runs on (per
//! state) come first, and a host is skipped when the model would not fit its VRAM or would take
//! a port already in use there. Pure: no I/O.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use berth_state::Address;
use globset::GlobBuilder;
use serde::Serialize;

use crate::config::{Code, Config, Finding, Model};

/// One model on one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Placement {
    pub model: String,
    pub host: String,
    pub backend: String,
    pub port: u16,
    /// False for a group member that is placed (its port and VRAM are reserved) but is not the
    /// group's running member on this host.
    pub active: bool,
}

impl Placement {
    /// The resource address, e.g. `model.qwen2.5-7b@gpu-a`.
    pub fn address(&self) -> Address {
        Address::model(&self.model, &self.host)
    }
}

/// What the state says about earlier placements, so that they are kept (no churn).
#[derive(Debug, Clone, Default)]
pub struct Previous {
    /// Model id -> hosts it was placed on.
    pub hosts: HashMap<String, Vec<String>>,
    /// (group, host) -> the member selected with `berth select`.
    pub selections: HashMap<(String, String), String>,
}

/// Resolves host ids and globs to enabled hosts, caching each pattern.
pub struct HostMatcher<'c> {
    config: &'c Config,
    by_id: HashMap<&'c str, usize>,
    cache: RefCell<HashMap<String, Rc<[usize]>>>,
}

impl<'c> HostMatcher<'c> {
    pub fn new(config: &'c Config) -> Self {
        let by_id = config
            .hosts
            .iter()
            .enumerate()
            .filter(|(_, h)| h.enabled)
            .map(|(i, h)| (h.id.value.as_str(), i))
            .collect();
        HostMatcher {
            config,
            by_id,
            cache: RefCell::default(),
        }
    }

    /// True when `pattern` is a glob rather than a host id.
    pub fn is_glob(pattern: &str) -> bool {
        pattern.contains(['*', '?', '[', '{'])
    }

    /// Indices (into `config.hosts`) of the enabled hosts `pattern` matches, in config order.
    pub fn matches(&self, pattern: &str) -> Result<Rc<[usize]>, String> {
        if let Some(hit) = self.cache.borrow().get(pattern) {
            return Ok(hit.clone());
        }
        let hosts: Rc<[usize]> = if Self::is_glob(pattern) {
            let glob = GlobBuilder::new(pattern)
                .literal_separator(false)
                .build()
                .map_err(|e| e.kind().to_string())?
                .compile_matcher();
            self.config
                .hosts
                .iter()
                .enumerate()
                .filter(|(_, h)| h.enabled && glob.is_match(&h.id.value))
                .map(|(i, _)| i)
                .collect()
        } else {
            self.by_id
                .get(pattern)
                .map(|&i| vec![i])
                .unwrap_or_default()
                .into()
        };
        self.cache
            .borrow_mut()
            .insert(pattern.to_string(), hosts.clone());
        Ok(hosts)
    }

    /// Indices of the enabled hosts carrying every one of `labels`, cached per label set.
    pub fn with_labels(&self, labels: &BTreeMap<String, String>) -> Rc<[usize]> {
        let key = labels
            .iter()
            .fold(String::from("\0labels"), |mut k, (n, v)| {
                k.push('\0');
                k.push_str(n);
                k.push('=');
                k.push_str(v);
                k
            });
        if let Some(hit) = self.cache.borrow().get(&key) {
            return hit.clone();
        }
        let hosts: Rc<[usize]> = self
            .config
            .hosts
            .iter()
            .enumerate()
            .filter(|(_, h)| h.enabled && labels.iter().all(|(k, v)| h.labels.get(k) == Some(v)))
            .map(|(i, _)| i)
            .collect();
        self.cache.borrow_mut().insert(key, hosts.clone());
        hosts
    }

    /// A membership mask over `config.hosts` for a list of patterns (invalid ones match nothing).
    fn mask<'p>(&self, patterns: impl IntoIterator<Item = &'p str>) -> Vec<bool> {
        let mut mask = vec![false; self.config.hosts.len()];
        for p in patterns {
            if let Ok(hits) = self.matches(p) {
                for &i in hits.iter() {
                    mask[i] = true;
                }
            }
        }
        mask
    }
}

/// What is already placed on one host. Every question placement asks of it is answered in
/// constant time, so that a host with thousands of models costs no more per model than one.
#[derive(Default)]
struct HostLoad {
    ports: HashMap<u16, PortUse>,
    /// VRAM of models outside groups, and the largest member of each group (and their sum).
    vram_single: f64,
    vram_groups: HashMap<String, f64>,
    vram_groups_total: f64,
    models: Vec<usize>,
}

/// The models placed on one port of a host, as far as a port check needs them.
struct PortUse {
    /// The first model placed on the port, and its group.
    first: (usize, Option<String>),
    /// The first model placed on it whose group differs from the first one's.
    other_group: Option<usize>,
}

impl HostLoad {
    fn vram_used(&self) -> f64 {
        self.vram_single + self.vram_groups_total
    }

    fn vram_with(&self, model: &Model) -> f64 {
        let size = model.size_gib.unwrap_or(0.0);
        match &model.group {
            Some(g) => {
                let current = self.vram_groups.get(&g.value).copied().unwrap_or(0.0);
                self.vram_used() - current + current.max(size)
            }
            None => self.vram_used() + size,
        }
    }

    /// The earliest model on the host that `model` cannot share its port with: any model on
    /// the port for a model outside groups, a model of another group for a group member.
    fn port_holder(&self, model: &Model) -> Option<usize> {
        let used = self.ports.get(&model.port)?;
        match &model.group {
            None => Some(used.first.0),
            Some(g) if used.first.1.as_ref() != Some(&g.value) => Some(used.first.0),
            Some(_) => used.other_group,
        }
    }

    fn add(&mut self, index: usize, model: &Model) {
        let size = model.size_gib.unwrap_or(0.0);
        match &model.group {
            Some(g) => {
                let entry = self.vram_groups.entry(g.value.clone()).or_insert(0.0);
                if size > *entry {
                    self.vram_groups_total += size - *entry;
                    *entry = size;
                }
            }
            None => self.vram_single += size,
        }
        let group = model.group.as_ref().map(|g| g.value.clone());
        match self.ports.entry(model.port) {
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(PortUse {
                    first: (index, group),
                    other_group: None,
                });
            }
            std::collections::hash_map::Entry::Occupied(mut e) => {
                let used = e.get_mut();
                if used.other_group.is_none() && used.first.1 != group {
                    used.other_group = Some(index);
                }
            }
        }
        self.models.push(index);
    }
}

/// Places every enabled model, or explains why some cannot be placed.
pub fn place(config: &Config, previous: &Previous) -> Result<Vec<Placement>, Vec<Finding>> {
    let matcher = HostMatcher::new(config);
    let backend_index: HashMap<&str, usize> = config
        .backends
        .iter()
        .enumerate()
        .map(|(i, b)| (b.id.value.as_str(), i))
        .collect();
    let admits: Vec<Vec<bool>> = config
        .backends
        .iter()
        .map(|b| match &b.host_filters {
            Some(f) => matcher.mask(f.value.iter().map(|s| s.value.as_str())),
            None => vec![true; config.hosts.len()],
        })
        .collect();
    let host_backends: Vec<Vec<usize>> = config
        .hosts
        .iter()
        .map(|h| {
            h.capabilities
                .backends
                .iter()
                .filter_map(|b| backend_index.get(b.value.as_str()).copied())
                .collect()
        })
        .collect();
    let host_hash: Vec<u64> = config
        .hosts
        .iter()
        .map(|h| fnv(h.id.value.as_bytes()))
        .collect();
    let all_hosts: Vec<bool> = config.hosts.iter().map(|h| h.enabled).collect();

    let mut order: Vec<usize> = (0..config.models.len())
        .filter(|&i| config.models[i].enabled)
        .collect();
    order.sort_by(|&a, &b| config.models[a].id.value.cmp(&config.models[b].id.value));

    let mut loads: Vec<HostLoad> = config.hosts.iter().map(|_| HostLoad::default()).collect();
    let mut placed: Vec<(usize, usize, usize)> = Vec::new(); // (model, host, backend)
    let mut findings = Vec::new();

    for &mi in &order {
        let model = &config.models[mi];
        let mut mask = match &model.host_policy.hosts {
            Some(h) => matcher.mask(h.value.iter().map(|s| s.value.as_str())),
            None => all_hosts.clone(),
        };
        if let Some(labels) = &model.host_policy.labels {
            let keep = matcher.with_labels(&labels.value);
            let mut keep_mask = vec![false; mask.len()];
            for &i in keep.iter() {
                keep_mask[i] = true;
            }
            for (m, k) in mask.iter_mut().zip(keep_mask) {
                *m = *m && k;
            }
        }
        let prefer: Vec<usize> = if model.backend_policy.prefer.is_empty() {
            (0..config.backends.len()).collect()
        } else {
            model
                .backend_policy
                .prefer
                .iter()
                .filter_map(|b| backend_index.get(b.value.as_str()).copied())
                .collect()
        };
        let key = fnv(model
            .group
            .as_ref()
            .map_or(&model.id.value, |g| &g.value)
            .as_bytes());
        let prev_hosts = previous.hosts.get(&model.id.value);

        let mut rejected: Vec<String> = Vec::new();
        let mut candidates: Vec<(usize, usize, u64, usize)> = Vec::new(); // (rank, host, score, backend)
        for (hi, _) in mask.iter().enumerate().filter(|(_, m)| **m) {
            let host = &config.hosts[hi];
            let Some(&bi) = prefer
                .iter()
                .find(|&&bi| host_backends[hi].contains(&bi) && admits[bi][hi])
            else {
                if rejected.len() < 6 {
                    rejected.push(backend_rejection(config, &prefer, hi, &host_backends[hi]));
                }
                continue;
            };
            let rank = prev_hosts
                .and_then(|p| p.iter().position(|h| *h == host.id.value))
                .unwrap_or(usize::MAX);
            candidates.push((rank, hi, mix(key ^ host_hash[hi]), bi));
        }
        candidates.sort_by(|a, b| a.0.cmp(&b.0).then(b.2.cmp(&a.2)).then(a.1.cmp(&b.1)));

        let mut chosen = 0;
        let mut port_clash: Option<(usize, usize)> = None; // (host, other model)
        let mut vram_short: Option<(usize, f64)> = None; // (host, needed)
        for &(_, hi, _, bi) in &candidates {
            if chosen == model.host_policy.replicas {
                break;
            }
            let load = &loads[hi];
            if let Some(other) = load.port_holder(model) {
                port_clash.get_or_insert((hi, other));
                continue;
            }
            if let (Some(vram), Some(_)) = (config.hosts[hi].capabilities.vram_gib, model.size_gib)
            {
                let needed = load.vram_with(model);
                if needed > vram + 1e-9 {
                    vram_short.get_or_insert((hi, needed));
                    continue;
                }
            }
            loads[hi].add(mi, model);
            placed.push((mi, hi, bi));
            chosen += 1;
        }
        if chosen < model.host_policy.replicas {
            findings.push(placement_failure(
                config,
                model,
                chosen,
                &candidates,
                &rejected,
                port_clash,
                vram_short,
                &loads,
            ));
        }
    }
    if !findings.is_empty() {
        return Err(findings);
    }

    let mut out: Vec<Placement> = placed
        .into_iter()
        .map(|(mi, hi, bi)| {
            let model = &config.models[mi];
            let host = &config.hosts[hi].id.value;
            let active = match &model.group {
                None => true,
                Some(g) => match previous.selections.get(&(g.value.clone(), host.clone())) {
                    Some(selected) => *selected == model.id.value,
                    None => model.default.as_ref().is_some_and(|d| d.value),
                },
            };
            Placement {
                model: model.id.value.clone(),
                host: host.clone(),
                backend: config.backends[bi].id.value.clone(),
                port: model.port,
                active,
            }
        })
        .collect();
    out.sort_by(|a, b| (&a.model, &a.host).cmp(&(&b.model, &b.host)));
    Ok(out)
}

fn backend_rejection(config: &Config, prefer: &[usize], hi: usize, has: &[usize]) -> String {
    let host = &config.hosts[hi].id.value;
    let names = |ids: &[usize]| {
        ids.iter()
            .map(|&b| config.backends[b].id.value.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(&bi) = prefer.iter().find(|&&bi| has.contains(&bi)) {
        return format!(
            "{host}: backend `{}` does not admit it (host_filters)",
            config.backends[bi].id.value
        );
    }
    if has.is_empty() {
        format!("{host}: lists no backends in capabilities")
    } else {
        format!(
            "{host}: has backends [{}], none of [{}]",
            names(has),
            names(prefer)
        )
    }
}

#[allow(clippy::too_many_arguments)]
fn placement_failure(
    config: &Config,
    model: &Model,
    chosen: usize,
    candidates: &[(usize, usize, u64, usize)],
    rejected: &[String],
    port_clash: Option<(usize, usize)>,
    vram_short: Option<(usize, f64)>,
    loads: &[HostLoad],
) -> Finding {
    let id = &model.id.value;
    let wanted = model.host_policy.replicas;
    let replicas = if wanted == 1 {
        String::new()
    } else {
        format!(" ({chosen} of {wanted} replicas placed)")
    };
    if let Some((hi, other)) = port_clash {
        let host = &config.hosts[hi].id.value;
        let other_model = &config.models[other];
        return Finding::error(
            Code::PortConflict,
            model.port_span,
            format!("port {} is taken on {host}", model.port),
            format!(
                "models `{}` and `{id}` both use port {} on host `{host}`{replicas}",
                other_model.id.value, model.port
            ),
        )
        .with_help(
            "give one of them another `runtime_defaults { port = ... }`, or put them in one group",
        )
        .with_secondary(
            other_model.port_span,
            format!("`{}` uses port {} too", other_model.id.value, model.port),
        );
    }
    if let Some((hi, needed)) = vram_short {
        let host = &config.hosts[hi];
        let vram = host.capabilities.vram_gib.unwrap_or(0.0);
        let others: Vec<&str> = loads[hi]
            .models
            .iter()
            .map(|&m| config.models[m].id.value.as_str())
            .collect();
        let used = if others.is_empty() {
            String::new()
        } else {
            format!(", already used by {}", others.join(", "))
        };
        return Finding::error(
            Code::VramExceeded,
            model.id.span,
            format!("{} GiB does not fit", fmt_gib(model.size_gib.unwrap_or(0.0))),
            format!("model `{id}` does not fit on host `{}`: {} GiB needed of {} GiB VRAM{used}{replicas}", host.id.value, fmt_gib(needed), fmt_gib(vram)),
        )
        .with_secondary(host.id.span, format!("{} GiB VRAM", fmt_gib(vram)))
        .with_help("use a smaller quantisation, raise vram_gib if it is wrong, or allow more hosts in host_policy");
    }
    let span = model
        .host_policy
        .hosts
        .as_ref()
        .map_or(model.host_policy.span, |h| h.span);
    if candidates.is_empty() {
        let mut help = String::from(if config.hosts.is_empty() {
            "the config defines no hosts: add a `host` block"
        } else {
            "no host matched by host_policy can run any backend in backend_policy.prefer"
        });
        for r in rejected {
            help.push_str("\n  ");
            help.push_str(r);
        }
        return Finding::error(
            Code::Unplaceable,
            span,
            "no host can run it",
            format!("model `{id}` cannot be placed on any host"),
        )
        .with_help(help);
    }
    Finding::error(
        Code::Unplaceable,
        span,
        format!("only {} host(s) can run it", candidates.len()),
        format!("model `{id}` wants {wanted} replicas but only {chosen} host(s) can take it"),
    )
    .with_help("lower `replicas`, or widen host_policy")
}

fn fmt_gib(v: f64) -> String {
    let s = format!("{v:.1}");
    s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
}

/// FNV-1a: a stable hash (std's hasher is randomly keyed per process).
fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// splitmix64 finaliser: turns (model, host) key mixes into well-spread rendezvous scores.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{VarInputs, load_texts};

    fn config(text: &str) -> Config {
        match load_texts(
            Path::new("/cfg"),
            &[("main.hcl", text)],
            &VarInputs::default(),
        ) {
            Ok(loaded) => loaded.config,
            Err(invalid) => panic!("{:#?}", invalid.findings),
        }
    }

    fn hosts(n: usize, backends: &str, vram: Option<u32>) -> String {
        (1..=n)
            .map(|i| {
                let vram = vram.map(|v| format!("vram_gib = {v}")).unwrap_or_default();
                format!(
                    "host \"gpu-{i}\" {{\n connection {{\n host = \"10.0.0.{i}\"\n user = \"ops\"\n }}\n capabilities {{\n backends = [{backends}]\n {vram}\n }}\n labels = {{ rack = \"r{}\" }}\n}}\n",
                    i % 2
                )
            })
            .collect()
    }

    const BACKENDS: &str =
        "backend \"cuda\" {\n host_filters = [\"gpu-*\"]\n}\nbackend \"cpu\" {}\n";

    fn model(id: &str, port: u16, body: &str) -> String {
        format!(
            "model \"{id}\" {{\n source = \"/m/{id}.gguf\"\n runtime_defaults {{\n port = {port}\n }}\n launch {{\n start_cmd = \"srv --port {{port}}\"\n }}\n {body}\n}}\n"
        )
    }

    /// The findings of a config that loads but cannot be placed.
    fn rejected(text: &str) -> Vec<Finding> {
        place(&config(text), &Previous::default()).expect_err("placement should fail")
    }

    fn placed(c: &Config, previous: &Previous) -> Vec<(String, String, String)> {
        place(c, previous)
            .unwrap()
            .into_iter()
            .map(|p| (p.model, p.host, p.backend))
            .collect()
    }

    #[test]
    fn host_policy_globs_and_labels_filter_hosts() {
        let c = config(&format!(
            "{}{BACKENDS}{}{}",
            hosts(4, "\"cuda\", \"cpu\"", None),
            model(
                "a",
                8080,
                "host_policy {\n hosts = [\"gpu-1\", \"gpu-2\"]\n replicas = 2\n }"
            ),
            model(
                "b",
                8081,
                "host_policy {\n labels = { rack = \"r0\" }\n replicas = 2\n }"
            ),
        ));
        let p = placed(&c, &Previous::default());
        let hosts_of = |m: &str| {
            p.iter()
                .filter(|x| x.0 == m)
                .map(|x| x.1.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(hosts_of("a"), ["gpu-1", "gpu-2"]);
        assert_eq!(hosts_of("b"), ["gpu-2", "gpu-4"]);
    }

    #[test]
    fn first_preferred_backend_the_host_has_and_admits_wins() {
        let text = format!(
            "{}{}{BACKENDS}{}",
            hosts(1, "\"cuda\", \"cpu\"", None),
            "host \"cpu-1\" {\n connection {\n transport = \"local\"\n }\n capabilities {\n backends = [\"cuda\", \"cpu\"]\n }\n}\n",
            model(
                "a",
                8080,
                "host_policy {\n replicas = 2\n }\n backend_policy {\n prefer = [\"cuda\", \"cpu\"]\n }"
            ),
        );
        let p = placed(&config(&text), &Previous::default());
        // cpu-1 lists cuda, but the cuda backend's host_filters only admit gpu-*.
        assert_eq!(
            p,
            [
                ("a".into(), "cpu-1".into(), "cpu".into()),
                ("a".into(), "gpu-1".into(), "cuda".into())
            ]
        );
    }

    #[test]
    fn replicas_are_deterministic_and_spread() {
        let text = format!(
            "{}{BACKENDS}{}{}",
            hosts(8, "\"cpu\"", None),
            model("a", 8080, "host_policy {\n replicas = 3\n }"),
            model("b", 8080, "host_policy {\n replicas = 3\n }"),
        );
        let c = config(&text);
        let first = placed(&c, &Previous::default());
        assert_eq!(
            first,
            placed(&config(&text), &Previous::default()),
            "same config, same placement"
        );
        let hosts_of = |m: &str| {
            first
                .iter()
                .filter(|x| x.0 == m)
                .map(|x| x.1.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(hosts_of("a").len(), 3);
        assert_eq!(hosts_of("b").len(), 3);
        // Same port: the two models can never share a host.
        assert!(hosts_of("a").iter().all(|h| !hosts_of("b").contains(h)));
    }

    #[test]
    fn a_placement_from_state_is_kept_while_valid() {
        let text = format!(
            "{}{BACKENDS}{}",
            hosts(6, "\"cpu\"", None),
            model("a", 8080, "")
        );
        let c = config(&text);
        let natural = placed(&c, &Previous::default())[0].1.clone();
        let other = if natural == "gpu-1" { "gpu-2" } else { "gpu-1" };
        let previous = Previous {
            hosts: HashMap::from([("a".to_string(), vec![other.to_string()])]),
            ..Previous::default()
        };
        assert_eq!(placed(&c, &previous)[0].1, other, "no churn");
        let gone = Previous {
            hosts: HashMap::from([("a".to_string(), vec!["gpu-99".to_string()])]),
            ..Previous::default()
        };
        assert_eq!(
            placed(&c, &gone)[0].1,
            natural,
            "an invalid previous host is dropped"
        );
    }

    #[test]
    fn vram_fit_moves_a_model_to_a_host_with_room() {
        let text = format!(
            "{}{BACKENDS}{}{}",
            hosts(2, "\"cuda\"", Some(24)),
            model(
                "big",
                8080,
                "size_gib = 20\n host_policy {\n replicas = 1\n }"
            ),
            model(
                "mid",
                8081,
                "size_gib = 10\n host_policy {\n replicas = 2\n }"
            ),
        );
        let err = rejected(&text);
        assert_eq!(err[0].code, Code::VramExceeded, "{err:?}");
        assert!(
            err[0].message.contains("30 GiB needed of 24 GiB"),
            "{}",
            err[0].message
        );

        let text = format!(
            "{}{BACKENDS}{}{}",
            hosts(2, "\"cuda\"", Some(24)),
            model("big", 8080, "size_gib = 20"),
            model("mid", 8081, "size_gib = 10"),
        );
        let p = placed(&config(&text), &Previous::default());
        assert_ne!(
            p[0].1, p[1].1,
            "the two do not fit one 24 GiB host together: {p:?}"
        );
    }

    #[test]
    fn group_members_share_a_port_and_count_their_largest_vram() {
        let text = format!(
            "{}{BACKENDS}{}{}",
            hosts(1, "\"cuda\"", Some(24)),
            model(
                "qwen",
                8080,
                "size_gib = 18\n group = \"chat\"\n default = true"
            ),
            model("llama", 8080, "size_gib = 20\n group = \"chat\""),
        );
        let all = place(&config(&text), &Previous::default()).unwrap();
        assert_eq!(all.len(), 2);
        let active: Vec<_> = all
            .iter()
            .filter(|p| p.active)
            .map(|p| p.model.as_str())
            .collect();
        assert_eq!(active, ["qwen"]);
        let selected = Previous {
            selections: HashMap::from([(
                ("chat".to_string(), "gpu-1".to_string()),
                "llama".to_string(),
            )]),
            ..Previous::default()
        };
        let all = place(&config(&text), &selected).unwrap();
        let active: Vec<_> = all
            .iter()
            .filter(|p| p.active)
            .map(|p| p.model.as_str())
            .collect();
        assert_eq!(active, ["llama"]);
    }

    #[test]
    fn port_clash_on_a_pinned_host_names_both_models() {
        let text = format!(
            "{}{BACKENDS}{}{}",
            hosts(2, "\"cpu\"", None),
            model("a", 9000, "host_policy {\n hosts = [\"gpu-1\"]\n }"),
            model("b", 9000, "host_policy {\n hosts = [\"gpu-1\"]\n }"),
        );
        let err = rejected(&text);
        assert_eq!(err.len(), 1);
        assert_eq!(err[0].code, Code::PortConflict);
        assert!(
            err[0]
                .message
                .contains("`a` and `b` both use port 9000 on host `gpu-1`"),
            "{}",
            err[0].message
        );
        assert_eq!(err[0].secondary.len(), 1);
    }

    #[test]
    fn disabled_models_and_hosts_are_not_placed() {
        let text = format!(
            "{}host \"off\" {{\n enabled = false\n connection {{\n transport = \"local\"\n }}\n capabilities {{\n backends = [\"cpu\"]\n }}\n}}\n{BACKENDS}{}{}",
            hosts(1, "\"cpu\"", None),
            model("a", 8080, "host_policy {\n replicas = 1\n }"),
            model("b", 8081, "enabled = false"),
        );
        let p = placed(&config(&text), &Previous::default());
        assert_eq!(p, [("a".into(), "gpu-1".into(), "cpu".into())]);
    }
}
