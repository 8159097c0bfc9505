//! `exchange-hub audit list|verify|export`: questions for the audit log, answered by the running
//! hub through its `Admin` service (with the administrator identity in `[admin]`), or — when the
//! hub is not running — by opening its store directly.

use std::net::SocketAddr;

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use exchange_core::{
    audit::ExportLine,
    config::{Calendar, HubConfig, TlsPaths, TlsProtocol, parse_when},
    crypto::{self, Profile},
    signing::{SigningKey, Verifier},
    store::{Store, sealing::KeysError},
    tls,
};
use exchange_proto::v1::{self as pb, admin_client::AdminClient};

use crate::audit::{self, Filter};

/// `audit` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Entries matching every filter given, oldest first.
    List(ListArgs),
    /// Recompute the hash chain and check every signed checkpoint; exit 1 at the first bad entry.
    Verify,
    /// Write entries (and the checkpoints that cover them) as JSON Lines on stdout, for archiving;
    /// check an export with `exchange-certs verify-audit FILE --ca CA.pem`.
    Export {
        /// Only entries from this time on (RFC 3339, or a date: 2026-11-20, from 00:00 that day
        /// in `[calendar] utc_offset`).
        #[arg(long, value_name = "T")]
        since: Option<String>,
    },
}

/// Filters of `audit list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only entries about this document.
    #[arg(long, value_name = "ID")]
    doc: Option<String>,
    /// Only entries about this department (or principal, e.g. admin:alice).
    #[arg(long, value_name = "D")]
    dept: Option<String>,
    /// Only this kind of event, e.g. document-accepted, handshake-refused, delivered.
    #[arg(long, value_name = "KIND")]
    event: Option<String>,
    /// From this time on (RFC 3339, or a date: 2026-11-20, from 00:00 that day in
    /// `[calendar] utc_offset`, default +08:00).
    #[arg(long, value_name = "T")]
    since: Option<String>,
    /// Before this time (RFC 3339, or a date: before 00:00 that day).
    #[arg(long, value_name = "T")]
    until: Option<String>,
    /// At most this many entries.
    #[arg(long, default_value_t = 0)]
    limit: u32,
    /// One JSON array on stdout.
    #[arg(long)]
    json: bool,
}

/// Where the answers come from.
pub(crate) enum Source {
    Hub(AdminClient<tonic::transport::Channel>),
    Store(Store),
}

/// RFC 3339, or a date: 00:00 of that day in the office's calendar (`[calendar] utc_offset`).
fn parse_time(field: &str, s: &str, calendar: &Calendar) -> Result<i64> {
    let when = parse_when(s).map_err(|e| anyhow::anyhow!("{field}: {e}"))?;
    Ok(when.start_ms(calendar))
}

fn parse_kind(s: &str) -> Result<i32> {
    let name = format!("AUDIT_KIND_{}", s.to_uppercase().replace('-', "_"));
    pb::AuditKind::from_str_name(&name)
        .map(i32::from)
        .with_context(|| format!("--event: unknown kind {s:?} (e.g. document-accepted, document-refused, delivered, evidence, handshake-refused, admin-action)"))
}

pub(crate) async fn connect(cfg: &HubConfig) -> Result<Source> {
    let local = || {
        // Statistics read the (sealed) document records: the store's keys come along.
        crate::open_store(cfg, false)
            .map(Source::Store)
            .map_err(|e| match e {
                KeysError::Store(e) => anyhow::anyhow!(
                    "cannot open {} ({e}); if the hub is running, set [admin] in hub.toml to an \
                     administrator identity (exchange-certs issue-admin) so these commands ask \
                     the hub",
                    crate::store_shown(cfg)
                ),
                e => anyhow::Error::new(e)
                    .context("opening the data directory's keys ([encryption])"),
            })
    };
    let Some(admin) = &cfg.admin else {
        return local();
    };
    let mut addr = cfg.hub.listen;
    if addr.port() == 0 {
        addr = exchange_core::config::read_addr_file(&cfg.hub.data_dir, "hub.addr").unwrap_or(addr);
    }
    let (addr, name) = if addr.ip().is_loopback() || addr.ip().is_unspecified() {
        (
            SocketAddr::from(([127, 0, 0, 1], addr.port())),
            "localhost".to_owned(),
        )
    } else {
        (addr, addr.ip().to_string())
    };
    let paths = admin.tls_paths(&cfg.tls);
    let profile = cfg.crypto.profile;
    check_admin_profile(profile, &paths)?;
    // The hub's own channel, from the provider layer: TLS 1.3 (rustls) or, under shangmi,
    // TLCP / RFC 8998 (Tongsuo) with the administrator's signing and encryption pairs.
    let endpoint = tls::hub_endpoint(addr, &paths, profile, &name)
        .context("loading the administrator identity in [admin]")?;
    match endpoint.connect().await {
        Ok(ch) => Ok(Source::Hub(
            AdminClient::new(ch).max_decoding_message_size(64 << 20),
        )),
        Err(_) => local(), // the hub is not running: read its store
    }
}

