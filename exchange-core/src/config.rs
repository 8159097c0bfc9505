//! Configuration files of the hub (`hub.toml`) and the node (`node.toml`).
//!
//! Both live here, not in their binaries, because `exchange-certs demo-setup` writes them and the
//! daemons read them: one definition keeps the two in step. Unknown keys are refused; relative
//! paths are resolved against the directory of the file that names them. Every key is documented
//! in `docs/configuration.md`.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::ids::{DeptId, ExchangeName};

mod calendar;
mod check;
mod crypto;
mod encryption;
mod federation;
mod limits;
mod office;
mod ops;
mod routing;

pub use calendar::{Calendar, When, format_date, format_offset, parse_date, parse_when};
pub use crypto::CryptoSection;
pub use encryption::EncryptionSection;
pub use federation::{ForeignExchange, PeerEntry, Route, check_links};
pub use limits::LimitsSection;
pub use office::{Allowance, GroupEntry, RemindersSection};
pub use ops::{LogFormat, LogLevel, LogSection, MetricsSection};
pub use routing::{DeptPattern, RoutingDefault, RoutingRule, RoutingSection};

/// Default upper bound on one document's total content size: 512 MiB.
pub const DEFAULT_MAX_DOCUMENT_BYTES: u64 = 512 * 1024 * 1024;

/// A configuration file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for this config, or a key is unknown or has a bad value.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, naming the key and line.
        message: String,
    },
    /// A value is well-formed but unsafe or unusable, e.g. an unauthenticated API exposed to
    /// the network.
    #[error("{key}: {message}")]
    Invalid {
        /// The key, e.g. `api.listen`.
        key: &'static str,
        /// What is wrong and what to do.
        message: String,
    },
}

/// The TLS identity of a hub or node, and the CA that vouches for its peers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsPaths {
    /// PEM certificate of the exchange CA.
    pub ca: PathBuf,
    /// PEM certificate of this hub or node (TLS only).
    pub cert: PathBuf,
    /// PEM private key for `cert` (mode 0600).
    pub key: PathBuf,
    /// PEM encryption certificate (TLCP's second certificate, key usage keyEncipherment and
    /// keyAgreement): required under `[crypto] profile = "shangmi"`, refused under
    /// `international`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enc_cert: Option<PathBuf>,
    /// PEM private key for `enc_cert` (mode 0600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enc_key: Option<PathBuf>,
    /// Optional PEM certificate revocation list signed by `ca` (`exchange-certs revoke`). Peers
    /// whose certificate it lists are refused; the file is re-read when it changes, without a
    /// restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crl: Option<PathBuf>,
    /// The channel protocol (docs/shangmi.md): `tls13` under `international` (its only one),
    /// `tlcp` (the default) or `tls13-sm` (RFC 8998) under `shangmi`. Absent: the profile's
    /// default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<TlsProtocol>,
}

/// `[tls] protocol`: which handshake the channel between nodes and hub speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsProtocol {
    /// TLS 1.3 with the international suites, through rustls and ring.
    Tls13,
    /// TLCP (GB/T 38636-2020) with the double certificate: ECDHE_SM4_GCM_SM3, ECC_SM4_GCM_SM3.
    Tlcp,
    /// RFC 8998: TLS 1.3 with TLS_SM4_GCM_SM3 and the SM2 signing certificate only.
    #[serde(rename = "tls13-sm")]
    Tls13Sm,
}

impl TlsProtocol {
    /// The name in `[tls] protocol`.
    pub const fn name(self) -> &'static str {
        match self {
            TlsProtocol::Tls13 => "tls13",
            TlsProtocol::Tlcp => "tlcp",
            TlsProtocol::Tls13Sm => "tls13-sm",
        }
    }

    /// The protocol `paths` asks for under `profile`; refuses one of the other profile.
    pub fn of(
        profile: crate::crypto::Profile,
        paths: &TlsPaths,
    ) -> Result<TlsProtocol, ConfigError> {
        use crate::crypto::Profile;
        match (profile, paths.protocol) {
            (Profile::International, None | Some(TlsProtocol::Tls13)) => Ok(TlsProtocol::Tls13),
            (Profile::Shangmi, None) => Ok(TlsProtocol::Tlcp),
            (Profile::Shangmi, Some(p @ (TlsProtocol::Tlcp | TlsProtocol::Tls13Sm))) => Ok(p),
            (profile, Some(p)) => Err(ConfigError::Invalid {
                key: "tls.protocol",
                message: format!(
                    "\"{}\" is not a protocol of the {profile} profile (it has {})",
                    p.name(),
                    match profile {
                        Profile::International => "\"tls13\"",
                        Profile::Shangmi => "\"tlcp\", \"tls13-sm\"",
                    }
                ),
            }),
        }
    }
}

