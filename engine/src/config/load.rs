//! Loading a config directory: read every `*.hcl` file, parse it with hcl-edit, resolve
//! variables, decode every block, then run the cross-block checks. All findings of all files are
//! collected in one pass; nothing here touches a host or the state.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use hcl_edit::Span as _;
use hcl_edit::structure::{Body, Structure};

use super::decode::{Decoder, TOP_LEVEL_BLOCKS};
use super::diagnostic::{Code, Finding, Findings, did_you_mean};
use super::schema::*;
use super::source::{FileId, Sources, Span, Spanned};
use super::vars::{VarInputs, coerce};
use super::{functions, limits, validate};

/// A config that loaded with no errors (it may have warnings).
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Findings,
}

/// A config with errors: every finding, and the sources to show them against.
#[derive(Debug)]
pub struct Invalid {
    pub sources: Sources,
    pub findings: Findings,
}

/// Which state the config in `dir` uses, read from its `settings` block alone, so that the
/// state can be inspected and unlocked even while the rest of the config has errors. Settings
/// that are not plain strings, or name a backend this berth lacks, need the whole config loaded
/// (which reports what is wrong).
pub fn state_of(dir: &Path, inputs: &VarInputs) -> Result<StateSettings, Invalid> {
    let mut sources = Sources::default();
    let mut findings = Findings::default();
    let files = read_files(dir, &mut sources, &mut findings);
    let base = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut literal_dir = None;
    let mut backend = StateBackendKind::default();
    let mut workspace = None;
    let mut needs_full_load = false;
    for file in files {
        // An oversized file is refused by the full load; here it is only skipped, unparsed.
        if within_limits(&sources, file).is_err() {
            continue;
        }
        let Ok(body) = hcl_edit::parser::parse_body(&sources.get(file).text) else {
            continue;
        };
        for block in body.get_blocks("settings") {
            let state = block.body.get_blocks("state").next().map(|b| &b.body);
            let literal = |body: &Body, key: &str| {
                body.get_attribute(key)
                    .map(|a| super::decode::literal_value(&a.value))
            };
            let dirs = [
                literal(&block.body, "state_dir"),
                state.and_then(|s| literal(s, "dir")),
            ];
            for value in dirs.into_iter().flatten() {
                match value {
                    Some(hcl::Value::String(s)) if literal_dir.is_none() => literal_dir = Some(s),
                    // Set twice, or not a plain string: the full load explains.
                    _ => needs_full_load = true,
                }
            }
            match state.and_then(|s| literal(s, "backend")) {
                None => {}
                Some(Some(hcl::Value::String(name))) => match StateBackendKind::from_name(&name) {
                    Some(kind) => backend = kind,
                    None => needs_full_load = true,
                },
                Some(_) => needs_full_load = true,
            }
            match state.and_then(|s| literal(s, "workspace")) {
                None => {}
                Some(Some(hcl::Value::String(name))) => workspace = Some(name),
                Some(_) => needs_full_load = true,
            }
            // A URL from a variable, or one that the full load must check for a password.
            if state.and_then(|s| s.get_attribute("url")).is_some() {
                needs_full_load = true;
            }
        }
    }
    if needs_full_load {
        let loaded = load(dir, inputs)?;
        return Ok(loaded.config.settings.state(&loaded.config.dir));
    }
    Ok(StateSettings {
        backend,
        dir: base.join(literal_dir.unwrap_or_else(|| Settings::DEFAULT_STATE_DIR.to_string())),
        workspace,
        url: None,
    })
}

/// Loads and checks the config in `dir`.
pub fn load(dir: &Path, inputs: &VarInputs) -> Result<Loaded, Invalid> {
    let mut sources = Sources::default();
    let mut findings = Findings::default();
    let files = read_files(dir, &mut sources, &mut findings);
    check_sources(dir, sources, files, findings, inputs)
}

/// Loads and checks a config given as texts (name, text), as if they were the files of `dir`.
pub fn load_texts(
    dir: &Path,
    texts: &[(&str, &str)],
    inputs: &VarInputs,
) -> Result<Loaded, Invalid> {
    let mut sources = Sources::default();
    let files = texts
        .iter()
        .map(|(name, text)| sources.add(name.to_string(), dir.join(name), text.to_string()))
        .collect();
    check_sources(dir, sources, files, Findings::default(), inputs)
}

