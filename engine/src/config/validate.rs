//! Cross-block checks of a decoded config: references between blocks, host patterns that match
//! nothing, group defaults, `depends_on` cycles, and whether every model can be placed. Each
//! finding points at the span that has to change. It never reads files or state.

use berth_state::Target;
use std::collections::{BTreeMap, HashMap, HashSet};

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};

use super::diagnostic::{Code, Finding, Findings, did_you_mean};
use super::limits;
use super::schema::Config;
use super::source::{Span, Spanned};
use crate::graph::cycle_path;
use crate::placement::{HostMatcher, Placement};

/// The ids of every host, backend and model block, including blocks that failed to decode, so
/// that a reference to a broken block is not reported as undefined as well.
#[derive(Debug, Default)]
pub struct Declared {
    pub hosts: HashSet<String>,
    pub backends: HashSet<String>,
    pub models: HashSet<String>,
}

/// Runs every cross-block check, adding findings. Whether models fit (ports, VRAM, replicas)
/// is placement's finding, made once the config is otherwise clean (`Workspace::open`).
pub fn check(config: &Config, declared: &Declared, findings: &mut Findings) {
    // Said of a config that is otherwise fine: with errors (a host block without an id, say)
    // the errors come first.
    if declared.hosts.is_empty() && !findings.has_errors() {
        findings.push(no_hosts().warning());
    }
    check_backend_refs(config, declared, findings);
    let matcher = HostMatcher::new(config);
    check_host_patterns(config, declared, &matcher, findings);
    check_model_refs(config, declared, findings);
    check_groups(config, findings);
    check_cycles(config, findings);
}

/// The finding of a config without a single `host` block.
fn no_hosts() -> Finding {
    Finding::unlocated(
        Code::NoHosts,
        "the config defines no hosts: berth has nowhere to run anything",
    )
    .with_help(
        "add a `host \"NAME\" { connection { transport = \"local\" } capabilities { backends = [\"cpu\"] } }` block (see docs/language.md), or pass -C DIR for another config",
    )
}

/// How many undefined references of one check get a "did you mean" among every known id: each
/// suggestion compares the reference with all ids, so a list of thousands of undefined ones
/// would cost the product of the two.
const SUGGESTIONS: usize = 100;

fn undefined(
    code: Code,
    kind: &str,
    id: &Spanned<String>,
    known: &[&str],
    suggestions_left: &mut usize,
) -> Finding {
    let f = Finding::error(
        code,
        id.span,
        format!("no such {kind}"),
        format!("{kind} `{}` is not defined", id.value),
    );
    let suggestion = if *suggestions_left > 0 {
        *suggestions_left -= 1;
        did_you_mean(&id.value, known.iter().copied())
    } else {
        None
    };
    match suggestion {
        Some(s) => f.with_help(format!("did you mean `{s}`?")),
        None if known.is_empty() => f.with_help(format!(
            "define it with a `{kind} \"{}\" {{ ... }}` block",
            id.value
        )),
        None => f.with_help(format!("defined {kind}s: {}", list(known))),
    }
}

fn list(items: &[&str]) -> String {
    const MAX: usize = 8;
    let mut s = items
        .iter()
        .take(MAX)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > MAX {
        s.push_str(&format!(" and {} more", items.len() - MAX));
    }
    s
}

fn check_backend_refs(config: &Config, declared: &Declared, findings: &mut Findings) {
    let known: Vec<&str> = config
        .backends
        .iter()
        .map(|b| b.id.value.as_str())
        .collect();
    let mut suggestions = SUGGESTIONS;
    for host in &config.hosts {
        for b in &host.capabilities.backends {
            if !declared.backends.contains(&b.value) {
                findings.push(undefined(
                    Code::UndefinedBackend,
                    "backend",
                    b,
                    &known,
                    &mut suggestions,
                ));
            }
        }
    }
    for model in &config.models {
        for b in &model.backend_policy.prefer {
            if !declared.backends.contains(&b.value) {
                findings.push(undefined(
                    Code::UndefinedBackend,
                    "backend",
                    b,
                    &known,
                    &mut suggestions,
                ));
            }
        }
    }
}