/// The document-signing identity: an Ed25519 key kept apart from the TLS key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SigningPaths {
    /// PEM document-signing certificate (issued by the exchange CA).
    pub cert: PathBuf,
    /// PEM PKCS#8 Ed25519 private key (mode 0600).
    pub key: PathBuf,
}

/// `hub.toml`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HubConfig {
    /// The crypto profile (`[crypto]`); `international` when absent.
    #[serde(default)]
    pub crypto: CryptoSection,
    /// Listening address and storage.
    pub hub: HubSection,
    /// TLS identity; nodes must present certificates from `tls.ca`.
    pub tls: TlsPaths,
    /// The hub's key for signing acceptance evidence.
    pub signing: SigningPaths,
    /// The directory: every department that may connect and be addressed.
    #[serde(default)]
    pub departments: Vec<DirectoryEntry>,
    /// Named recipient groups (`[[groups]]`), e.g. 各县区人民政府; a sender addresses one as
    /// `group:<id>` and its node resolves it to the members.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<GroupEntry>,
    /// The audit log's checkpoints.
    #[serde(default)]
    pub audit: AuditSection,
    /// The administrator identity that `exchange-hub audit ...` presents to the running hub.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<AdminClient>,
    /// Per-department rate limits and stream timeouts (`[limits]`); safe defaults when absent.
    #[serde(default)]
    pub limits: LimitsSection,
    /// Who may send to whom (`[routing]`); everyone to everyone when absent.
    #[serde(default, skip_serializing_if = "RoutingSection::is_unrestricted")]
    pub routing: RoutingSection,
    /// The Prometheus endpoint (`[metrics]`); none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsSection>,
    /// Log format and level (`[log]`).
    #[serde(default, skip_serializing_if = "LogSection::is_default")]
    pub log: LogSection,
    /// When an unconfirmed delivery counts as overdue (`[reminders]`), by urgency: what
    /// `exchange-hub stats` calls "on time". Same keys and defaults as the node's.
    #[serde(default, skip_serializing_if = "RemindersSection::is_default")]
    pub reminders: RemindersSection,
    /// The office's days (`[calendar]`): where `stats` periods begin, and the working days of
    /// `[reminders]`. Same keys and defaults as the node's.
    #[serde(default, skip_serializing_if = "Calendar::is_default")]
    pub calendar: Calendar,
    /// Encryption at rest of the data directory (`[encryption]`); content is stored in clear
    /// when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<EncryptionSection>,
    /// Where the hub keeps its records (`[store]`): the embedded redb file in `data_dir` when
    /// absent, or PostgreSQL.
    #[serde(default, skip_serializing_if = "StoreSection::is_default")]
    pub store: StoreSection,
    /// What each linked exchange's hub may use of this hub on `peer_listen` (`[peer_limits]`,
    /// the keys of `[limits]`, per peer); the `[limits]` defaults when absent.
    #[serde(default, skip_serializing_if = "LimitsSection::is_default")]
    pub peer_limits: LimitsSection,
    /// Linked exchanges' hubs (`[[peers]]`, docs/federation.md); none when absent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<PeerEntry>,
    /// CAs of exchanges further away, reached through a peer (`[[exchanges]]`), whose
    /// departments' signatures this hub checks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exchanges: Vec<ForeignExchange>,
}

impl HubConfig {
    /// The consistency of `[hub] exchange`, `[hub] peer_listen`, `[[peers]]` and
    /// `[[exchanges]]` (no file is read).
    pub fn check_links(&self) -> Result<(), ConfigError> {
        check_links(
            self.hub.exchange.as_ref(),
            self.hub.peer_listen.is_some(),
            &self.peers,
            &self.exchanges,
        )
    }
}

