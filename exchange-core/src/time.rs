//! Wall-clock time as the exchange records it: Unix milliseconds, UTC.

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Seconds since the Unix epoch, now: the time certificates' validity is checked at.
pub fn now_secs() -> u64 {
    u64::try_from(now_ms() / 1000).unwrap_or(0)
}

/// Unix milliseconds as a UTC date and time; `None` beyond the years `time` represents.
pub fn datetime(ms: i64) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

/// Formats Unix milliseconds as RFC 3339 UTC (`2026-11-26T14:27:10.123Z`); empty for 0 (unset).
pub fn format_ms(ms: i64) -> String {
    if ms == 0 {
        return String::new();
    }
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    datetime(ms)
        .and_then(|t| t.format(&fmt).ok())
        .unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_utc_millis() {
        assert_eq!(
            super::format_ms(1_764_167_230_123),
            "2025-11-26T14:27:10.123Z"
        );
        assert_eq!(super::format_ms(0), "");
    }
}
