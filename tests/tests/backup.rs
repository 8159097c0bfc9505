//! Online backup: `exchange-hub backup` and `exchange-node backup` taken while documents keep
//! arriving, then a restore (stop, replace the data directory, start) that brings back every
//! document acknowledged before the backup, with its content and an intact audit chain. The body
//! is `exchange_tests::scenario::backup`, which `tests/shangmi_ops.rs` runs under the 国密
//! profile.

use anyhow::Result;
use exchange_core::crypto::Profile::International;

#[tokio::test]
async fn a_backup_taken_under_load_restores_every_acknowledged_document() -> Result<()> {
    exchange_tests::scenario::backup::backup_and_restore(International).await
}