fn check_host_patterns(
    config: &Config,
    declared: &Declared,
    matcher: &HostMatcher,
    findings: &mut Findings,
) {
    let known: Vec<&str> = config.hosts.iter().map(|h| h.id.value.as_str()).collect();
    let mut suggestions = SUGGESTIONS;
    let mut check = |pattern: &Spanned<String>, owner: &str, findings: &mut Findings| match matcher
        .matches(&pattern.value)
    {
        Err(why) => findings.push(
            Finding::error(
                Code::InvalidValue,
                pattern.span,
                "bad pattern",
                format!("`{}` is not a valid host pattern: {why}", pattern.value),
            )
            .with_help("use a host id or a glob such as \"gpu-*\""),
        ),
        Ok(hosts) if hosts.is_empty() => {
            if !HostMatcher::is_glob(&pattern.value)
                && declared.hosts.contains(&pattern.value)
                && config.host(&pattern.value).is_none()
            {
                // The host block itself is broken and already reported.
            } else if HostMatcher::is_glob(&pattern.value) || config.host(&pattern.value).is_some()
            {
                let why = if config.host(&pattern.value).is_some() {
                    "that host is disabled"
                } else {
                    "no host id matches it"
                };
                findings.push(
                    Finding::error(
                        Code::NoMatchingHost,
                        pattern.span,
                        "matches no host",
                        format!(
                            "{owner}: `{}` matches no enabled host ({why})",
                            pattern.value
                        ),
                    )
                    .with_help(format!("hosts: {}", list(&known))),
                );
            } else {
                findings.push(undefined(
                    Code::UndefinedHost,
                    "host",
                    pattern,
                    &known,
                    &mut suggestions,
                ));
            }
        }
        Ok(_) => {}
    };
    for backend in &config.backends {
        if let Some(filters) = &backend.host_filters {
            for p in &filters.value {
                check(
                    p,
                    &format!("host_filters of backend `{}`", backend.id.value),
                    findings,
                );
            }
        }
    }
    for model in &config.models {
        let owner = format!("host_policy of model `{}`", model.id.value);
        if let Some(hosts) = &model.host_policy.hosts {
            for p in &hosts.value {
                check(p, &owner, findings);
            }
        }
        if let Some(labels) = &model.host_policy.labels
            && matcher.with_labels(&labels.value).is_empty()
        {
            let wanted = labels
                .value
                .iter()
                .map(|(k, v)| format!("{k} = \"{v}\""))
                .collect::<Vec<_>>()
                .join(", ");
            findings.push(
                Finding::error(
                    Code::NoMatchingHost,
                    labels.span,
                    "matches no host",
                    format!("{owner}: no enabled host has the labels {{ {wanted} }}"),
                )
                .with_help("check the labels of your hosts, or remove the label filter"),
            );
        }
    }
}

fn check_model_refs(config: &Config, declared: &Declared, findings: &mut Findings) {
    let known: Vec<&str> = config.models.iter().map(|m| m.id.value.as_str()).collect();
    let mut suggestions = SUGGESTIONS;
    for model in &config.models {
        for dep in &model.depends_on {
            if dep.value == model.id.value {
                findings.push(
                    Finding::error(
                        Code::DependencyCycle,
                        dep.span,
                        "depends on itself",
                        format!("model `{}` depends on itself", dep.value),
                    )
                    .with_help("remove it from its own depends_on"),
                );
            } else if !declared.models.contains(&dep.value) {
                findings.push(undefined(
                    Code::UndefinedModel,
                    "model",
                    dep,
                    &known,
                    &mut suggestions,
                ));
            }
        }
    }
}

fn check_groups(config: &Config, findings: &mut Findings) {
    let mut groups: BTreeMap<&str, Vec<&super::schema::Model>> = BTreeMap::new();
    for model in config.models.iter().filter(|m| m.enabled) {
        if let Some(g) = &model.group {
            groups.entry(&g.value).or_default().push(model);
        }
    }
    for (group, members) in groups {
        let defaults: Vec<_> = members
            .iter()
            .filter(|m| m.default.as_ref().is_some_and(|d| d.value))
            .collect();
        let names = members
            .iter()
            .map(|m| m.id.value.as_str())
            .collect::<Vec<_>>();
        match defaults.as_slice() {
            [] => {
                let first = members[0];
                let span = first.group.as_ref().map_or(first.id.span, |g| g.span);
                findings.push(
                    Finding::error(
                        Code::GroupDefault,
                        span,
                        "group without a default",
                        format!("group `{group}` has no default member"),
                    )
                    .with_help(format!(
                        "set `default = true` on exactly one of: {}",
                        list(&names)
                    )),
                );
            }
            [_] => {}
            [first, rest @ ..] => {
                for extra in rest {
                    let span = extra.default.as_ref().map_or(extra.id.span, |d| d.span);
                    let first_span = first.default.as_ref().map_or(first.id.span, |d| d.span);
                    findings.push(
                        Finding::error(
                            Code::GroupDefault,
                            span,
                            "second default",
                            format!(
                                "group `{group}` has several defaults: `{}` and `{}`",
                                first.id.value, extra.id.value
                            ),
                        )
                        .with_secondary(first_span, "first default")
                        .with_help("keep `default = true` on one member only"),
                    );
                }
            }
        }
    }
}

