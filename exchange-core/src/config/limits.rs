//! `[limits]` in `hub.toml`: what one department (or one connection) may use of the hub, so that
//! a slow, buggy or compromised node cannot starve the others.
//!
//! The defaults sit well above what a genuine node does (its outbox keeps at most
//! `[hub] max_in_flight` items on their way) and bound what a misbehaving one can take. A value
//! of 0 turns a limit off, but for the two HTTP/2 settings (`max_concurrent_streams`,
//! `max_header_list_bytes`), where 0 would refuse every call: those are refused at 0
//! ([`LimitsSection::check`]).

use serde::{Deserialize, Serialize};

use super::ConfigError;

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

    /// Refuses the values the HTTP/2 server would take literally: 0 concurrent streams, or a
    /// header list of 0 bytes, refuses every call rather than turning a limit off. `peers`:
    /// this is `[peer_limits]` rather than `[limits]` (the key errors name).
    pub fn check(&self, peers: bool) -> Result<(), ConfigError> {
        let (streams, headers) = if peers {
            (
                "peer_limits.max_concurrent_streams",
                "peer_limits.max_header_list_bytes",
            )
        } else {
            (
                "limits.max_concurrent_streams",
                "limits.max_header_list_bytes",
            )
        };
        let zero = |key: &'static str, default: u32| ConfigError::Invalid {
            key,
            message: format!(
                "0 would refuse every call (it is an HTTP/2 setting, not a rate): set at least 1, \
                 or leave it out for the default of {default}"
            ),
        };
        if self.max_concurrent_streams == 0 {
            return Err(zero(streams, default_max_concurrent_streams()));
        }
        if self.max_header_list_bytes == 0 {
            return Err(zero(headers, default_max_header_list_bytes()));
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_http2_settings_are_refused_at_zero_naming_the_key_and_the_rest_turn_off() {
        assert!(LimitsSection::default().check(false).is_ok());
        let off = LimitsSection {
            requests_per_second: 0,
            burst_requests: 0,
            bytes_per_second: 0,
            burst_bytes: 0,
            idle_stream_secs: 0,
            connections_per_principal: 0,
            ..LimitsSection::default()
        };
        assert!(off.check(false).is_ok(), "0 turns a rate or count off");
        let streams = LimitsSection {
            max_concurrent_streams: 0,
            ..LimitsSection::default()
        };
        let err = streams.check(false).unwrap_err().to_string();
        assert!(
            err.starts_with("limits.max_concurrent_streams: 0 would refuse every call")
                && err.contains("the default of 128"),
            "{err}"
        );
        let headers = LimitsSection {
            max_header_list_bytes: 0,
            ..LimitsSection::default()
        };
        let err = headers.check(true).unwrap_err().to_string();
        assert!(
            err.starts_with("peer_limits.max_header_list_bytes: 0 would refuse every call"),
            "{err}"
        );
    }
}
