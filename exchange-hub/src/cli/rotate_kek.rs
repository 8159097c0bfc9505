//! `exchange-hub rotate-kek --new FILE`: rotates the key-encryption key of the hub's data
//! directory. The key ring (`keyring.json`, or on PostgreSQL the ring in the database that every
//! hub on it shares) is rewrapped under the new key in one atomic replacement; document content
//! is not re-encrypted, and the running hub keeps serving with the data keys it holds. Then the rotation is recorded in the audit log —
//! through the running hub's `Admin` service, or directly in the store (opened with the new
//! key) when the hub is stopped — with both keys' fingerprints, never key material.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Args;
use exchange_core::{
    atrest::Keyring,
    config::{EncryptionSection, HubConfig},
    store::sealing,
};
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
    let (profile, section) = (cfg.crypto.profile, cfg.encryption.as_ref());
    // On PostgreSQL the ring is in the database, shared by every hub on it: rewrapped there,
    // in one transaction.
    let (done, ring, daemon) = match crate::store_target(&cfg).context("[store]")? {
        crate::StoreTarget::Redb(_) => (
            sealing::rotate_kek(data, profile, section, &args.new),
            data.join(Keyring::FILE_NAME),
            "hub",
        ),
        crate::StoreTarget::Postgres(target) => (
            sealing::rotate_kek_postgres(
                &target,
                ("hub", crate::store::SCHEMA),
                data,
                profile,
                section,
                &args.new,
            ),
            sealing::database::ring_label(&target),
            "hubs on the database (each one)",
        ),
    };
    let done = done.context("rotating the key-encryption key")?;
    let rotation = pb::KeyRotation {
        old_fingerprint: done.old_fingerprint.clone(),
        new_fingerprint: done.new_fingerprint.clone(),
        key_ids: done.key_ids.clone(),
    };
    // The ring is rewrapped: from here on only the new key opens it, whatever happens below.
    // With the hub stopped the store is opened here, so it is opened with the new key (the
    // config still names the old one until the operator changes it).
    let mut rotated = cfg.clone();
    rotated.encryption = Some(EncryptionSection {
        kek: Some(args.new.clone()),
        kek_credential: None,
    });
    let recorded = match connect(&rotated).await {
        Ok(Source::Hub(mut client)) => client
            .record_key_rotation(rotation.clone())
            .await
            .map(|_| ())
            .map_err(|s| anyhow::anyhow!("{}", s.message())),
        Ok(Source::Store(store)) => {
            // The same entry the running hub makes (`Admin::record_key_rotation`), by the local
            // user; a failed append is reported, not only logged.
            let by = std::env::var("USER").unwrap_or_else(|_| "local".into());
            let event = Event::new(pb::AuditKind::AdminAction)
                .dept(format!("local:{by}"))
                .detail(describe(&rotation));
            // A hub that never started has not fixed its chain's digest yet: the profile's,
            // as `serve` would (an SM3 chain under shangmi).
            match audit::set_digest(&store, cfg.crypto.profile.digest()).await {
                Ok(()) => store
                    .write(move |txn| audit::append(txn, &event))
                    .await
                    .map(|_| ())
                    .map_err(anyhow::Error::from),
                Err(e) => Err(anyhow::Error::from(e)),
            }
        }
        Err(e) => Err(e),
    };
    println!(
        "{}",
        sealing::rotation_report_at(&ring, &done, &args.new, daemon, "hub.toml")
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
