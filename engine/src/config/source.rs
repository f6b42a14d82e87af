//! The text of every file the config was read from, and byte spans into it. Owns positions
//! (byte offset to line and column); knows nothing of HCL.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use miette::NamedSource;

/// Index of a file in [`Sources`].
pub type FileId = usize;

/// A byte range in one source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Span {
    pub file: FileId,
    pub start: usize,
    pub end: usize,
}

impl Span {
    /// A span over `range` of `file`.
    pub fn new(file: FileId, range: std::ops::Range<usize>) -> Self {
        Span {
            file,
            start: range.start,
            end: range.end,
        }
    }

    /// The miette form of this span.
    pub fn source_span(&self) -> miette::SourceSpan {
        (self.start, self.end.saturating_sub(self.start)).into()
    }
}

/// A value with the span it was written at.
#[derive(Debug, Clone, PartialEq)]
pub struct Spanned<T> {
    pub value: T,
    pub span: Span,
}

impl<T> Spanned<T> {
    pub fn new(value: T, span: Span) -> Self {
        Spanned { value, span }
    }
}

impl<T> std::ops::Deref for Spanned<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

/// One file of the config (or a `--var-file`).
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// The path as the user would write it (relative to the working directory when possible).
    pub name: String,
    pub path: PathBuf,
    pub text: Arc<String>,
    /// Where each line starts, built on first use: a config with thousands of findings asks
    /// for thousands of positions, and scanning the text for each would be quadratic.
    lines: OnceLock<LineIndex>,
}

/// Byte offsets of line starts, and whether each line is ASCII (so its columns are bytes).
#[derive(Debug, Clone)]
struct LineIndex {
    starts: Vec<usize>,
    ascii: Vec<bool>,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        let starts: Vec<usize> = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        let ascii = starts
            .iter()
            .enumerate()
            .map(|(i, &start)| {
                let end = starts.get(i + 1).copied().unwrap_or(text.len());
                text.as_bytes()[start..end].is_ascii()
            })
            .collect();
        LineIndex { starts, ascii }
    }
}

impl SourceFile {
    fn line_index(&self) -> &LineIndex {
        self.lines.get_or_init(|| LineIndex::new(&self.text))
    }
}

/// All files read for one config, addressed by [`FileId`].
#[derive(Debug, Clone, Default)]
pub struct Sources {
    files: Vec<SourceFile>,
}

impl Sources {
    /// Adds a file and returns its id.
    pub fn add(&mut self, name: String, path: PathBuf, text: String) -> FileId {
        self.files.push(SourceFile {
            name,
            path,
            text: Arc::new(text),
            lines: OnceLock::new(),
        });
        self.files.len() - 1
    }

    pub fn get(&self, id: FileId) -> &SourceFile {
        &self.files[id]
    }

    pub fn iter(&self) -> impl Iterator<Item = (FileId, &SourceFile)> {
        self.files.iter().enumerate()
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The file as a miette source, for rendering labels.
    pub fn named_source(&self, id: FileId) -> NamedSource<Arc<String>> {
        let file = &self.files[id];
        NamedSource::new(file.name.clone(), file.text.clone()).with_language("hcl")
    }

    /// One-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, id: FileId, offset: usize) -> (usize, usize) {
        let file = &self.files[id];
        let text = &file.text;
        let offset = floor_char_boundary(text, offset.min(text.len()));
        let index = file.line_index();
        let line = index.starts.partition_point(|&start| start <= offset);
        let line_start = index.starts[line - 1];
        let column = if index.ascii[line - 1] {
            offset - line_start + 1
        } else {
            text[line_start..offset].chars().count() + 1
        };
        (line, column)
    }

    /// Byte offset of a one-based line and column, clamped to the text.
    pub fn offset_of(&self, id: FileId, line: usize, column: usize) -> usize {
        let file = &self.files[id];
        let text = &file.text;
        let Some(&offset) = file.line_index().starts.get(line.max(1) - 1) else {
            return text.len();
        };
        let rest = &text[offset..];
        let line_len = rest.find('\n').unwrap_or(rest.len());
        let col_bytes: usize = rest[..line_len]
            .chars()
            .take(column.saturating_sub(1))
            .map(char::len_utf8)
            .sum();
        offset + col_bytes
    }
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while offset > 0 && !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_round_trip() {
        let mut sources = Sources::default();
        let id = sources.add("a.hcl".into(), "a.hcl".into(), "ab\ncdé\nf".into());
        assert_eq!(sources.line_col(id, 0), (1, 1));
        assert_eq!(sources.line_col(id, 3), (2, 1));
        assert_eq!(sources.line_col(id, 7), (2, 4));
        assert_eq!(sources.offset_of(id, 2, 4), 7);
        assert_eq!(sources.offset_of(id, 9, 1), 9);
    }
}