fn check_sources(
    dir: &Path,
    mut sources: Sources,
    files: Vec<FileId>,
    mut findings: Findings,
    inputs: &VarInputs,
) -> Result<Loaded, Invalid> {
    let total: u64 = files
        .iter()
        .map(|&f| sources.get(f).text.len() as u64)
        .sum();
    let files = if total > limits::MAX_TOTAL_BYTES {
        findings.push(limits::config_too_large(
            &display_name(dir),
            total,
            files.len(),
        ));
        Vec::new()
    } else {
        files
            .into_iter()
            .filter(|&f| match within_limits(&sources, f) {
                Ok(()) => true,
                Err(finding) => {
                    findings.push(*finding);
                    false
                }
            })
            .collect()
    };
    let mut bodies = Vec::new();
    for (file, parsed) in parse_all(&sources, &files) {
        match parsed {
            Ok(body) => bodies.push((file, body)),
            Err(err) => findings.push(syntax_finding(&sources, file, &err)),
        }
    }
    let syntax_ok = !findings.has_errors();
    let (config, declared) = decode_all(dir, inputs, &mut sources, &mut findings, &bodies);
    if syntax_ok {
        validate::check(&config, &declared, &mut findings);
    }
    findings.sort();
    if findings.has_errors() {
        Err(Invalid {
            sources: config.sources,
            findings,
        })
    } else {
        Ok(Loaded {
            config,
            warnings: findings,
        })
    }
}

/// Checks one file's text against the limits that must hold before it is parsed.
fn within_limits(sources: &Sources, file: FileId) -> Result<(), Box<Finding>> {
    let source = sources.get(file);
    let bytes = source.text.len() as u64;
    if bytes > limits::MAX_FILE_BYTES {
        return Err(Box::new(limits::file_too_large(&source.name, bytes)));
    }
    match limits::check_items(file, &source.text) {
        Some(finding) => Err(Box::new(finding)),
        None => Ok(()),
    }
}

