//! `[limits]` in `hub.toml`: what one department (or one connection) may use of the hub, so that
//! a slow, buggy or compromised node cannot starve the others.
//!
//! The defaults sit well above what a genuine node does (its outbox keeps at most
//! `[hub] max_in_flight` items on their way) and bound what a misbehaving one can take. A value of 0 turns that limit off.

use serde::{Deserialize, Serialize};

/// `[limits]` in `hub.toml`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// Calls per second one department may make, sustained (every `Hub` call but `Subscribe`,
    /// whose one long-lived stream is counted once). Over it: `RESOURCE_EXHAUSTED`.
    #[serde(default = "default_requests_per_second")]
    pub requests_per_second: u32,
    /// Calls one department may make at once above the sustained rate (the bucket's size).
    #[serde(default = "default_burst_requests")]
    pub burst_requests: u32,
    /// Request bytes per second one department may send in `Submit`, `PutBlob` and
    /// `SubmitEvidence`, sustained. A stream over it is slowed down; a new call while the
    /// department is over it gets `RESOURCE_EXHAUSTED`.
    #[serde(default = "default_bytes_per_second")]
    pub bytes_per_second: u64,
    /// Request bytes one department may send at once above the sustained rate.
    #[serde(default = "default_burst_bytes")]
    pub burst_bytes: u64,
    /// Seconds a request stream (`PutBlob`, `Submit`, `SubmitEvidence`) may stay silent before
    /// the hub cuts it with `DEADLINE_EXCEEDED`. `Subscribe` is exempt (its acks pause while
    /// nothing is pushed), and kept alive by HTTP/2 pings instead.
    #[serde(default = "default_idle_stream_secs")]
    pub idle_stream_secs: u64,
    /// Concurrent HTTP/2 streams (calls) on one connection.
    #[serde(default = "default_max_concurrent_streams")]
    pub max_concurrent_streams: u32,
    /// Largest HTTP/2 header list (request metadata) in bytes.
    #[serde(default = "default_max_header_list_bytes")]
    pub max_header_list_bytes: u32,
    /// TLS connections one principal (a department's certificate) may hold open at once; a
    /// further handshake is refused.
    #[serde(default = "default_connections_per_principal")]
    pub connections_per_principal: u32,
}

impl LimitsSection {
    /// Whether every key has its default (the section can be left out of a written file).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            requests_per_second: default_requests_per_second(),
            burst_requests: default_burst_requests(),
            bytes_per_second: default_bytes_per_second(),
            burst_bytes: default_burst_bytes(),
            idle_stream_secs: default_idle_stream_secs(),
            max_concurrent_streams: default_max_concurrent_streams(),
            max_header_list_bytes: default_max_header_list_bytes(),
            connections_per_principal: default_connections_per_principal(),
        }
    }
}

fn default_requests_per_second() -> u32 {
    5000
}

fn default_burst_requests() -> u32 {
    10_000
}

fn default_bytes_per_second() -> u64 {
    256 * 1024 * 1024
}

fn default_burst_bytes() -> u64 {
    1024 * 1024 * 1024
}

fn default_idle_stream_secs() -> u64 {
    30
}

fn default_max_concurrent_streams() -> u32 {
    128
}

fn default_max_header_list_bytes() -> u32 {
    16 * 1024
}

fn default_connections_per_principal() -> u32 {
    64
}
