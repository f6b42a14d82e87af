//! Canonical layout of berth's HCL files (`berth fmt`): re-indents, re-spaces and aligns a config
//! while keeping every comment. It must not evaluate, validate or reorder anything.
//!
//! `hcl::format` drops comments, so the layout is computed on hcl-edit's decorated tree, where
//! the whitespace and comments between two tokens live in a `Decor` prefix/suffix (or in the
//! `trailing` of an array, object or argument list). Only those strings are rewritten: string
//! literals, `${}` templates and heredoc bodies are never touched.
//!
//! The layout, close to `terraform fmt`:
//!
//! - Two spaces of indentation per nesting level. Inside brackets (`[]`, `{}`, `()`), a line is
//!   indented one level deeper than the line holding the opening bracket, and a line that starts
//!   with the closing bracket like the opening line. Line breaks inside expressions stay where
//!   they are; only blank lines are squeezed.
//! - `key = value` with one space around `=`. In a run of consecutive single-line attributes
//!   (broken by a blank line, a block or a multi-line attribute, not by comment lines) the `=`
//!   signs are aligned, and so are the trailing comments of consecutive commented lines. Items
//!   of multi-line objects that start their own line are aligned the same way.
//! - Block headers: `ident "label" label {`, one space between parts; an empty block is `x {}`.
//! - At most one blank line in a row; none at the start of the file, right after an opening
//!   brace or bracket, or right before a closing one. A top-level block is set off from its
//!   neighbours by exactly one blank line. No trailing whitespace; exactly one final newline.
//! - Comments stay where they are. A comment on a line of its own is indented like the code it
//!   precedes (or like the body it closes); a trailing comment stays on its line after a space.
//! - Single-line arrays read `["a", "b"]`, objects `{ a = 1, b = 2 }`, calls `f(a, b)`; a
//!   trailing comma before a closing bracket on the same line is dropped. Binary and conditional
//!   operators get one space on each side; traversals and unary operators none.
//! - Line endings become `\n`, except inside heredoc bodies: in a CRLF file the body lines of a
//!   `<<EOT` heredoc keep their `\r\n`, since dropping the `\r` would change the value.
//!
//! Two safety nets: every heredoc must print exactly as written, and the result must parse back
//! to the same document, layout aside. When either fails (a bug here, or hcl-edit itself: a
//! variable named `for` first in a list, a `<<-` heredoc it would re-indent wrongly), the input
//! is returned unchanged: a formatter must never be why a config changes meaning.
//!
//! hcl-edit respells a few things on its own, the value staying the same: string escapes
//! (`"\u00e9"` prints as `"é"`), object keys that read as keywords (quoted), a `<<-EOT` with no
//! indentation to strip (`<<EOT`), and a comment between a grouping `...` and `}` (moved behind
//! the `}`).

use std::ops::Range;

use hcl_edit::expr::{
    Array, Conditional, Expression, ForExpr, FuncArgs, FuncCall, Object, ObjectKey, ObjectValue,
    ObjectValueAssignment, ObjectValueTerminator, Parenthesis, Traversal, TraversalOperator,
};
use hcl_edit::parser;
use hcl_edit::structure::{Attribute, Block, Body, Structure};
use hcl_edit::template::HeredocTemplate;
use hcl_edit::visit::{self, Visit};
use hcl_edit::visit_mut::{self, VisitMut};
use hcl_edit::{Decor, Decorate, Decorated, Span};

/// Formats an HCL source file in berth's canonical layout, keeping all comments.
///
/// Returns `source` unchanged when the layout cannot be applied safely (see the module docs).
///
/// # Errors
///
/// Returns the parse error when `source` is not valid HCL.
pub fn format_source(source: &str) -> Result<String, parser::Error> {
    let body = parser::parse_body(source)?;
    if !heredocs_print_as_written(source, &body) {
        return Ok(source.to_owned());
    }
    let formatted = layout(source, body.clone());
    let same =
        parser::parse_body(&formatted).is_ok_and(|reparsed| canonical(reparsed) == canonical(body));
    Ok(if same { formatted } else { source.to_owned() })
}

/// Lays out a parsed `body` whose spans point into `source`.
fn layout(source: &str, mut body: Body) -> String {
    let mut fmt = Layout {
        source,
        line: 0,
        inner: 1,
    };
    // The root body's own prefix is never set by the parser; should it ever be, it belongs to
    // whatever comes first.
    let lead_in = take_prefix(body.decor_mut());
    let mut tail = take_suffix(body.decor_mut());
    match body.get_mut(0) {
        Some(first) => {
            let prefix = lead_in + &take_prefix(first.decor_mut());
            first.decor_mut().set_prefix(prefix);
        }
        None => tail = lead_in + &tail,
    }
    fmt.body(&mut body, 0, true);

    let end_of_file = Gap {
        at_line_start: true,
        lead: if body.is_empty() {
            Blank::Strip
        } else {
            Blank::Keep
        },
        ends_line: true,
        ..Gap::inline("", 0)
    };
    let mut tail = fmt.gap(&tail, end_of_file).text;
    if !tail.is_empty() && !tail.ends_with('\n') {
        tail.push('\n');
    }
    body.decor_mut().set_suffix(tail);
    body.set_prefer_omit_trailing_newline(false);
    body.to_string()
}

/// Walks the tree in source order, rewriting every gap between two tokens.
struct Layout<'s> {
    /// The parsed text; hcl-edit loses the decor around binary and traversal operators, which is
    /// recovered from the spans of their neighbours.
    source: &'s str,
    /// Indentation level of the line being written.
    line: usize,
    /// Indentation level of a line that starts inside the innermost open bracket.
    inner: usize,
}

