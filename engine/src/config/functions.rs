//! The functions callable from config expressions (a small, Terraform-compatible set). Pure
//! functions of their arguments; nothing here reads files or the environment.

use hcl::Value;
use hcl::eval::{Context, FuncArgs, FuncDef, ParamType};

/// The names of every function, for messages and docs.
pub const NAMES: &[&str] = &[
    "abs",
    "ceil",
    "coalesce",
    "concat",
    "contains",
    "floor",
    "join",
    "keys",
    "length",
    "lower",
    "max",
    "merge",
    "min",
    "replace",
    "shellquote",
    "split",
    "tonumber",
    "tostring",
    "trimspace",
    "upper",
    "values",
];

/// Declares every function in `ctx`.
pub fn declare(ctx: &mut Context<'_>) {
    use ParamType as P;
    let str1 = |f| FuncDef::builder().param(P::String).build(f);
    ctx.declare_func(
        "upper",
        str1(|a| Ok(Value::from(string(&a[0]).to_uppercase()))),
    );
    ctx.declare_func(
        "lower",
        str1(|a| Ok(Value::from(string(&a[0]).to_lowercase()))),
    );
    ctx.declare_func("trimspace", str1(|a| Ok(Value::from(string(&a[0]).trim()))));
    ctx.declare_func(
        "join",
        FuncDef::builder()
            .param(P::String)
            .param(P::array_of(P::Any))
            .build(join),
    );
    ctx.declare_func(
        "split",
        FuncDef::builder()
            .params([P::String, P::String])
            .build(split),
    );
    ctx.declare_func(
        "replace",
        FuncDef::builder()
            .params([P::String, P::String, P::String])
            .build(|a| {
                Ok(Value::from(
                    string(&a[0]).replace(string(&a[1]), string(&a[2])),
                ))
            }),
    );
    ctx.declare_func(
        "concat",
        FuncDef::builder()
            .variadic_param(P::array_of(P::Any))
            .build(concat),
    );
    ctx.declare_func("length", FuncDef::builder().param(P::Any).build(length));
    ctx.declare_func(
        "min",
        FuncDef::builder()
            .variadic_param(P::Number)
            .build(|a| extreme(a, true)),
    );
    ctx.declare_func(
        "max",
        FuncDef::builder()
            .variadic_param(P::Number)
            .build(|a| extreme(a, false)),
    );
    ctx.declare_func(
        "abs",
        FuncDef::builder()
            .param(P::Number)
            .build(|a| num(a, f64::abs)),
    );
    ctx.declare_func(
        "ceil",
        FuncDef::builder()
            .param(P::Number)
            .build(|a| num(a, f64::ceil)),
    );
    ctx.declare_func(
        "floor",
        FuncDef::builder()
            .param(P::Number)
            .build(|a| num(a, f64::floor)),
    );
    ctx.declare_func(
        "merge",
        FuncDef::builder()
            .variadic_param(P::object_of(P::Any))
            .build(merge),
    );
    ctx.declare_func(
        "contains",
        FuncDef::builder()
            .param(P::array_of(P::Any))
            .param(P::Any)
            .build(|a| {
                Ok(Value::Bool(
                    a[0].as_array().is_some_and(|items| items.contains(&a[1])),
                ))
            }),
    );
    ctx.declare_func(
        "keys",
        FuncDef::builder().param(P::object_of(P::Any)).build(|a| {
            let obj = a[0].as_object().ok_or("keys() needs an object")?;
            let mut keys: Vec<&String> = obj.keys().collect();
            keys.sort();
            Ok(Value::Array(
                keys.into_iter().map(|k| Value::from(k.as_str())).collect(),
            ))
        }),
    );
    ctx.declare_func(
        "values",
        FuncDef::builder().param(P::object_of(P::Any)).build(|a| {
            let obj = a[0].as_object().ok_or("values() needs an object")?;
            let mut entries: Vec<(&String, &Value)> = obj.iter().collect();
            entries.sort_by_key(|(k, _)| *k);
            Ok(Value::Array(
                entries.into_iter().map(|(_, v)| v.clone()).collect(),
            ))
        }),
    );
    ctx.declare_func("shellquote", str1(shellquote));
    ctx.declare_func("tostring", FuncDef::builder().param(P::Any).build(tostring));
    ctx.declare_func("tonumber", FuncDef::builder().param(P::Any).build(tonumber));
    ctx.declare_func(
        "coalesce",
        FuncDef::builder().variadic_param(P::Any).build(coalesce),
    );
}