/// Refuses an `[admin]` identity of the other profile, or one without TLCP's encryption pair,
/// naming the key, before any handshake fails with a less useful message.
fn check_admin_profile(profile: Profile, paths: &TlsPaths) -> Result<()> {
    let keys = crypto::TlsKeys {
        ca: "tls.ca",
        cert: "admin.cert",
        enc_cert: "admin.enc_cert",
        enc_cert_section: "[admin] enc_cert",
        enc_key_section: "[admin] enc_key",
    };
    let tlcp = TlsProtocol::of(profile, paths)? == TlsProtocol::Tlcp;
    crypto::check_tls_profile(profile, paths, keys, tlcp)?;
    Ok(())
}

/// Runs an `audit` subcommand.
pub async fn run(cfg: HubConfig, cmd: AuditCommand) -> Result<()> {
    let source = connect(&cfg).await?;
    let verifier = Verifier::new(&tls::ca_der(&cfg.tls)?)?;
    match cmd {
        AuditCommand::List(a) => list(source, a, &cfg.calendar).await,
        AuditCommand::Verify => verify(source, &verifier).await,
        AuditCommand::Export { since } => {
            let since_ms = since
                .map(|s| parse_time("--since", &s, &cfg.calendar))
                .transpose()?
                .unwrap_or(0);
            export(source, &cfg, since_ms).await
        }
    }
}

async fn list(source: Source, a: ListArgs, calendar: &Calendar) -> Result<()> {
    let req = pb::ListAuditRequest {
        doc_id: a.doc.unwrap_or_default(),
        dept: a.dept.unwrap_or_default(),
        kind: a.event.as_deref().map(parse_kind).transpose()?.unwrap_or(0),
        since_ms: a
            .since
            .as_deref()
            .map(|s| parse_time("--since", s, calendar))
            .transpose()?
            .unwrap_or(0),
        until_ms: a
            .until
            .as_deref()
            .map(|s| parse_time("--until", s, calendar))
            .transpose()?
            .unwrap_or(0),
        limit: a.limit,
    };
    let records = match source {
        Source::Hub(mut c) => {
            let mut s = c.list_audit(req).await.map_err(status)?.into_inner();
            let mut out = Vec::new();
            while let Some(r) = s.message().await.map_err(status)? {
                out.push(r);
            }
            out
        }
        Source::Store(store) => {
            let f = Filter {
                doc_id: req.doc_id,
                dept: req.dept,
                kind: req.kind,
                since_ms: req.since_ms,
                until_ms: req.until_ms,
                limit: req.limit as usize,
            };
            audit::list(&store, f).await?
        }
    };
    let lines: Vec<ExportLine> = records
        .iter()
        .filter_map(|r| ExportLine::entry(&r.entry))
        .collect();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&lines)?);
        return Ok(());
    }
    if lines.is_empty() {
        eprintln!("no entries match");
    }
    for l in &lines {
        if let ExportLine::Entry {
            seq,
            at,
            kind,
            doc_id,
            dept,
            peer,
            detail,
            ..
        } = l
        {
            let mut parts = vec![format!("{seq:>7}"), at.clone(), format!("{kind:<18}")];
            parts.extend(
                [doc_id, dept, peer, detail]
                    .into_iter()
                    .filter(|s| !s.is_empty())
                    .cloned(),
            );
            println!("{}", parts.join("  "));
        }
    }
    Ok(())
}

async fn verify(source: Source, verifier: &Verifier) -> Result<()> {
    let r = match source {
        Source::Hub(mut c) => c
            .verify_audit(pb::VerifyAuditRequest {})
            .await
            .map_err(status)?
            .into_inner(),
        Source::Store(store) => audit::verify(&store, verifier).await?,
    };
    if r.ok {
        println!(
            "audit log intact: {} entries checked, {} signed checkpoints match (last at entry {})",
            r.entries, r.checkpoints, r.last_checkpoint_seq
        );
        Ok(())
    } else {
        bail!(
            "audit log does NOT verify: entry {}: {} ({} entries checked before it)",
            r.first_bad_seq,
            r.problem,
            r.entries
        )
    }
}

async fn export(source: Source, cfg: &HubConfig, since_ms: i64) -> Result<()> {
    let items = match source {
        Source::Hub(mut c) => {
            let mut s = c
                .export_audit(pb::ExportAuditRequest { since_ms })
                .await
                .map_err(status)?
                .into_inner();
            let mut out = Vec::new();
            while let Some(i) = s.message().await.map_err(status)? {
                out.push(i);
            }
            out
        }
        Source::Store(store) => {
            let key = SigningKey::load(&cfg.signing)
                .context("loading the hub's signing key to sign the head")?;
            audit::checkpoint(&store, &key, cfg.audit.checkpoint_every, 0, true).await?;
            audit::export(&store, since_ms).await?
        }
    };
    let mut out = std::io::stdout().lock();
    for item in items {
        let line = match item.item {
            Some(pb::export_item::Item::Record(r)) => ExportLine::entry(&r.entry),
            Some(pb::export_item::Item::Checkpoint(c)) => Some(ExportLine::checkpoint(&c)),
            None => None,
        };
        if let Some(line) = line {
            use std::io::Write;
            writeln!(out, "{}", serde_json::to_string(&line)?)?;
        }
    }
    Ok(())
}

fn status(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("the hub refused: {}", s.message())
}
