//! Where variable values come from: `--var k=v`, `--var-file F` and `BERTH_VAR_name`, in that
//! order of precedence, over each variable's default. Owns the inputs, not the variable blocks.

use std::path::PathBuf;

/// Variable values given outside the config files.
#[derive(Debug, Clone, Default)]
pub struct VarInputs {
    /// `--var name=value`, in command-line order (a later one wins).
    pub cli: Vec<(String, String)>,
    /// `--var-file F`, in command-line order (a later file wins).
    pub files: Vec<PathBuf>,
    /// `BERTH_VAR_name=value` from the environment.
    pub env: Vec<(String, String)>,
}

/// The environment prefix of variable values.
pub const ENV_PREFIX: &str = "BERTH_VAR_";

impl VarInputs {
    /// Collects `BERTH_VAR_*` from the process environment.
    pub fn env_from_process() -> Vec<(String, String)> {
        let mut vars: Vec<(String, String)> = std::env::vars_os()
            .filter_map(|(k, v)| {
                let name = k.to_str()?.strip_prefix(ENV_PREFIX)?.to_string();
                Some((name, v.into_string().ok()?))
            })
            .collect();
        vars.sort();
        vars
    }
}

/// Parses a `--var` argument of the form `name=value`.
pub fn parse_cli_var(arg: &str) -> Result<(String, String), String> {
    match arg.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_string(), value.to_string()))
        }
        _ => Err(format!("`{arg}` is not of the form name=value")),
    }
}

/// Converts a value given as text to the type of the variable's default (text stays text when
/// the default is a string or absent).
pub fn coerce(text: &str, default: Option<&hcl::Value>) -> Result<hcl::Value, String> {
    match default {
        Some(hcl::Value::Number(_)) => text
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(|f| {
                if f.fract() == 0.0 && f.abs() < 9.0e15 {
                    Some(hcl::Value::from(f as i64))
                } else {
                    hcl::Number::from_f64(f).map(hcl::Value::Number)
                }
            })
            .ok_or_else(|| format!("expected a number (the default is one), found {text:?}")),
        Some(hcl::Value::Bool(_)) => match text.trim() {
            "true" => Ok(hcl::Value::Bool(true)),
            "false" => Ok(hcl::Value::Bool(false)),
            _ => Err(format!(
                "expected true or false (the default is a bool), found {text:?}"
            )),
        },
        Some(hcl::Value::Array(_)) | Some(hcl::Value::Object(_)) => {
            let expr = hcl_edit::parser::parse_expr(text)
                .map_err(|e| format!("not an HCL value: {}", e.message()))?;
            let expr: hcl::Expression = expr.into();
            use hcl::eval::Evaluate;
            expr.evaluate(&hcl::eval::Context::new())
                .map_err(|e| e.to_string())
        }
        _ => Ok(hcl::Value::from(text)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_vars_split_on_the_first_equals() {
        assert_eq!(parse_cli_var("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert!(parse_cli_var("novalue").is_err());
        assert!(parse_cli_var("=x").is_err());
    }

    #[test]
    fn values_take_the_type_of_the_default() {
        assert_eq!(
            coerce("8", Some(&hcl::Value::from(1))).unwrap(),
            hcl::Value::from(8)
        );
        assert!(coerce("eight", Some(&hcl::Value::from(1))).is_err());
        assert_eq!(
            coerce("true", Some(&hcl::Value::Bool(false))).unwrap(),
            hcl::Value::Bool(true)
        );
        assert_eq!(coerce("8", None).unwrap(), hcl::Value::from("8"));
        let list = coerce(r#"["a", "b"]"#, Some(&hcl::Value::Array(vec![]))).unwrap();
        assert_eq!(list.as_array().unwrap().len(), 2);
    }
}
