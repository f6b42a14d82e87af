//! The size limits of a config, and the check of a file's text against them before it is
//! parsed: bytes in one file, bytes in all files, items in one list, object or block body. The
//! item check runs on the raw text because parsing an object costs the square of its keys (each
//! key is compared with every key before it). Knows the shape of HCL text, not the schema.

use super::diagnostic::{Code, Finding};
use super::source::{FileId, Span};

/// Bytes in one config file (or var file).
pub const MAX_FILE_BYTES: u64 = 10 * 1024 * 1024;
/// Bytes in all files of one config together.
pub const MAX_TOTAL_BYTES: u64 = 32 * 1024 * 1024;
/// Items in one list, object or block body.
pub const MAX_ITEMS: usize = 10_000;
/// Bytes of one rendered command that are sure to pass as one argument of `sh -c`: Linux
/// refuses any single argument longer than `MAX_ARG_STRLEN` (32 pages, 128 KiB) with E2BIG.
pub const MAX_COMMAND_BYTES: usize = 128 * 1024;

/// A size in MiB for messages, e.g. `10 MiB` or `50.3 MiB`.
pub fn mib(bytes: u64) -> String {
    let m = bytes as f64 / (1024.0 * 1024.0);
    if m.fract() == 0.0 {
        format!("{m:.0} MiB")
    } else {
        format!("{m:.1} MiB")
    }
}

/// A count with thousands separators, e.g. `10,000`.
pub fn count(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The finding for a file over [`MAX_FILE_BYTES`].
pub fn file_too_large(name: &str, bytes: u64) -> Finding {
    Finding::unlocated(
        Code::TooLarge,
        format!(
            "{name} is {}, over the limit of {} for one config file",
            mib(bytes),
            mib(MAX_FILE_BYTES)
        ),
    )
    .with_help("split the config over several *.hcl files, or generate less of it")
}

/// The finding for a config whose files together pass [`MAX_TOTAL_BYTES`].
pub fn config_too_large(dir: &str, bytes: u64, files: usize) -> Finding {
    Finding::unlocated(
        Code::TooLarge,
        format!(
            "the {files} config files in {dir} are {} together, over the limit of {} for one config",
            mib(bytes),
            mib(MAX_TOTAL_BYTES)
        ),
    )
    .with_help("split the fleet into several config directories, each with its own state")
}

/// What one open bracket of the text is.
#[derive(Clone, Copy, PartialEq)]
enum Opened {
    List,
    Object,
    Block,
    /// Parentheses and `${ }` interpolations: not collections, only nesting.
    Other,
}

impl Opened {
    fn noun(self) -> &'static str {
        match self {
            Opened::List => "list",
            Opened::Object => "object",
            Opened::Block => "block",
            Opened::Other => "expression",
        }
    }
}

enum Frame {
    Open {
        kind: Opened,
        close: u8,
        start: usize,
        items: usize,
        /// A comma or line break since the last item: the next token starts a new item.
        pending: bool,
    },
    Str,
    Heredoc {
        id: Vec<u8>,
        line_start: bool,
    },
}

