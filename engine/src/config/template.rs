//! berth's `{name}` command templates: parsing, checking names, and rendering with every value
//! shell-quoted. HCL's own `${...}` interpolation has already happened when a template gets here.
//! Rendering tracks which quoted words came from sensitive values, so the result can be shown
//! without searching it for secrets.

use std::collections::BTreeMap;
use std::fmt;

use super::schema::{MaybeSecret, Redactable};

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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
    /// One word, shell-quoted on substitution; when sensitive, its whole quoted form is.
    Word(MaybeSecret),
    /// Already quoted shell text (e.g. `{backend_args}`: each argument quoted, space-joined).
    Quoted(Redactable),
}

impl Value {
    /// A word that holds no secret.
    pub fn plain(word: impl Into<String>) -> Value {
        Value::Word(MaybeSecret {
            value: word.into(),
            sensitive: false,
        })
    }
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

    /// Fills the placeholders; every [`Value::Word`] is shell-quoted. A sensitive word marks its
    /// whole quoted form sensitive: the quoting around a secret encodes it too. Fails on a NUL
    /// byte or a name `lookup` does not know.
    pub fn render(
        &self,
        lookup: impl Fn(&str) -> Option<Value>,
    ) -> Result<Redactable, RenderError> {
        let mut out = Redactable::default();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push(text, false),
                Part::Placeholder { name, .. } => match lookup(name) {
                    Some(Value::Word(word)) => out.push(
                        &shlex::try_quote(&word.value)
                            .map_err(|_| RenderError::Nul(name.clone()))?,
                        word.sensitive,
                    ),
                    Some(Value::Quoted(text)) => out.append(&text),
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

/// Shell-quotes each argument and joins them with spaces (`{backend_args}`); each sensitive
/// argument's quoted form is a sensitive range. Fails with the position of an argument that
/// holds a NUL byte.
pub fn quote_args(args: &[MaybeSecret]) -> Result<Redactable, usize> {
    let mut out = Redactable::default();
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            out.push(" ", false);
        }
        out.push(&shlex::try_quote(&arg.value).map_err(|_| i)?, arg.sensitive);
    }
    Ok(out)
}

/// `K='v'` pairs joined with spaces (`{backend_env}`); each sensitive value's quoted form is a
/// sensitive range. Fails with the key whose value holds a NUL byte.
pub fn quote_env(env: &BTreeMap<String, MaybeSecret>) -> Result<Redactable, String> {
    let mut out = Redactable::default();
    for (k, v) in env {
        if !out.reveal().is_empty() {
            out.push(" ", false);
        }
        out.push(&format!("{k}="), false);
        out.push(
            &shlex::try_quote(&v.value).map_err(|_| k.clone())?,
            v.sensitive,
        );
    }
    Ok(out)
}

/// Shell-quotes `value` as a placeholder would, then doubles `{` and `}` so the result passes
/// through template parsing unchanged (HCL's `shellquote` function).
pub fn shell_quote_for_template(value: &str) -> Result<String, shlex::QuoteError> {
    Ok(shlex::try_quote(value)?
        .replace('{', "{{")
        .replace('}', "}}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(name: &str) -> Option<Value> {
        match name {
            "source" => Some(Value::plain("/m/my model's.gguf")),
            "port" => Some(Value::plain("8080")),
            "backend_args" => Some(Value::Quoted(Redactable::plain("--n-gpu-layers 999"))),
            _ => None,
        }
    }

    fn secret(value: &str) -> MaybeSecret {
        MaybeSecret {
            value: value.into(),
            sensitive: true,
        }
    }

    fn plain(value: &str) -> MaybeSecret {
        MaybeSecret {
            value: value.into(),
            sensitive: false,
        }
    }

    #[test]
    fn a_sensitive_word_hides_its_whole_quoted_form() {
        let t = Template::parse("srv -m {source} --port {port}").unwrap();
        let out = t
            .render(|name| match name {
                "source" => Some(Value::Word(secret("/m/x-p@ss'w$rd.gguf"))),
                _ => lookup(name),
            })
            .unwrap();
        assert_eq!(
            out.reveal(),
            r#"srv -m "/m/x-p@ss'w"'$rd.gguf' --port 8080"#
        );
        assert_eq!(out.display(), "srv -m (sensitive) --port 8080");
    }

    #[test]
    fn only_sensitive_args_and_env_values_are_hidden() {
        let args = quote_args(&[plain("--ctx"), plain("4096"), secret("--api-key=a\\b")]).unwrap();
        assert_eq!(args.display(), "--ctx 4096 (sensitive)");
        let env = BTreeMap::from([
            ("A".to_string(), plain("x y")),
            ("B".to_string(), secret("p@ss'w$rd")),
        ]);
        let env = quote_env(&env).unwrap();
        assert_eq!(env.display(), "A='x y' B=(sensitive)");
        let t = Template::parse("run {backend_env} srv {backend_args}").unwrap();
        let out = t
            .render(|name| match name {
                "backend_env" => Some(Value::Quoted(env.clone())),
                "backend_args" => Some(Value::Quoted(args.clone())),
                _ => None,
            })
            .unwrap();
        assert_eq!(
            out.display(),
            "run A='x y' B=(sensitive) srv --ctx 4096 (sensitive)"
        );
        assert!(out.reveal().contains("p@ss"));
    }

    #[test]
    fn shell_quoted_braces_survive_template_parsing() {
        let value = "a{b}c {port} '$x'";
        let quoted = shell_quote_for_template(value).unwrap();
        let t = Template::parse(&format!("echo {quoted}")).unwrap();
        assert_eq!(t.placeholders().count(), 0);
        let out = t.render(|_| None).unwrap();
        let words = shlex::split(out.reveal()).unwrap();
        assert_eq!(words, ["echo", value]);
    }

    #[test]
    fn renders_with_quoting() {
        let t = Template::parse("srv -m {source} --port {port} {backend_args}").unwrap();
        assert_eq!(
            t.render(lookup).unwrap().reveal(),
            r#"srv -m "/m/my model's.gguf" --port 8080 --n-gpu-layers 999"#
        );
    }

    #[test]
    fn hostile_values_stay_one_word() {
        let t = Template::parse("echo {source}").unwrap();
        let out = t
            .render(|_| Some(Value::plain("$(touch /tmp/pwned); `id` && rm -rf /")))
            .unwrap();
        assert_eq!(
            out.reveal(),
            r#"echo '$(touch /tmp/pwned); `id` && rm -rf /'"#
        );
    }

    #[test]
    fn double_braces_are_literal() {
        let t = Template::parse("awk '{{print $1}}' {port}").unwrap();
        assert_eq!(t.render(lookup).unwrap().reveal(), "awk '{print $1}' 8080");
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
            t.render(|_| Some(Value::plain("a\0b"))),
            Err(RenderError::Nul(_))
        ));
        let t = Template::parse("{nope}").unwrap();
        assert!(matches!(t.render(lookup), Err(RenderError::Unknown(_))));
    }
}