/// `[store]` in `hub.toml`: the hub's database.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// `redb` (the default: `<data_dir>/hub.redb`) or `postgres`.
    #[serde(default)]
    pub backend: StoreBackend,
    /// PostgreSQL only: the connection, as a URL (`postgresql://user@host:port/dbname`) or
    /// libpq key=value words, without the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// PostgreSQL only: a file holding the password (mode 0600), if the server asks for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// PostgreSQL only: PEM certificate(s) of the CA that issued the database server's
    /// certificate. Set, every connection to the database uses TLS and checks the server's
    /// certificate and host name (libpq's `sslmode=verify-full`); unset, connections are
    /// plaintext and a `url` asking for TLS is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

impl StoreSection {
    /// Whether this is the default (redb, nothing else set).
    pub fn is_default(&self) -> bool {
        *self == StoreSection::default()
    }
}

/// Which database a hub keeps its records in.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// The embedded redb file in the data directory.
    #[default]
    Redb,
    /// A PostgreSQL server (several hubs may share it).
    Postgres,
}

/// `[audit]` in `hub.toml`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    /// Sign a checkpoint of the chain head after this many new entries...
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: u64,
    /// ...or after this many seconds with new entries, whichever comes first.
    #[serde(default = "default_checkpoint_secs")]
    pub checkpoint_secs: u64,
}

impl Default for AuditSection {
    fn default() -> Self {
        AuditSection {
            checkpoint_every: default_checkpoint_every(),
            checkpoint_secs: default_checkpoint_secs(),
        }
    }
}

fn default_checkpoint_every() -> u64 {
    1000
}

fn default_checkpoint_secs() -> u64 {
    60
}

/// `[admin]` in `hub.toml`: an administrator's TLS identity (issued with
/// `exchange-certs issue-admin`) for the administrative commands, which reach the running hub
/// over the hub's own channel (`[crypto] profile`, `[tls] protocol`, `[tls] ca` and `crl`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AdminClient {
    /// PEM certificate naming an administrator (under TLCP, the signing certificate: the one
    /// the hub takes the administrator's name from).
    pub cert: PathBuf,
    /// Its PEM private key (mode 0600).
    pub key: PathBuf,
    /// PEM encryption certificate of the administrator (TLCP's second certificate,
    /// `tls-enc.pem` of `issue-admin` under an SM2 CA): required under
    /// `[crypto] profile = "shangmi"` with TLCP, refused under `international`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enc_cert: Option<PathBuf>,
    /// PEM private key for `enc_cert` (mode 0600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enc_key: Option<PathBuf>,
}

impl AdminClient {
    /// The TLS files the administrator's commands connect with: this identity, trusting the
    /// hub's CA and CRL, over the hub's protocol.
    pub fn tls_paths(&self, hub_tls: &TlsPaths) -> TlsPaths {
        TlsPaths {
            ca: hub_tls.ca.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
            enc_cert: self.enc_cert.clone(),
            enc_key: self.enc_key.clone(),
            crl: hub_tls.crl.clone(),
            protocol: hub_tls.protocol,
        }
    }
}

/// `[hub]` in `hub.toml`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HubSection {
    /// gRPC (mTLS) address for nodes. Port 0 picks a free port, reported in `<data_dir>/hub.addr`.
    pub listen: SocketAddr,
    /// Where the store and content blobs live.
    pub data_dir: PathBuf,
    /// Accept documents marked 秘密 (secret). Off: this network is not approved for classified
    /// documents. 机密 and 绝密 are refused whatever this says.
    #[serde(default)]
    pub allow_classified: bool,
    /// Largest total content size of one document, in bytes.
    #[serde(default = "default_max_document_bytes")]
    pub max_document_bytes: u64,
    /// Give up on a delivery still undelivered this many seconds after acceptance: the hub
    /// records signed NOT_DELIVERED evidence ("expired") and tells the sender. 0: never.
    #[serde(default)]
    pub expire_undelivered_after_secs: u64,
    /// Give up on a delivery still undelivered when the document's reply deadline
    /// (`reply_deadline_ms`) has passed.
    #[serde(default = "yes")]
    pub expire_at_reply_deadline: bool,
    /// Several hubs on one PostgreSQL database: how long a hub's lease on pushing to a
    /// department lasts unless renewed (every third of it). When a hub dies, another takes its
    /// departments over within this bound plus the hubs' clock difference. Unused with redb
    /// (one hub owns the store).
    /// At least [`HubSection::MIN_LEASE_SECS`].
    #[serde(default = "default_lease_secs")]
    pub lease_secs: u64,
    /// This exchange's name among linked exchanges (docs/federation.md), e.g. `city`: what
    /// `dept@exchange` addresses name. Needed with `[[peers]]`; absent, the exchange stands
    /// alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange: Option<ExchangeName>,
    /// Where the hubs of `[[peers]]` connect (mutual TLS, each with its own pinned CA), apart
    /// from `listen`, whose TLS trusts our own CA only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_listen: Option<SocketAddr>,
}

