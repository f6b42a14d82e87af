//! Random identifiers and the wall clock, in the forms berth stores; no I/O beyond the OS RNG.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Result, StateError};

/// `bytes` random bytes from the OS, as lowercase hex (twice as many characters).
pub(crate) fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| StateError::Random {
        detail: e.to_string(),
    })?;
    Ok(hex::encode(buf))
}

/// Seconds since the Unix epoch; a clock set before 1970 reads as 0 rather than failing.
pub(crate) fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A Unix timestamp as RFC 3339 in UTC, for messages.
pub(crate) fn format_unix(secs: u64) -> String {
    let at = UNIX_EPOCH + std::time::Duration::from_secs(secs);
    humantime::format_rfc3339_seconds(at).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_hex_has_the_requested_length_and_differs_between_calls() {
        let a = random_hex(16).unwrap();
        let b = random_hex(16).unwrap();
        assert_eq!(a.len(), 32);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(a, b);
    }

    #[test]
    fn timestamps_format_as_utc() {
        assert_eq!(format_unix(0), "1970-01-01T00:00:00Z");
    }
}
