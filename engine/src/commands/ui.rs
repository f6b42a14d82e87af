//! Terminal output: whether to use colour and graphics, rendering diagnostics, and small
//! tables. Commands print through this; the engine below never prints.

use std::io::IsTerminal;

use miette::{Diagnostic, GraphicalReportHandler, GraphicalTheme, NarratableReportHandler};

use crate::config::{Findings, Sources};
use crate::paint::{Paint, Tone};

/// How output should look on this terminal.
#[derive(Debug, Clone, Copy)]
pub struct Ui {
    pub color: bool,
    /// Box-drawing graphics and source snippets (off with `NO_GRAPHICS=1`: narrated form).
    pub graphics: bool,
    pub stdout_tty: bool,
    pub stderr_tty: bool,
}

impl Ui {
    /// Reads `NO_COLOR`, `NO_GRAPHICS` and whether stdout/stderr are terminals.
    pub fn from_env() -> Self {
        let stderr_tty = std::io::stderr().is_terminal();
        let no_graphics =
            std::env::var_os("NO_GRAPHICS").is_some_and(|v| !v.is_empty() && v != "0");
        Ui {
            color: Paint::stderr().color,
            graphics: !no_graphics,
            stdout_tty: std::io::stdout().is_terminal(),
            stderr_tty,
        }
    }

    /// Prints an error: config findings one by one, anything else as one diagnostic.
    pub fn report(&self, err: &crate::error::Error) {
        if let crate::error::Error::InvalidConfig(invalid) = err {
            self.print_findings(&invalid.findings, &invalid.sources);
        }
        self.eprint(err);
    }

    /// Renders one diagnostic to a string.
    pub fn render(&self, diagnostic: &dyn Diagnostic) -> String {
        let mut out = String::new();
        if self.graphics {
            let theme = if self.color {
                GraphicalTheme::unicode()
            } else if self.stderr_tty {
                GraphicalTheme::unicode_nocolor()
            } else {
                GraphicalTheme {
                    characters: miette::ThemeCharacters::ascii(),
                    styles: miette::ThemeStyles::none(),
                }
            };
            let _ = GraphicalReportHandler::new_themed(theme)
                .with_width(100)
                .render_report(&mut out, diagnostic);
        } else {
            let _ = NarratableReportHandler::new().render_report(&mut out, diagnostic);
        }
        out
    }

    /// Prints config findings to stderr, the first [`Ui::MAX_FINDINGS_SHOWN`] of them in full.
    pub fn print_findings(&self, findings: &Findings, sources: &Sources) {
        for finding in findings.iter().take(Self::MAX_FINDINGS_SHOWN) {
            errln!("{}", self.render(&finding.render(sources)));
        }
        if let Some(rest) = findings.len().checked_sub(Self::MAX_FINDINGS_SHOWN)
            && rest > 0
        {
            errln!(
                "... and {rest} more finding{} not shown (`berth validate --json` lists them all)\n",
                if rest == 1 { "" } else { "s" }
            );
        }
    }

    /// Findings shown in full: each snippet is drawn from its file's text, so thousands of
    /// them (one per item of a long list) would take minutes and bury the first ones.
    pub const MAX_FINDINGS_SHOWN: usize = 200;

    /// Prints a diagnostic to stderr.
    pub fn eprint(&self, diagnostic: &dyn Diagnostic) {
        err!("{}", self.render(diagnostic));
    }

    /// `text` in bold when standard output takes colour.
    pub fn bold(&self, text: &str) -> String {
        self.paint(text, Tone::Strong)
    }

    /// `text` in green (good news) when standard output takes colour.
    pub fn green(&self, text: &str) -> String {
        self.paint(text, Tone::Added)
    }

    /// `text` in yellow (a warning) when standard output takes colour.
    pub fn yellow(&self, text: &str) -> String {
        self.paint(text, Tone::Changed)
    }

    /// `text` in red (a failure) when standard output takes colour.
    pub fn red(&self, text: &str) -> String {
        self.paint(text, Tone::Removed)
    }

    /// `text` dimmed when standard output takes colour.
    pub fn dim(&self, text: &str) -> String {
        self.paint(text, Tone::Faint)
    }

    fn paint(&self, text: &str, tone: Tone) -> String {
        Paint {
            color: self.color && self.stdout_tty,
        }
        .paint(text, tone)
    }
}

/// Left-aligned columns padded to their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(cell);
                s.push_str(&" ".repeat(widths[i] - cell.chars().count() + 2));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}
