//! Reading the plain HTTP/1.0 responses tests get from the servers they start.

/// The status and the body of `response`, which came from `from` (named in the error when the
/// response has no status line).
pub fn parse_response(response: &str, from: &str) -> Result<(u16, String), String> {
    let status = response
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no HTTP status from {from}: {response:?}"))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}
