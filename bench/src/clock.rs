//! The one timeline of a run: wall-clock microseconds since the Unix epoch.
//!
//! The bench, the daemons' event streams and the simulated nodes (another process) all stamp
//! what they see with this clock, so times taken in different processes on this machine can be
//! subtracted. A run lasts minutes; clock slewing over that span is far below the figures.

/// Microseconds since the Unix epoch, now.
pub fn now_us() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// `to - from` in milliseconds.
pub fn ms_between(from_us: i64, to_us: i64) -> f64 {
    (to_us - from_us) as f64 / 1000.0
}

/// `to - from` in seconds, at least one microsecond (so that rates stay finite).
pub fn secs_between(from_us: i64, to_us: i64) -> f64 {
    (to_us - from_us).max(1) as f64 / 1e6
}
