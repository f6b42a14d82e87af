//! Config findings: what is wrong, where (a span), and how to fix it. Owns the diagnostic codes,
//! their miette rendering and their JSON form; it decides nothing about what is wrong.

use std::fmt;

use miette::{Diagnostic, LabeledSpan, NamedSource, Severity};
use serde::Serialize;

use super::source::{Sources, Span};

/// The kind of a config finding; its code is `berth::config::<name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    NoConfig,
    Unreadable,
    Syntax,
    UnknownBlock,
    UnknownKey,
    DuplicateBlock,
    MissingField,
    WrongType,
    InvalidValue,
    InvalidId,
    DuplicateId,
    MissingLabel,
    UndefinedVariable,
    MissingVariableValue,
    UndefinedHost,
    UndefinedBackend,
    UndefinedModel,
    Evaluation,
    NoMatchingHost,
    UnknownTemplateVar,
    PortConflict,
    GroupDefault,
    DependencyCycle,
    VramExceeded,
    Unplaceable,
    /// A sensitive value where berth would have to show it (names, paths, numbers, labels).
    SensitiveNotAllowed,
    /// A file, the config, or one collection over its size limit.
    TooLarge,
    /// The config defines no host: nothing can be deployed.
    NoHosts,
}

impl Code {
    /// The code as shown to users, e.g. `berth::config::unknown_key`.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::NoConfig => "berth::config::no_config",
            Code::Unreadable => "berth::config::unreadable",
            Code::Syntax => "berth::config::syntax",
            Code::UnknownBlock => "berth::config::unknown_block",
            Code::UnknownKey => "berth::config::unknown_key",
            Code::DuplicateBlock => "berth::config::duplicate_block",
            Code::MissingField => "berth::config::missing_field",
            Code::WrongType => "berth::config::wrong_type",
            Code::InvalidValue => "berth::config::invalid_value",
            Code::InvalidId => "berth::config::invalid_id",
            Code::DuplicateId => "berth::config::duplicate_id",
            Code::MissingLabel => "berth::config::missing_label",
            Code::UndefinedVariable => "berth::config::undefined_variable",
            Code::MissingVariableValue => "berth::config::missing_variable_value",
            Code::UndefinedHost => "berth::config::undefined_host",
            Code::UndefinedBackend => "berth::config::undefined_backend",
            Code::UndefinedModel => "berth::config::undefined_model",
            Code::Evaluation => "berth::config::evaluation",
            Code::NoMatchingHost => "berth::config::no_matching_host",
            Code::UnknownTemplateVar => "berth::config::unknown_template_var",
            Code::PortConflict => "berth::config::port_conflict",
            Code::GroupDefault => "berth::config::group_default",
            Code::DependencyCycle => "berth::config::dependency_cycle",
            Code::VramExceeded => "berth::config::vram_exceeded",
            Code::Unplaceable => "berth::config::unplaceable",
            Code::SensitiveNotAllowed => "berth::config::sensitive_not_allowed",
            Code::TooLarge => "berth::config::too_large",
            Code::NoHosts => "berth::config::no_hosts",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error or warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Error,
    Warning,
}

/// One thing wrong with the config.
#[derive(Debug, Clone)]
pub struct Finding {
    pub code: Code,
    pub level: Level,
    pub message: String,
    /// Where it is, with a short label; `None` only for findings about the directory itself.
    pub primary: Option<(Span, String)>,
    /// Other places involved (the first definition of a duplicate, the other model on a port).
    pub secondary: Vec<(Span, String)>,
    pub help: Option<String>,
}

impl Finding {
    /// An error at `span`.
    pub fn error(
        code: Code,
        span: Span,
        label: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Finding {
            code,
            level: Level::Error,
            message: message.into(),
            primary: Some((span, label.into())),
            secondary: Vec::new(),
            help: None,
        }
    }

