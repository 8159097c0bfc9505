//! Forwarding (转发) against the real binaries: a department forwards a document it received as a
//! new document of its own, linked to the original and carrying it as an evidence bundle that the
//! new recipient verifies offline as the original sender's; only received documents can be
//! forwarded. The bodies are `exchange_tests::scenario::forward`, which `tests/shangmi_ops.rs`
//! runs under the 国密 profile.

use anyhow::Result;
use exchange_core::crypto::Profile::International;
use exchange_tests::scenario::forward;

#[tokio::test]
async fn a_forward_carries_the_original_verifiably_and_links_both_ways() -> Result<()> {
    forward::forward_carries_the_original(International).await
}

#[tokio::test]
async fn only_a_document_in_the_inbox_can_be_forwarded() -> Result<()> {
    forward::only_the_inbox_is_forwarded(International).await
}