impl Layout<'_> {
    fn gap(&mut self, raw: &str, gap: Gap) -> Rendered {
        let rendered = render(raw, gap);
        if let Some(line) = rendered.line {
            self.line = line;
        }
        rendered
    }

    /// Enters a bracket opened on the current line; returns that line's level and the outer
    /// `inner` to give back to [`Layout::leave`].
    fn enter(&mut self) -> (usize, usize) {
        let open = self.line;
        let outer = self.inner;
        self.inner = open + 1;
        (open, outer)
    }

    fn leave(&mut self, outer: usize) {
        self.inner = outer;
    }

    fn body(&mut self, body: &mut Body, depth: usize, top: bool) {
        let mut rows = Vec::with_capacity(body.len());
        let mut previous_is_block = false;
        for index in 0..body.len() {
            let Some(structure) = body.get_mut(index) else {
                break;
            };
            let is_block = structure.is_block();
            let lead = if index == 0 {
                Blank::Strip
            } else if top && (is_block || previous_is_block) {
                Blank::One
            } else {
                Blank::Keep
            };
            let mut raw = take_prefix(structure.decor_mut());
            raw += &match structure {
                Structure::Attribute(attr) => take_prefix(attr.key.decor_mut()),
                Structure::Block(block) => take_prefix(block.ident.decor_mut()),
            };
            let prefix = self.gap(&raw, Gap::line_start(depth, lead));
            let lead_width = same_line_width(&prefix.text);
            structure.decor_mut().set_prefix(prefix.text);
            self.line = depth;
            self.inner = depth + 1;
            rows.push(match structure {
                Structure::Attribute(attr) => {
                    let row = self.attribute(attr, String::new(), Gap::end_of_line());
                    // A comment before `=` would push the whole run to its right.
                    let aligned = !row.multiline && lead_width == 0 && row.key_comments.is_empty();
                    aligned.then_some(Row {
                        blank_before: prefix.blank,
                        ..row
                    })
                }
                Structure::Block(block) => {
                    self.block(block, depth);
                    None
                }
            });
            previous_is_block = is_block;
        }

        for (index, (row, (key_pad, comment_pad))) in rows.iter().zip(align(&rows)).enumerate() {
            if let (Some(row), Some(Structure::Attribute(attr))) = (row, body.get_mut(index)) {
                attr.key
                    .decor_mut()
                    .set_suffix(row.key_suffix(key_pad, ObjectValueAssignment::Equals));
                if row.comment {
                    attr.decor_mut().set_suffix(row.trailing(comment_pad));
                }
            }
        }
    }

    /// Lays out `key = value` and what follows it up to `trail`; `extra` is raw decor that
    /// belongs to the same gap after the value.
    fn attribute(&mut self, attr: &mut Attribute, extra: String, trail: Gap) -> Row {
        let raw = take_suffix(attr.key.decor_mut());
        let key_comments = self.gap(&raw, Gap::end_of_line()).text;
        attr.key.decor_mut().set_suffix(format!("{key_comments} "));

        self.lead(&mut attr.value, Gap::inline(" ", self.inner));
        let raw = take_trailing(&mut attr.value) + &take_suffix(attr.decor_mut()) + &extra;
        let value = attr.value.to_string();
        let trailing = self.gap(&raw, trail).text;
        attr.decor_mut().set_suffix(trailing.clone());

        Row {
            key_width: width(attr.key.as_str()) + width(&key_comments),
            rest_width: 1 + width(&value),
            multiline: value.contains('\n'),
            comment: !trailing.is_empty(),
            blank_before: false,
            key_comments,
            trailing,
        }
    }

    fn block(&mut self, block: &mut Block, depth: usize) {
        // Header: the ident, each label and `{` are separated by exactly one space.
        let mut raw = take_suffix(block.ident.decor_mut());
        for index in 0..block.labels.len() {
            raw += &take_prefix(block.labels[index].decor_mut());
            let text = self.gap(&raw, Gap::inline(" ", depth + 1)).text;
            match index.checked_sub(1) {
                Some(previous) => block.labels[previous].decor_mut().set_suffix(text),
                None => block.ident.decor_mut().set_suffix(text),
            }
            raw = take_suffix(block.labels[index].decor_mut());
        }
        let text = self.gap(&raw, Gap::inline(" ", depth + 1)).text;
        match block.labels.last_mut() {
            Some(label) => label.decor_mut().set_suffix(text),
            None => block.ident.decor_mut().set_suffix(text),
        }

        let body = &mut block.body;
        let after_open = take_prefix(body.decor_mut());
        let before_close = take_suffix(body.decor_mut());
        let single_attribute = body.len() == 1 && body.get(0).is_some_and(Structure::is_attribute);
        if body.prefer_oneline() && (body.is_empty() || single_attribute) {
            match body.get_mut(0).and_then(Structure::as_attribute_mut) {
                Some(attr) => {
                    let raw = after_open
                        + &take_prefix(attr.decor_mut())
                        + &take_prefix(attr.key.decor_mut());
                    let text = self.gap(&raw, Gap::inline(" ", depth + 1)).text;
                    attr.decor_mut().set_prefix(text);
                    self.attribute(attr, before_close, Gap::before_close(" ", depth + 1, depth));
                }
                None => {
                    let raw = after_open + &before_close;
                    let text = self.gap(&raw, Gap::inline("", depth + 1)).text;
                    body.decor_mut().set_prefix(text);
                }
            }
        } else if body.is_empty() && !has_comment(&after_open) && !has_comment(&before_close) {
            body.set_prefer_oneline(true);
        } else {
            body.set_prefer_oneline(false);
            let text = self.gap(&after_open, Gap::end_of_line()).text;
            body.decor_mut().set_prefix(text);
            self.body(body, depth + 1, false);
            let closing = Gap {
                at_line_start: true,
                lead: if body.is_empty() {
                    Blank::Strip
                } else {
                    Blank::Keep
                },
                ..Gap::before_close("", depth + 1, depth)
            };
            let text = self.gap(&before_close, closing).text;
            body.decor_mut().set_suffix(text);
        }

        let raw = take_suffix(block.decor_mut());
        let text = self.gap(&raw, Gap::end_of_line()).text;
        block.decor_mut().set_suffix(text);
    }

    /// Rewrites the gap before `expr` as `gap`, then the inside of `expr`.
    fn lead(&mut self, expr: &mut Expression, gap: Gap) {
        let raw = take_leading(expr);
        let text = self.gap(&raw, gap).text;
        expr.decor_mut().set_prefix(text);
        self.expr(expr);
    }

    /// Rewrites the gap after `expr` as `gap`, adding `extra` raw decor from the same gap.
    fn trail(&mut self, expr: &mut Expression, extra: &str, gap: Gap) {
        let raw = take_trailing(expr) + extra;
        let text = self.gap(&raw, gap).text;
        expr.decor_mut().set_suffix(text);
    }

    /// Rewrites the gaps strictly inside `expr`; its leading and trailing gaps belong to the
    /// caller.
    fn expr(&mut self, expr: &mut Expression) {
        match expr {
            Expression::Array(array) => self.sequence(array),
            Expression::Object(object) => self.object(object),
            Expression::Parenthesis(parens) => self.parenthesis(parens),
            Expression::FuncCall(call) => self.func_call(call),
            Expression::ForExpr(for_expr) => self.for_expr(for_expr),
            Expression::Conditional(cond) => self.conditional(cond),
            Expression::Traversal(traversal) => self.traversal(traversal),
            Expression::UnaryOp(op) => self.lead(&mut op.expr, Gap::inline("", self.inner)),
            Expression::BinaryOp(op) => {
                // hcl-edit leaves the operator's decor unresolved, so its own copy of the gaps
                // around the operator reads as empty; the source between the spans is complete.
                let before = self.span_gap(op.lhs_expr.span(), op.operator.span());
                let after = self.span_gap(op.operator.span(), op.rhs_expr.span());
                self.expr(&mut op.lhs_expr);
                let decor = take_trailing(&mut op.lhs_expr) + &take_prefix(op.operator.decor_mut());
                let text = self
                    .gap(&before.unwrap_or(decor), Gap::inline(" ", self.inner))
                    .text;
                op.operator.decor_mut().set_prefix(text);
                let decor = take_suffix(op.operator.decor_mut()) + &take_leading(&mut op.rhs_expr);
                let text = self
                    .gap(&after.unwrap_or(decor), Gap::inline(" ", self.inner))
                    .text;
                op.operator.decor_mut().set_suffix(text);
                self.expr(&mut op.rhs_expr);
            }
            // Literals and variables have no inside; template and heredoc contents are part of
            // the string value and must not be touched.
            Expression::Null(_)
            | Expression::Bool(_)
            | Expression::Number(_)
            | Expression::String(_)
            | Expression::Variable(_)
            | Expression::StringTemplate(_)
            | Expression::HeredocTemplate(_) => {}
        }
    }

    /// The source text between two spans, if both are known and only trivia lies between.
    fn span_gap(&self, left: Option<Range<usize>>, right: Option<Range<usize>>) -> Option<String> {
        let text = self.source.get(left?.end..right?.start)?;
        let trivia = pieces(text)
            .iter()
            .all(|piece| !matches!(piece, Piece::Other(_)));
        trivia.then(|| text.to_owned())
    }

    /// Arrays and argument lists: `[a, b]`, `f(a, b...)`.
    fn sequence<S: Sequence>(&mut self, seq: &mut S) {
        let (open, outer) = self.enter();
        let inner = self.inner;
        let mut trailing = seq.trailing_raw();
        let count = seq.count();
        if count == 0 {
            let only = Gap {
                lead: Blank::Strip,
                ..Gap::before_close("", inner, open)
            };
            let text = self.gap(&trailing, only).text;
            seq.set_trailing_raw(text);
            self.leave(outer);
            return;
        }
        // A trailing comma only helps when the closing bracket is on a line of its own.
        if seq.trailing_comma() && !trailing.contains('\n') {
            seq.set_trailing_comma(false);
        }
        let closes_after_last = !seq.trailing_comma() && !seq.expand_final();
        for index in 0..count {
            let Some(item) = seq.item(index) else {
                break;
            };
            let gap = if index == 0 {
                Gap::after_open("", inner)
            } else {
                Gap::inline(" ", inner)
            };
            self.lead(item, gap);
            if index + 1 == count && closes_after_last {
                let extra = std::mem::take(&mut trailing);
                self.trail(item, &extra, Gap::before_close("", inner, open));
            } else {
                self.trail(item, "", Gap::inline("", inner));
            }
        }
        let text = if closes_after_last {
            String::new()
        } else {
            self.gap(&trailing, Gap::before_close("", inner, open)).text
        };
        seq.set_trailing_raw(text);
        self.leave(outer);
    }

    fn object(&mut self, object: &mut Object) {
        let (open, outer) = self.enter();
        let inner = self.inner;
        let decor = object.decor().clone();
        let mut trailing: String = {
            let raw: &str = object.trailing();
            raw.to_owned()
        };
        // Key expressions can only be changed by taking the items out; the insertion order is
        // the source order, so rebuilding keeps it.
        let mut items: Vec<(ObjectKey, ObjectValue)> = std::mem::take(object).into_iter().collect();
        if let Some((_, last)) = items.last_mut()
            && last.terminator() == ObjectValueTerminator::Comma
            && !trailing.contains('\n')
        {
            last.set_terminator(ObjectValueTerminator::None);
        }

        let mut rows = Vec::with_capacity(items.len());
        let mut at_line_start = false;
        for (index, (key, value)) in items.iter_mut().enumerate() {
            let lead = Gap {
                at_line_start,
                lead: if index == 0 {
                    Blank::Strip
                } else {
                    Blank::Keep
                },
                ..Gap::inline(" ", inner)
            };
            let raw = match key {
                ObjectKey::Ident(ident) => take_prefix(ident.decor_mut()),
                ObjectKey::Expression(expr) => take_leading(expr),
            };
            let prefix = self.gap(&raw, lead);
            let prefix_len = prefix.text.len();
            let lead_width = same_line_width(&prefix.text);
            key.decor_mut().set_prefix(prefix.text);
            let (key_text, raw) = match key {
                ObjectKey::Ident(ident) => {
                    let text = match ident.as_str() {
                        // Encoded quoted, as they would read as keywords.
                        name @ ("true" | "false" | "null" | "for") => format!("\"{name}\""),
                        name => name.to_owned(),
                    };
                    (text, take_suffix(ident.decor_mut()))
                }
                ObjectKey::Expression(expr) => {
                    self.expr(expr);
                    let raw = take_trailing(expr);
                    let text = expr.to_string();
                    (text.get(prefix_len..).unwrap_or_default().to_owned(), raw)
                }
            };
            let key_comments = self.gap(&raw, Gap::end_of_line()).text;
            let assignment = value.assignment();
            let row = Row {
                key_width: lead_width + width(&key_text) + width(&key_comments),
                rest_width: 0,
                multiline: key_text.contains('\n'),
                comment: false,
                blank_before: prefix.blank,
                key_comments,
                trailing: String::new(),
            };
            key.decor_mut().set_suffix(row.key_suffix(1, assignment));

            let terminator = value.terminator();
            let expr = value.expr_mut();
            self.lead(expr, Gap::inline(" ", inner));
            let mut raw = take_trailing(expr);
            let text = expr.to_string();
            let gap = match terminator {
                ObjectValueTerminator::Newline => Gap::end_of_line(),
                ObjectValueTerminator::Comma => Gap::inline("", inner),
                ObjectValueTerminator::None => Gap::before_close(" ", inner, open),
            };
            if terminator == ObjectValueTerminator::None {
                raw += &std::mem::take(&mut trailing);
            }
            let suffix = self.gap(&raw, gap).text;
            expr.decor_mut().set_suffix(suffix.clone());
            let row = Row {
                rest_width: 1 + width(&text),
                multiline: row.multiline || text.contains('\n'),
                comment: terminator == ObjectValueTerminator::Newline && !suffix.is_empty(),
                trailing: suffix,
                ..row
            };
            let aligned = assignment == ObjectValueAssignment::Equals
                && prefix.starts_line
                && !row.multiline
                && row.key_width == width(&key_text);
            rows.push(aligned.then_some(row));
            at_line_start = terminator == ObjectValueTerminator::Newline;
        }

        let closed = items
            .last()
            .is_some_and(|(_, value)| value.terminator() == ObjectValueTerminator::None);
        if !closed {
            let closing = Gap {
                at_line_start,
                lead: if items.is_empty() {
                    Blank::Strip
                } else {
                    Blank::Keep
                },
                ..Gap::before_close(if items.is_empty() { "" } else { " " }, inner, open)
            };
            trailing = self.gap(&trailing, closing).text;
        }

        for ((key, value), (row, (key_pad, comment_pad))) in
            items.iter_mut().zip(rows.iter().zip(align(&rows)))
        {
            if let Some(row) = row {
                key.decor_mut()
                    .set_suffix(row.key_suffix(key_pad, value.assignment()));
                if row.comment {
                    value
                        .expr_mut()
                        .decor_mut()
                        .set_suffix(row.trailing(comment_pad));
                }
            }
        }
        for (key, value) in items {
            object.insert(key, value);
        }
        object.set_trailing(trailing);
        *object.decor_mut() = decor;
        self.leave(outer);
    }

    fn parenthesis(&mut self, parens: &mut Parenthesis) {
        let (open, outer) = self.enter();
        let inner = self.inner;
        let expr = parens.inner_mut();
        self.lead(expr, Gap::after_open("", inner));
        self.trail(expr, "", Gap::before_close("", inner, open));
        self.leave(outer);
    }

    fn func_call(&mut self, call: &mut FuncCall) {
        let name = &mut call.name;
        let mut parts: Vec<&mut Decorated<hcl_edit::Ident>> = name.namespace.iter_mut().collect();
        parts.push(&mut name.name);
        for index in 1..parts.len() {
            let raw = take_suffix(parts[index - 1].decor_mut());
            let text = self.gap(&raw, Gap::inline("", self.inner)).text;
            parts[index - 1].decor_mut().set_suffix(text);
            let raw = take_prefix(parts[index].decor_mut());
            let text = self.gap(&raw, Gap::inline("", self.inner)).text;
            parts[index].decor_mut().set_prefix(text);
        }
        let raw = take_suffix(name.name.decor_mut()) + &take_prefix(call.args.decor_mut());
        let text = self.gap(&raw, Gap::inline("", self.inner)).text;
        name.name.decor_mut().set_suffix(text);
        self.sequence(&mut call.args);
    }

    fn for_expr(&mut self, for_expr: &mut ForExpr) {
        let (open, outer) = self.enter();
        let inner = self.inner;
        let space = Gap::inline(" ", inner);
        let none = Gap::inline("", inner);

        let intro = &mut for_expr.intro;
        let raw = take_prefix(intro.decor_mut());
        let text = self.gap(&raw, Gap::after_open("", inner)).text;
        intro.decor_mut().set_prefix(text);
        if let Some(key_var) = &mut intro.key_var {
            self.around(key_var, space, none);
        }
        self.around(&mut intro.value_var, space, space);
        self.lead(&mut intro.collection_expr, space);
        self.trail(&mut intro.collection_expr, "", space);

        let grouping = for_expr.grouping && for_expr.key_expr.is_some();
        let first = match &mut for_expr.key_expr {
            Some(key_expr) => key_expr,
            None => &mut for_expr.value_expr,
        };
        let raw = take_suffix(intro.decor_mut()) + &take_leading(first);
        let text = self.gap(&raw, space).text;
        intro.decor_mut().set_suffix(text);
        self.expr(first);
        if let Some(key_expr) = &mut for_expr.key_expr {
            self.trail(key_expr, "", space);
            self.lead(&mut for_expr.value_expr, space);
        }

        let value = &mut for_expr.value_expr;
        let mut raw = take_trailing(value);
        if grouping {
            // Before `...`; what follows `...` has no place of its own unless a condition does.
            let text = self.gap(&raw, none).text;
            value.decor_mut().set_suffix(text);
            raw = String::new();
        }
        match &mut for_expr.cond {
            Some(cond) => {
                raw += &take_prefix(cond.decor_mut());
                let text = self.gap(&raw, space).text;
                cond.decor_mut().set_prefix(text);
                let extra = take_suffix(cond.decor_mut());
                self.lead(&mut cond.expr, space);
                self.trail(&mut cond.expr, &extra, Gap::before_close("", inner, open));
            }
            None if !grouping => {
                let text = self.gap(&raw, Gap::before_close("", inner, open)).text;
                value.decor_mut().set_suffix(text);
            }
            None => {}
        }
        self.leave(outer);
    }

    /// Rewrites both gaps around a decorated token.
    fn around<T>(&mut self, item: &mut Decorated<T>, before: Gap, after: Gap) {
        let raw = take_prefix(item.decor_mut());
        let text = self.gap(&raw, before).text;
        item.decor_mut().set_prefix(text);
        let raw = take_suffix(item.decor_mut());
        let text = self.gap(&raw, after).text;
        item.decor_mut().set_suffix(text);
    }

    fn conditional(&mut self, cond: &mut Conditional) {
        let space = Gap::inline(" ", self.inner);
        self.expr(&mut cond.cond_expr);
        self.trail(&mut cond.cond_expr, "", space);
        self.lead(&mut cond.true_expr, space);
        self.trail(&mut cond.true_expr, "", space);
        self.lead(&mut cond.false_expr, space);
    }

    fn traversal(&mut self, traversal: &mut Traversal) {
        // As for binary operators, the decor before each operator is unresolved in hcl-edit's
        // tree; read the gaps from the source while the spans are still those of the source.
        let mut previous = traversal.expr.span();
        let mut from_source = Vec::with_capacity(traversal.operators.len());
        for operator in &traversal.operators {
            from_source.push(self.span_gap(previous, operator.span()));
            previous = operator.span();
        }
        // `1.0` is a number but `1 .0` and `1. 0` are traversals: never glue a number, `.` and
        // what follows together when the source kept them apart.
        let after_number = matches!(traversal.expr, Expression::Number(_));

        self.expr(&mut traversal.expr);
        for (index, source) in from_source.into_iter().enumerate() {
            let mut decor = match index.checked_sub(1) {
                None => take_trailing(&mut traversal.expr),
                Some(previous) => take_operator_trailing(&mut traversal.operators[previous]),
            };
            let operator = &mut traversal.operators[index];
            decor += &take_prefix(operator.decor_mut());
            let raw = source.unwrap_or(decor);
            let keep_apart = index == 0 && after_number;
            let text = self.gap(&raw, self.tight(keep_apart, &raw)).text;
            operator.decor_mut().set_prefix(text);
            self.traversal_operator(operator, keep_apart);
        }
    }

    /// No space, or one where `keep_apart` and the source had any.
    fn tight(&self, keep_apart: bool, raw: &str) -> Gap {
        let inline = if keep_apart && !raw.is_empty() {
            " "
        } else {
            ""
        };
        Gap::inline(inline, self.inner)
    }

    fn traversal_operator(
        &mut self,
        operator: &mut Decorated<TraversalOperator>,
        keep_apart: bool,
    ) {
        match operator.value_mut() {
            TraversalOperator::GetAttr(ident) => self.after_dot(ident, keep_apart),
            TraversalOperator::LegacyIndex(index) => self.after_dot(index, keep_apart),
            TraversalOperator::AttrSplat(splat) => self.after_dot(splat, keep_apart),
            TraversalOperator::FullSplat(splat) => {
                let (open, outer) = self.enter();
                let inner = self.inner;
                self.around(
                    splat,
                    Gap::after_open("", inner),
                    Gap::before_close("", inner, open),
                );
                self.leave(outer);
            }
            TraversalOperator::Index(expr) => {
                let (open, outer) = self.enter();
                let inner = self.inner;
                self.lead(expr, Gap::after_open("", inner));
                self.trail(expr, "", Gap::before_close("", inner, open));
                self.leave(outer);
            }
        }
    }

    /// Rewrites the gap between `.` and what follows; the suffix belongs to the next gap.
    fn after_dot<T>(&mut self, item: &mut Decorated<T>, keep_apart: bool) {
        let raw = take_prefix(item.decor_mut());
        let text = self.gap(&raw, self.tight(keep_apart, &raw)).text;
        item.decor_mut().set_prefix(text);
    }
}

