//! Turns one parsed file's hcl-edit tree into typed config blocks: checks the schema (keys,
//! blocks, labels, types) with a span for every finding, and evaluates expressions one attribute
//! at a time. Cross-block checks (references, placement) are `validate`'s job, not this one's.

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;

use hcl::eval::Evaluate;
use hcl_edit::Span as _;
use hcl_edit::expr::{Expression, TraversalOperator};
use hcl_edit::structure::{Attribute, Block, Body, Structure};
use hcl_edit::visit::{Visit, visit_traversal};

use super::diagnostic::{Code, Finding, Findings, did_you_mean};
use super::functions;
use super::schema::*;
use super::source::{FileId, Span, Spanned};
use super::template::Template;

/// The block types allowed at the top of a file.
pub const TOP_LEVEL_BLOCKS: &[&str] = &["settings", "variable", "host", "backend", "model"];

/// What an attribute evaluated to, and whether a sensitive variable went into it.
pub(crate) struct Evaluated {
    pub value: hcl::Value,
    pub sensitive: bool,
}

/// Decodes blocks of one file, reporting into a shared [`Findings`].
pub(crate) struct Decoder<'a> {
    pub file: FileId,
    pub text: &'a str,
    pub findings: &'a mut Findings,
    pub ctx: &'a hcl::eval::Context<'a>,
    /// Every declared variable name.
    pub variables: &'a [String],
    /// Names of sensitive variables.
    pub sensitive: &'a HashSet<String>,
    /// Variables declared without a value: references to them are not evaluated.
    pub unset: &'a HashSet<String>,
    /// Default `run_dir` of a local host with the given id.
    pub local_run_dir: &'a dyn Fn(&str) -> String,
    /// Set where variables cannot be used (settings, variable defaults, var files): says where.
    pub no_vars_here: Option<&'static str>,
}

