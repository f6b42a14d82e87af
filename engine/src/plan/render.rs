//! Plan renderers: text for terminals, JSON for programs, markdown for pull-request comments.
//! They read a [`Plan`] and return a string; they decide nothing.

use serde_json::Value;
use similar::{ChangeTag, TextDiff};

use super::{Action, FieldChange, Plan, ResourceChange};
use crate::paint::{Paint, Tone};

/// The text renderer's colour choice.
pub type Style = Paint;

fn for_action(paint: Paint, action: Action, text: &str) -> String {
    match action {
        Action::Create => paint.paint(text, Tone::Added),
        Action::Destroy => paint.paint(text, Tone::Removed),
        Action::Replace => paint.paint(text, Tone::Replaced),
        Action::Update | Action::Reuse => paint.paint(text, Tone::Changed),
        Action::Verify | Action::NoOp => text.to_string(),
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
fn word_diff(before: &str, after: &str, paint: Paint) -> (String, String) {
    let diff = TextDiff::from_words(before, after);
    let (mut old, mut new) = (String::new(), String::new());
    for change in diff.iter_all_changes() {
        let text = change.value();
        match change.tag() {
            ChangeTag::Equal => {
                old.push_str(text);
                new.push_str(text);
            }
            ChangeTag::Delete => old.push_str(&if paint.color {
                paint.paint(text, Tone::Deleted)
            } else {
                format!("[{text}]")
            }),
            ChangeTag::Insert => new.push_str(&if paint.color {
                paint.paint(text, Tone::Inserted)
            } else {
                format!("[{text}]")
            }),
        }
    }
    (old, new)
}

fn field_lines(
    change: &FieldChange,
    paint: Paint,
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
            paint.paint(&before, Tone::Faint)
        )],
        _ if before.len() > LONG || after.len() > LONG => {
            let (old, new) = word_diff(&before, &after, paint);
            vec![
                format!("{indent}{}:", change.field),
                format!("{indent}  {} {old}", paint.paint("-", Tone::Removed)),
                format!("{indent}  {} {new}", paint.paint("+", Tone::Added)),
            ]
        }
        _ => vec![format!("{indent}{:<18} {before} -> {after}", change.field)],
    }
}

fn resource_text(r: &ResourceChange, paint: Paint) -> String {
    let mut out = format!(
        "  {} {}\n      {}: {}\n",
        for_action(paint, r.action, &format!("{:>3}", r.action.symbol())),
        for_action(paint, r.action, &r.address),
        r.action.as_str(),
        r.reason
    );
    for c in &r.changes {
        for line in field_lines(
            c,
            paint,
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
pub fn text(plan: &Plan, paint: Paint) -> String {
    let mut out = String::new();
    for w in &plan.warnings {
        out.push_str(&format!("{} {w}\n", paint.paint("warning:", Tone::Changed)));
    }
    if !plan.warnings.is_empty() {
        out.push('\n');
    }
    if !plan.drift.is_empty() {
        out.push_str("Drift: the hosts no longer match what was applied\n");
        for d in &plan.drift {
            out.push_str(&format!(
                "  {} {}: {}\n",
                paint.paint("!", Tone::Changed),
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
    if changes.is_empty() && plan.left_to_others().next().is_some() {
        out.push_str(
            "No changes. Another berth state runs instances on these hosts, which berth leaves alone (see the warnings above).\n",
        );
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
        out.push_str(&resource_text(r, paint));
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
        paint.paint(&plan.summary().to_string(), Tone::Strong)
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