/// What arrays and function arguments have in common.
trait Sequence {
    fn count(&self) -> usize;
    fn item(&mut self, index: usize) -> Option<&mut Expression>;
    fn trailing_raw(&self) -> String;
    fn set_trailing_raw(&mut self, raw: String);
    fn trailing_comma(&self) -> bool;
    fn set_trailing_comma(&mut self, yes: bool);
    fn expand_final(&self) -> bool;
}

impl Sequence for Array {
    fn count(&self) -> usize {
        self.len()
    }
    fn item(&mut self, index: usize) -> Option<&mut Expression> {
        self.get_mut(index)
    }
    fn trailing_raw(&self) -> String {
        let raw: &str = self.trailing();
        raw.to_owned()
    }
    fn set_trailing_raw(&mut self, raw: String) {
        self.set_trailing(raw);
    }
    fn trailing_comma(&self) -> bool {
        Array::trailing_comma(self)
    }
    fn set_trailing_comma(&mut self, yes: bool) {
        Array::set_trailing_comma(self, yes);
    }
    fn expand_final(&self) -> bool {
        false
    }
}

impl Sequence for FuncArgs {
    fn count(&self) -> usize {
        self.len()
    }
    fn item(&mut self, index: usize) -> Option<&mut Expression> {
        self.get_mut(index)
    }
    fn trailing_raw(&self) -> String {
        let raw: &str = self.trailing();
        raw.to_owned()
    }
    fn set_trailing_raw(&mut self, raw: String) {
        self.set_trailing(raw);
    }
    fn trailing_comma(&self) -> bool {
        FuncArgs::trailing_comma(self)
    }
    fn set_trailing_comma(&mut self, yes: bool) {
        FuncArgs::set_trailing_comma(self, yes);
    }
    fn expand_final(&self) -> bool {
        FuncArgs::expand_final(self)
    }
}

