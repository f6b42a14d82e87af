//! Plan renderers: text for terminals, JSON for programs, markdown for pull-request comments.
//! They read a [`Plan`] and return a string; they decide nothing.

use serde_json::Value;
use similar::{ChangeTag, TextDiff};

use super::{Action, FieldChange, Plan, ResourceChange};

/// Colours for the text renderer.
#[derive(Debug, Clone, Copy, Default)]
pub struct Style {
    pub color: bool,
}

impl Style {
    fn paint(&self, text: &str, code: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    fn for_action(&self, action: Action, text: &str) -> String {
        match action {
            Action::Create => self.paint(text, "32"),
            Action::Destroy => self.paint(text, "31"),
            Action::Replace => self.paint(text, "35"),
            Action::Update | Action::Reuse => self.paint(text, "33"),
            Action::Verify | Action::NoOp => text.to_string(),
        }
    }
}

/// Values longer than this get a word diff instead of `before -> after`.
const LONG: usize = 40;

fn show(v: &Option<Value>) -> String {
    match v {
        None | Some(Value::Null) => "(none)".into(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Object(map)) => {
            let items: Vec<String> = map
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{k}={}",
                        v.as_str().map_or_else(|| v.to_string(), str::to_string)
                    )
                })
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        Some(other) => other.to_string(),
    }
}

/// `- old` / `+ new` lines with the changed words marked (`[..]` without colour).
fn word_diff(before: &str, after: &str, style: Style) -> (String, String) {
    let diff = TextDiff::from_words(before, after);
    let (mut old, mut new) = (String::new(), String::new());
    for change in diff.iter_all_changes() {
        let text = change.value();
        match change.tag() {
            ChangeTag::Equal => {
                old.push_str(text);
                new.push_str(text);
            }
            ChangeTag::Delete => old.push_str(&if style.color {
                style.paint(text, "1;31")
            } else {
                format!("[{text}]")
            }),
            ChangeTag::Insert => new.push_str(&if style.color {
                style.paint(text, "1;32")
            } else {
                format!("[{text}]")
            }),
        }
    }
    (old, new)
}

fn field_lines(
    change: &FieldChange,
    style: Style,
    indent: &str,
    new_resource: bool,
) -> Vec<String> {
    let (before, after) = (show(&change.before), show(&change.after));
    match (&change.before, &change.after) {
        (None, Some(_)) if new_resource || change.field == "live" => {
            vec![format!("{indent}{:<18} {after}", change.field)]
        }
        (Some(_), None) => vec![format!(
            "{indent}{:<18} {}",
            change.field,
            style.paint(&before, "2")
        )],
        _ if before.len() > LONG || after.len() > LONG => {
            let (old, new) = word_diff(&before, &after, style);
            vec![
                format!("{indent}{}:", change.field),
                format!("{indent}  {} {old}", style.paint("-", "31")),
                format!("{indent}  {} {new}", style.paint("+", "32")),
            ]
        }
        _ => vec![format!("{indent}{:<18} {before} -> {after}", change.field)],
    }
}

fn resource_text(r: &ResourceChange, style: Style) -> String {
    let mut out = format!(
        "  {} {}\n      {}: {}\n",
        style.for_action(r.action, &format!("{:>3}", r.action.symbol())),
        style.for_action(r.action, &r.address),
        r.action.as_str(),
        r.reason
    );
    for c in &r.changes {
        for line in field_lines(
            c,
            style,
            "      ",
            r.action == Action::Create || r.cause == super::Cause::Found,
        ) {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

/// The plan for a terminal.
pub fn text(plan: &Plan, style: Style) -> String {
    let mut out = String::new();
    for w in &plan.warnings {
        out.push_str(&format!("{} {w}\n", style.paint("warning:", "33")));
    }
    if !plan.warnings.is_empty() {
        out.push('\n');
    }
    if !plan.drift.is_empty() {
        out.push_str("Drift: the hosts no longer match what was applied\n");
        for d in &plan.drift {
            out.push_str(&format!(
                "  {} {}: {}\n",
                style.paint("!", "33"),
                d.address,
                d.what
            ));
        }
        out.push('\n');
    }
    let changes: Vec<&ResourceChange> = plan.changes().collect();
    if changes.is_empty() && plan.operation == super::Operation::Destroy {
        out.push_str("Nothing to destroy: berth manages nothing on these hosts.\n");
        return out;
    }
    if changes.is_empty() && !plan.unobserved_hosts.is_empty() {
        out.push_str(&format!(
            "No changes found, but {} could not be observed (see the warnings above): what runs there is unknown.\n",
            plan.unobserved_hosts.join(", ")
        ));
        return out;
    }
    if changes.is_empty() {
        out.push_str(&if plan.refreshed {
            "No changes. The hosts match the config.\n".to_string()
        } else {
            "No changes. The state matches the config (hosts were not observed: --refresh=false).\n"
                .to_string()
        });
        return out;
    }
    out.push_str("berth will:\n\n");
    for r in &changes {
        out.push_str(&resource_text(r, style));
        out.push('\n');
    }
    let verifies: Vec<&str> = plan
        .resources
        .iter()
        .filter(|r| r.action == Action::Verify)
        .map(|r| r.address.as_str())
        .collect();
    if !verifies.is_empty() {
        out.push_str(&format!(
            "Checks first: verify_cmd of {}\n\n",
            verifies.join(", ")
        ));
    }
    out.push_str(&format!(
        "Plan: {}.\n",
        style.paint(&plan.summary().to_string(), "1")
    ));
    out
}

/// The plan as pretty JSON (schema in docs/plan-json.md).
pub fn json(plan: &Plan) -> String {
    serde_json::to_string_pretty(plan).expect("a plan serialises")
}

/// The plan as a markdown comment for a pull request.
pub fn markdown(plan: &Plan) -> String {
    let mut out = format!("### berth plan: {}\n\n", plan.summary());
    if !plan.refreshed {
        out.push_str("_Hosts were not observed (`--refresh=false`): drift is not shown._\n\n");
    }
    for w in &plan.warnings {
        out.push_str(&format!("> **Warning:** {w}\n\n"));
    }
    if !plan.drift.is_empty() {
        out.push_str("**Drift** (the hosts no longer match what was applied)\n\n");
        for d in &plan.drift {
            out.push_str(&format!("- `{}`: {}\n", d.address, escape(&d.what)));
        }
        out.push('\n');
    }
    let changes: Vec<&ResourceChange> = plan.changes().collect();
    if changes.is_empty() {
        out.push_str("No changes.\n");
        return out;
    }
    out.push_str("| | Resource | Action | Reason |\n|---|---|---|---|\n");
    for r in &changes {
        out.push_str(&format!(
            "| `{}` | `{}` | {} | {} |\n",
            r.action.symbol(),
            r.address,
            r.action.as_str(),
            escape(&r.reason)
        ));
    }
    let detailed: Vec<&&ResourceChange> =
        changes.iter().filter(|r| !r.changes.is_empty()).collect();
    if !detailed.is_empty() {
        out.push_str("\n<details><summary>Changed fields</summary>\n\n```diff\n");
        for r in detailed {
            out.push_str(&format!("  {} ({})\n", r.address, r.action.as_str()));
            for c in &r.changes {
                if c.before.is_some() {
                    out.push_str(&format!("-   {}: {}\n", c.field, show(&c.before)));
                }
                if c.after.is_some() {
                    out.push_str(&format!("+   {}: {}\n", c.field, show(&c.after)));
                }
            }
        }
        out.push_str("```\n\n</details>\n");
    }
    out
}

fn escape(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}