/// Reports every `depends_on` cycle with its whole path.
fn check_cycles(config: &Config, findings: &mut Findings) {
    let mut graph: DiGraph<usize, Span> = DiGraph::new();
    let index: HashMap<&str, NodeIndex> = config
        .models
        .iter()
        .enumerate()
        .map(|(i, m)| (m.id.value.as_str(), graph.add_node(i)))
        .collect();
    for model in &config.models {
        for dep in &model.depends_on {
            if let Some(&to) = index.get(dep.value.as_str())
                && dep.value != model.id.value
            {
                graph.add_edge(index[model.id.value.as_str()], to, dep.span);
            }
        }
    }
    for component in tarjan_scc(&graph) {
        if component.len() < 2 {
            continue;
        }
        let path = cycle_path(&graph, &component, |n| graph[n]);
        let names: Vec<String> = path
            .iter()
            .map(|n| Target::Model(config.models[graph[*n]].id.value.clone()).to_string())
            .collect();
        let first_edge = graph
            .find_edge(path[0], path[1])
            .expect("edge on the cycle path");
        let mut f = Finding::error(
            Code::DependencyCycle,
            graph[first_edge],
            "starts the cycle",
            format!("dependency cycle: {}", names.join(" -> ")),
        )
        .with_help("remove one of these depends_on entries");
        for pair in path.windows(2).skip(1) {
            if let Some(e) = graph.find_edge(pair[0], pair[1]) {
                f = f.with_secondary(
                    graph[e],
                    format!(
                        "{} depends on {}",
                        Target::Model(config.models[graph[pair[0]]].id.value.clone()),
                        Target::Model(config.models[graph[pair[1]]].id.value.clone())
                    ),
                );
            }
        }
        findings.push(f);
    }
}

/// Warnings for start commands that render longer than [`limits::MAX_COMMAND_BYTES`] on one of
/// their placements: the OS refuses an argument that long (E2BIG), so such a start would fail
/// on every host. Only models whose command could come near the bound are rendered.
pub fn long_start_commands(config: &Config, placements: &[Placement]) -> Vec<Finding> {
    // Shell quoting at most quadruples a value (`'` becomes `'\''`) and adds two quotes.
    let quoted = |len: usize| len * 4 + 2;
    let longest_run_dir = config.hosts.iter().map(|h| h.run_dir.len()).max();
    let longest_args = config.backends.iter().map(|b| {
        b.args
            .iter()
            .map(|a| quoted(a.value.len()) + 1)
            .sum::<usize>()
            + b.env
                .iter()
                .map(|(k, v)| k.len() + quoted(v.value.len()) + 2)
                .sum::<usize>()
    });
    let longest_value = quoted(
        [64, longest_run_dir.unwrap_or(0)]
            .into_iter()
            .max()
            .unwrap_or(0),
    )
    .max(longest_args.max().unwrap_or(0));
    let mut out = Vec::new();
    let mut warned: HashSet<&str> = HashSet::new();
    for placement in placements {
        let Some(model) = config.model(&placement.model) else {
            continue;
        };
        let template = &model.launch.start_cmd.template;
        let bound = template.raw().len()
            + template
                .placeholders()
                .map(|p| {
                    if p.name == "source" {
                        quoted(model.source.value.len())
                    } else {
                        longest_value
                    }
                })
                .sum::<usize>();
        if bound <= limits::MAX_COMMAND_BYTES || warned.contains(model.id.value.as_str()) {
            continue;
        }
        let Ok(rendered) = crate::launch::render(config, placement) else {
            continue;
        };
        let len = rendered.command.reveal().len();
        if len <= limits::MAX_COMMAND_BYTES {
            continue;
        }
        warned.insert(&model.id.value);
        out.push(
            Finding::error(
                Code::TooLarge,
                model.launch.start_cmd.span,
                format!("{} KiB once rendered", len.div_ceil(1024)),
                format!(
                    "the start command of model `{}` is {} KiB on host `{}`, over the {} KiB that pass safely as one argument: the OS would refuse it (\"argument list too long\")",
                    model.id.value,
                    len.div_ceil(1024),
                    placement.host,
                    limits::MAX_COMMAND_BYTES / 1024
                ),
            )
            .with_help("move the long part into a script or a config file on the host, and start that")
            .warning(),
        );
    }
    out
}
