//! The operator's sections, the same in `hub.toml` and `node.toml`: `[metrics]` (a Prometheus
//! endpoint) and `[log]` (format and level).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// `[metrics]`: where Prometheus scrapes `GET /metrics`. Absent: no endpoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Address of the plaintext, unauthenticated HTTP endpoint, e.g. `127.0.0.1:9710`: keep it
    /// on loopback or a management network. Port 0 picks a free port, reported in
    /// `<data_dir>/metrics.addr`.
    pub listen: SocketAddr,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object a line (for a log collector), with the span fields (`doc_id`, `dept`).
    Json,
    /// Text for people, coloured only on a terminal.
    Human,
}

/// `[log]`. `RUST_LOG`, when set, overrides `level`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// `json` or `human`. Default: human (journald and terminals read it well).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<LogFormat>,
    /// A filter in `RUST_LOG` syntax: `info` (the default), `debug`, or per module, e.g.
    /// `info,exchange_hub=debug`. Checked when the file is read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<LogLevel>,
}

impl LogSection {
    /// Whether nothing is set (the section is then left out when a config is written).
    pub fn is_default(&self) -> bool {
        *self == LogSection::default()
    }
}

/// A log filter that parsed: an error names the key and line when the file is read, instead of
/// the daemon falling back to a default level silently.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(try_from = "String", into = "String")]
pub struct LogLevel(String);

impl LogLevel {
    /// The filter text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for LogLevel {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        tracing_subscriber::EnvFilter::builder()
            .parse(&s)
            .map(|_| LogLevel(s.clone()))
            .map_err(|e| {
                format!(
                    "{s:?} is not a log filter ({e}): use error, warn, info, debug or trace, \
                     optionally per module, e.g. \"info,exchange_hub=debug\""
                )
            })
    }
}

impl From<LogLevel> for String {
    fn from(l: LogLevel) -> Self {
        l.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[serde(default)]
        log: LogSection,
        metrics: Option<MetricsSection>,
    }

    #[test]
    fn the_deploy_examples_are_valid_configs() {
        let hub: crate::config::HubConfig =
            toml::from_str(include_str!("../../../deploy/hub.example.toml")).unwrap();
        assert_eq!(hub.metrics.as_ref().map(|m| m.listen.port()), Some(9710));
        let node: crate::config::NodeConfig =
            toml::from_str(include_str!("../../../deploy/node.example.toml")).unwrap();
        assert_eq!(node.log.format, Some(LogFormat::Human));
        assert_eq!(node.calendar, hub.calendar);
        assert_eq!(node.calendar.holidays.len(), 5);
        assert!(node.reminders.is_default());
    }

    #[test]
    fn sections_parse_and_bad_values_are_named() {
        let f: File = toml::from_str(
            "[log]\nformat = \"json\"\nlevel = \"info,exchange_hub=debug\"\n\
             [metrics]\nlisten = \"127.0.0.1:9710\"\n",
        )
        .unwrap();
        assert_eq!(f.log.format, Some(LogFormat::Json));
        assert_eq!(f.metrics.unwrap().listen.port(), 9710);
        let err = toml::from_str::<File>("[log]\nformat = \"xml\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("format") && err.contains("xml"), "{err}");
        let err = toml::from_str::<File>("[log]\nlevel = \"exchange_hub=loud\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("level") && err.contains("not a log filter"),
            "{err}"
        );
    }
}