impl HubSection {
    /// `lease_secs` when hub.toml does not say.
    pub const DEFAULT_LEASE_SECS: u64 = 10;
    /// The shortest lease: renewed every third of it, a lease shorter than this would expire
    /// under any brief pause of the database.
    pub const MIN_LEASE_SECS: u64 = 3;
}

fn default_lease_secs() -> u64 {
    HubSection::DEFAULT_LEASE_SECS
}

fn yes() -> bool {
    true
}

/// One department in the hub's directory.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DirectoryEntry {
    /// The id its certificates carry.
    pub id: DeptId,
    /// Display name, e.g. 市财政局.
    pub name: String,
    /// Administrative level, e.g. `city`, `county`, `township` (free text, shown to senders).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// The department above this one (city → county → township); must be in the directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<DeptId>,
}

/// `node.toml`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The crypto profile (`[crypto]`); `international` when absent.
    #[serde(default)]
    pub crypto: CryptoSection,
    /// Which department this node serves, and its storage.
    pub node: NodeSection,
    /// The local API for department systems and the clerk's CLI.
    pub api: ApiSection,
    /// How to reach the hub.
    pub hub: HubLink,
    /// TLS identity towards the hub.
    pub tls: TlsPaths,
    /// The department's document-signing identity.
    pub signing: SigningPaths,
    /// The Prometheus endpoint (`[metrics]`); none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsSection>,
    /// Log format and level (`[log]`).
    #[serde(default, skip_serializing_if = "LogSection::is_default")]
    pub log: LogSection,
    /// When an unconfirmed delivery counts as overdue (`[reminders]`), by urgency.
    #[serde(default, skip_serializing_if = "RemindersSection::is_default")]
    pub reminders: RemindersSection,
    /// The office's days (`[calendar]`): today's date for documents, dates on the command line,
    /// and the working days of `[reminders]`.
    #[serde(default, skip_serializing_if = "Calendar::is_default")]
    pub calendar: Calendar,
    /// Encryption at rest of the data directory (`[encryption]`); content is stored in clear
    /// when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<EncryptionSection>,
}

/// `[node]` in `node.toml`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// The department id; must match the one in the node's certificates.
    pub id: DeptId,
    /// Where the store and content blobs live.
    pub data_dir: PathBuf,
    /// Largest total content size of one submitted document, in bytes.
    #[serde(default = "default_max_document_bytes")]
    pub max_document_bytes: u64,
}

/// `[api]` in `node.toml`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    /// Address of the local API (plaintext gRPC): keep it on loopback. Port 0 picks a free port,
    /// reported in `<data_dir>/api.addr`.
    pub listen: SocketAddr,
    /// Mutual TLS for the API, required when `listen` is not a loopback address: `ca` issues
    /// the certificates clients (department systems) must present, `cert`/`key` are the API's
    /// own server identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsPaths>,
}

impl ApiSection {
    /// Refuses an API that anyone on the network could use as the department: a `listen`
    /// address other than loopback needs `[api] tls` (client certificates required).
    pub fn check(&self) -> Result<(), ConfigError> {
        if let Some(tls) = &self.tls
            && tls.crl.is_some()
        {
            return Err(ConfigError::Invalid {
                key: "api.tls.crl",
                message: "not supported for the local API; to shut a client out, replace the \
                          CA in api.tls.ca"
                    .to_owned(),
            });
        }
        if self.tls.is_none() && !self.listen.ip().is_loopback() {
            return Err(ConfigError::Invalid {
                key: "api.listen",
                message: format!(
                    "{} is not a loopback address, and the API has no authentication of its \
                     own: keep it on 127.0.0.1, or set [api] tls = {{ ca, cert, key }} so that \
                     clients must present a certificate",
                    self.listen
                ),
            });
        }
        Ok(())
    }
}