/// Parses every file, spread over the machine's cores (files are independent).
fn parse_all(
    sources: &Sources,
    files: &[FileId],
) -> Vec<(FileId, Result<Body, hcl_edit::parser::Error>)> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(files.len())
        .max(1);
    if workers == 1 {
        return files
            .iter()
            .map(|&f| (f, hcl_edit::parser::parse_body(&sources.get(f).text)))
            .collect();
    }
    let chunks: Vec<Vec<FileId>> = (0..workers)
        .map(|w| files.iter().copied().skip(w).step_by(workers).collect())
        .collect();
    let mut parsed: Vec<(FileId, Result<Body, hcl_edit::parser::Error>)> =
        std::thread::scope(|scope| {
            let handles: Vec<_> = chunks
                .iter()
                .map(|chunk| {
                    scope.spawn(move || {
                        chunk
                            .iter()
                            .map(|&f| (f, hcl_edit::parser::parse_body(&sources.get(f).text)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("the HCL parser does not panic"))
                .collect()
        });
    parsed.sort_by_key(|(f, _)| *f);
    parsed
}

fn read_files(dir: &Path, sources: &mut Sources, findings: &mut Findings) -> Vec<FileId> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) => {
            findings.push(
                Finding::unlocated(
                    Code::NoConfig,
                    format!("cannot read config directory {}: {err}", dir.display()),
                )
                .with_help("run berth in a directory of *.hcl files, or pass -C DIR"),
            );
            return Vec::new();
        }
    };
    // Every entry that matches and cannot be read is an error naming it: a config file skipped
    // silently (a dangling symlink, say) would make the next apply destroy what it held.
    let mut paths: Vec<PathBuf> = Vec::new();
    let mut unreadable = 0;
    for entry in entries {
        let path = match entry {
            Ok(entry) => entry.path(),
            Err(err) => {
                unreadable += 1;
                findings.push(
                    Finding::unlocated(
                        Code::Unreadable,
                        format!("cannot list config directory {}: {err}", dir.display()),
                    )
                    .with_help("check the directory's permissions"),
                );
                continue;
            }
        };
        if path.extension().is_none_or(|e| e != "hcl") {
            continue;
        }
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_file() => paths.push(path),
            Ok(_) => {
                unreadable += 1;
                findings.push(
                    Finding::unlocated(
                        Code::Unreadable,
                        format!("{} is not a regular file", path.display()),
                    )
                    .with_help("config files are the *.hcl files of the directory: rename or remove this one"),
                );
            }
            Err(err) => {
                unreadable += 1;
                let message = match std::fs::read_link(&path) {
                    Ok(target) if err.kind() == std::io::ErrorKind::NotFound => format!(
                        "{} is a symlink to {}, which does not exist",
                        path.display(),
                        target.display()
                    ),
                    _ => format!("cannot read {}: {err}", path.display()),
                };
                findings.push(Finding::unlocated(Code::Unreadable, message).with_help(
                    "restore the file it points to, or remove the link if its resources should go",
                ));
            }
        }
    }
    paths.sort();
    if paths.is_empty() && unreadable == 0 {
        findings.push(
            Finding::unlocated(
                Code::NoConfig,
                format!("no *.hcl files in {}", dir.display()),
            )
            .with_help("run berth in a directory of *.hcl files, or pass -C DIR"),
        );
    }
    // Sizes are checked before anything is read, so an oversized config costs no memory.
    let sizes: Vec<u64> = paths
        .iter()
        .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
        .collect();
    let total: u64 = sizes.iter().filter(|&&s| s <= limits::MAX_FILE_BYTES).sum();
    for (path, &size) in paths.iter().zip(&sizes) {
        if size > limits::MAX_FILE_BYTES {
            findings.push(limits::file_too_large(&display_name(path), size));
        }
    }
    if total > limits::MAX_TOTAL_BYTES {
        findings.push(limits::config_too_large(
            &display_name(dir),
            total,
            paths.len(),
        ));
        return Vec::new();
    }
    let mut ids = Vec::new();
    for (path, size) in paths.into_iter().zip(sizes) {
        if size > limits::MAX_FILE_BYTES {
            continue;
        }
        match std::fs::read(&path) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => ids.push(sources.add(display_name(&path), path, text)),
                Err(_) => findings.push(
                    Finding::unlocated(
                        Code::Unreadable,
                        format!("{} is not UTF-8 text", path.display()),
                    )
                    .with_help("config files must be UTF-8"),
                ),
            },
            Err(err) => findings.push(
                Finding::unlocated(
                    Code::Unreadable,
                    format!("cannot read {}: {err}", path.display()),
                )
                .with_help("check the file's permissions"),
            ),
        }
    }
    ids
}

/// A path as the user would like to see it: relative to the working directory when inside it.
pub fn display_name(path: &Path) -> String {
    let cwd = std::env::current_dir().ok();
    let shown = cwd
        .as_deref()
        .and_then(|cwd| path.strip_prefix(cwd).ok())
        .unwrap_or(path);
    shown.display().to_string()
}

fn syntax_finding(sources: &Sources, file: FileId, err: &hcl_edit::parser::Error) -> Finding {
    let loc = err.location();
    let start = sources.offset_of(file, loc.line(), loc.column());
    let text = &sources.get(file).text;
    // A point at a line break is shown as a point, not as a span running into the next line.
    let end = match text[start..].chars().next() {
        Some(c) if c != '\n' && c != '\r' => start + c.len_utf8(),
        _ => start,
    };
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("");
    let unbalanced_quotes = line.replace("\\\"", "").matches('"').count() % 2 == 1;
    let message = err.message();
    let help = if unbalanced_quotes {
        "a string on this line is missing its closing `\"`"
    } else if message.contains("expected `{`") {
        "an attribute needs `=` between its key and value (`key = value`); a block needs `{ ... }`"
    } else if message.contains("redefined attribute") {
        "each attribute may appear once per block: remove or rename the second one"
    } else if message.contains("expected `}`") {
        "a block may be missing its closing `}`, or an attribute its `=`"
    } else if message.contains("newline or eof") {
        "put each attribute on its own line: `key = value`"
    } else {
        "attributes are `key = value`, blocks are `name \"id\" { ... }`, strings are in double quotes"
    };
    Finding::error(
        Code::Syntax,
        Span::new(file, start..end),
        message.to_string(),
        format!("syntax error: {message}"),
    )
    .with_help(help)
}

