//! The `berth validate --json` document: every finding of every file, with counts.

use schemars::JsonSchema;
use serde::Serialize;

use crate::config::{self, Findings, Sources};

/// The result of `berth validate`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Report {
    /// No finding is an error.
    pub valid: bool,
    pub error_count: usize,
    pub warning_count: usize,
    pub findings: Vec<Finding>,
}

/// Whether a finding stops the config from being used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Error,
    Warning,
}

/// One finding, located at its primary span when it has one.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Finding {
    pub level: Level,
    /// The diagnostic code, like `berth::config::unknown_key`.
    pub code: String,
    pub message: String,
    pub file: Option<String>,
    /// 1-based line of the primary span.
    pub line: Option<usize>,
    /// 1-based column of the primary span.
    pub column: Option<usize>,
    pub label: Option<String>,
    pub help: Option<String>,
}

impl Report {
    /// The report on `findings`, located in `sources`.
    pub fn new(findings: &Findings, sources: &Sources) -> Report {
        let errors = findings.error_count();
        Report {
            valid: errors == 0,
            error_count: errors,
            warning_count: findings.len() - errors,
            findings: findings
                .iter()
                .map(|f| Finding::from(f.to_json(sources)))
                .collect(),
        }
    }
}

impl From<config::FindingJson> for Finding {
    fn from(f: config::FindingJson) -> Finding {
        Finding {
            level: match f.level {
                config::Level::Error => Level::Error,
                config::Level::Warning => Level::Warning,
            },
            code: f.code.to_string(),
            message: f.message,
            file: f.file,
            line: f.line,
            column: f.column,
            label: f.label,
            help: f.help,
        }
    }
}