/// `[hub]` in `node.toml`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HubLink {
    /// The hub's address, e.g. `127.0.0.1:7000`; or `addresses`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<SocketAddr>,
    /// The addresses of several hubs serving one exchange (on one PostgreSQL database), instead
    /// of `addr`: the node connects to the first that answers and moves to the next one when its
    /// hub fails, with its usual retries (nothing is lost or sent twice: the hubs share their
    /// store, and submissions are idempotent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<SocketAddr>,
    /// The name to expect in the hub's certificate, e.g. `localhost` or `hub.example.gov`.
    pub server_name: String,
    /// Most outbox items (documents, evidence) being sent to the hub at once. Several in
    /// flight let the hub's and this node's commits batch (group commit); a 特急 document
    /// queued while all are busy waits for one of them to finish.
    #[serde(
        default = "default_max_in_flight",
        skip_serializing_if = "is_default_max_in_flight"
    )]
    pub max_in_flight: std::num::NonZeroUsize,
}

impl HubLink {
    /// The hub addresses to try, in order: `addr`, or `addresses` (exactly one of them).
    pub fn addrs(&self) -> Result<Vec<SocketAddr>, ConfigError> {
        let invalid = |message: &str| ConfigError::Invalid {
            key: "hub.addresses",
            message: message.to_owned(),
        };
        match (self.addr, self.addresses.as_slice()) {
            (Some(a), []) => Ok(vec![a]),
            (None, []) => Err(invalid(
                "no hub address: set [hub] addr = \"HOST:PORT\", or addresses = [\"HOST:PORT\", ...] for several hubs",
            )),
            (Some(_), _) => Err(invalid(
                "[hub] has both addr and addresses: keep one (addresses lists every hub)",
            )),
            (None, list) => {
                let mut seen = std::collections::HashSet::new();
                match list.iter().find(|a| !seen.insert(**a)) {
                    Some(dup) => Err(invalid(&format!("{dup} is listed twice"))),
                    None => Ok(list.to_vec()),
                }
            }
        }
    }

    /// The hub addresses as logs show them: `a, b`.
    pub fn shown(&self) -> String {
        let addrs: Vec<String> = self
            .addr
            .iter()
            .chain(&self.addresses)
            .map(ToString::to_string)
            .collect();
        addrs.join(", ")
    }
}

/// Default of `[hub] max_in_flight` in `node.toml`.
pub const DEFAULT_MAX_IN_FLIGHT: std::num::NonZeroUsize =
    std::num::NonZeroUsize::new(32).expect("BUG: 32 is not zero");

fn default_max_in_flight() -> std::num::NonZeroUsize {
    DEFAULT_MAX_IN_FLIGHT
}

fn is_default_max_in_flight(n: &std::num::NonZeroUsize) -> bool {
    *n == DEFAULT_MAX_IN_FLIGHT
}

fn default_max_document_bytes() -> u64 {
    DEFAULT_MAX_DOCUMENT_BYTES
}

/// Paths inside a config that are resolved against the config file's directory.
pub trait ResolvePaths {
    /// Makes every relative path absolute, relative to `base`.
    fn resolve_paths(&mut self, base: &Path);
}

fn resolve(p: &mut PathBuf, base: &Path) {
    if p.is_relative() {
        *p = base.join(&*p);
    }
}

impl ResolvePaths for TlsPaths {
    fn resolve_paths(&mut self, base: &Path) {
        for p in [&mut self.ca, &mut self.cert, &mut self.key] {
            resolve(p, base);
        }
        for p in [&mut self.enc_cert, &mut self.enc_key, &mut self.crl]
            .into_iter()
            .flatten()
        {
            resolve(p, base);
        }
    }
}

impl ResolvePaths for SigningPaths {
    fn resolve_paths(&mut self, base: &Path) {
        resolve(&mut self.cert, base);
        resolve(&mut self.key, base);
    }
}

impl ResolvePaths for HubConfig {
    fn resolve_paths(&mut self, base: &Path) {
        if let Some(admin) = &mut self.admin {
            resolve(&mut admin.cert, base);
            resolve(&mut admin.key, base);
            for p in [&mut admin.enc_cert, &mut admin.enc_key]
                .into_iter()
                .flatten()
            {
                resolve(p, base);
            }
        }
        resolve(&mut self.hub.data_dir, base);
        self.tls.resolve_paths(base);
        self.signing.resolve_paths(base);
        if let Some(kek) = self.encryption.as_mut().and_then(|e| e.kek.as_mut()) {
            resolve(kek, base);
        }
        if let Some(password) = &mut self.store.password_file {
            resolve(password, base);
        }
        if let Some(ca) = &mut self.store.ca_file {
            resolve(ca, base);
        }
        for crl in self.peers.iter_mut().filter_map(|p| p.crl.as_mut()) {
            resolve(crl, base);
        }
        for ca in self
            .peers
            .iter_mut()
            .map(|p| &mut p.ca)
            .chain(self.exchanges.iter_mut().map(|e| &mut e.ca))
        {
            resolve(ca, base);
        }
    }
}