/// One line of an alignment run: `key = value  # comment`.
#[derive(Debug)]
struct Row {
    /// Width of the key and any inline comment between it and `=`.
    key_width: usize,
    /// Width from `=` to the end of the value.
    rest_width: usize,
    multiline: bool,
    /// Something follows the value on its line.
    comment: bool,
    blank_before: bool,
    /// Comments between the key and `=`, each after a space.
    key_comments: String,
    /// The rendered gap after the value: a space and the comments, if any.
    trailing: String,
}

impl Row {
    fn key_suffix(&self, pad: usize, assignment: ObjectValueAssignment) -> String {
        match assignment {
            ObjectValueAssignment::Equals => format!("{}{}", self.key_comments, " ".repeat(pad)),
            ObjectValueAssignment::Colon => self.key_comments.clone(),
        }
    }

    fn trailing(&self, pad: usize) -> String {
        format!("{}{}", " ".repeat(pad), self.trailing.trim_start())
    }
}

/// Padding before `=` and before the trailing comment of each row. A `None` row, or a row after
/// a blank line, starts a new run; trailing comments align within consecutive commented rows.
fn align(rows: &[Option<Row>]) -> Vec<(usize, usize)> {
    let mut pads = vec![(1, 1); rows.len()];
    let mut start = 0;
    while start < rows.len() {
        if rows[start].is_none() {
            start += 1;
            continue;
        }
        let mut end = start + 1;
        while end < rows.len() && rows[end].as_ref().is_some_and(|row| !row.blank_before) {
            end += 1;
        }
        let run: Vec<&Row> = rows[start..end].iter().flatten().collect();
        let key_column = run.iter().map(|row| row.key_width).max().unwrap_or(0);
        for (offset, row) in run.iter().enumerate() {
            pads[start + offset].0 = key_column - row.key_width + 1;
        }
        let widths: Vec<usize> = run
            .iter()
            .map(|row| key_column + 1 + row.rest_width)
            .collect();
        let mut chain = 0;
        while chain < run.len() {
            if !run[chain].comment {
                chain += 1;
                continue;
            }
            let mut chain_end = chain;
            while chain_end < run.len() && run[chain_end].comment {
                chain_end += 1;
            }
            let column = widths[chain..chain_end].iter().copied().max().unwrap_or(0);
            for offset in chain..chain_end {
                pads[start + offset].1 = column - widths[offset] + 1;
            }
            chain = chain_end;
        }
        start = end;
    }
    pads
}

/// Blank lines allowed at the start of a gap.
#[derive(Debug, Clone, Copy)]
enum Blank {
    /// At most one.
    Keep,
    /// None.
    Strip,
    /// Exactly one, where the gap starts a line anyway.
    One,
}

/// How one gap between two tokens is written.
#[derive(Debug, Clone, Copy)]
struct Gap {
    /// The previous token ended its line (the newline is not part of the gap).
    at_line_start: bool,
    /// What separates the tokens when the gap holds neither a newline nor a comment.
    inline: &'static str,
    /// Indentation level of a comment on a line of its own.
    indent: usize,
    /// Indentation level of the next token when it starts a line.
    close: usize,
    lead: Blank,
    /// No blank line before the next token.
    trim_end: bool,
    /// The gap runs to the end of the line: nothing is written after its last comment.
    ends_line: bool,
}

impl Gap {
    fn inline(inline: &'static str, indent: usize) -> Gap {
        Gap {
            at_line_start: false,
            inline,
            indent,
            close: indent,
            lead: Blank::Keep,
            trim_end: false,
            ends_line: false,
        }
    }

    fn after_open(inline: &'static str, indent: usize) -> Gap {
        Gap {
            lead: Blank::Strip,
            ..Gap::inline(inline, indent)
        }
    }

    fn before_close(inline: &'static str, indent: usize, close: usize) -> Gap {
        Gap {
            close,
            trim_end: true,
            ..Gap::inline(inline, indent)
        }
    }

    fn line_start(depth: usize, lead: Blank) -> Gap {
        Gap {
            at_line_start: true,
            lead,
            ..Gap::inline("", depth)
        }
    }

    fn end_of_line() -> Gap {
        Gap {
            ends_line: true,
            ..Gap::inline("", 0)
        }
    }
}

#[derive(Debug)]
struct Rendered {
    text: String,
    /// Indentation level of the last line the gap started, if it started one.
    line: Option<usize>,
    /// The gap holds a blank line.
    blank: bool,
    /// The token after the gap is the first thing on its line.
    starts_line: bool,
}

/// Writes a gap from its raw decor: keeps its comments and newlines in order, squeezes blank
/// lines and replaces all other whitespace by the layout's.
fn render(raw: &str, gap: Gap) -> Rendered {
    let mut comments = Vec::new();
    // Newline runs around the comments; a gap at line start counts the newline before it.
    let mut runs = vec![usize::from(gap.at_line_start)];
    for piece in pieces(raw) {
        match piece {
            Piece::Newline => {
                if let Some(run) = runs.last_mut() {
                    *run += 1;
                }
            }
            Piece::Comment(text) | Piece::Other(text) => {
                comments.push(text);
                runs.push(0);
            }
        }
    }
    for run in &mut runs {
        *run = (*run).min(2);
    }
    match gap.lead {
        Blank::Keep => {}
        Blank::Strip => runs[0] = runs[0].min(1),
        Blank::One if runs[0] > 0 => runs[0] = 2,
        Blank::One => {}
    }
    let last = runs.len() - 1;
    if gap.ends_line {
        // The line break is the encoder's. hcl-edit moves a comment and its newline out of
        // a grouping `for` expression into such a gap.
        runs[last] = 0;
    } else if gap.trim_end {
        runs[last] = runs[last].min(1);
    }

    let mut rendered = Rendered {
        text: String::new(),
        line: None,
        blank: false,
        starts_line: false,
    };
    let out = &mut rendered.text;
    for (index, &run) in runs.iter().enumerate() {
        let newlines = if index == 0 {
            run.saturating_sub(usize::from(gap.at_line_start))
        } else {
            run
        };
        out.extend(std::iter::repeat_n('\n', newlines));
        rendered.blank |= run >= 2;
        if let Some(comment) = comments.get(index) {
            if run > 0 {
                push_indent(out, gap.indent);
                rendered.line = Some(gap.indent);
            } else {
                out.push(' ');
            }
            out.push_str(comment);
        } else {
            rendered.starts_line = run > 0;
            if gap.ends_line {
                // The encoder writes the line break.
            } else if run > 0 {
                push_indent(out, gap.close);
                rendered.line = Some(gap.close);
            } else if comments.is_empty() {
                out.push_str(gap.inline);
            } else {
                out.push(' ');
            }
        }
    }
    rendered
}

fn push_indent(out: &mut String, level: usize) {
    for _ in 0..level {
        out.push_str("  ");
    }
}

#[derive(Debug, PartialEq)]
enum Piece {
    Newline,
    /// A comment, without trailing whitespace and with `\n` line endings.
    Comment(String),
    /// Anything that is neither whitespace nor a comment; not expected in decor, kept verbatim.
    Other(String),
}

/// Splits raw decor into newlines and comments, dropping all other whitespace.
fn pieces(raw: &str) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut rest = raw;
    while let Some(first) = rest.chars().next() {
        let len = if first == '\n' {
            pieces.push(Piece::Newline);
            1
        } else if first.is_whitespace() {
            first.len_utf8()
        } else if first == '#' || rest.starts_with("//") {
            let len = rest.find('\n').unwrap_or(rest.len());
            pieces.push(Piece::Comment(rest[..len].trim_end().to_owned()));
            len
        } else if let Some(body) = rest.strip_prefix("/*") {
            let len = body.find("*/").map_or(rest.len(), |end| end + 4);
            let text: Vec<&str> = rest[..len].split('\n').map(str::trim_end).collect();
            pieces.push(Piece::Comment(text.join("\n")));
            len
        } else {
            let len = rest
                .find(|c: char| c.is_whitespace() || c == '#' || c == '/')
                .filter(|&len| len > 0)
                .unwrap_or(first.len_utf8());
            pieces.push(Piece::Other(rest[..len].to_owned()));
            len
        };
        rest = &rest[len..];
    }
    pieces
}

fn has_comment(raw: &str) -> bool {
    pieces(raw).iter().any(|piece| *piece != Piece::Newline)
}

fn width(text: &str) -> usize {
    text.chars().count()
}

/// Width of what a rendered prefix puts before the token on the token's own line, such as a
/// `/* comment */`, not counting the indentation.
fn same_line_width(prefix: &str) -> usize {
    prefix
        .rsplit('\n')
        .next()
        .map_or(0, |line| width(line.trim_start()))
}

fn take_prefix(decor: &mut Decor) -> String {
    let raw: &str = decor.prefix().map_or("", |raw| raw);
    let raw = raw.to_owned();
    // An explicit empty string: leaving it unset would let the encoder insert its default.
    decor.set_prefix("");
    raw
}

