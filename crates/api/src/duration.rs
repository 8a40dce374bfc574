//! Durations as Istio writes them: protobuf JSON (`"1.5s"`) and Go-style
//! (`"100ms"`, `"1m30s"`, `"15m"`), as Istio's own decoder accepts both.

use std::time::Duration;

/// Why a text is not a duration Istio accepts. The message names the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Nothing was given.
    #[error("empty duration")]
    Empty,
    /// Durations are never negative.
    #[error("duration {0:?} is negative")]
    Negative(String),
    /// A number with no unit after it.
    #[error("duration {0:?} lacks a unit (e.g. 10s, 100ms)")]
    MissingUnit(String),
    /// A unit with no number before it.
    #[error("invalid duration {0:?}")]
    MissingNumber(String),
    /// A number that does not parse (`1.2.3s`).
    #[error("invalid number in duration {0:?}")]
    InvalidNumber(String),
    /// A unit other than `ns`, `us` (`µs`), `ms`, `s`, `m` and `h`.
    #[error("unknown unit {unit:?} in duration {duration:?}")]
    UnknownUnit { unit: String, duration: String },
    /// Longer than protobuf's Duration holds (10,000 years).
    #[error("duration {0:?} is out of range")]
    OutOfRange(String),
}

/// Parses `"10s"`, `"0.5s"`, `"100ms"`, `"1h2m3.5s"`, `"250us"`, `"0"`.
pub fn parse(s: &str) -> Result<Duration, DurationError> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    if s.starts_with('-') {
        return Err(DurationError::Negative(s.to_string()));
    }
    let mut rest = s;
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| DurationError::MissingUnit(s.to_string()))?;
        if num_len == 0 {
            return Err(DurationError::MissingNumber(s.to_string()));
        }
        let value: f64 = rest[..num_len]
            .parse()
            .map_err(|_| DurationError::InvalidNumber(s.to_string()))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            other => {
                return Err(DurationError::UnknownUnit {
                    unit: other.to_string(),
                    duration: s.to_string(),
                })
            }
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    if !total.is_finite() || total > 315_576_000_000.0 {
        return Err(DurationError::OutOfRange(s.to_string()));
    }
    Ok(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_istio_forms() {
        assert_eq!(parse("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse("0.5s").unwrap(), Duration::from_millis(500));
        assert_eq!(parse("100ms").unwrap(), Duration::from_millis(100));
        assert_eq!(parse("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse("0").unwrap(), Duration::ZERO);
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse("10").is_err());
        assert!(parse("ten seconds").is_err());
        assert!(parse("-1s").is_err());
        assert!(parse("1d").is_err());
        assert!(parse("").is_err());
    }
}