    /// An error with no location in a file.
    pub fn unlocated(code: Code, message: impl Into<String>) -> Self {
        Finding {
            code,
            level: Level::Error,
            message: message.into(),
            primary: None,
            secondary: Vec::new(),
            help: None,
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// A "did you mean" help when `word` is close to one of `candidates`, else `otherwise`.
    pub fn suggest<'c>(
        self,
        word: &str,
        candidates: impl IntoIterator<Item = &'c str>,
        otherwise: impl Into<String>,
    ) -> Self {
        match did_you_mean(word, candidates) {
            Some(s) => self.with_help(format!("did you mean `{s}`?")),
            None => self.with_help(otherwise),
        }
    }

    pub fn with_secondary(mut self, span: Span, label: impl Into<String>) -> Self {
        self.secondary.push((span, label.into()));
        self
    }

    pub fn warning(mut self) -> Self {
        self.level = Level::Warning;
        self
    }

    pub fn is_error(&self) -> bool {
        self.level == Level::Error
    }

    /// Binds the finding to its source text so miette can render it. Secondary places near the
    /// primary one share its snippet; others (another file, or far away) get a snippet each.
    pub fn render<'a>(&'a self, sources: &'a Sources) -> RenderedFinding<'a> {
        const NEAR_LINES: usize = 3;
        let primary = self
            .primary
            .as_ref()
            .map(|(span, _)| (span.file, sources.line_col(span.file, span.start).0));
        let (near, far): (Vec<_>, Vec<_>) = self.secondary.iter().partition(|(span, _)| {
            primary.is_some_and(|(file, line)| {
                span.file == file
                    && sources.line_col(span.file, span.start).0.abs_diff(line) <= NEAR_LINES
            })
        });
        let related = far
            .into_iter()
            .map(|(span, label)| Related {
                source: sources.named_source(span.file),
                span: *span,
                label: label.clone(),
            })
            .collect();
        RenderedFinding {
            finding: self,
            source: primary.map(|(f, _)| sources.named_source(f)),
            near: near.into_iter().cloned().collect(),
            related,
        }
    }

    /// The `--json` form: file, line and column of the primary span.
    pub fn to_json(&self, sources: &Sources) -> FindingJson {
        let (file, line, column) = match &self.primary {
            Some((span, _)) => {
                let (line, column) = sources.line_col(span.file, span.start);
                (
                    Some(sources.get(span.file).name.clone()),
                    Some(line),
                    Some(column),
                )
            }
            None => (None, None, None),
        };
        FindingJson {
            level: self.level,
            code: self.code.as_str(),
            message: self.message.clone(),
            file,
            line,
            column,
            label: self.primary.as_ref().map(|(_, label)| label.clone()),
            help: self.help.clone(),
        }
    }
}

/// One finding as `berth validate --json` prints it.
#[derive(Debug, Serialize)]
pub struct FindingJson {
    pub level: Level,
    pub code: &'static str,
    pub message: String,
    pub file: Option<String>,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub label: Option<String>,
    pub help: Option<String>,
}

/// A finding with its source attached, as a miette diagnostic.
pub struct RenderedFinding<'a> {
    finding: &'a Finding,
    source: Option<NamedSource<std::sync::Arc<String>>>,
    near: Vec<(Span, String)>,
    related: Vec<Related>,
}

impl fmt::Debug for RenderedFinding<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.finding, f)
    }
}

impl fmt::Display for RenderedFinding<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.finding.message)
    }
}

impl std::error::Error for RenderedFinding<'_> {}

impl Diagnostic for RenderedFinding<'_> {
    fn code<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        Some(Box::new(self.finding.code.as_str()))
    }

    fn severity(&self) -> Option<Severity> {
        Some(match self.finding.level {
            Level::Error => Severity::Error,
            Level::Warning => Severity::Warning,
        })
    }

    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        self.finding
            .help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.source.as_ref().map(|s| s as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let (primary, label) = self.finding.primary.as_ref()?;
        let mut labels = vec![LabeledSpan::new_primary_with_span(
            Some(label.clone()),
            primary.source_span(),
        )];
        labels.extend(self.near.iter().map(|(span, label)| {
            LabeledSpan::new_with_span(Some(label.clone()), span.source_span())
        }));
        Some(Box::new(labels.into_iter()))
    }

    fn related<'b>(&'b self) -> Option<Box<dyn Iterator<Item = &'b dyn Diagnostic> + 'b>> {
        if self.related.is_empty() {
            return None;
        }
        Some(Box::new(self.related.iter().map(|r| r as &dyn Diagnostic)))
    }
}

/// A place in another file that a finding refers to.
struct Related {
    source: NamedSource<std::sync::Arc<String>>,
    span: Span,
    label: String,
}

impl fmt::Debug for Related {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label)
    }
}

impl fmt::Display for Related {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label)
    }
}

impl std::error::Error for Related {}

impl Diagnostic for Related {
    fn severity(&self) -> Option<Severity> {
        Some(Severity::Advice)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.source)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        Some(Box::new(std::iter::once(LabeledSpan::new_with_span(
            Some(self.label.clone()),
            self.span.source_span(),
        ))))
    }
}

/// Every finding of one load, in file and position order.
#[derive(Debug, Clone, Default)]
pub struct Findings {
    items: Vec<Finding>,
}

impl Findings {
    pub fn push(&mut self, finding: Finding) {
        self.items.push(finding);
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(Finding::is_error)
    }

    pub fn error_count(&self) -> usize {
        self.items.iter().filter(|f| f.is_error()).count()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Finding> {
        self.items.iter()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Orders findings by file and position, so output follows the files.
    pub fn sort(&mut self) {
        self.items.sort_by_key(|f| {
            f.primary
                .as_ref()
                .map(|(span, _)| (span.file, span.start, span.end))
        });
    }
}

impl IntoIterator for Findings {
    type Item = Finding;
    type IntoIter = std::vec::IntoIter<Finding>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter()
    }
}

/// The closest of `candidates` to `word`, if close enough to be a likely misspelling.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_words_only() {
        let keys = ["runtime", "host_filters", "verify_cmd"];
        assert_eq!(did_you_mean("runtme", keys), Some("runtime"));
        assert_eq!(did_you_mean("verify_command", keys), Some("verify_cmd"));
        assert_eq!(did_you_mean("zzz", keys), None);
    }
}
