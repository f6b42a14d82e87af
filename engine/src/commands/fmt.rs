//! `berth fmt [--check] [--diff]`: rewrite every `*.hcl` file of the config directory in
//! canonical layout, comments kept. Nothing is written unless every file parses.

use super::Invocation;
use crate::config::{self, Code, Finding, Findings, Sources};
use crate::error::{Error, Result};
use crate::exit_codes;

pub fn run(inv: &Invocation, check: bool, diff: bool) -> Result<u8> {
    let mut paths: Vec<std::path::PathBuf> = std::fs::read_dir(&inv.dir)
        .map_err(|source| Error::Io {
            what: "read config directory",
            path: inv.dir.clone(),
            cause: source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "hcl") && p.is_file())
        .collect();
    paths.sort();
    let mut sources = Sources::default();
    let mut findings = Findings::default();
    let mut changes = Vec::new();
    for path in &paths {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            what: "read",
            path: path.clone(),
            cause: source,
        })?;
        let name = config::display_name(path);
        let file = sources.add(name.clone(), path.clone(), text.clone());
        match config::fmt::format_source(&text) {
            Ok(formatted) if formatted != text => {
                changes.push((path.clone(), name, text, formatted))
            }
            Ok(_) => {}
            Err(err) => {
                let offset =
                    sources.offset_of(file, err.location().line(), err.location().column());
                let span = config::Span::new(file, offset..offset);
                findings.push(
                    Finding::error(
                        Code::Syntax,
                        span,
                        err.message().to_string(),
                        format!("syntax error: {}", err.message()),
                    )
                    .with_help("fix the syntax first: berth fmt only rewrites files that parse"),
                );
            }
        }
    }
    if findings.has_errors() {
        return Err(Error::InvalidConfig(Box::new(config::Invalid {
            sources,
            findings,
        })));
    }
    if diff {
        for (_, name, before, after) in &changes {
            let diff = similar::TextDiff::from_lines(before, after);
            out!("{}", diff.unified_diff().header(name, name));
        }
    }
    if check {
        if changes.is_empty() {
            return Ok(exit_codes::SUCCESS);
        }
        for (_, name, _, _) in &changes {
            outln!("{name}");
        }
        return Ok(exit_codes::FAILURE);
    }
    for (path, name, _, formatted) in &changes {
        write_atomically(path, formatted)?;
        outln!("{name}");
    }
    Ok(exit_codes::SUCCESS)
}

/// Writes through a temporary file and a rename, keeping the file's permissions, so an
/// interrupted `fmt` never leaves a half-written config file.
fn write_atomically(path: &std::path::Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("hcl.berth-fmt");
    let io = |what, source| Error::Io {
        what,
        path: path.to_path_buf(),
        cause: source,
    };
    std::fs::write(&tmp, text).map_err(|e| io("write", e))?;
    if let Ok(meta) = std::fs::metadata(path) {
        let _ = std::fs::set_permissions(&tmp, meta.permissions());
    }
    std::fs::rename(&tmp, path).map_err(|e| io("replace", e))
}