/// Checks that no list, object or block body of `text` holds more than [`MAX_ITEMS`] items.
/// Counts items by their separators (commas and line breaks) at the collection's own level,
/// skipping strings, heredocs and comments. On text it cannot follow (unbalanced brackets, an
/// unterminated string) it stops and leaves the finding to the parser.
pub fn check_items(file: FileId, text: &str) -> Option<Finding> {
    let b = text.as_bytes();
    let mut stack: Vec<Frame> = Vec::new();
    // The first collection over the limit: its start, kind and items so far.
    let mut over: Option<(usize, Opened)> = None;
    let mut prev_sig = b'\n';
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match stack.last_mut() {
            Some(Frame::Str) => {
                match c {
                    b'\\' => i += 1,
                    b'"' => {
                        stack.pop();
                    }
                    b'\n' => return None,
                    b'$' | b'%' => i += template_marker(b, i, &mut stack),
                    _ => {}
                }
                i += 1;
                continue;
            }
            Some(Frame::Heredoc { id, line_start }) => {
                if std::mem::take(line_start) {
                    let end = b[i..]
                        .iter()
                        .position(|&x| x == b'\n')
                        .map_or(b.len(), |p| i + p);
                    let line = text[i..end].trim_matches([' ', '\t', '\r']);
                    if line.as_bytes() == id.as_slice() {
                        stack.pop();
                        // The line break after the marker ends the attribute.
                        i = end;
                        prev_sig = b'E';
                        continue;
                    }
                }
                match c {
                    b'\n' => {
                        if let Some(Frame::Heredoc { line_start, .. }) = stack.last_mut() {
                            *line_start = true;
                        }
                    }
                    b'$' | b'%' => i += template_marker(b, i, &mut stack),
                    _ => {}
                }
                i += 1;
                continue;
            }
            _ => {}
        }
        // Code: at the top level or inside a bracket.
        match c {
            b' ' | b'\t' | b'\r' => {}
            b'#' => i = skip_to_line_end(b, i),
            b'/' if b.get(i + 1) == Some(&b'/') => i = skip_to_line_end(b, i),
            b'/' if b.get(i + 1) == Some(&b'*') => match text[i + 2..].find("*/") {
                Some(p) => i += p + 3,
                None => return None,
            },
            b',' | b'\n' => mark_separator(&mut stack),
            b'"' => {
                new_item(&mut stack, &mut over);
                stack.push(Frame::Str);
            }
            b'<' if b.get(i + 1) == Some(&b'<') => match heredoc_start(b, i) {
                Some((id, body)) => {
                    new_item(&mut stack, &mut over);
                    stack.push(Frame::Heredoc {
                        id,
                        line_start: true,
                    });
                    i = body;
                    continue;
                }
                None => new_item(&mut stack, &mut over),
            },
            b'{' | b'[' | b'(' => {
                new_item(&mut stack, &mut over);
                let kind = match c {
                    b'[' => Opened::List,
                    b'(' => Opened::Other,
                    _ if b"=:,([?".contains(&prev_sig) => Opened::Object,
                    _ => Opened::Block,
                };
                let close = match c {
                    b'{' => b'}',
                    b'[' => b']',
                    _ => b')',
                };
                stack.push(Frame::Open {
                    kind,
                    close,
                    start: i,
                    items: 0,
                    pending: false,
                });
            }
            b'}' | b']' | b')' => {
                let Some(Frame::Open {
                    kind,
                    close,
                    start,
                    items,
                    ..
                }) = stack.pop()
                else {
                    return None;
                };
                if close != c {
                    return None;
                }
                if over.is_some_and(|(s, _)| s == start) {
                    return Some(too_many(file, start, kind, items, true));
                }
            }
            _ => new_item(&mut stack, &mut over),
        }
        if !c.is_ascii_whitespace() {
            prev_sig = c;
        }
        i += 1;
    }
    // Whatever is still open at the end is a syntax error; a collection over the limit among
    // those is reported all the same, since parsing it would take as long as a closed one.
    let (start, kind) = over?;
    let items = stack.iter().find_map(|f| match f {
        Frame::Open {
            start: s, items, ..
        } if *s == start => Some(*items),
        _ => None,
    })?;
    Some(too_many(file, start, kind, items, false))
}

/// At a `$` or `%` at `i` inside a string or heredoc: `${`/`%{` opens a template expression
/// (pushed on `stack`), `$${`/`%%{` is an escaped literal. Returns how many more bytes the
/// marker takes beyond the one at `i`.
fn template_marker(b: &[u8], i: usize, stack: &mut Vec<Frame>) -> usize {
    let c = b[i];
    if b.get(i + 1) == Some(&c) && b.get(i + 2) == Some(&b'{') {
        2
    } else if b.get(i + 1) == Some(&b'{') {
        stack.push(interpolation(i));
        1
    } else {
        0
    }
}

fn interpolation(start: usize) -> Frame {
    Frame::Open {
        kind: Opened::Other,
        close: b'}',
        start,
        items: 0,
        pending: false,
    }
}

fn skip_to_line_end(b: &[u8], i: usize) -> usize {
    // Stops before the line break, which still separates items.
    b[i..]
        .iter()
        .position(|&x| x == b'\n')
        .map_or(b.len(), |p| i + p)
        - 1
}

