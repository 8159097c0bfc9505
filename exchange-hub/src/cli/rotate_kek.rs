//! `exchange-hub rotate-kek --new FILE`: rotates the key-encryption key of the hub's data
//! directory. The key ring (`keyring.json`) is rewrapped under the new key in one atomic
//! replacement, on this machine; document content is not re-encrypted, and the running hub
//! keeps serving with the data keys it holds. Then the rotation is recorded in the audit log —
//! through the running hub's `Admin` service, or directly in the store when the hub is stopped —
//! with both keys' fingerprints, never key material.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Args;
use exchange_core::config::HubConfig;
use exchange_proto::v1 as pb;

use super::audit::{Source, connect};
use crate::audit::{self, Event};

/// `rotate-kek` flags.
#[derive(Debug, Args)]
pub struct RotateKekArgs {
    /// The new key-encryption key: a file of 64 hex characters, mode 0600 (e.g. made with
    /// `exchange-certs new-kek --out FILE`). Keep it outside the data directory.
    #[arg(long, value_name = "FILE")]
    pub new: PathBuf,
}

/// The audit log's words for a rotation.
pub(crate) fn describe(r: &pb::KeyRotation) -> String {
    format!(
        "rotate-kek: key ring rewrapped from key-encryption key {} to {} (data keys {:?})",
        r.old_fingerprint, r.new_fingerprint, r.key_ids
    )
}

/// Runs `rotate-kek`.
pub async fn run(cfg: HubConfig, args: RotateKekArgs) -> Result<()> {
    let data = &cfg.hub.data_dir;
    let done = exchange_core::store::sealing::rotate_kek(data, cfg.encryption.as_ref(), &args.new)
        .context("rotating the key-encryption key")?;
    let rotation = pb::KeyRotation {
        old_fingerprint: done.old_fingerprint.clone(),
        new_fingerprint: done.new_fingerprint.clone(),
        key_ids: done.key_ids.clone(),
    };
    // The ring is rewrapped: from here on only the new key opens it, whatever happens below.
    let recorded = match connect(&cfg).await {
        Ok(Source::Hub(mut client)) => client
            .record_key_rotation(rotation.clone())
            .await
            .map(|_| ())
            .map_err(|s| anyhow::anyhow!("{}", s.message())),
        Ok(Source::Store(store)) => {
            let by = std::env::var("USER").unwrap_or_else(|_| "local".into());
            audit::record(
                &store,
                Event::new(pb::AuditKind::AdminAction)
                    .dept(format!("local:{by}"))
                    .detail(describe(&rotation)),
            )
            .await;
            Ok(())
        }
        Err(e) => Err(e),
    };
    println!(
        "{}",
        exchange_core::store::sealing::rotation_report(data, &done, &args.new, "hub", "hub.toml")
    );
    if let Err(e) = recorded {
        anyhow::bail!(
            "the key ring was rotated, but the audit log could not record it: {e:#} (run the \
             command again once the hub answers: it records the rotation without changing \
             anything else)"
        );
    }
    Ok(())
}