fn string(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

/// One shell word, quoted as `{placeholder}` values are, with `{`/`}` doubled so that a `*_cmd`
/// template gives the value back unchanged.
fn shellquote(a: FuncArgs) -> Result<Value, String> {
    super::template::shell_quote_for_template(string(&a[0]))
        .map(Value::from)
        .map_err(|_| "shellquote() cannot quote a string holding a NUL byte".to_string())
}

fn join(a: FuncArgs) -> Result<Value, String> {
    let items = a[1].as_array().ok_or("join() needs a list")?;
    let parts: Result<Vec<String>, String> = items.iter().map(scalar_to_string).collect();
    Ok(Value::from(parts?.join(string(&a[0]))))
}

fn split(a: FuncArgs) -> Result<Value, String> {
    let sep = string(&a[0]);
    if sep.is_empty() {
        return Err("split() needs a non-empty separator".into());
    }
    Ok(Value::Array(
        string(&a[1]).split(sep).map(Value::from).collect(),
    ))
}

fn concat(a: FuncArgs) -> Result<Value, String> {
    let mut out = Vec::new();
    for list in a.iter() {
        out.extend(
            list.as_array()
                .ok_or("concat() needs lists")?
                .iter()
                .cloned(),
        );
    }
    Ok(Value::Array(out))
}

fn length(a: FuncArgs) -> Result<Value, String> {
    let n = match &a[0] {
        Value::String(s) => s.chars().count(),
        Value::Array(items) => items.len(),
        Value::Object(map) => map.len(),
        other => {
            return Err(format!(
                "length() needs a string, list or object, not {}",
                type_name(other)
            ));
        }
    };
    Ok(Value::from(n as u64))
}

fn extreme(a: FuncArgs, min: bool) -> Result<Value, String> {
    let nums: Vec<f64> = a
        .iter()
        .filter_map(|v| v.as_number().and_then(|n| n.as_f64()))
        .collect();
    let pick = if min { f64::min } else { f64::max };
    let first = *nums
        .first()
        .ok_or("min() and max() need at least one number")?;
    number(nums.into_iter().fold(first, pick))
}

fn num(a: FuncArgs, f: fn(f64) -> f64) -> Result<Value, String> {
    let n = a[0]
        .as_number()
        .and_then(|n| n.as_f64())
        .ok_or("a number is needed")?;
    number(f(n))
}

fn number(f: f64) -> Result<Value, String> {
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        return Ok(Value::from(f as i64));
    }
    hcl::Number::from_f64(f)
        .map(Value::Number)
        .ok_or_else(|| format!("{f} is not a finite number"))
}

fn merge(a: FuncArgs) -> Result<Value, String> {
    let mut out = hcl::Map::new();
    for obj in a.iter() {
        for (k, v) in obj.as_object().ok_or("merge() needs objects")? {
            out.insert(k.clone(), v.clone());
        }
    }
    Ok(Value::Object(out))
}

fn tostring(a: FuncArgs) -> Result<Value, String> {
    scalar_to_string(&a[0]).map(Value::from)
}

fn tonumber(a: FuncArgs) -> Result<Value, String> {
    match &a[0] {
        Value::Number(n) => Ok(Value::Number(*n)),
        Value::String(s) => {
            let f: f64 = s
                .trim()
                .parse()
                .map_err(|_| format!("{s:?} is not a number"))?;
            number(f)
        }
        other => Err(format!("tonumber() cannot convert {}", type_name(other))),
    }
}

fn coalesce(a: FuncArgs) -> Result<Value, String> {
    a.iter()
        .find(|v| !v.is_null() && v.as_str() != Some(""))
        .cloned()
        .ok_or_else(|| "coalesce() found no non-empty argument".into())
}

/// Converts a string, number or bool to its text.
pub fn scalar_to_string(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(format!("expected a string, found {}", type_name(other))),
    }
}

/// The HCL name of a value's type, for messages.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hcl::eval::Evaluate;

    fn eval(src: &str) -> Result<Value, String> {
        let mut ctx = Context::new();
        declare(&mut ctx);
        let expr: hcl::Expression = hcl_edit::parser::parse_expr(src)
            .map_err(|e| e.to_string())?
            .into();
        expr.evaluate(&ctx).map_err(|e| e.to_string())
    }

    #[test]
    fn string_and_list_functions() {
        assert_eq!(eval(r#"upper("qwen")"#).unwrap(), Value::from("QWEN"));
        assert_eq!(eval(r#"join(",", ["0", 1])"#).unwrap(), Value::from("0,1"));
        assert_eq!(
            eval(r#"length(split("-", "a-b-c"))"#).unwrap(),
            Value::from(3u64)
        );
        assert_eq!(
            eval(r#"concat(["a"], ["b", "c"])"#)
                .unwrap()
                .as_array()
                .unwrap()
                .len(),
            3
        );
        assert_eq!(eval("max(1, 7.5, 3)").unwrap(), Value::from(7.5));
        assert_eq!(eval("min(4, 2)").unwrap(), Value::from(2i64));
        assert_eq!(eval(r#"coalesce("", "x")"#).unwrap(), Value::from("x"));
        assert_eq!(
            eval(r#"merge({a = 1}, {a = 2, b = 3})"#)
                .unwrap()
                .as_object()
                .unwrap()
                .len(),
            2
        );
        assert_eq!(eval(r#"tonumber("42")"#).unwrap(), Value::from(42i64));
    }

    #[test]
    fn shellquote_quotes_one_word_and_doubles_braces() {
        assert_eq!(
            eval(r#"shellquote("plain")"#).unwrap(),
            Value::from("plain")
        );
        assert_eq!(eval(r#"shellquote("a b")"#).unwrap(), Value::from("'a b'"));
        assert_eq!(
            eval(r#"shellquote("{x}")"#).unwrap(),
            Value::from("'{{x}}'")
        );
        assert!(eval(r#"shellquote(1)"#).is_err());
    }

    #[test]
    fn bad_arguments_are_errors_not_panics() {
        assert!(eval(r#"upper(1)"#).is_err());
        assert!(eval(r#"split("", "abc")"#).is_err());
        assert!(eval(r#"tonumber("x")"#).is_err());
        assert!(eval(r#"join(",", [{}])"#).is_err());
        assert!(eval(r#"nosuch(1)"#).is_err());
    }
}