impl Decoder<'_> {
    fn span(&self, range: Option<Range<usize>>) -> Span {
        Span::new(self.file, range.unwrap_or(0..0))
    }

    /// The span of a block's header: identifier and labels.
    pub fn header_span(&self, block: &Block) -> Span {
        let start = block.ident.span().map_or(0, |r| r.start);
        let end = block
            .labels
            .last()
            .and_then(|l| l.span())
            .or_else(|| block.ident.span())
            .map_or(start, |r| r.end);
        Span::new(self.file, start..end)
    }

    fn push(&mut self, finding: Finding) {
        self.findings.push(finding);
    }

    /// Reports unknown attributes and blocks of `body`, and blocks that appear twice.
    fn check_keys(&mut self, body: &Body, what: &str, attrs: &[&str], blocks: &[&str]) {
        let mut seen_blocks: Vec<(&str, Span)> = Vec::new();
        for structure in body.iter() {
            match structure {
                Structure::Attribute(attr) => {
                    let key = attr.key.as_str();
                    if attrs.contains(&key) {
                        continue;
                    }
                    let span = self.span(attr.key.span());
                    if blocks.contains(&key) {
                        self.push(
                            Finding::error(
                                Code::WrongType,
                                span,
                                "block written as an attribute",
                                format!("`{key}` in {what} is a block, not an attribute"),
                            )
                            .with_help(format!("write it as a block: `{key} {{ ... }}`")),
                        );
                        continue;
                    }
                    self.push(
                        Finding::error(
                            Code::UnknownKey,
                            span,
                            "unknown key",
                            format!("{what} has no attribute `{key}`"),
                        )
                        .suggest(
                            key,
                            attrs.iter().chain(blocks).copied(),
                            known_list(attrs, blocks),
                        ),
                    );
                }
                Structure::Block(block) => {
                    let key = block.ident.as_str();
                    let span = self.span(block.ident.span());
                    if blocks.contains(&key) {
                        if let Some((_, first)) = seen_blocks.iter().find(|(k, _)| *k == key) {
                            self.push(
                                Finding::error(
                                    Code::DuplicateBlock,
                                    span,
                                    "second block",
                                    format!("{what} has more than one `{key}` block"),
                                )
                                .with_secondary(*first, "first defined here")
                                .with_help(format!("merge them into one `{key}` block")),
                            );
                        } else {
                            seen_blocks.push((key, span));
                        }
                        continue;
                    }
                    if attrs.contains(&key) {
                        self.push(
                            Finding::error(
                                Code::WrongType,
                                span,
                                "attribute written as a block",
                                format!("`{key}` in {what} is an attribute, not a block"),
                            )
                            .with_help(format!("write it as `{key} = ...`")),
                        );
                        continue;
                    }
                    self.push(
                        Finding::error(
                            Code::UnknownBlock,
                            span,
                            "unknown block",
                            format!("{what} has no block `{key}`"),
                        )
                        .suggest(
                            key,
                            blocks.iter().chain(attrs).copied(),
                            known_list(attrs, blocks),
                        ),
                    );
                }
            }
        }
    }

    /// Checks a block's labels: exactly one, a valid id. Returns the id.
    pub fn single_label(&mut self, block: &Block, kind: &str) -> Option<Spanned<String>> {
        let header = self.header_span(block);
        match block.labels.as_slice() {
            [] => {
                self.push(
                    Finding::error(
                        Code::MissingLabel,
                        header,
                        "no id",
                        format!("{kind} block has no id"),
                    )
                    .with_help(format!("give it an id: `{kind} \"my-{kind}\" {{ ... }}`")),
                );
                None
            }
            [label] => {
                let span = self.span(label.span());
                let id = label.as_str();
                if let Err(why) = check_id(id) {
                    self.push(
                        Finding::error(
                            Code::InvalidId,
                            span,
                            why,
                            format!("`{id}` is not a valid {kind} id"),
                        )
                        .with_help("ids are 1 to 64 letters, digits, `-`, `_` and `.`"),
                    );
                    return None;
                }
                Some(Spanned::new(id.to_string(), span))
            }
            [_, extra, ..] => {
                self.push(
                    Finding::error(
                        Code::InvalidId,
                        self.span(extra.span()),
                        "extra label",
                        format!("{kind} block takes one label, found {}", block.labels.len()),
                    )
                    .with_help(format!("write `{kind} \"id\" {{ ... }}`")),
                );
                None
            }
        }
    }

    fn no_labels(&mut self, block: &Block) {
        if let Some(label) = block.labels.first() {
            let name = block.ident.as_str();
            self.push(
                Finding::error(
                    Code::InvalidId,
                    self.span(label.span()),
                    "unexpected label",
                    format!("`{name}` block takes no label"),
                )
                .with_help(format!("write `{name} {{ ... }}`")),
            );
        }
    }

    /// The first nested block named `name`.
    fn block<'b>(body: &'b Body, name: &'b str) -> Option<&'b Block> {
        body.get_blocks(name).next()
    }

    fn missing(&mut self, body: &Body, at: Span, what: &str, key: &str, example: &str) {
        if mentions(body, key) {
            return;
        }
        self.push(
            Finding::error(
                Code::MissingField,
                at,
                format!("`{key}` is missing"),
                format!("{what} has no `{key}`"),
            )
            .with_help(format!("add `{key} = {example}`")),
        );
    }

    /// Evaluates one attribute, reporting undefined variables and evaluation errors at its span.
    pub fn eval(&mut self, attr: &Attribute) -> Option<Evaluated> {
        // Most attributes are plain literals: take them as they are, without converting the
        // tree and running the evaluator (large fleets have hundreds of thousands of them).
        if let Some(value) = literal(&attr.value) {
            return Some(Evaluated {
                value,
                sensitive: false,
            });
        }
        let span = self.span(attr.value.span());
        let mut refs = VarRefs::default();
        refs.visit_expr(&attr.value);
        let mut ok = true;
        for (name, range) in &refs.found {
            let at = self.span(Some(range.clone()));
            if let Some(place) = self.no_vars_here {
                self.push(
                    Finding::error(
                        Code::UndefinedVariable,
                        at,
                        "variable not allowed here",
                        format!("variables cannot be used {place}"),
                    )
                    .with_help("write the value itself"),
                );
                ok = false;
            } else if !self.variables.iter().any(|v| v == name) {
                let mut f = Finding::error(
                    Code::UndefinedVariable,
                    at,
                    "not declared",
                    format!("variable `{name}` is not declared"),
                );
                f = match did_you_mean(name, self.variables.iter().map(String::as_str)) {
                    Some(s) => f.with_help(format!("did you mean `var.{s}`?")),
                    None => f.with_help(format!(
                        "declare it: `variable \"{name}\" {{ default = ... }}`"
                    )),
                };
                self.push(f);
                ok = false;
            } else if self.unset.contains(name) {
                ok = false;
            }
        }
        for (name, range) in &refs.unknown_roots {
            let at = self.span(Some(range.clone()));
            self.push(
                Finding::error(
                    Code::UndefinedVariable,
                    at,
                    "unknown name",
                    format!("`{name}` is not something an expression can refer to"),
                )
                .with_help("expressions can use `var.NAME`, `path.config` and functions; quote literal strings"),
            );
            ok = false;
        }
        if !ok {
            return None;
        }
        let sensitive = refs.found.iter().any(|(n, _)| self.sensitive.contains(n));
        let expr: hcl::Expression = attr.value.clone().into();
        if remainder_by_zero(&expr, self.ctx) {
            self.push(
                Finding::error(
                    Code::Evaluation,
                    span,
                    "cannot evaluate",
                    format!("`{}`: division by zero", attr.key.as_str()),
                )
                .with_help("check the expression's numbers"),
            );
            return None;
        }
        match expr.evaluate(self.ctx) {
            Ok(value) => Some(Evaluated { value, sensitive }),
            Err(err) => {
                let msg = eval_message(&err, sensitive);
                let help = if msg.contains("undefined function") {
                    format!("available functions: {}", functions::NAMES.join(", "))
                } else {
                    "check the expression's types and names".to_string()
                };
                self.push(
                    Finding::error(
                        Code::Evaluation,
                        span,
                        "cannot evaluate",
                        format!("`{}`: {msg}", attr.key.as_str()),
                    )
                    .with_help(help),
                );
                None
            }
        }
    }

    fn wrong_type(&mut self, attr: &Attribute, expected: &str, found: &hcl::Value) {
        let span = self.span(attr.value.span());
        self.push(
            Finding::error(
                Code::WrongType,
                span,
                format!("expected {expected}"),
                format!(
                    "`{}` must be {expected}, found {}",
                    attr.key.as_str(),
                    functions::type_name(found)
                ),
            )
            .with_help(format!("write {}", example_of(expected))),
        );
    }

    fn invalid(
        &mut self,
        attr: &Attribute,
        label: impl Into<String>,
        message: impl Into<String>,
        help: impl Into<String>,
    ) {
        let span = self.span(attr.value.span());
        self.push(Finding::error(Code::InvalidValue, span, label, message).with_help(help));
    }

    /// True when `expr` refers to a sensitive variable.
    fn mentions_secret(&self, expr: &Expression) -> bool {
        let mut refs = VarRefs::default();
        refs.visit_expr(expr);
        refs.found.iter().any(|(n, _)| self.sensitive.contains(n))
    }

    /// Refuses a sensitive value in an attribute berth shows as it is (names, paths, numbers,
    /// labels): hiding it would hide what the config means, and it is never needed there.
    fn refuse_secret(&mut self, attr: &Attribute, ev: Evaluated) -> Option<Evaluated> {
        if !ev.sensitive {
            return Some(ev);
        }
        let key = attr.key.as_str();
        let span = self.span(attr.value.span());
        self.push(
            Finding::error(
                Code::SensitiveNotAllowed,
                span,
                "uses a sensitive variable",
                format!("`{key}` cannot hold a sensitive value: berth shows it in plans, state and output"),
            )
            .with_help("pass secrets through `env`, `source`, backend `args` or a `*_cmd`; if the value is not secret, declare its variable without `sensitive = true`"),
        );
        None
    }

    /// Evaluates an attribute whose value berth shows as it is.
    fn eval_shown(&mut self, attr: &Attribute) -> Option<Evaluated> {
        let ev = self.eval(attr)?;
        self.refuse_secret(attr, ev)
    }

    /// An `env` map: keys must be names a shell accepts, since they become variables.
    fn env(&mut self, body: &Body) -> BTreeMap<String, MaybeSecret> {
        let Some(map) = self.string_map(body, "env") else {
            return BTreeMap::new();
        };
        for key in map.value.keys() {
            let valid = key
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                self.push(
                    Finding::error(Code::InvalidValue, map.span, "not a variable name", format!("`env` key `{key}` is not a valid environment variable name"))
                        .with_help("use letters, digits and `_`, not starting with a digit, e.g. LLAMA_API_KEY"),
                );
            }
        }
        map.value
    }

    /// A string attribute (numbers and bools are converted, as HCL does).
    pub fn string(&mut self, body: &Body, key: &str) -> Option<(Spanned<String>, bool)> {
        let attr = body.get_attribute(key)?;
        let ev = self.eval(attr)?;
        match functions::scalar_to_string(&ev.value) {
            Ok(s) => Some((Spanned::new(s, self.span(attr.value.span())), ev.sensitive)),
            Err(_) => {
                self.wrong_type(attr, "a string", &ev.value);
                None
            }
        }
    }

    /// A string attribute that may not hold a secret.
    fn shown_string(&mut self, body: &Body, key: &str) -> Option<Spanned<String>> {
        let attr = body.get_attribute(key)?;
        let ev = self.eval_shown(attr)?;
        match functions::scalar_to_string(&ev.value) {
            Ok(s) => Some(Spanned::new(s, self.span(attr.value.span()))),
            Err(_) => {
                self.wrong_type(attr, "a string", &ev.value);
                None
            }
        }
    }

    fn plain_string(&mut self, body: &Body, key: &str) -> Option<String> {
        self.shown_string(body, key).map(|s| s.value)
    }

    fn bool(&mut self, body: &Body, key: &str) -> Option<Spanned<bool>> {
        let attr = body.get_attribute(key)?;
        let ev = self.eval_shown(attr)?;
        match ev.value {
            hcl::Value::Bool(b) => Some(Spanned::new(b, self.span(attr.value.span()))),
            other => {
                self.wrong_type(attr, "a bool", &other);
                None
            }
        }
    }

    fn number<'b>(&mut self, body: &'b Body, key: &str) -> Option<(f64, &'b Attribute)> {
        let attr = body.get_attribute(key)?;
        let ev = self.eval_shown(attr)?;
        match ev.value.as_number().and_then(|n| n.as_f64()) {
            Some(n) => Some((n, attr)),
            None => {
                self.wrong_type(attr, "a number", &ev.value);
                None
            }
        }
    }

    /// A whole number in `min..=max`.
    fn uint(&mut self, body: &Body, key: &str, min: u64, max: u64) -> Option<Spanned<u64>> {
        let (n, attr) = self.number(body, key)?;
        if n.fract() != 0.0 || n < min as f64 || n > max as f64 {
            self.invalid(
                attr,
                format!("must be a whole number from {min} to {max}"),
                format!("`{key}` = {n} is out of range"),
                format!("use a whole number from {min} to {max}"),
            );
            return None;
        }
        Some(Spanned::new(n as u64, self.span(attr.value.span())))
    }

    /// A number >= 0.
    fn size(&mut self, body: &Body, key: &str) -> Option<f64> {
        let (n, attr) = self.number(body, key)?;
        if n < 0.0 || !n.is_finite() {
            self.invalid(
                attr,
                "must not be negative",
                format!("`{key}` = {n} is negative"),
                "use a size in GiB, e.g. 4.7",
            );
            return None;
        }
        Some(n)
    }

    /// A list of strings, each with its own span when written literally.
    fn string_list(&mut self, body: &Body, key: &str) -> Option<Spanned<Vec<Spanned<String>>>> {
        let attr = body.get_attribute(key)?;
        let ev = self.eval_shown(attr)?;
        let whole = self.span(attr.value.span());
        let hcl::Value::Array(items) = &ev.value else {
            self.wrong_type(attr, "a list of strings", &ev.value);
            return None;
        };
        let literal_spans: Option<Vec<Span>> = match &attr.value {
            Expression::Array(arr) if arr.len() == items.len() => {
                Some(arr.iter().map(|e| self.span(e.span())).collect())
            }
            _ => None,
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let span = literal_spans.as_ref().map_or(whole, |s| s[i]);
            match functions::scalar_to_string(item) {
                Ok(s) => out.push(Spanned::new(s, span)),
                Err(_) => {
                    self.not_a_string_item(key, span, i, item);
                    return None;
                }
            }
        }
        Some(Spanned::new(out, whole))
    }

    /// Item `i` (zero-based) of list `key` is not a string.
    fn not_a_string_item(&mut self, key: &str, span: Span, i: usize, item: &hcl::Value) {
        self.push(
            Finding::error(
                Code::WrongType,
                span,
                "expected a string",
                format!(
                    "`{key}` must be a list of strings; item {} is {}",
                    i + 1,
                    functions::type_name(item)
                ),
            )
            .with_help(format!("write {}", example_of("a list of strings"))),
        );
    }

    /// A list of strings that may hold secrets: an item written literally is sensitive when it
    /// mentions a sensitive variable; every item is when the list as a whole comes from one.
    fn secret_list(&mut self, body: &Body, key: &str) -> Vec<MaybeSecret> {
        let Some(attr) = body.get_attribute(key) else {
            return Vec::new();
        };
        let Some(ev) = self.eval(attr) else {
            return Vec::new();
        };
        let hcl::Value::Array(items) = &ev.value else {
            self.wrong_type(attr, "a list of strings", &ev.value);
            return Vec::new();
        };
        let item_sensitive: Option<Vec<bool>> = match &attr.value {
            Expression::Array(arr) if arr.len() == items.len() => {
                Some(arr.iter().map(|e| self.mentions_secret(e)).collect())
            }
            _ => None,
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match functions::scalar_to_string(item) {
                Ok(value) => out.push(MaybeSecret {
                    value,
                    sensitive: item_sensitive.as_ref().map_or(ev.sensitive, |s| s[i]),
                }),
                Err(_) => {
                    let span = self.span(attr.value.span());
                    self.not_a_string_item(key, span, i, item);
                    return Vec::new();
                }
            }
        }
        out
    }

    fn plain_list(&mut self, body: &Body, key: &str) -> Vec<String> {
        self.string_list(body, key)
            .map(|l| l.value.into_iter().map(|s| s.value).collect())
            .unwrap_or_default()
    }

    /// A map of strings; entries written literally are sensitive only when their own value
    /// mentions a sensitive variable.
    fn string_map(
        &mut self,
        body: &Body,
        key: &str,
    ) -> Option<Spanned<BTreeMap<String, MaybeSecret>>> {
        let attr = body.get_attribute(key)?;
        let ev = self.eval(attr)?;
        let whole = self.span(attr.value.span());
        let hcl::Value::Object(map) = &ev.value else {
            self.wrong_type(attr, "a map of strings", &ev.value);
            return None;
        };
        // A key is shown wherever its value is (hidden or not), so it may not hold a secret.
        if let Expression::Object(obj) = &attr.value
            && obj.iter().any(|(k, _)| match k {
                hcl_edit::expr::ObjectKey::Expression(e) => self.mentions_secret(e),
                hcl_edit::expr::ObjectKey::Ident(_) => false,
            })
        {
            self.push(
                Finding::error(
                    Code::SensitiveNotAllowed,
                    whole,
                    "a key uses a sensitive variable",
                    format!("the keys of `{key}` cannot hold a sensitive value: berth shows them"),
                )
                .with_help("keep the secret in the value: `KEY = var.secret`"),
            );
            return None;
        }
        let entry_sensitive: Option<Vec<bool>> = match &attr.value {
            Expression::Object(obj) if obj.len() == map.len() => Some(
                obj.iter()
                    .map(|(_, v)| self.mentions_secret(v.expr()))
                    .collect(),
            ),
            _ => None,
        };
        let mut out = BTreeMap::new();
        for (i, (k, v)) in map.iter().enumerate() {
            match functions::scalar_to_string(v) {
                Ok(s) => {
                    let sensitive = entry_sensitive.as_ref().map_or(ev.sensitive, |e| e[i]);
                    out.insert(
                        k.clone(),
                        MaybeSecret {
                            value: s,
                            sensitive,
                        },
                    );
                }
                Err(_) => {
                    self.push(
                        Finding::error(
                            Code::WrongType,
                            whole,
                            "expected a string value",
                            format!(
                                "`{key}.{k}` must be a string, found {}",
                                functions::type_name(v)
                            ),
                        )
                        .with_help(format!("write {}", example_of("a map of strings"))),
                    );
                    return None;
                }
            }
        }
        Some(Spanned::new(out, whole))
    }

    /// A map of strings that may not hold secrets (labels are matched and shown as they are).
    fn shown_map(&mut self, body: &Body, key: &str) -> Option<Spanned<BTreeMap<String, String>>> {
        let map = self.string_map(body, key)?;
        if map.value.values().any(|v| v.sensitive) {
            let attr = body.get_attribute(key).expect("decoded above");
            self.refuse_secret(
                attr,
                Evaluated {
                    value: hcl::Value::Null,
                    sensitive: true,
                },
            );
            return None;
        }
        Some(Spanned::new(
            map.value.into_iter().map(|(k, v)| (k, v.value)).collect(),
            map.span,
        ))
    }

    /// A `*_cmd` attribute: parses its `{name}` placeholders and checks them against `allowed`.
    fn command(&mut self, body: &Body, key: &str, allowed: &[&str]) -> Option<Command> {
        let attr = body.get_attribute(key)?;
        let (text, sensitive) = self.string(body, key)?;
        let value_range = attr.value.span().unwrap_or(0..0);
        // Offsets inside the template map exactly onto the file only for a plain quoted string.
        let exact = self.text.get(value_range.clone()).is_some_and(|raw| {
            raw.len() == text.value.len() + 2 && raw[1..raw.len() - 1] == *text.value
        });
        let file = self.file;
        let at = |offset: usize, len: usize| {
            if exact {
                Span::new(
                    file,
                    value_range.start + 1 + offset..value_range.start + 1 + offset + len,
                )
            } else {
                Span::new(file, value_range.clone())
            }
        };
        let template = match Template::parse(&text.value) {
            Ok(t) => t,
            Err(e) => {
                // The message quotes the template text, which may hold the secret.
                let message = if sensitive {
                    format!(
                        "`{key}`: a sensitive value interpolated into it holds `{{` or `}}`, which is read as a placeholder"
                    )
                } else {
                    format!("`{key}`: {}", e.message)
                };
                let help = if sensitive {
                    "write `${shellquote(var.NAME)}`, which doubles braces, or pass the value through `env`"
                } else {
                    "placeholders look like {port}; write {{ and }} for literal braces"
                };
                self.push(
                    Finding::error(
                        Code::UnknownTemplateVar,
                        at(e.offset, 1),
                        "bad placeholder",
                        message,
                    )
                    .with_help(help),
                );
                return None;
            }
        };
        let mut ok = true;
        for p in template.placeholders() {
            if allowed.contains(&p.name) {
                continue;
            }
            // A placeholder name inside a sensitive command may be part of the secret.
            let message = if sensitive {
                format!(
                    "`{key}` uses an unknown placeholder (in text that holds a sensitive value: write `${{shellquote(var.NAME)}}`, which doubles braces)"
                )
            } else {
                format!("`{key}` uses unknown placeholder {{{}}}", p.name)
            };
            let mut f = Finding::error(
                Code::UnknownTemplateVar,
                at(p.offset, p.name.len() + 2),
                "unknown placeholder",
                message,
            );
            f = match did_you_mean(p.name, allowed.iter().copied()) {
                Some(s) => f.with_help(format!(
                    "did you mean {{{s}}}? Available here: {}",
                    braces(allowed)
                )),
                None => f.with_help(format!(
                    "available here: {}; write {{{{ for a literal brace",
                    braces(allowed)
                )),
            };
            self.push(f);
            ok = false;
        }
        ok.then_some(Command {
            template,
            span: text.span,
            sensitive,
        })
    }

    /// Decodes the `settings` block.
    pub fn settings(&mut self, block: &Block) -> Settings {
        self.no_labels(block);
        let body = &block.body;
        self.check_keys(
            body,
            "settings",
            &["state_dir", "parallelism"],
            &["state", "watch"],
        );
        let mut state_dir = self.plain_string(body, "state_dir");
        let mut state_backend = StateBackendKind::default();
        let mut state_workspace = None;
        if let Some(state) = Self::block(body, "state") {
            let (backend, dir) = self.state(state);
            state_backend = backend.unwrap_or_default();
            state_workspace = self.plain_string(&state.body, "workspace");
            if state_backend == StateBackendKind::Postgres
                && state_workspace.is_none()
                && let Some(attr) = state.body.get_attribute("backend")
            {
                self.invalid(
                    attr,
                    "needs a workspace",
                    "the postgres state backend needs `workspace`".to_string(),
                    "name the state inside the database: `workspace = \"prod\"`".to_string(),
                );
            }
            if let (Some(old), Some(new)) = (
                body.get_attribute("state_dir"),
                state.body.get_attribute("dir"),
            ) {
                self.push(
                    Finding::error(
                        Code::InvalidValue,
                        self.span(new.span()),
                        "second state directory",
                        "the state directory is set twice: by `state_dir` and by `state { dir }`",
                    )
                    .with_secondary(self.span(old.span()), "first set here")
                    .with_help("keep one of them: `state { dir = ... }` or `state_dir = ...`"),
                );
            } else if dir.is_some() {
                state_dir = dir;
            }
        }
        Settings {
            state_dir: state_dir
                .unwrap_or_else(|| Settings::DEFAULT_STATE_DIR.into())
                .into(),
            state_backend,
            state_workspace,
            // Decoded after the variables: it may use them.
            state_url: None,
            parallelism: self
                .uint(body, "parallelism", 1, 10_000)
                .map_or(Settings::DEFAULT_PARALLELISM, |n| n.value as usize),
            watch: Self::block(body, "watch")
                .map(|w| self.watch(w))
                .unwrap_or_default(),
        }
    }

    /// Decodes `settings { watch { ... } }`.
    fn watch(&mut self, block: &Block) -> WatchSettings {
        self.no_labels(block);
        let body = &block.body;
        self.check_keys(
            body,
            "the watch block",
            &["max_heals", "heal_window_sec", "heal_backoff_sec"],
            &[],
        );
        let default = WatchSettings::default();
        let secs = std::time::Duration::from_secs;
        WatchSettings {
            max_heals: self
                .uint(body, "max_heals", 1, 1000)
                .map_or(default.max_heals, |n| n.value as u32),
            heal_window: self
                .uint(body, "heal_window_sec", 1, 604_800)
                .map_or(default.heal_window, |n| secs(n.value)),
            heal_backoff: self
                .uint(body, "heal_backoff_sec", 0, 86_400)
                .map_or(default.heal_backoff, |n| secs(n.value)),
        }
    }

    /// `state { url }`: a password in it must come from a sensitive variable, never from the
    /// file itself, which is kept in git, nor from a variable that is not sensitive (its value
    /// would be shown).
    pub fn state_url(&mut self, body: &Body) -> Option<SecretText> {
        let (url, sensitive) = self.string(body, "url")?;
        // An empty URL (a variable left at `default = ""` where BERTH_PG_URL gives it) is none.
        if url.value.is_empty() {
            return None;
        }
        let has_password = url
            .value
            .split_once("://")
            .and_then(|(_, rest)| rest.split(['/', '?']).next())
            .and_then(|authority| authority.rsplit_once('@'))
            .is_some_and(|(userinfo, _)| userinfo.contains(':'));
        if has_password && !sensitive {
            let from_file = body
                .get_attribute("url")
                .is_some_and(|a| literal(&a.value).is_some());
            let (message, help) = if from_file {
                (
                    "the state URL holds a password in plain text",
                    "leave the password out of the file, which is kept in git: give the whole URL in BERTH_PG_URL, or in a variable declared `sensitive = true`",
                )
            } else {
                (
                    "the state URL holds a password from a variable that is not sensitive",
                    "declare the variable with `sensitive = true`, so that its value is never shown or saved, or give the whole URL in BERTH_PG_URL",
                )
            };
            self.push(
                Finding::error(
                    Code::InvalidValue,
                    url.span,
                    "password in the config",
                    message,
                )
                .with_help(help),
            );
            return None;
        }
        Some(SecretText(url.value))
    }

    /// Decodes `settings { state { ... } }`: the backend (`None` when it is not usable, which
    /// is reported) and the directory, if given.
    fn state(&mut self, block: &Block) -> (Option<StateBackendKind>, Option<String>) {
        self.no_labels(block);
        let body = &block.body;
        let name = self.plain_string(body, "backend");
        let not_yet = name
            .as_deref()
            .is_some_and(|n| StateBackendKind::NOT_YET.contains(&n));
        // The settings of a backend that is not built in yet are not reported as unknown: the
        // backend itself is.
        let keys: &[&str] = &["backend", "dir", "url", "workspace"];
        let _ = not_yet;
        self.check_keys(body, "the state block", keys, &[]);
        let backend = match (name, body.get_attribute("backend")) {
            (None, Some(_)) => None,
            (None, None) => Some(StateBackendKind::default()),
            (Some(name), attr) => {
                let kind = StateBackendKind::from_name(&name);
                if let (None, Some(attr)) = (kind, attr) {
                    let available = StateBackendKind::AVAILABLE
                        .iter()
                        .map(|n| format!("\"{n}\""))
                        .collect::<Vec<_>>()
                        .join(", ");
                    if not_yet {
                        self.invalid(
                            attr,
                            "not available yet",
                            format!(
                                "the `{name}` state backend is not available in this berth yet"
                            ),
                            format!("use backend = {available} (the default) for now"),
                        );
                    } else {
                        let help = match did_you_mean(
                            &name,
                            StateBackendKind::AVAILABLE.iter().copied(),
                        ) {
                            Some(s) => format!("did you mean \"{s}\"? Available: {available}"),
                            None => format!("available: {available}"),
                        };
                        self.invalid(
                            attr,
                            "unknown backend",
                            format!("state backend `{name}` does not exist"),
                            help,
                        );
                    }
                }
                kind
            }
        };
        (backend, self.plain_string(body, "dir"))
    }

    /// Decodes a `host` block.
    pub fn host(&mut self, block: &Block) -> Option<Host> {
        let id = self.single_label(block, "host");
        let body = &block.body;
        self.check_keys(
            body,
            "host",
            &["labels", "run_dir", "enabled", "max_parallel_starts"],
            &["connection", "capabilities"],
        );
        let header = self.header_span(block);
        let name = id
            .as_ref()
            .map_or("host".to_string(), |id| format!("host \"{}\"", id.value));
        let connection = match Self::block(body, "connection") {
            Some(b) => self.connection(b, &name),
            None => {
                if !mentions(body, "connection") {
                    self.push(
                    Finding::error(Code::MissingField, header, "no connection block", format!("{name} has no `connection` block"))
                        .with_help("add `connection { host = \"10.0.0.11\"  user = \"ops\" }`, or `connection { transport = \"local\" }` for this machine"),
                );
                }
                None
            }
        };
        let capabilities = Self::block(body, "capabilities")
            .map(|b| self.capabilities(b))
            .unwrap_or_default();
        let labels = self
            .shown_map(body, "labels")
            .map(|m| m.value)
            .unwrap_or_default();
        let enabled = self.bool(body, "enabled").is_none_or(|b| b.value);
        let run_dir = self.plain_string(body, "run_dir");
        let max_parallel_starts = self
            .uint(body, "max_parallel_starts", 1, 1_000)
            .map(|n| n.value as usize);
        let (id, connection) = (id?, connection?);
        let run_dir = run_dir.unwrap_or_else(|| match connection.transport {
            TransportKind::Local => (self.local_run_dir)(&id.value),
            TransportKind::Ssh => "/var/lib/berth".into(),
        });
        Some(Host {
            id,
            span: self.span(block.span()),
            connection,
            capabilities,
            labels,
            run_dir,
            enabled,
            max_parallel_starts,
        })
    }

    fn connection(&mut self, block: &Block, host: &str) -> Option<Connection> {
        self.no_labels(block);
        let body = &block.body;
        self.check_keys(
            body,
            "connection",
            &[
                "transport",
                "host",
                "port",
                "user",
                "key_path",
                "host_key",
                "known_hosts",
                "connect_timeout_sec",
            ],
            &[],
        );
        let transport = match body.get_attribute("transport") {
            None => Some(TransportKind::Ssh),
            Some(attr) => match self.plain_string(body, "transport").as_deref() {
                Some("ssh") => Some(TransportKind::Ssh),
                Some("local") => Some(TransportKind::Local),
                Some(other) => {
                    self.invalid(
                        attr,
                        "unknown transport",
                        format!("transport `{other}` is not supported"),
                        "use \"ssh\" or \"local\"",
                    );
                    None
                }
                None => None,
            },
        };
        let conn = Connection {
            transport: transport.unwrap_or(TransportKind::Ssh),
            host: self.plain_string(body, "host"),
            port: self
                .uint(body, "port", 1, 65535)
                .map_or(Connection::DEFAULT_PORT, |p| p.value as u16),
            user: self.plain_string(body, "user"),
            key_path: self.plain_string(body, "key_path"),
            host_key: self.plain_string(body, "host_key"),
            known_hosts: self.plain_string(body, "known_hosts"),
            connect_timeout_sec: self
                .uint(body, "connect_timeout_sec", 1, 3600)
                .map_or(Connection::DEFAULT_CONNECT_TIMEOUT_SEC, |n| n.value),
        };
        let header = self.header_span(block);
        if transport == Some(TransportKind::Ssh) {
            if conn.host.is_none() && !body.has_attribute("host") {
                self.missing(
                    body,
                    header,
                    &format!("the connection of {host}"),
                    "host",
                    "\"10.0.0.11\"",
                );
            }
            if conn.user.is_none() && !body.has_attribute("user") {
                self.missing(
                    body,
                    header,
                    &format!("the connection of {host}"),
                    "user",
                    "\"ops\"",
                );
            }
        }
        if let (Some(key), Some(attr)) = (&conn.host_key, body.get_attribute("host_key")) {
            let mut parts = key.split_whitespace();
            let well_formed = matches!((parts.next(), parts.next()), (Some(kind), Some(_)) if kind.starts_with("ssh-") || kind.starts_with("ecdsa-"));
            if !well_formed {
                self.invalid(
                    attr,
                    "not a public key",
                    "`host_key` must be a public key line like \"ssh-ed25519 AAAA...\"",
                    "copy it from `ssh-keyscan HOST` (without the host name)",
                );
            }
        }
        transport.map(|_| conn)
    }

    fn capabilities(&mut self, block: &Block) -> Capabilities {
        self.no_labels(block);
        let body = &block.body;
        self.check_keys(body, "capabilities", &["backends", "gpus", "vram_gib"], &[]);
        Capabilities {
            backends: self
                .string_list(body, "backends")
                .map(|l| l.value)
                .unwrap_or_default(),
            gpus: self
                .uint(body, "gpus", 0, 1024)
                .map_or(0, |n| n.value as u32),
            vram_gib: self.size(body, "vram_gib"),
        }
    }

    /// Decodes a `backend` block.
    pub fn backend(&mut self, block: &Block) -> Option<Backend> {
        let id = self.single_label(block, "backend");
        let body = &block.body;
        self.check_keys(
            body,
            "backend",
            &["runtime", "host_filters", "verify_cmd", "env", "args"],
            &["container", "systemd"],
        );
        let runtime = match body.get_attribute("runtime") {
            None => Some(RuntimeKind::Process),
            Some(attr) => match self.plain_string(body, "runtime").as_deref() {
                Some("process") => Some(RuntimeKind::Process),
                Some("systemd") => Some(RuntimeKind::Systemd),
                Some("docker") => Some(RuntimeKind::Docker),
                Some("podman") => Some(RuntimeKind::Podman),
                Some(other) => {
                    let help = match did_you_mean(other, RuntimeKind::ALL) {
                        Some(s) => {
                            format!("did you mean \"{s}\"? (process, systemd, docker or podman)")
                        }
                        None => "use \"process\", \"systemd\", \"docker\" or \"podman\"".into(),
                    };
                    self.invalid(
                        attr,
                        "unknown runtime",
                        format!("runtime `{other}` is not supported"),
                        help,
                    );
                    None
                }
                None => None,
            },
        };
        let host_filters = self.string_list(body, "host_filters");
        if let Some(filters) = &host_filters
            && filters.value.is_empty()
        {
            self.push(
                Finding::error(
                    Code::InvalidValue,
                    filters.span,
                    "empty list",
                    "`host_filters = []` admits no host",
                )
                .with_help("remove host_filters to allow every host, or list host ids or globs"),
            );
        }
        let verify_cmd = self.command(body, "verify_cmd", super::template::BACKEND_PLACEHOLDERS);
        let env = self.env(body);
        let args = self.secret_list(body, "args");
        let container = Self::block(body, "container").map(|b| self.container(b));
        let runtime = runtime?;
        if let Some(c) = &container {
            if !runtime.is_container() {
                self.push(
                    Finding::error(Code::InvalidValue, c.span, "only for docker and podman", format!("a `container` block needs runtime \"docker\" or \"podman\", not \"{}\"", runtime.as_str()))
                        .with_help("set `runtime = \"docker\"`, or remove the container block"),
                );
            }
        } else if runtime.is_container() {
            self.push(
                Finding::error(
                    Code::MissingField,
                    self.header_span(block),
                    "no container block",
                    format!(
                        "runtime \"{}\" needs a `container` block with an `image`",
                        runtime.as_str()
                    ),
                )
                .with_help("add `container { image = \"ghcr.io/ggml-org/llama.cpp:server\" }`"),
            );
        }
        if let (Some(c), Some(cblock)) = (&container, Self::block(body, "container"))
            && runtime.is_container()
            && c.image.is_none()
            && !cblock.body.has_attribute("image")
        {
            self.missing(
                &cblock.body,
                c.span,
                "the container block",
                "image",
                "\"ghcr.io/ggml-org/llama.cpp:server\"",
            );
        }
        let systemd = Self::block(body, "systemd").map(|b| self.systemd(b));
        if let Some(u) = &systemd
            && runtime != RuntimeKind::Systemd
        {
            self.push(
                Finding::error(
                    Code::InvalidValue,
                    u.span,
                    "only for systemd",
                    format!(
                        "a `systemd` block needs runtime \"systemd\", not \"{}\"",
                        runtime.as_str()
                    ),
                )
                .with_help("set `runtime = \"systemd\"`, or remove the systemd block"),
            );
        }
        Some(Backend {
            id: id?,
            span: self.span(block.span()),
            runtime,
            host_filters,
            verify_cmd,
            env,
            args,
            container,
            systemd,
        })
    }

    fn systemd(&mut self, block: &Block) -> SystemdUnit {
        self.no_labels(block);
        let body = &block.body;
        self.check_keys(body, "systemd", &["scope", "options"], &[]);
        let user = match body.get_attribute("scope") {
            None => false,
            Some(attr) => match self.plain_string(body, "scope").as_deref() {
                Some("user") => true,
                Some("system") | None => false,
                Some(other) => {
                    self.invalid(
                        attr,
                        "unknown scope",
                        format!("scope `{other}` is not a systemd scope"),
                        "use \"system\" (units of PID 1: root, or passwordless sudo) or \"user\" (the login's own manager)",
                    );
                    false
                }
            },
        };
        let options = self
            .shown_map(body, "options")
            .map(|m| m.value)
            .unwrap_or_default();
        SystemdUnit {
            span: self.header_span(block),
            user,
            options,
        }
    }

    fn container(&mut self, block: &Block) -> Container {
        self.no_labels(block);
        let body = &block.body;
        self.check_keys(
            body,
            "container",
            &[
                "image",
                "image_archive",
                "gpus",
                "volumes",
                "network",
                "ports",
                "extra_args",
            ],
            &[],
        );
        Container {
            span: self.header_span(block),
            image: self.plain_string(body, "image"),
            image_archive: self.plain_string(body, "image_archive"),
            gpus: self.plain_string(body, "gpus"),
            volumes: self.plain_list(body, "volumes"),
            network: self.plain_string(body, "network"),
            ports: self.plain_list(body, "ports"),
            extra_args: self.plain_list(body, "extra_args"),
        }
    }

    /// Decodes a `model` block.
    pub fn model(&mut self, block: &Block) -> Option<Model> {
        let id = self.single_label(block, "model");
        let body = &block.body;
        self.check_keys(
            body,
            "model",
            &[
                "enabled",
                "source",
                "size_gib",
                "env",
                "group",
                "default",
                "depends_on",
            ],
            &[
                "host_policy",
                "backend_policy",
                "runtime_defaults",
                "launch",
            ],
        );
        let header = self.header_span(block);
        let name = id
            .as_ref()
            .map_or("model".to_string(), |id| format!("model \"{}\"", id.value));
        let enabled = self.bool(body, "enabled").is_none_or(|b| b.value);
        let source = self.string(body, "source");
        if source.is_none() && !body.has_attribute("source") {
            self.missing(body, header, &name, "source", "\"/srv/models/model.gguf\"");
        }
        let size_gib = self.size(body, "size_gib");
        let host_policy = match Self::block(body, "host_policy") {
            Some(b) => self.host_policy(b),
            None => Some(HostPolicy {
                hosts: None,
                labels: None,
                replicas: 1,
                span: header,
            }),
        };
        let backend_policy = match Self::block(body, "backend_policy") {
            Some(b) => {
                self.no_labels(b);
                self.check_keys(&b.body, "backend_policy", &["prefer"], &[]);
                BackendPolicy {
                    prefer: self
                        .string_list(&b.body, "prefer")
                        .map(|l| l.value)
                        .unwrap_or_default(),
                }
            }
            None => BackendPolicy { prefer: Vec::new() },
        };
        let (port, port_span) = match Self::block(body, "runtime_defaults") {
            Some(b) => {
                self.no_labels(b);
                self.check_keys(&b.body, "runtime_defaults", &["port"], &[]);
                match self.uint(&b.body, "port", 1, 65535) {
                    Some(p) => (p.value as u16, p.span),
                    None => (Model::DEFAULT_PORT, self.header_span(b)),
                }
            }
            None => (Model::DEFAULT_PORT, header),
        };
        let launch = match Self::block(body, "launch") {
            Some(b) => self.launch(b, &name),
            None => {
                if !mentions(body, "launch") {
                    self.push(
                    Finding::error(
                        Code::MissingField,
                        header,
                        "no launch block",
                        format!("{name} has no `launch` block"),
                    )
                    .with_help(
                        "add `launch { start_cmd = \"llama-server -m {source} --port {port}\" }`",
                    ),
                );
                }
                None
            }
        };
        let env = self.env(body);
        let group = self.shown_string(body, "group");
        if let Some(g) = &group
            && let Err(why) = check_id(&g.value)
        {
            self.push(
                Finding::error(
                    Code::InvalidId,
                    g.span,
                    why,
                    format!("`{}` is not a valid group name", g.value),
                )
                .with_help("group names are 1 to 64 letters, digits, `-`, `_` and `.`"),
            );
        }
        let default = self.bool(body, "default");
        if let (Some(d), None) = (&default, &group)
            && d.value
        {
            self.push(
                Finding::error(
                    Code::GroupDefault,
                    d.span,
                    "no group",
                    format!("{name} sets `default` but belongs to no group"),
                )
                .with_help("add `group = \"...\"`, or remove `default`"),
            );
        }
        let depends_on = body
            .get_attribute("depends_on")
            .map(|a| self.depends_on(a))
            .unwrap_or_default();
        // A model whose source or launch is broken (already reported) stays in the config with
        // empty stand-ins for them, so that the checks across blocks (its backends, hosts,
        // `depends_on`, groups) report their findings in the same run.
        let (source, source_span) = source.map_or_else(
            || (MaybeSecret::default(), header),
            |(s, sensitive)| {
                (
                    MaybeSecret {
                        value: s.value,
                        sensitive,
                    },
                    s.span,
                )
            },
        );
        let launch = launch.unwrap_or_else(|| Launch {
            start_cmd: Command {
                template: Template::default(),
                span: header,
                sensitive: false,
            },
            probe: Probe::Http(Probe::DEFAULT_HTTP_PATH.into()),
            probe_timeout_sec: None,
            probe_interval_ms: None,
        });
        Some(Model {
            id: id?,
            span: self.span(block.span()),
            enabled,
            source,
            source_span,
            size_gib,
            host_policy: host_policy?,
            backend_policy,
            port,
            port_span,
            launch,
            env,
            group,
            default,
            depends_on,
        })
    }

    fn host_policy(&mut self, block: &Block) -> Option<HostPolicy> {
        self.no_labels(block);
        let body = &block.body;
        self.check_keys(body, "host_policy", &["hosts", "labels", "replicas"], &[]);
        let hosts = self.string_list(body, "hosts");
        let labels = self.shown_map(body, "labels");
        let replicas = self
            .uint(body, "replicas", 1, 10_000)
            .map_or(1, |n| n.value as usize);
        Some(HostPolicy {
            hosts,
            labels,
            replicas,
            span: self.header_span(block),
        })
    }

    fn launch(&mut self, block: &Block, model: &str) -> Option<Launch> {
        self.no_labels(block);
        let body = &block.body;
        self.check_keys(
            body,
            "launch",
            &[
                "start_cmd",
                "probe_cmd",
                "probe_http",
                "probe_timeout_sec",
                "probe_interval_ms",
            ],
            &[],
        );
        let placeholders = super::template::MODEL_PLACEHOLDERS;
        let start_cmd = self.command(body, "start_cmd", placeholders);
        if start_cmd.is_none() && !body.has_attribute("start_cmd") {
            self.missing(
                body,
                self.header_span(block),
                &format!("the launch block of {model}"),
                "start_cmd",
                "\"llama-server -m {source} --port {port}\"",
            );
        }
        let probe_cmd = self.command(body, "probe_cmd", placeholders);
        let probe_http = self.shown_string(body, "probe_http");
        let probe = match (probe_cmd, probe_http, body.get_attribute("probe_http")) {
            _ if body.has_attribute("probe_cmd") && body.has_attribute("probe_http") => {
                let attr = body.get_attribute("probe_http").expect("checked above");
                self.invalid(
                    attr,
                    "second probe",
                    "a launch block takes `probe_cmd` or `probe_http`, not both",
                    "keep one of them",
                );
                None
            }
            (Some(_), Some(_), Some(attr)) => {
                self.invalid(
                    attr,
                    "second probe",
                    "a launch block takes `probe_cmd` or `probe_http`, not both",
                    "keep one of them",
                );
                None
            }
            (Some(cmd), None, _) => Some(Probe::Cmd(cmd)),
            (None, Some(path), Some(attr)) => {
                if path.value.starts_with('/') {
                    Some(Probe::Http(path.value))
                } else {
                    self.invalid(
                        attr,
                        "not a path",
                        format!(
                            "`probe_http` must be a path starting with /, found {:?}",
                            path.value
                        ),
                        "write e.g. `probe_http = \"/v1/models\"`",
                    );
                    None
                }
            }
            (None, None, _)
                if !body.has_attribute("probe_cmd") && !body.has_attribute("probe_http") =>
            {
                Some(Probe::Http(Probe::DEFAULT_HTTP_PATH.into()))
            }
            _ => None,
        };
        let probe_timeout_sec = self
            .uint(body, "probe_timeout_sec", 1, 86_400)
            .map(|n| n.value);
        let probe_interval_ms = self
            .uint(body, "probe_interval_ms", 10, 600_000)
            .map(|n| n.value);
        Some(Launch {
            start_cmd: start_cmd?,
            probe: probe?,
            probe_timeout_sec,
            probe_interval_ms,
        })
    }

    /// `depends_on`: strings `"model.ID"` or bare `model.ID` traversals.
    fn depends_on(&mut self, attr: &Attribute) -> Vec<Spanned<String>> {
        let Expression::Array(arr) = &attr.value else {
            let span = self.span(attr.value.span());
            self.push(
                Finding::error(
                    Code::WrongType,
                    span,
                    "expected a list",
                    "`depends_on` must be a list of model addresses",
                )
                .with_help("write `depends_on = [\"model.embedder\"]`"),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in arr.iter() {
            let span = self.span(item.span());
            let text = match item {
                Expression::String(s) => Some(s.as_str().to_string()),
                Expression::Traversal(t) => traversal_text(t),
                _ => None,
            };
            match text.as_deref().and_then(|t| t.strip_prefix("model.")) {
                Some(id) if check_id(id).is_ok() => out.push(Spanned::new(id.to_string(), span)),
                _ => self.push(
                    Finding::error(
                        Code::InvalidValue,
                        span,
                        "not a model address",
                        "`depends_on` items must name models as \"model.ID\"",
                    )
                    .with_help(
                        "write `depends_on = [\"model.embedder\"]` (quote ids that hold dots)",
                    ),
                ),
            }
        }
        out
    }
}

/// The value of a literal expression, for callers outside decoding.
pub(crate) fn literal_value(expr: &Expression) -> Option<hcl::Value> {
    literal(expr)
}

/// The value of an expression made only of literals (strings without interpolation, numbers,
/// bools, null, and lists and objects of those).
fn literal(expr: &Expression) -> Option<hcl::Value> {
    Some(match expr {
        Expression::String(s) => hcl::Value::String(s.value().clone()),
        Expression::Number(n) => hcl::Value::Number(*n.value()),
        Expression::Bool(b) => hcl::Value::Bool(*b.value()),
        Expression::Null(_) => hcl::Value::Null,
        Expression::Array(items) => {
            hcl::Value::Array(items.iter().map(literal).collect::<Option<_>>()?)
        }
        Expression::Object(obj) => {
            let mut map = hcl::Map::new();
            for (key, value) in obj.iter() {
                let key = match key {
                    hcl_edit::expr::ObjectKey::Ident(ident) => ident.as_str().to_string(),
                    hcl_edit::expr::ObjectKey::Expression(Expression::String(s)) => {
                        s.value().clone()
                    }
                    _ => return None,
                };
                map.insert(key, literal(value.expr())?);
            }
            hcl::Value::Object(map)
        }
        _ => return None,
    })
}

/// True when `body` has `key`, or a key close enough to be a misspelling of it, which is
/// reported on its own: a "missing" finding on top would only repeat it.
fn mentions(body: &Body, key: &str) -> bool {
    body.iter().any(|s| {
        let k = match s {
            Structure::Attribute(a) => a.key.as_str(),
            Structure::Block(b) => b.ident.as_str(),
        };
        k == key || did_you_mean(k, [key]).is_some()
    })
}

/// Checks an id: 1-64 of letters, digits, `-`, `_` and `.`.
pub fn check_id(id: &str) -> Result<(), &'static str> {
    if id.is_empty() {
        return Err("empty id");
    }
    if id.len() > 64 {
        return Err("longer than 64 characters");
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err("only letters, digits, `-`, `_` and `.` are allowed");
    }
    Ok(())
}