struct Resolved {
    variables: Vec<Variable>,
    names: Vec<String>,
    sensitive: HashSet<String>,
    unset: HashSet<String>,
}

impl Resolved {
    /// A decoder of `file` that knows these variables.
    fn decoder<'a>(
        &'a self,
        file: FileId,
        text: &'a str,
        findings: &'a mut Findings,
        ctx: &'a hcl::eval::Context<'a>,
        local_run_dir: &'a dyn Fn(&str) -> String,
    ) -> Decoder<'a> {
        Decoder {
            file,
            text,
            findings,
            ctx,
            variables: &self.names,
            sensitive: &self.sensitive,
            unset: &self.unset,
            local_run_dir,
            no_vars_here: None,
        }
    }
}

fn decode_all(
    dir: &Path,
    inputs: &VarInputs,
    sources: &mut Sources,
    findings: &mut Findings,
    bodies: &[(FileId, Body)],
) -> (Config, validate::Declared) {
    let base_dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut base_ctx = hcl::eval::Context::new();
    functions::declare(&mut base_ctx);
    base_ctx.declare_var("var", hcl::Value::Object(hcl::Map::new()));
    let mut path = hcl::Map::new();
    path.insert(
        "config".to_string(),
        hcl::Value::from(base_dir.display().to_string()),
    );
    base_ctx.declare_var("path", hcl::Value::Object(path.clone()));
    let nothing = HashSet::new();
    let no_run_dir = |_: &str| String::new();

    // Pass 1: settings and variable blocks, which every other block depends on.
    let mut settings: Option<(Settings, Span)> = None;
    let mut settings_block: Option<(FileId, &hcl_edit::structure::Block)> = None;
    let mut variables: Defined<Variable> = Defined::default();
    for (file, body) in bodies {
        let text = sources.get(*file).text.clone();
        let mut d = Decoder {
            file: *file,
            text: &text,
            findings,
            ctx: &base_ctx,
            variables: &[],
            sensitive: &nothing,
            unset: &nothing,
            local_run_dir: &no_run_dir,
            no_vars_here: Some("in settings or variable defaults"),
        };
        for block in body.blocks() {
            match block.ident.as_str() {
                "settings" => {
                    let span = d.header_span(block);
                    let decoded = d.settings(block);
                    match &settings {
                        Some((_, first)) => d.findings.push(
                            Finding::error(
                                Code::DuplicateBlock,
                                span,
                                "second settings block",
                                "only one `settings` block is allowed",
                            )
                            .with_secondary(*first, "first defined here")
                            .with_help("merge the two settings blocks"),
                        ),
                        None => {
                            settings = Some((decoded, span));
                            settings_block = Some((*file, block));
                        }
                    }
                }
                "variable" => {
                    if let Some(var) = decode_variable(&mut d, block) {
                        variables.add("variable", var.name.clone(), var, d.findings);
                    }
                }
                _ => {}
            }
        }
    }
    let mut settings = settings.map(|(s, _)| s).unwrap_or_default();
    let resolved = resolve_variables(variables.items, inputs, sources, findings, &base_ctx);

    let mut ctx = hcl::eval::Context::new();
    functions::declare(&mut ctx);
    let mut var_obj = hcl::Map::new();
    for v in &resolved.variables {
        if let Some(value) = &v.value {
            var_obj.insert(v.name.value.clone(), value.clone());
        }
    }
    ctx.declare_var("var", hcl::Value::Object(var_obj));
    ctx.declare_var("path", hcl::Value::Object(path));

    // The state URL alone may come from a variable (a sensitive one may hold the password), so
    // it is decoded once the variables are known.
    if let Some((file, block)) = settings_block
        && let Some(state) = block.body.get_blocks("state").next()
    {
        let text = sources.get(file).text.clone();
        let mut d = resolved.decoder(file, &text, findings, &ctx, &no_run_dir);
        settings.state_url = d.state_url(&state.body);
    }
    let state_dir = base_dir.join(&settings.state_dir);
    // Beside the state directory, never inside it: deleting a damaged state must not delete the
    // markers that let berth re-adopt and stop what runs (`.berth` -> `.berth-run/HOST`).
    let mut run_base = state_dir
        .components()
        .collect::<std::path::PathBuf>()
        .into_os_string();
    run_base.push("-run");
    let run_base = std::path::PathBuf::from(run_base);
    let local_run_dir = |host: &str| run_base.join(host).display().to_string();

    // Pass 2: hosts, backends and models.
    let mut declared = validate::Declared::default();
    let (mut hosts, mut backends, mut models): (Defined<Host>, Defined<Backend>, Defined<Model>) =
        Default::default();
    for (file, body) in bodies {
        let text = sources.get(*file).text.clone();
        let mut d = resolved.decoder(*file, &text, findings, &ctx, &local_run_dir);
        for structure in body.iter() {
            let block = match structure {
                Structure::Block(block) => block,
                Structure::Attribute(attr) => {
                    let span = Span::new(*file, attr.key.span().unwrap_or(0..0));
                    d.findings.push(
                        Finding::error(Code::UnknownKey, span, "attribute outside any block", format!("`{}` is not allowed at the top level", attr.key.as_str()))
                            .with_help("attributes belong inside a block: settings, variable, host, backend or model"),
                    );
                    continue;
                }
            };
            if let Some(label) = block.labels.first() {
                let id = label.as_str().to_string();
                match block.ident.as_str() {
                    "host" => declared.hosts.insert(id),
                    "backend" => declared.backends.insert(id),
                    "model" => declared.models.insert(id),
                    _ => false,
                };
            }
            match block.ident.as_str() {
                "settings" | "variable" => {}
                "host" => {
                    if let Some(host) = d.host(block) {
                        hosts.add("host", host.id.clone(), host, d.findings);
                    }
                }
                "backend" => {
                    if let Some(backend) = d.backend(block) {
                        backends.add("backend", backend.id.clone(), backend, d.findings);
                    }
                }
                "model" => {
                    if let Some(model) = d.model(block) {
                        models.add("model", model.id.clone(), model, d.findings);
                    }
                }
                other => {
                    let span = Span::new(*file, block.ident.span().unwrap_or(0..0));
                    let mut f = Finding::error(
                        Code::UnknownBlock,
                        span,
                        "unknown block",
                        format!("unknown block type `{other}`"),
                    );
                    f = match did_you_mean(other, TOP_LEVEL_BLOCKS.iter().copied()) {
                        Some(s) => f.with_help(format!("did you mean `{s}`?")),
                        None => f.with_help(format!(
                            "the block types are {}",
                            TOP_LEVEL_BLOCKS.join(", ")
                        )),
                    };
                    d.findings.push(f);
                }
            }
        }
    }
    let (hosts, backends, models) = (hosts.items, backends.items, models.items);
    let index = super::schema::Index::build(&hosts, &backends, &models);
    let secret_texts = secret_texts(&resolved.variables);
    let config = Config {
        secret_texts,
        index,
        dir: base_dir,
        sources: std::mem::take(sources),
        settings,
        variables: resolved.variables,
        hosts,
        backends,
        models,
    };
    (config, declared)
}

