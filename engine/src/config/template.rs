//! berth's `{name}` command templates: parsing, checking names, and rendering with every value
//! shell-quoted. HCL's own `${...}` interpolation has already happened when a template gets here.

use std::fmt;

/// The placeholders a model's `*_cmd` may use.
pub const MODEL_PLACEHOLDERS: &[&str] = &[
    "source",
    "port",
    "host",
    "model",
    "run_dir",
    "backend_args",
    "backend_env",
];

/// The placeholders a backend's `verify_cmd` may use (it runs once per host, not per model).
pub const BACKEND_PLACEHOLDERS: &[&str] = &["host", "run_dir", "backend_args", "backend_env"];

/// A parsed command template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    raw: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Placeholder { name: String, offset: usize },
}

/// A `{name}` in a template, with its byte offset in the template text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeholder<'a> {
    pub name: &'a str,
    pub offset: usize,
}

/// A template that does not parse, with the byte offset of the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub offset: usize,
    pub message: String,
}

/// A value substituted for a placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// One word, shell-quoted on substitution.
    Word(String),
    /// Already quoted shell text (e.g. `{backend_args}`: each argument quoted, space-joined).
    Quoted(String),
}

impl Template {
    /// Parses `{name}` placeholders; `{{` and `}}` are literal braces.
    pub fn parse(raw: &str) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut text = String::new();
        let bytes = raw.as_bytes();
        let mut i = 0;
        while i < raw.len() {
            match bytes[i] {
                b'{' if bytes.get(i + 1) == Some(&b'{') => {
                    text.push('{');
                    i += 2;
                }
                b'}' if bytes.get(i + 1) == Some(&b'}') => {
                    text.push('}');
                    i += 2;
                }
                b'{' => {
                    let Some(len) = raw[i + 1..].find('}') else {
                        return Err(TemplateError {
                            offset: i,
                            message: "unclosed `{` (write `{{` for a literal brace)".into(),
                        });
                    };
                    let name = &raw[i + 1..i + 1 + len];
                    if name.is_empty()
                        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    {
                        return Err(TemplateError {
                            offset: i,
                            message: format!(
                                "`{{{name}}}` is not a placeholder name (write `{{{{` for a literal brace)"
                            ),
                        });
                    }
                    if !text.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut text)));
                    }
                    parts.push(Part::Placeholder {
                        name: name.to_string(),
                        offset: i,
                    });
                    i += len + 2;
                }
                _ => {
                    let ch = raw[i..].chars().next().expect("in bounds");
                    text.push(ch);
                    i += ch.len_utf8();
                }
            }
        }
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(Template {
            raw: raw.to_string(),
            parts,
        })
    }

    /// The text as written.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// Every placeholder, in order.
    pub fn placeholders(&self) -> impl Iterator<Item = Placeholder<'_>> {
        self.parts.iter().filter_map(|p| match p {
            Part::Placeholder { name, offset } => Some(Placeholder {
                name,
                offset: *offset,
            }),
            Part::Text(_) => None,
        })
    }

    /// Fills the placeholders; every [`Value::Word`] is shell-quoted. Fails on a NUL byte or a
    /// name `lookup` does not know.
    pub fn render(&self, lookup: impl Fn(&str) -> Option<Value>) -> Result<String, RenderError> {
        let mut out = String::with_capacity(self.raw.len() + 32);
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Placeholder { name, .. } => match lookup(name) {
                    Some(Value::Word(word)) => out.push_str(
                        &shlex::try_quote(&word).map_err(|_| RenderError::Nul(name.clone()))?,
                    ),
                    Some(Value::Quoted(text)) => out.push_str(&text),
                    None => return Err(RenderError::Unknown(name.clone())),
                },
            }
        }
        Ok(out)
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// Why a template could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("template placeholder {{{0}}} has no value here")]
    Unknown(String),
    #[error("the value of {{{0}}} holds a NUL byte and cannot be passed to a shell")]
    Nul(String),
}

/// Shell-quotes each word and joins them with spaces.
pub fn quote_words<'a>(
    words: impl IntoIterator<Item = &'a str>,
) -> Result<String, shlex::QuoteError> {
    shlex::try_join(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(name: &str) -> Option<Value> {
        match name {
            "source" => Some(Value::Word("/m/my model's.gguf".into())),
            "port" => Some(Value::Word("8080".into())),
            "backend_args" => Some(Value::Quoted("--n-gpu-layers 999".into())),
            _ => None,
        }
    }

    #[test]
    fn renders_with_quoting() {
        let t = Template::parse("srv -m {source} --port {port} {backend_args}").unwrap();
        assert_eq!(
            t.render(lookup).unwrap(),
            r#"srv -m "/m/my model's.gguf" --port 8080 --n-gpu-layers 999"#
        );
    }

    #[test]
    fn hostile_values_stay_one_word() {
        let t = Template::parse("echo {source}").unwrap();
        let out = t
            .render(|_| Some(Value::Word("$(touch /tmp/pwned); `id` && rm -rf /".into())))
            .unwrap();
        assert_eq!(out, r#"echo '$(touch /tmp/pwned); `id` && rm -rf /'"#);
    }

    #[test]
    fn double_braces_are_literal() {
        let t = Template::parse("awk '{{print $1}}' {port}").unwrap();
        assert_eq!(t.render(lookup).unwrap(), "awk '{print $1}' 8080");
        assert_eq!(
            t.placeholders().map(|p| p.name).collect::<Vec<_>>(),
            ["port"]
        );
    }

    #[test]
    fn reports_offsets() {
        let t = Template::parse("a {b} {c}").unwrap();
        let offsets: Vec<_> = t.placeholders().map(|p| p.offset).collect();
        assert_eq!(offsets, [2, 6]);
        assert_eq!(Template::parse("x {oops").unwrap_err().offset, 2);
        assert_eq!(Template::parse("x {a b}").unwrap_err().offset, 2);
    }

    #[test]
    fn nul_is_refused_and_unknown_names_fail() {
        let t = Template::parse("{source}").unwrap();
        assert!(matches!(
            t.render(|_| Some(Value::Word("a\0b".into()))),
            Err(RenderError::Nul(_))
        ));
        let t = Template::parse("{nope}").unwrap();
        assert!(matches!(t.render(lookup), Err(RenderError::Unknown(_))));
    }
}