fn take_suffix(decor: &mut Decor) -> String {
    let raw: &str = decor.suffix().map_or("", |raw| raw);
    let raw = raw.to_owned();
    decor.set_suffix("");
    raw
}

/// Takes all decor written before the first token of `expr`, outermost first.
fn take_leading(expr: &mut Expression) -> String {
    let mut raw = take_prefix(expr.decor_mut());
    match expr {
        Expression::Traversal(traversal) => raw += &take_leading(&mut traversal.expr),
        Expression::BinaryOp(op) => raw += &take_leading(&mut op.lhs_expr),
        Expression::Conditional(cond) => raw += &take_leading(&mut cond.cond_expr),
        Expression::FuncCall(call) => {
            let name = &mut call.name;
            let first = name.namespace.first_mut().unwrap_or(&mut name.name);
            raw += &take_prefix(first.decor_mut());
        }
        _ => {}
    }
    raw
}

/// Takes all decor written after the last token of `expr`, innermost first.
fn take_trailing(expr: &mut Expression) -> String {
    let mut raw = match expr {
        Expression::Traversal(traversal) => match traversal.operators.last_mut() {
            Some(operator) => take_operator_trailing(operator),
            None => take_trailing(&mut traversal.expr),
        },
        Expression::BinaryOp(op) => take_trailing(&mut op.rhs_expr),
        Expression::Conditional(cond) => take_trailing(&mut cond.false_expr),
        Expression::UnaryOp(op) => take_trailing(&mut op.expr),
        Expression::FuncCall(call) => take_suffix(call.args.decor_mut()),
        _ => String::new(),
    };
    raw += &take_suffix(expr.decor_mut());
    raw
}

fn take_operator_trailing(operator: &mut Decorated<TraversalOperator>) -> String {
    let mut raw = match operator.value_mut() {
        TraversalOperator::GetAttr(ident) => take_suffix(ident.decor_mut()),
        TraversalOperator::LegacyIndex(index) => take_suffix(index.decor_mut()),
        TraversalOperator::AttrSplat(splat) => take_suffix(splat.decor_mut()),
        TraversalOperator::FullSplat(_) | TraversalOperator::Index(_) => String::new(),
    };
    raw += &take_suffix(operator.decor_mut());
    raw
}

/// Whether hcl-edit prints every heredoc of `body` exactly as `source` spells it (line endings
/// aside). It does not always: a `<<-` heredoc whose first line is less indented than a later
/// one after an interpolation loses characters, and the reparsed tree has the same loss, so only
/// the source can tell.
fn heredocs_print_as_written(source: &str, body: &Body) -> bool {
    struct Heredocs<'s> {
        source: &'s str,
        faithful: bool,
    }

    impl Visit for Heredocs<'_> {
        fn visit_expr(&mut self, expr: &Expression) {
            if let Expression::HeredocTemplate(heredoc) = expr {
                let written = expr.span().and_then(|span| self.source.get(span));
                let mut bare = heredoc.clone();
                bare.decorate(("", ""));
                let printed = Expression::HeredocTemplate(bare).to_string();
                self.faithful &= written.is_some_and(|written| {
                    written.replace("\r\n", "\n") == printed.replace("\r\n", "\n")
                });
            }
            visit::visit_expr(self, expr);
        }
    }

    let mut heredocs = Heredocs {
        source,
        faithful: true,
    };
    heredocs.visit_body(body);
    heredocs.faithful
}

/// The document with everything that is layout reset, for comparing meaning.
fn canonical(mut body: Body) -> Body {
    Canonical.visit_body_mut(&mut body);
    body
}

/// Resets the layout-only fields that hcl-edit's `PartialEq` still compares (decor is ignored).
struct Canonical;

impl VisitMut for Canonical {
    fn visit_array_mut(&mut self, node: &mut Array) {
        node.set_trailing("");
        node.set_trailing_comma(false);
        visit_mut::visit_array_mut(self, node);
    }

    fn visit_object_mut(&mut self, node: &mut Object) {
        node.set_trailing("");
        visit_mut::visit_object_mut(self, node);
    }

    fn visit_object_value_mut(&mut self, node: &mut ObjectValue) {
        node.set_terminator(ObjectValueTerminator::None);
        visit_mut::visit_object_value_mut(self, node);
    }

    fn visit_func_args_mut(&mut self, node: &mut FuncArgs) {
        node.set_trailing("");
        node.set_trailing_comma(false);
        visit_mut::visit_func_args_mut(self, node);
    }