/// Blocks of one kind in config order, each id once: a second definition is reported, not kept.
struct Defined<T> {
    items: Vec<T>,
    first: HashMap<String, Span>,
}

impl<T> Default for Defined<T> {
    fn default() -> Self {
        Defined {
            items: Vec::new(),
            first: HashMap::new(),
        }
    }
}

impl<T> Defined<T> {
    fn add(&mut self, kind: &str, id: Spanned<String>, item: T, findings: &mut Findings) {
        match self.first.get(&id.value) {
            Some(first) => findings.push(duplicate(kind, &id, *first)),
            None => {
                self.first.insert(id.value, id.span);
                self.items.push(item);
            }
        }
    }
}

fn duplicate(kind: &str, id: &Spanned<String>, first: Span) -> Finding {
    Finding::error(
        Code::DuplicateId,
        id.span,
        "defined again here",
        format!("{kind} `{}` is defined more than once", id.value),
    )
    .with_secondary(first, "first defined here")
    .with_help(format!("rename one of them; {kind} ids must be unique"))
}

fn decode_variable(d: &mut Decoder<'_>, block: &hcl_edit::structure::Block) -> Option<Variable> {
    let name = d.single_label(block, "variable");
    let body = &block.body;
    let allowed = ["default", "description", "sensitive"];
    for structure in body.iter() {
        let (key, range) = match structure {
            Structure::Attribute(a) => (a.key.as_str(), a.key.span()),
            Structure::Block(b) => (b.ident.as_str(), b.ident.span()),
        };
        if !allowed.contains(&key) || structure.is_block() {
            let span = Span::new(d.file, range.unwrap_or(0..0));
            let mut f = Finding::error(
                Code::UnknownKey,
                span,
                "unknown key",
                format!("variable has no attribute `{key}`"),
            );
            f = match did_you_mean(key, allowed) {
                Some(s) => f.with_help(format!("did you mean `{s}`?")),
                None => f.with_help("a variable takes default, description and sensitive"),
            };
            d.findings.push(f);
        }
    }
    let default = body
        .get_attribute("default")
        .and_then(|a| d.eval(a))
        .map(|e| e.value);
    let description = d.string(body, "description").map(|(s, _)| s.value);
    let sensitive = match body
        .get_attribute("sensitive")
        .and_then(|a| d.eval(a).map(|e| (a, e.value)))
    {
        Some((_, hcl::Value::Bool(b))) => b,
        Some((attr, other)) => {
            let span = Span::new(d.file, attr.value.span().unwrap_or(0..0));
            d.findings.push(
                Finding::error(
                    Code::WrongType,
                    span,
                    "expected a bool",
                    format!(
                        "`sensitive` must be a bool, found {}",
                        functions::type_name(&other)
                    ),
                )
                .with_help("write `sensitive = true`"),
            );
            false
        }
        None => false,
    };
    Some(Variable {
        name: name?,
        description,
        sensitive,
        default_failed: default.is_none() && body.has_attribute("default"),
        default,
        value: None,
        origin: VarOrigin::Unset,
    })
}