fn traversal_text(t: &hcl_edit::expr::Traversal) -> Option<String> {
    let Expression::Variable(root) = &t.expr else {
        return None;
    };
    let mut text = root.as_str().to_string();
    for op in &t.operators {
        match op.value() {
            TraversalOperator::GetAttr(ident) => {
                text.push('.');
                text.push_str(ident.as_str());
            }
            _ => return None,
        }
    }
    Some(text)
}

fn known_list(attrs: &[&str], blocks: &[&str]) -> String {
    let mut parts = Vec::new();
    if !attrs.is_empty() {
        parts.push(format!("attributes: {}", attrs.join(", ")));
    }
    if !blocks.is_empty() {
        parts.push(format!("blocks: {}", blocks.join(", ")));
    }
    if parts.is_empty() {
        "this block takes nothing".into()
    } else {
        format!("known {}", parts.join("; "))
    }
}

fn braces(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("{{{n}}}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn example_of(expected: &str) -> &'static str {
    match expected {
        "a string" => "a quoted string, e.g. \"value\"",
        "a bool" => "true or false",
        "a number" => "a number, e.g. 8080",
        "a list of strings" => "a list, e.g. [\"a\", \"b\"]",
        "a map of strings" => "a map, e.g. { KEY = \"value\" }",
        _ => "a value of the right type",
    }
}

/// An evaluation error message that never shows a sensitive value.
fn eval_message(err: &hcl::eval::Error, sensitive: bool) -> String {
    if sensitive {
        // The library prints the failing expression's values, which could hold the secret.
        return "the expression (which uses a sensitive variable) could not be evaluated".into();
    }
    let kind = err.kind().to_string();
    kind.lines()
        .next()
        .unwrap_or("evaluation failed")
        .to_string()
}

/// Collects `var.NAME` references and names that are neither `var` nor a loop variable.
#[derive(Default)]
struct VarRefs {
    found: Vec<(String, Range<usize>)>,
    unknown_roots: Vec<(String, Range<usize>)>,
    /// Names bound by enclosing `for` expressions.
    bound: Vec<String>,
}

impl Visit for VarRefs {
    fn visit_traversal(&mut self, node: &hcl_edit::expr::Traversal) {
        if let Expression::Variable(root) = &node.expr
            && root.as_str() == "var"
        {
            if let Some(op) = node.operators.first()
                && let TraversalOperator::GetAttr(name) = op.value()
            {
                let range = node.span().unwrap_or(0..0);
                self.found.push((name.as_str().to_string(), range));
            }
            for op in node.operators.iter().skip(1) {
                if let TraversalOperator::Index(expr) = op.value() {
                    self.visit_expr(expr);
                }
            }
            return;
        }
        visit_traversal(self, node);
    }

    fn visit_expr(&mut self, node: &Expression) {
        match node {
            Expression::Variable(var) => {
                let name = var.as_str();
                if name != "var" && name != "path" && !self.bound.iter().any(|b| b == name) {
                    self.unknown_roots
                        .push((name.to_string(), var.span().unwrap_or(0..0)));
                }
            }
            other => hcl_edit::visit::visit_expr(self, other),
        }
    }

    fn visit_for_template_expr(&mut self, node: &hcl_edit::template::ForTemplateExpr) {
        self.visit_expr(&node.collection_expr);
        let before = self.bound.len();
        if let Some(key) = &node.key_var {
            self.bound.push(key.as_str().to_string());
        }
        self.bound.push(node.value_var.as_str().to_string());
        self.visit_template(&node.template);
        self.bound.truncate(before);
    }

    fn visit_for_expr(&mut self, node: &hcl_edit::expr::ForExpr) {
        let intro = &node.intro;
        self.visit_expr(&intro.collection_expr);
        let before = self.bound.len();
        if let Some(key) = &intro.key_var {
            self.bound.push(key.as_str().to_string());
        }
        self.bound.push(intro.value_var.as_str().to_string());
        if let Some(key_expr) = &node.key_expr {
            self.visit_expr(key_expr);
        }
        self.visit_expr(&node.value_expr);
        if let Some(cond) = &node.cond {
            self.visit_expr(&cond.expr);
        }
        self.bound.truncate(before);
    }
}

/// Whether `expr` holds an `a % b` or `a / b` whose `b` is zero, which hcl's evaluator cannot
/// report (it panics on an integer remainder by zero, and asserts that quotients are finite).
fn remainder_by_zero(expr: &hcl::Expression, ctx: &hcl::eval::Context) -> bool {
    use hcl::Expression as E;
    use hcl::expr::{BinaryOperator, Operation};
    match expr {
        E::Array(items) => items.iter().any(|e| remainder_by_zero(e, ctx)),
        E::Object(map) => map.values().any(|e| remainder_by_zero(e, ctx)),
        E::Parenthesis(inner) => remainder_by_zero(inner, ctx),
        E::FuncCall(call) => call.args.iter().any(|e| remainder_by_zero(e, ctx)),
        E::Conditional(c) => [&c.cond_expr, &c.true_expr, &c.false_expr]
            .into_iter()
            .any(|e| remainder_by_zero(e, ctx)),
        E::Operation(op) => match op.as_ref() {
            Operation::Unary(u) => remainder_by_zero(&u.expr, ctx),
            Operation::Binary(b) => {
                remainder_by_zero(&b.lhs_expr, ctx)
                    || remainder_by_zero(&b.rhs_expr, ctx)
                    || (matches!(b.operator, BinaryOperator::Mod | BinaryOperator::Div)
                        && matches!(
                            b.rhs_expr.evaluate(ctx),
                            Ok(hcl::Value::Number(n)) if n.as_f64() == Some(0.0)
                        ))
            }
        },
        _ => false,
    }
}