/// `<<ID` or `<<-ID` followed by a line break: the marker and where the body starts.
fn heredoc_start(b: &[u8], i: usize) -> Option<(Vec<u8>, usize)> {
    let mut j = i + 2;
    if b.get(j) == Some(&b'-') {
        j += 1;
    }
    let id_start = j;
    while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] == b'-') {
        j += 1;
    }
    if j == id_start || !b[id_start].is_ascii_alphabetic() {
        return None;
    }
    let id = b[id_start..j].to_vec();
    if b.get(j) == Some(&b'\r') {
        j += 1;
    }
    (b.get(j) == Some(&b'\n')).then_some((id, j + 1))
}

fn mark_separator(stack: &mut [Frame]) {
    if let Some(Frame::Open { pending, .. }) = stack.last_mut() {
        *pending = true;
    }
}

/// A token at the current level: it starts an item when a separator came before it.
fn new_item(stack: &mut [Frame], over: &mut Option<(usize, Opened)>) {
    if let Some(Frame::Open {
        kind,
        start,
        items,
        pending,
        ..
    }) = stack.last_mut()
    {
        if *kind == Opened::Other {
            return;
        }
        if *items == 0 || *pending {
            *items += 1;
            *pending = false;
            if *items > MAX_ITEMS && over.is_none() {
                *over = Some((*start, *kind));
            }
        }
    }
}

fn too_many(file: FileId, start: usize, kind: Opened, items: usize, closed: bool) -> Finding {
    let noun = kind.noun();
    let (label, message) = if closed {
        (
            format!("{} items", count(items)),
            format!(
                "this {noun} holds {} items, over the limit of {} in one list, object or block",
                count(items),
                count(MAX_ITEMS)
            ),
        )
    } else {
        (
            "never closed".to_string(),
            format!(
                "this {noun} is never closed, and the {} items after it are over the limit of {} in one list, object or block",
                count(items),
                count(MAX_ITEMS)
            ),
        )
    };
    Finding::error(
        Code::TooLarge,
        Span::new(file, start..start + 1),
        label,
        message,
    )
    .with_help("split it over several blocks or attributes, or check for a missing closing bracket")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items_over(text: &str) -> Option<String> {
        check_items(0, text).map(|f| f.message)
    }

    #[test]
    fn counts_items_of_each_collection_at_its_own_level() {
        let list = |n: usize| {
            (0..n)
                .map(|i| format!("\"m{i}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let fits = format!("a = [{}]\n", list(MAX_ITEMS));
        assert_eq!(items_over(&fits), None);
        let over = format!("a = [{}]\n", list(MAX_ITEMS + 1));
        assert!(
            items_over(&over)
                .unwrap()
                .contains("this list holds 10,001 items")
        );
        // The items of nested lists are theirs, not the outer list's.
        let nested = format!("a = [[{}], [{}]]\n", list(6000), list(6000));
        assert_eq!(items_over(&nested), None);
    }

    #[test]
    fn object_keys_and_block_attributes_are_items_one_per_line() {
        let keys: String = (0..=MAX_ITEMS)
            .map(|i| format!("  K{i} = \"v\"\n"))
            .collect();
        let object = format!("m {{\n env = {{\n{keys} }}\n}}\n");
        assert!(
            items_over(&object)
                .unwrap()
                .contains("this object holds 10,001")
        );
        let block = format!("m {{\n{keys}}}\n");
        assert!(
            items_over(&block)
                .unwrap()
                .contains("this block holds 10,001")
        );
    }

    #[test]
    fn strings_heredocs_and_comments_hold_no_items() {
        let commas = ",".repeat(MAX_ITEMS * 2);
        let lines = "x\n".repeat(MAX_ITEMS * 2);
        let text = format!(
            "m {{\n a = \"{commas} ${{ \"}}\" }} $${{\"\n b = <<EOT\n{lines}${{ [1, 2] }}\nEOT\n # {commas}\n /* {lines} */\n c = [1]\n}}\n"
        );
        assert_eq!(items_over(&text), None);
    }

    #[test]
    fn a_collection_never_closed_is_reported_with_what_follows_it() {
        let keys: String = (0..=MAX_ITEMS).map(|i| format!("K{i} = 1\n")).collect();
        let text = format!("m {{\n env = {{\n{keys}");
        assert!(items_over(&text).unwrap().contains("never closed"));
    }
}