/// Sets a variable from a value given as text (command line, environment), converted to the
/// type of its default; a value that does not convert is reported, never echoed if sensitive.
fn set_from_text(
    v: &mut Variable,
    text: &str,
    origin: VarOrigin,
    given_as: &str,
    help: &str,
    findings: &mut Findings,
) {
    match coerce(text, v.default.as_ref()) {
        Ok(value) => {
            v.value = Some(value);
            v.origin = origin;
        }
        Err(why) => {
            let why = if v.sensitive {
                "the value does not fit the variable's type".to_string()
            } else {
                why
            };
            findings.push(
                Finding::unlocated(Code::WrongType, format!("{given_as}: {why}")).with_help(help),
            );
        }
    }
}

fn resolve_variables(
    mut variables: Vec<Variable>,
    inputs: &VarInputs,
    sources: &mut Sources,
    findings: &mut Findings,
    base_ctx: &hcl::eval::Context<'_>,
) -> Resolved {
    let names: Vec<String> = variables.iter().map(|v| v.name.value.clone()).collect();
    let unknown = |name: &str| {
        let mut f = format!("no variable named `{name}` is declared");
        if let Some(s) = did_you_mean(name, names.iter().map(String::as_str)) {
            f.push_str(&format!(" (did you mean `{s}`?)"));
        }
        f
    };
    for v in variables.iter_mut() {
        if let Some(default) = &v.default {
            v.value = Some(default.clone());
            v.origin = VarOrigin::Default;
        }
    }
    for (name, text) in &inputs.env {
        if let Some(v) = variables.iter_mut().find(|v| &v.name.value == name) {
            set_from_text(
                v,
                text,
                VarOrigin::Environment,
                &format!("BERTH_VAR_{name}"),
                "fix the environment variable's value",
                findings,
            );
        }
    }
    for path in &inputs.files {
        if let Ok(meta) = std::fs::metadata(path)
            && meta.len() > limits::MAX_FILE_BYTES
        {
            findings.push(limits::file_too_large(&display_name(path), meta.len()));
            continue;
        }
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(err) => {
                findings.push(
                    Finding::unlocated(
                        Code::Unreadable,
                        format!("cannot read var file {}: {err}", path.display()),
                    )
                    .with_help("check the --var-file path"),
                );
                continue;
            }
        };
        let file = sources.add(display_name(path), path.clone(), text);
        if let Some(finding) = limits::check_items(file, &sources.get(file).text) {
            findings.push(finding);
            continue;
        }
        let body = match hcl_edit::parser::parse_body(&sources.get(file).text) {
            Ok(body) => body,
            Err(err) => {
                findings.push(syntax_finding(sources, file, &err));
                continue;
            }
        };
        let text = sources.get(file).text.clone();
        let nothing = HashSet::new();
        let no_run_dir = |_: &str| String::new();
        let mut d = Decoder {
            file,
            text: &text,
            findings,
            ctx: base_ctx,
            variables: &[],
            sensitive: &nothing,
            unset: &nothing,
            local_run_dir: &no_run_dir,
            no_vars_here: Some("in a var file"),
        };
        for structure in body.iter() {
            match structure {
                Structure::Attribute(attr) => {
                    let name = attr.key.as_str();
                    let span = Span::new(file, attr.key.span().unwrap_or(0..0));
                    let Some(v) = variables.iter_mut().find(|v| v.name.value == name) else {
                        d.findings.push(Finding::error(Code::UndefinedVariable, span, "not declared", unknown(name)).with_help("declare it with a `variable` block, or remove it from the var file"));
                        continue;
                    };
                    if let Some(ev) = d.eval(attr) {
                        v.value = Some(ev.value);
                        v.origin = VarOrigin::VarFile;
                    }
                }
                Structure::Block(block) => {
                    let span = Span::new(file, block.ident.span().unwrap_or(0..0));
                    d.findings.push(
                        Finding::error(
                            Code::UnknownBlock,
                            span,
                            "block in a var file",
                            "a var file holds only `name = value` lines",
                        )
                        .with_help("move blocks into the config directory"),
                    );
                }
            }
        }
    }
    for (name, text) in &inputs.cli {
        let Some(v) = variables.iter_mut().find(|v| &v.name.value == name) else {
            findings.push(
                Finding::unlocated(
                    Code::UndefinedVariable,
                    format!("--var {name}=...: {}", unknown(name)),
                )
                .with_help("declare it with a `variable` block, or fix the name"),
            );
            continue;
        };
        set_from_text(
            v,
            text,
            VarOrigin::CommandLine,
            &format!("--var {name}"),
            "fix the value on the command line",
            findings,
        );
    }
    let mut unset = HashSet::new();
    for v in &variables {
        if v.value.is_none() && v.default_failed {
            unset.insert(v.name.value.clone());
        } else if v.value.is_none() {
            unset.insert(v.name.value.clone());
            let n = &v.name.value;
            findings.push(
                Finding::error(Code::MissingVariableValue, v.name.span, "no value", format!("variable `{n}` has no value"))
                    .with_help(format!("set it with --var {n}=..., BERTH_VAR_{n}=..., a --var-file, or give it a default")),
            );
        }
    }
    Resolved {
        sensitive: variables
            .iter()
            .filter(|v| v.sensitive)
            .map(|v| v.name.value.clone())
            .collect(),
        names,
        unset,
        variables,
    }
}

/// The text forms of every sensitive value, longest first (so a secret that contains another is
/// scrubbed whole).
fn secret_texts(variables: &[Variable]) -> Vec<String> {
    fn collect(v: &hcl::Value, out: &mut Vec<String>) {
        match v {
            hcl::Value::String(s) => out.push(s.clone()),
            hcl::Value::Number(n) => out.push(n.to_string()),
            hcl::Value::Bool(_) | hcl::Value::Null => {}
            hcl::Value::Array(items) => items.iter().for_each(|i| collect(i, out)),
            hcl::Value::Object(map) => map.values().for_each(|i| collect(i, out)),
        }
    }
    let mut out = Vec::new();
    for v in variables.iter().filter(|v| v.sensitive) {
        if let Some(value) = &v.value {
            collect(value, &mut out);
        }
    }
    out.retain(|s| !s.is_empty());
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    out
}
