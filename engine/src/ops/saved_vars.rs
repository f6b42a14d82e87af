//! The variables a saved plan carries: the values of the non-sensitive variables that were set
//! when it was made (so `apply FILE` needs no flags), and for each sensitive one only its name
//! and an HMAC of its value keyed per state (so `apply FILE` can ask for exactly those and check
//! that they are the ones the plan was made with).

use std::collections::BTreeMap;
use std::path::Path;

use berth_state::PlanFile;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::{Config, VarInputs, VarOrigin};
use crate::error::{Error, Result};

/// Fills `file`'s variables from the config's, keyed with the state's `key`.
pub(crate) fn record(file: &mut PlanFile, config: &Config, key: &[u8]) {
    for v in &config.variables {
        let Some(value) = &v.value else { continue };
        if matches!(v.origin, VarOrigin::Default | VarOrigin::Unset) {
            continue;
        }
        let name = v.name.value.clone();
        if v.sensitive {
            file.sensitive.insert(name.clone(), mac(key, &name, value));
        } else {
            file.variables.insert(name, as_text(value));
        }
    }
}

/// The inputs to apply `file` with: its saved values, overridden by `given` (a different value
/// then fails the plan's config check, as it should).
pub(crate) fn inputs(file: &PlanFile, given: &VarInputs) -> VarInputs {
    let mut cli: Vec<(String, String)> = file
        .variables
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    cli.extend(given.cli.iter().cloned());
    VarInputs {
        cli,
        files: given.files.clone(),
        env: given.env.clone(),
    }
}

/// The sensitive variables `file` was made with that `given` does not set.
pub fn missing_secrets(file: &PlanFile, given: &VarInputs) -> Vec<String> {
    let in_files: Vec<String> = given
        .files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .filter_map(|text| hcl_edit::parser::parse_body(&text).ok())
        .flat_map(|body| {
            body.attributes()
                .map(|a| a.key.as_str().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    file.sensitive
        .keys()
        .filter(|name| {
            !given.cli.iter().any(|(k, _)| k == *name)
                && !given.env.iter().any(|(k, _)| k == *name)
                && !in_files.contains(name)
        })
        .cloned()
        .collect()
}

/// Refuses the apply unless every sensitive variable of `file` is set in `config`, to the value
/// the plan was made with.
pub(crate) fn check_secrets(
    file: &PlanFile,
    path: &Path,
    config: &Config,
    key: &[u8],
) -> Result<()> {
    let values: BTreeMap<&str, &crate::config::Variable> = config
        .variables
        .iter()
        .map(|v| (v.name.value.as_str(), v))
        .collect();
    let mut missing = Vec::new();
    let mut different = Vec::new();
    for (name, expected) in &file.sensitive {
        match values.get(name.as_str()).and_then(|v| v.value.as_ref()) {
            None => missing.push(name.as_str()),
            Some(value) if mac(key, name, value) != *expected => different.push(name.as_str()),
            Some(_) => {}
        }
    }
    if !missing.is_empty() {
        return Err(secrets_needed(path, &missing));
    }
    if !different.is_empty() {
        return Err(Error::Usage {
            message: format!(
                "the value given for the sensitive variable{} {} is not the one the plan {} was made with",
                if different.len() == 1 { "" } else { "s" },
                quoted(&different),
                path.display()
            ),
            help: "give the same value, or make a new plan with `berth plan --out FILE`".into(),
        });
    }
    Ok(())
}

/// The error of a saved plan applied without the sensitive variables it was made with.
pub fn secrets_needed(path: &Path, names: &[&str]) -> Error {
    let example = names
        .iter()
        .map(|n| format!("--var {n}=..."))
        .collect::<Vec<_>>()
        .join(" ");
    Error::Usage {
        message: format!(
            "the plan {} was made with the sensitive variable{} {}, whose value{} plans never store",
            path.display(),
            if names.len() == 1 { "" } else { "s" },
            quoted(names),
            if names.len() == 1 { "" } else { "s" },
        ),
        help: format!(
            "give {} again: `berth apply {} {example}`, or set BERTH_VAR_NAME, or run apply on a terminal to be asked",
            if names.len() == 1 { "it" } else { "them" },
            path.display()
        ),
    }
}

fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn mac(key: &[u8], name: &str, value: &hcl::Value) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(name.as_bytes());
    mac.update(&[0]);
    mac.update(value.to_string().as_bytes());
    format!("hmac-sha256:{}", hex::encode(mac.finalize().into_bytes()))
}

/// A value as the text `--var` takes for it: strings as they are, anything else as HCL.
fn as_text(value: &hcl::Value) -> String {
    match value {
        hcl::Value::String(s) => s.clone(),
        other => serde_json::to_string(other).unwrap_or_else(|_| other.to_string()),
    }
}
