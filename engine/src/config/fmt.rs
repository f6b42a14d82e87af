//! Canonical layout of berth's HCL files (placeholder until the formatter lands).

/// Formats one file.
pub fn format_source(source: &str) -> Result<String, hcl_edit::parser::Error> {
    hcl_edit::parser::parse_body(source).map(|_| source.to_string())
}