impl ResolvePaths for NodeConfig {
    fn resolve_paths(&mut self, base: &Path) {
        resolve(&mut self.node.data_dir, base);
        self.tls.resolve_paths(base);
        self.signing.resolve_paths(base);
        if let Some(kek) = self.encryption.as_mut().and_then(|e| e.kek.as_mut()) {
            resolve(kek, base);
        }
        if let Some(api_tls) = &mut self.api.tls {
            api_tls.resolve_paths(base);
        }
    }
}

/// Reads and parses a config file, resolving its relative paths.
pub fn load<T: DeserializeOwned + ResolvePaths>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut cfg: T = toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let base = path.parent().unwrap_or_else(|| Path::new("."));
    let base = if base.as_os_str().is_empty() {
        Path::new(".")
    } else {
        base
    };
    let base = std::path::absolute(base).unwrap_or_else(|_| base.to_owned());
    cfg.resolve_paths(&base);
    Ok(cfg)
}

/// Writes `<dir>/<name>` (e.g. `hub.addr`) holding the address a daemon actually bound, so that
/// scripts, tests and the CLI find a listener configured with port 0. Written atomically.
pub fn write_addr_file(dir: &Path, name: &str, addr: SocketAddr) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, format!("{addr}\n"))?;
    std::fs::rename(&tmp, dir.join(name))
}

/// Reads an address written by [`write_addr_file`].
pub fn read_addr_file(dir: &Path, name: &str) -> std::io::Result<SocketAddr> {
    let text = std::fs::read_to_string(dir.join(name))?;
    text.trim().parse().map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: {e}", dir.join(name).display()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODE: &str = r#"
[node]
id = "a"
data_dir = "data"
[api]
listen = "127.0.0.1:0"
[hub]
addr = "127.0.0.1:7000"
server_name = "localhost"
[tls]
ca = "../ca/ca.pem"
cert = "tls.pem"
key = "tls.key"
[signing]
cert = "signing.pem"
key = "signing.key"
"#;

    #[test]
    fn relative_paths_resolve_against_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, NODE).unwrap();
        let cfg: NodeConfig = load(&path).unwrap();
        assert_eq!(cfg.node.data_dir, dir.path().join("data"));
        assert_eq!(cfg.tls.ca, dir.path().join("../ca/ca.pem"));
        assert_eq!(cfg.node.max_document_bytes, DEFAULT_MAX_DOCUMENT_BYTES);
    }

    #[test]
    fn crypto_profile_and_enc_paths_parse_and_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, NODE).unwrap();
        let cfg: NodeConfig = load(&path).unwrap();
        assert_eq!(cfg.crypto.profile, crate::crypto::Profile::International);
        assert_eq!((cfg.tls.enc_cert, cfg.tls.enc_key), (None, None));

        let sm = NODE.replace(
            "key = \"tls.key\"\n",
            "key = \"tls.key\"\nenc_cert = \"tls-enc.pem\"\nenc_key = \"tls-enc.key\"\n",
        );
        std::fs::write(&path, format!("[crypto]\nprofile = \"shangmi\"\n{sm}")).unwrap();
        let cfg: NodeConfig = load(&path).unwrap();
        assert_eq!(cfg.crypto.profile, crate::crypto::Profile::Shangmi);
        assert_eq!(cfg.tls.enc_cert, Some(dir.path().join("tls-enc.pem")));
        assert_eq!(cfg.tls.enc_key, Some(dir.path().join("tls-enc.key")));

        std::fs::write(&path, format!("[crypto]\nprofile = \"gm\"\n{NODE}")).unwrap();
        let err = load::<NodeConfig>(&path).unwrap_err().to_string();
        assert!(err.contains("node.toml") && err.contains("gm"), "{err}");
        assert!(
            err.contains("international") && err.contains("shangmi"),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, NODE.replace("[api]", "[api]\nlisten_port = 3")).unwrap();
        let err = load::<NodeConfig>(&path).unwrap_err().to_string();
        assert!(err.contains("listen_port"), "{err}");
        assert!(err.contains("node.toml"), "{err}");
    }
}