    fn visit_heredoc_template_mut(&mut self, node: &mut HeredocTemplate) {
        node.set_trailing("");
        visit_mut::visit_heredoc_template_mut(self, node);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Formats `source` and checks what every output must satisfy: it parses back to the same
    /// document (for hcl-edit and for hcl-rs) without the fallback, and formatting it again
    /// changes nothing.
    #[track_caller]
    fn fmt(source: &str) -> String {
        let body = parser::parse_body(source).expect("test input parses");
        let out = layout(source, body.clone());
        let reparsed = parser::parse_body(&out)
            .unwrap_or_else(|err| panic!("output does not parse: {err}\n{out}"));
        assert!(
            canonical(reparsed) == canonical(body),
            "output means something else:\n{out}"
        );
        if let Ok(expected) = hcl::parse(source) {
            let actual = hcl::parse(&out).expect("hcl-rs parses the output");
            assert_eq!(expected, actual, "hcl-rs sees a different document:\n{out}");
        }
        // Only whitespace may change, apart from dropped trailing commas and hcl-edit's own
        // spellings: quotes around object keys that read as keywords, escapes for whitespace
        // and other control characters in strings, `<<EOT` for a `<<-EOT` with nothing to strip.
        let controls = source
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'));
        if !controls {
            assert_eq!(
                tokens(source),
                tokens(&out),
                "more than layout changed:\n{out}"
            );
        }
        assert_eq!(format_source(source).unwrap(), out);
        assert_eq!(format_source(&out).unwrap(), out, "not idempotent");
        out
    }

    fn tokens(text: &str) -> String {
        let text = [("\\t", ""), ("\\n", ""), ("\\r", ""), ("<<-", "<<")]
            .iter()
            .fold(text.to_owned(), |text, (from, to)| text.replace(from, to));
        text.chars()
            .filter(|c| !c.is_whitespace() && !matches!(c, ',' | '"'))
            .collect()
    }

    #[test]
    fn indents_two_spaces_per_level() {
        let source = "a {\nb {\n        c {\nd = 1\n    }\n}\n      }\n";
        insta::assert_snapshot!(fmt(source), @"
        a {
          b {
            c {
              d = 1
            }
          }
        }
        ");
    }

    #[test]
    fn one_space_around_equals_and_aligned_runs() {
        let source = r#"
x {
  a=1
  long_name   =    "v"
  # a comment line does not break the run
  mid =  true

  after_blank = 1
  b = 2
  nested {}
  c = 3
  multi = [
    1,
  ]
  dd = 4
  eee = 5
}
"#;
        insta::assert_snapshot!(fmt(source), @r#"
        x {
          a         = 1
          long_name = "v"
          # a comment line does not break the run
          mid       = true

          after_blank = 1
          b           = 2
          nested {}
          c = 3
          multi = [
            1,
          ]
          dd  = 4
          eee = 5
        }
        "#);
    }

    #[test]
    fn aligns_trailing_comments_of_consecutive_lines() {
        let source = r#"
connection {
  transport = "ssh"              # ssh (default) | local
  host      = "10.0.0.11"
  key_path  = "~/.ssh/id_ed25519"     # without it: ssh-agent
  host_key  = "ssh-ed25519 AAAA..."   // optional pin
  port = 22 /* block */
  connect_timeout_sec = 10
}
"#;
        insta::assert_snapshot!(fmt(source), @r#"
        connection {
          transport           = "ssh" # ssh (default) | local
          host                = "10.0.0.11"
          key_path            = "~/.ssh/id_ed25519"   # without it: ssh-agent
          host_key            = "ssh-ed25519 AAAA..." // optional pin
          port                = 22                    /* block */
          connect_timeout_sec = 10
        }
        "#);
    }

    #[test]
    fn block_headers() {
        let source = r#"
host    "gpu-a"{
  x = 1
}
backend   "cuda"   "extra"   {
}
plain{ a = 1 }
labelled ident_label "string" { }
empty "x" {

}
"#;
        insta::assert_snapshot!(fmt(source), @r#"
        host "gpu-a" {
          x = 1
        }

        backend "cuda" "extra" {}

        plain { a = 1 }

        labelled ident_label "string" {}

        empty "x" {}
        "#);
    }

    #[test]
    fn blank_lines() {
        let source = "\n\n\nsettings {\n\n\n  a = 1\n\n\n\n  b = 2\n\n\n}\nhost \"a\" {}\nhost \"b\" {}\n\n\n\nvariable \"v\" {}\ntop = 1\nother = 2   \n\n\n\n";
        insta::assert_snapshot!(fmt(source), @r#"
        settings {
          a = 1

          b = 2
        }

        host "a" {}

        host "b" {}

        variable "v" {}

        top   = 1
        other = 2
        "#);
    }

    #[test]
    fn final_newline_is_added() {
        insta::assert_snapshot!(fmt("a = 1"), @"a = 1");
        assert_eq!(fmt("a = 1"), "a = 1\n");
        assert_eq!(fmt("x {}\n\n\n"), "x {}\n");
    }

    #[test]
    fn comments_of_every_kind_in_every_position() {
        let source = r#"
# hash before a block
// slashes before a block
/* block comment before a block */
host "a" { # after the opening brace
    # before an attribute
  user = "ops" # trailing hash
      // between attributes
  port = 22 // trailing slashes
  /* between attributes */
  key = "k" /* trailing block */
  /* before the key */ addr = "10.0.0.1"
  label /* before equals */ = "x"
  other = /* after equals */ "y"
  empty {
      # inside an empty block
  }
  empty2 { /* inline in an empty block */ }
  empty3 { // after the brace of an empty block
  }
      # before the closing brace
} # after the closing brace
/*
   a multi-line
   block comment
*/
model "m" {}
# at the end of the file
// and more
/* and a block */
"#;
        insta::assert_snapshot!(fmt(source), @r#"
        # hash before a block
        // slashes before a block
        /* block comment before a block */
        host "a" { # after the opening brace
          # before an attribute
          user = "ops" # trailing hash
          // between attributes
          port = 22    // trailing slashes
          /* between attributes */
          key  = "k"   /* trailing block */
          /* before the key */ addr = "10.0.0.1"
          label /* before equals */ = "x"
          other = /* after equals */ "y"
          empty {
            # inside an empty block
          }
          empty2 { /* inline in an empty block */ }
          empty3 { // after the brace of an empty block
          }
          # before the closing brace
        } # after the closing brace

        /*
           a multi-line
           block comment
        */
        model "m" {}
        # at the end of the file
        // and more
        /* and a block */
        "#);
    }

    #[test]
    fn comments_inside_expressions() {
        let source = r#"
args = [ # after the bracket
  "a", # after a
  # own line
  "b" /* before comma */ ,
  /* before c */ "c"
  # before the closing bracket
]
env = {
  A = "1" # after A
  # own line
  BB = "2"
}
call = f( # after the paren
  1, // one
  2
)
sum = 1 + /* inside an operator */ 2
attr = var.list[0] /* between traversals */ .name
"#;
        insta::assert_snapshot!(fmt(source), @r#"
        args = [ # after the bracket
          "a", # after a
          # own line
          "b" /* before comma */ ,
          /* before c */ "c"
          # before the closing bracket
        ]
        env = {
          A  = "1" # after A
          # own line
          BB = "2"
        }
        call = f( # after the paren
          1, // one
          2
        )
        sum  = 1 + /* inside an operator */ 2
        attr = var.list[0] /* between traversals */ .name
        "#);
    }

    #[test]
    fn comment_after_a_grouping_ellipsis_moves_behind_the_brace() {
        // hcl-edit has no place for a gap between `...` and `}`: it keeps what was there, line
        // break included, after the closing brace.
        let source = "a = {for k, v in x : k => v... # why\n}\nb = 1\n";
        let out = format_source(source).unwrap();
        assert_eq!(out, "a = {for k, v in x : k => v...} # why\nb = 1\n");
        assert_eq!(format_source(&out).unwrap(), out);
    }

    #[test]
    fn comments_around_operators_split_over_lines() {
        let source = "x = (\n  a # first\n      + b # second\n    * c\n)\n";
        insta::assert_snapshot!(fmt(source), @"
        x = (
          a # first
          + b # second
          * c
        )
        ");
    }

    #[test]
    fn heredoc_bodies_are_never_changed() {
        let source = "backend \"b\" {\n      container {\n  script = <<-EOT\n    echo  hi   \n\n      indented\n    EOT\n        raw = <<EOT\n  keep   this  \n\tand this\nEOT\n  list = [\n<<EOT\nin a list\nEOT\n  , \"b\"]\n  }\n}\n";
        // Spelled out rather than snapshotted: the trailing spaces inside the heredocs matter.
        let expected = "backend \"b\" {\n  container {\n    script = <<-EOT\n    echo  hi   \n\n      indented\n    EOT\n    raw = <<EOT\n  keep   this  \n\tand this\nEOT\n    list = [\n      <<EOT\nin a list\nEOT\n      , \"b\"]\n  }\n}\n";
        assert_eq!(fmt(source), expected);
    }

    #[test]
    fn nested_blocks_three_deep() {
        let source = r#"
host "a" {
capabilities {
gpu {
memory {
size = 48   # GiB
  kind="hbm"
}
}
}
}
"#;
        insta::assert_snapshot!(fmt(source), @r#"
        host "a" {
          capabilities {
            gpu {
              memory {
                size = 48 # GiB
                kind = "hbm"
              }
            }
          }
        }
        "#);
    }

    #[test]
    fn multi_line_objects_and_arrays_are_reindented() {
        let source = r#"
x {
      env = {
               CUDA_VISIBLE_DEVICES = "0,1"
     LLAMA_ARG_HOST="0.0.0.0"
        nested = {
    a = 1
          bb = [
  1, 2,
        3,
               ]
        }

       after_blank = "x"
    }
  list = [{
  name = "a"
      }, {
    name = "b"
  }]
  deep = [
        [
      1,
    ],
  ]
  commas = {
    a = 1,
    bbb = 2,
  }
  call = concat(
        ["a"],
    [
          "b",
        ],
  )
}
"#;
        insta::assert_snapshot!(fmt(source), @r#"
        x {
          env = {
            CUDA_VISIBLE_DEVICES = "0,1"
            LLAMA_ARG_HOST       = "0.0.0.0"
            nested = {
              a = 1
              bb = [
                1, 2,
                3,
              ]
            }

            after_blank = "x"
          }
          list = [{
            name = "a"
          }, {
            name = "b"
          }]
          deep = [
            [
              1,
            ],
          ]
          commas = {
            a   = 1,
            bbb = 2,
          }
          call = concat(
            ["a"],
            [
              "b",
            ],
          )
        }
        "#);
    }

    #[test]
    fn single_line_collections_are_normalised() {
        let source = r#"
labels = {rack="r1",zone  =  "z" ,}
empty_object = {   }
list = [ "a" ,"b",  "c", ]
empty_list = [ ]
nested = [ [1,2] , {a=1} ]
call = max( 1 ,2 , 3 )
spread = concat(var.lists ... )
colon = { a : 1 }
"#;
        insta::assert_snapshot!(fmt(source), @r#"
        labels       = { rack = "r1", zone = "z" }
        empty_object = {}
        list         = ["a", "b", "c"]
        empty_list   = []
        nested       = [[1, 2], { a = 1 }]
        call         = max(1, 2, 3)
        spread       = concat(var.lists...)
        colon        = { a: 1 }
        "#);
    }

    #[test]
    fn expressions_keep_their_tokens() {
        let source = r#"
template = "${ var.models_dir }/x-${var.name}%{ if true }y%{ endif }"
escapes  = "tab\tquote\" unicode é"
numbers  = [1.50, 1e3, -1, -  5]
ops      = 1+2 *3 - -4 == 5 && !false || x<=y
cond     = var.a?"x":"y"
trav     = var . list [ 0 ] . name
splat    = var.hosts [*] .id
for_list = [ for i , s in var.list : upper( s ) if s!="" ]
for_obj  = { for k,v in var.map : k=>v ... }
paren    = ( 1 + 2 )
ns       = provider :: ns :: fn( 1 )
number_traversals = [1 .foo, 1. 0, 1.5 .a]
"#;
        insta::assert_snapshot!(fmt(source), @r#"
        template          = "${ var.models_dir }/x-${var.name}%{ if true }y%{ endif }"
        escapes           = "tab\tquote\" unicode é"
        numbers           = [1.50, 1e3, -1, -  5]
        ops               = 1 + 2 * 3 - -4 == 5 && !false || x <= y
        cond              = var.a ? "x" : "y"
        trav              = var.list[0].name
        splat             = var.hosts[*].id
        for_list          = [for i, s in var.list : upper(s) if s != ""]
        for_obj           = {for k, v in var.map : k => v...}
        paren             = (1 + 2)
        ns                = provider::ns::fn(1)
        number_traversals = [1 .foo, 1. 0, 1.5 .a]
        "#);
    }

    #[test]
    fn string_escapes_are_respelled_by_hcl_edit() {
        // hcl-edit keeps a string's value, not its spelling: it prints `\u00e9` as `é`. The
        // value is the same, so this is accepted rather than worked around.
        let out = format_source("a = \"caf\\u00e9\"\n").unwrap();
        assert_eq!(out, "a = \"café\"\n");
    }

    #[test]
    fn windows_line_endings_become_unix() {
        let source = "# header\r\nhost \"a\" {\r\n  user = \"ops\" # trailing\r\n\r\n\r\n  port=22\r\n  list = [\r\n    1,\r\n  ]\r\n  /* block\r\n     comment */\r\n}\r\n";
        let out = fmt(source);
        assert!(!out.contains('\r'));
        insta::assert_snapshot!(out, @r#"
        # header
        host "a" {
          user = "ops" # trailing

          port = 22
          list = [
            1,
          ]
          /* block
             comment */
        }
        "#);
    }

    #[test]
    fn windows_line_endings_inside_heredocs_are_kept() {
        let source = "a = <<EOT\r\nline one\r\nline two\r\nEOT\r\nb = 1\r\n";
        assert_eq!(
            fmt(source),
            "a = <<EOT\nline one\r\nline two\r\nEOT\nb = 1\n"
        );
    }

    #[test]
    fn empty_and_comment_only_files() {
        assert_eq!(fmt(""), "");
        assert_eq!(fmt("\n\n   \n"), "");
        assert_eq!(fmt("\n\n# only a comment"), "# only a comment\n");
        assert_eq!(fmt("// a\n\n\n/* b */\n\n"), "// a\n\n/* b */\n");
    }

    #[test]
    fn nesting_up_to_the_parser_limits_does_not_overflow() {
        let arrays = format!("a = {}1{}\n", "[".repeat(63), "]".repeat(63));
        let operators = format!("b = {}\n", vec!["x"; 128].join(" + "));
        let mixed = format!(
            "c = {}{}{}\n",
            "f([{ k = (".repeat(15),
            1,
            ") }])".repeat(15)
        );
        let blocks = format!("{}x = 1\n{}", "b {\n".repeat(60), "}\n".repeat(60));
        for source in [arrays, operators, mixed, blocks] {
            fmt(&source);
        }
    }

    #[test]
    fn parse_errors_are_returned() {
        let err = format_source("host \"a\" {\n  user = \n}\n").unwrap_err();
        assert_eq!(err.location().line(), 2);
        assert!(format_source("a = [1, 2").is_err());
        assert!(format_source("a = 1\na = 2\n").is_err());
    }

    #[test]
    fn leaves_the_file_alone_when_hcl_edit_would_garble_a_heredoc() {
        // hcl-edit strips four columns from `multi` too, as the later line is indented by four.
        let source = "a   =   <<-EOT\nmulti ${x}\n    %{ if y }yes%{ endif }\n  EOT\n";
        assert_eq!(format_source(source).unwrap(), source);
    }

    #[test]
    fn falls_back_to_the_input_when_the_layout_would_not_reparse() {
        // hcl-edit reads `[for ` as the start of a for expression, so the spaces the layout
        // puts around `+` would break this list.
        let source = "a = [for+1]\n";
        assert!(parser::parse_body("a = [for + 1]\n").is_err());
        assert_eq!(format_source(source).unwrap(), source);
    }
    /// A realistic berth config with a deliberately messy layout and comments everywhere.
    const MESSY: &str = r#"

# berth fleet: two GPU boxes and a CPU fallback.
// Deliberately messy: `berth fmt` must tidy it without losing a comment.

settings {   # optional, at most one
    state_dir="./.berth"     # sled state store and lock file
  parallelism   = 10 # resource operations in flight at once
}
variable "models_dir" {
default = "/srv/models"
      description = "Where model files live on the GPU hosts"
}
variable "api_key" { sensitive=true }   # from -var api_key=..., BERTH_VAR_api_key, or --var-file
variable   "replicas"   {
  default   =   1
  type = number


}



/* Hosts ---------------------------------------------------------------
   One block per machine. */
host "gpu-a" {

  connection {
    transport = "ssh"              # ssh (default) | local
    host      = "10.0.0.11"
      port = 22
    user= "ops"
    key_path  = "~/.ssh/id_ed25519"     # without it: ssh-agent
    host_key  = "ssh-ed25519 AAAA..."   # optional pin; otherwise ~/.ssh/known_hosts
    connect_timeout_sec = 10
  }
  capabilities {
    backends = [ "cuda","cpu" ]
    gpus     = 2
      vram_gib = 48 // two 24 GiB cards
  }
  labels  = {rack="r1", zone = "eu-1"}
  run_dir = "/var/lib/berth"       # pid files, logs, metadata; host lock
}
host "gpu-b" {
  connection { host = "10.0.0.12" }
  capabilities {
  backends = ["cuda", "cpu",]
  gpus = 1
  vram_gib = 24
  }
  labels = {
      rack = "r2"   # other rack
    zone =  "eu-1"
  }
}
host "local" {
  connection {
    transport = "local"
  }
  capabilities { backends = ["cpu"] }
}

backend "cuda" {
  runtime      = "docker"         # process | systemd | docker | podman
  host_filters = ["gpu-*"]         # host ids or globs this backend may run on
  verify_cmd   = "nvidia-smi -L"   # must exit 0 on the host before any model starts on it
  env          = {CUDA_VISIBLE_DEVICES="0,1"}
  args         = ["--n-gpu-layers",   "999"]
  container {                      # docker and podman only
    image         = "ghcr.io/ggml-org/llama.cpp:server-cuda"
    image_archive = "/srv/images/llama-server-cuda.tar"   # `docker load` when the image is missing
        gpus          = "all"
    volumes       = [
        "${var.models_dir}:/models:ro",
      "/srv/cache:/cache",   # shared download cache
    ]
  }
}
backend "cpu" {
    runtime = "process"
    args = concat(
      ["--threads", "16"],
         var.extra_args ,
    )
  verify_cmd = <<-EOT
    test -x /usr/local/bin/llama-server &&
      grep -q avx2 /proc/cpuinfo
    EOT
}

model "qwen2.5-7b" {
  enabled  = true
  source   = "${var.models_dir}/qwen2.5-7b-instruct-q4_k_m.gguf"
  size_gib = 4.7                   # optional: otherwise measured on the host (all shards summed)
  host_policy {
    hosts    = ["gpu-*"]         # ids or globs; or labels = { rack = "r1" }
    replicas = var.replicas
  }
  backend_policy { prefer = ["cuda", "cpu"] }
  runtime_defaults {port=8080}
  launch {
    start_cmd         = "llama-server -m {source} --host 0.0.0.0 --port {port} {backend_args}"
    probe_cmd         = "curl -fsS http://127.0.0.1:{port}/v1/models"   # or: probe_http = "/v1/models"
    probe_timeout_sec = 300        # optional: size-aware default (section 4)
    probe_interval_ms = 1000
  }
  env        = { LLAMA_API_KEY = var.api_key }
  group      = "gpu-a-main"        # models of one group are exclusive on a host
  default    = true                # the group member that runs when nothing was selected
  depends_on = ["model.embedder"]   # strings, since ids may hold dots
}
model "embedder" {
  source = "/srv/models/nomic-embed.gguf"
  host_policy {
    labels = { rack = "r1" }
  }
  backend_policy {
    prefer = [for b in ["cuda", "cpu"] : b if b != "rocm"]
  }
  launch {
    start_cmd = join(" ", [
      "llama-server", "--embedding",
      "-m", "{source}",   # the model file
      "--port", "{port}",
    ])
    probe_http = "/health"
  }
  env = {for k, v in {A = "1", B = "2"} : "EMBED_${k}" => v}
  size_gib = 0.3 * 2 # café ☕ in a comment
} # end of models
# end of file
"#;

    #[test]
    fn realistic_config() {
        insta::assert_snapshot!(fmt(MESSY), @r#"
        # berth fleet: two GPU boxes and a CPU fallback.
        // Deliberately messy: `berth fmt` must tidy it without losing a comment.

        settings { # optional, at most one
          state_dir   = "./.berth" # sled state store and lock file
          parallelism = 10         # resource operations in flight at once
        }

        variable "models_dir" {
          default     = "/srv/models"
          description = "Where model files live on the GPU hosts"
        }

        variable "api_key" { sensitive = true } # from -var api_key=..., BERTH_VAR_api_key, or --var-file

        variable "replicas" {
          default = 1
          type    = number
        }

        /* Hosts ---------------------------------------------------------------
           One block per machine. */
        host "gpu-a" {
          connection {
            transport           = "ssh" # ssh (default) | local
            host                = "10.0.0.11"
            port                = 22
            user                = "ops"
            key_path            = "~/.ssh/id_ed25519"   # without it: ssh-agent
            host_key            = "ssh-ed25519 AAAA..." # optional pin; otherwise ~/.ssh/known_hosts
            connect_timeout_sec = 10
          }
          capabilities {
            backends = ["cuda", "cpu"]
            gpus     = 2
            vram_gib = 48 // two 24 GiB cards
          }
          labels  = { rack = "r1", zone = "eu-1" }
          run_dir = "/var/lib/berth" # pid files, logs, metadata; host lock
        }

        host "gpu-b" {
          connection { host = "10.0.0.12" }
          capabilities {
            backends = ["cuda", "cpu"]
            gpus     = 1
            vram_gib = 24
          }
          labels = {
            rack = "r2" # other rack
            zone = "eu-1"
          }
        }

        host "local" {
          connection {
            transport = "local"
          }
          capabilities { backends = ["cpu"] }
        }

        backend "cuda" {
          runtime      = "docker"        # process | systemd | docker | podman
          host_filters = ["gpu-*"]       # host ids or globs this backend may run on
          verify_cmd   = "nvidia-smi -L" # must exit 0 on the host before any model starts on it
          env          = { CUDA_VISIBLE_DEVICES = "0,1" }
          args         = ["--n-gpu-layers", "999"]
          container { # docker and podman only
            image         = "ghcr.io/ggml-org/llama.cpp:server-cuda"
            image_archive = "/srv/images/llama-server-cuda.tar" # `docker load` when the image is missing
            gpus          = "all"
            volumes = [
              "${var.models_dir}:/models:ro",
              "/srv/cache:/cache", # shared download cache
            ]
          }
        }

        backend "cpu" {
          runtime = "process"
          args = concat(
            ["--threads", "16"],
            var.extra_args,
          )
          verify_cmd = <<-EOT
            test -x /usr/local/bin/llama-server &&
              grep -q avx2 /proc/cpuinfo
            EOT
        }

        model "qwen2.5-7b" {
          enabled  = true
          source   = "${var.models_dir}/qwen2.5-7b-instruct-q4_k_m.gguf"
          size_gib = 4.7 # optional: otherwise measured on the host (all shards summed)
          host_policy {
            hosts    = ["gpu-*"] # ids or globs; or labels = { rack = "r1" }
            replicas = var.replicas
          }
          backend_policy { prefer = ["cuda", "cpu"] }
          runtime_defaults { port = 8080 }
          launch {
            start_cmd         = "llama-server -m {source} --host 0.0.0.0 --port {port} {backend_args}"
            probe_cmd         = "curl -fsS http://127.0.0.1:{port}/v1/models" # or: probe_http = "/v1/models"
            probe_timeout_sec = 300                                           # optional: size-aware default (section 4)
            probe_interval_ms = 1000
          }
          env        = { LLAMA_API_KEY = var.api_key }
          group      = "gpu-a-main"       # models of one group are exclusive on a host
          default    = true               # the group member that runs when nothing was selected
          depends_on = ["model.embedder"] # strings, since ids may hold dots
        }

        model "embedder" {
          source = "/srv/models/nomic-embed.gguf"
          host_policy {
            labels = { rack = "r1" }
          }
          backend_policy {
            prefer = [for b in ["cuda", "cpu"] : b if b != "rocm"]
          }
          launch {
            start_cmd = join(" ", [
              "llama-server", "--embedding",
              "-m", "{source}", # the model file
              "--port", "{port}",
            ])
            probe_http = "/health"
          }
          env      = {for k, v in { A = "1", B = "2" } : "EMBED_${k}" => v}
          size_gib = 0.3 * 2 # café ☕ in a comment
        } # end of models
        # end of file
        "#);
    }

    /// Applies `edit` to every line that is code: heredoc bodies and the inside of block
    /// comments are values and comment text, which a layout change must not touch.
    fn map_code_lines(source: &str, mut edit: impl FnMut(&str) -> String) -> String {
        let mut out = Vec::new();
        let mut in_heredoc = false;
        let mut in_comment = false;
        for line in source.split('\n') {
            let code = !in_heredoc && !in_comment;
            if in_heredoc {
                in_heredoc = line.trim() != "EOT";
            } else if in_comment {
                in_comment = !line.contains("*/");
            } else {
                in_heredoc = line.contains("<<");
                in_comment = line.contains("/*") && !line.contains("*/");
            }
            out.push(if code { edit(line) } else { line.to_owned() });
        }
        out.join("\n")
    }

    /// Variants of `source` with the same meaning and, for the first few, the same layout.
    fn mutations(source: &str) -> Vec<(&'static str, bool, String)> {
        vec![
            ("crlf", true, source.replace('\n', "\r\n")),
            ("no final newline", true, source.trim_end().to_owned()),
            ("extra final newlines", true, format!("{source}\n\n\n")),
            (
                "no indentation",
                true,
                map_code_lines(source, |l| l.trim_start().to_owned()),
            ),
            (
                "deep indentation",
                true,
                map_code_lines(source, |l| format!("        {l}")),
            ),
            (
                "tab indentation",
                true,
                map_code_lines(source, |l| {
                    let code = l.trim_start();
                    format!("{}{code}", "\t".repeat(l.len() - code.len()))
                }),
            ),
            (
                "trailing whitespace",
                true,
                map_code_lines(source, |l| {
                    // A heredoc's opening line must end right after its delimiter.
                    if l.contains("<<") {
                        l.to_owned()
                    } else {
                        format!("{l}  \t ")
                    }
                }),
            ),
            (
                "blank lines tripled",
                true,
                map_code_lines(source, |l| {
                    if l.trim().is_empty() {
                        "\n\n".to_owned()
                    } else {
                        l.to_owned()
                    }
                }),
            ),
            ("tight equals", false, source.replace(" = ", "=")),
            ("wide equals", false, source.replace(" = ", "   =   ")),
            ("tight commas", false, source.replace(", ", ",")),
            (
                "blank lines doubled",
                false,
                map_code_lines(source, |l| format!("{l}\n")),
            ),
            (
                "blank lines removed",
                false,
                source
                    .split('\n')
                    .filter(|l| !l.trim().is_empty())
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
        ]
    }

    #[test]
    fn realistic_config_mutations_keep_meaning_and_converge() {
        let expected = fmt(MESSY);
        for (name, same_layout, source) in mutations(MESSY) {
            let out = std::panic::catch_unwind(|| fmt(&source))
                .unwrap_or_else(|_| panic!("mutation {name:?} failed:\n{source}"));
            if same_layout {
                assert_eq!(out, expected, "mutation {name:?} changed the layout");
            }
        }
    }

    /// Checks every property of [`fmt`] on arbitrary text, naming the input on failure.
    #[track_caller]
    fn check_any(source: &str) {
        let Ok(body) = parser::parse_body(source) else {
            assert!(format_source(source).is_err());
            return;
        };
        // Where hcl-edit cannot print its own tree back faithfully (some `<<-` heredocs), the
        // input must come back as is.
        let printed = body.to_string();
        let lossless = heredocs_print_as_written(source, &body)
            && parser::parse_body(&printed)
                .is_ok_and(|reparsed| canonical(reparsed) == canonical(body));
        if !lossless {
            assert_eq!(format_source(source).unwrap(), source);
            return;
        }
        if std::panic::catch_unwind(|| fmt(source)).is_err() {
            panic!("formatting failed for {source:?}");
        }
    }

    #[test]
    fn every_prefix_of_the_realistic_config() {
        let boundaries = MESSY.char_indices().map(|(i, _)| i).chain([MESSY.len()]);
        for end in boundaries {
            check_any(&MESSY[..end]);
        }
    }

    /// xorshift64*: deterministic, so a failure reproduces.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let n = u64::try_from(n).expect("usize fits u64");
            usize::try_from(self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n).expect("below n")
        }
    }

    const SNIPPETS: &[&str] = &[
        " ", "  ", "\n", "\r\n", "\t", "#", "# c\n", "//", "/*", "*/", "/* c */", "{", "}", "[",
        "]", "(", ")", ",", "=", "\"", "a", "1", ".", "<<EOT\n", "EOT", "+", "-", "?", ":", "for ",
        "${", "...", "é",
    ];

    /// Expression syntax that the realistic config does not exercise.
    const EXPRESSIONS: &str = r#"
shapes {
  for_list = [ for i , s in var.list : upper( s ) if s != "" ]
  for_obj = {for k,v in var.map : k=>v... if v != null}
  cond = var.a ? var.b : (
    var.c # why
      + 1
  )
  calls = f(g(1, 2), [3, 4], {x=5}, var.list...)
  heredoc = <<-EOT
    multi ${var.x}
    %{ if var.y }yes%{ endif }
  EOT
  template = "${var.a}-${ upper(var.b) }"
  splat = var.hosts[*].id
  trav = var.obj.key [0]. name
  ops = -1 + !true == false || 2*3 >= 4 % 5
  keys = {
    "quoted" = 1
    (var.k) = 2
    plain = [1, 2, 3] # trailing
    colon: 4
  }
  ns = provider :: ns :: fn(1)
  nested = [
    {
        a = 1
    },
    { b = 2 },
  ]
}
"#;

    #[test]
    fn expression_corpus() {
        insta::assert_snapshot!(fmt(EXPRESSIONS), @r#"
        shapes {
          for_list = [for i, s in var.list : upper(s) if s != ""]
          for_obj  = {for k, v in var.map : k => v... if v != null}
          cond = var.a ? var.b : (
            var.c # why
            + 1
          )
          calls = f(g(1, 2), [3, 4], { x = 5 }, var.list...)
          heredoc = <<-EOT
            multi ${var.x}
            %{ if var.y }yes%{ endif }
          EOT
          template = "${var.a}-${ upper(var.b) }"
          splat    = var.hosts[*].id
          trav     = var.obj.key[0].name
          ops      = -1 + !true == false || 2 * 3 >= 4 % 5
          keys = {
            "quoted" = 1
            (var.k)  = 2
            plain    = [1, 2, 3] # trailing
            colon: 4
          }
          ns = provider::ns::fn(1)
          nested = [
            {
              a = 1
            },
            { b = 2 },
          ]
        }
        "#);
    }

    /// Applies up to three random edits to `seed`, `iterations` times, checking every result;
    /// returns how many edited inputs parsed.
    fn fuzz(seed: &str, iterations: usize, rng: &mut Rng) -> usize {
        let chars: Vec<char> = seed.chars().collect();
        let mut parsed = 0;
        for _ in 0..iterations {
            let mut text = chars.clone();
            for _ in 0..=rng.below(3) {
                let at = rng.below(text.len() + 1);
                match rng.below(4) {
                    0 => {
                        let snippet = SNIPPETS[rng.below(SNIPPETS.len())];
                        text.splice(at..at, snippet.chars());
                    }
                    1 => {
                        let end = (at + 1 + rng.below(6)).min(text.len());
                        text.drain(at..end);
                    }
                    2 => {
                        let end = (at + 1).min(text.len());
                        let snippet = SNIPPETS[rng.below(SNIPPETS.len())];
                        text.splice(at..end, snippet.chars());
                    }
                    _ => {
                        // Any ASCII byte, control characters included.
                        let byte = u8::try_from(rng.below(128)).expect("below 128");
                        text.insert(at, char::from(byte));
                    }
                }
            }
            let source: String = text.into_iter().collect();
            parsed += usize::from(parser::parse_body(&source).is_ok());
            check_any(&source);
        }
        parsed
    }

    #[test]
    fn random_edits() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        // Most edits break the syntax; enough must survive for the test to mean something.
        let parsed = fuzz(MESSY, 1500, &mut rng);
        assert!(parsed > 150, "only {parsed} edited configs parsed");
        let parsed = fuzz(EXPRESSIONS, 1500, &mut rng);
        assert!(parsed > 150, "only {parsed} edited expressions parsed");
    }

    /// The same, for longer: `FMT_FUZZ_ITERATIONS=100000 cargo test --release -- --ignored`.
    #[test]
    #[ignore = "slow; run by hand after changing the layout"]
    fn random_edits_long() {
        let iterations = std::env::var("FMT_FUZZ_ITERATIONS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(20_000);
        let seed = std::env::var("FMT_FUZZ_SEED")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0x2545_f491_4f6c_dd1d_u64);
        let mut rng = Rng(seed);
        for corpus in [MESSY, EXPRESSIONS] {
            fuzz(corpus, iterations, &mut rng);
        }
    }
}
