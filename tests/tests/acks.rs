//! What a node answers on its `Subscribe` stream, checked or made valid before the hub records
//! it: a refusal's text becomes the reason of the hub's signed NOT_DELIVERED, cleaned so that
//! the evidence verifies at the sender; a delivery or recall receipt dated outside the hub's
//! clock is refused alone (audited, `AckRefused`), as `SubmitEvidence` refuses it, and the item
//! stays queued. These tests speak for the nodes: no node runs.

use anyhow::Result;
use exchange_core::{
    config::NodeConfig,
    document::{Evidence, EvidenceKind, SignedDoc, SignedEvidence},
    ids::Address,
    signing::{SigningKey, Verifier},
    time::{now_ms, now_secs},
};
use exchange_proto::v1 as pb;
use exchange_tests::{TestExchange, forge, scenario::audit::audit_list};

/// An hour: well past the clock skew the hub allows.
const HOUR_MS: i64 = 3_600_000;

/// A `Subscribe` stream opened as a node opens it (one item per message): where to send
/// acknowledgements, and the pushes.
async fn subscribe(
    hub: &mut forge::Hub,
) -> Result<(
    tokio::sync::mpsc::Sender<pb::SubscribeRequest>,
    tonic::Streaming<pb::HubPush>,
)> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    Ok((tx, hub.subscribe(request).await?.into_inner()))
}

/// Sends one acknowledgement on a `Subscribe` stream.
async fn send_ack(
    tx: &tokio::sync::mpsc::Sender<pb::SubscribeRequest>,
    ack: pb::Ack,
) -> Result<()> {
    tx.send(pb::SubscribeRequest {
        msg: Some(pb::subscribe_request::Msg::Ack(ack)),
    })
    .await?;
    Ok(())
}

/// The next evidence pushed to a sender, checked as its node checks it: signed by the right
/// principal of the exchange (the hub for NOT_DELIVERED, the recipient for DELIVERED).
async fn next_evidence(
    ex: &TestExchange,
    pushes: &mut tonic::Streaming<pb::HubPush>,
) -> Result<SignedEvidence> {
    let push = forge::next_push(pushes).await?;
    let Some(pb::hub_push::Item::Evidence(wire)) = push.item else {
        anyhow::bail!("expected evidence, got {push:?}");
    };
    let cfg: NodeConfig = exchange_core::config::load(ex.node_config("a"))?;
    let verifier = Verifier::new(&exchange_core::tls::ca_der(&cfg.tls)?)?;
    Ok(SignedEvidence::verify(wire, &verifier, now_secs())?)
}

/// b's signed evidence of `kind` about `doc`, dated `at_ms`.
fn b_signs(
    key: &SigningKey,
    doc: &SignedDoc,
    kind: EvidenceKind,
    at_ms: i64,
) -> Result<pb::SignedEvidence> {
    let me: Address = "b".parse()?;
    let ev = Evidence::about(doc, kind, Some(me), at_ms);
    Ok(SignedEvidence::seal(ev, key)?.wire)
}

/// The `AckRefused` the hub answers an acknowledgement with: its reason.
async fn refused(
    pushes: &mut tonic::Streaming<pb::HubPush>,
    seq: u64,
    doc: &SignedDoc,
) -> Result<String> {
    let push = forge::next_push(pushes).await?;
    let Some(pb::hub_push::Item::AckRefused(r)) = push.item else {
        anyhow::bail!("expected the acknowledgement refused, got {push:?}");
    };
    assert_eq!(r.seq, seq);
    assert_eq!(r.doc_id, doc.header.id.to_string());
    Ok(r.reason)
}

/// The hub's STATEMENT_REFUSED audit entries about document `id`: their details.
async fn refusals_audited(ex: &TestExchange, id: &str) -> Result<Vec<String>> {
    let entries = audit_list(ex, &["--event", "statement-refused", "--doc", id]).await?;
    Ok(entries
        .iter()
        .map(|e| e["detail"].as_str().unwrap_or_default().to_owned())
        .collect())
}

#[tokio::test]
async fn a_refusal_with_control_characters_reaches_the_sender_as_not_delivered_that_verifies()
-> Result<()> {
    let mut ex = TestExchange::setup(&["a", "b"])?;
    ex.start_hub().await?;
    let (id, req) = forge::inline_doc(&forge::signing_key(&ex, "a")?, "refused by b", |_| {});
    let mut a = ex.hub_client_as("a").await?;
    a.submit(req).await?;

    let mut b = ex.hub_client_as("b").await?;
    let (acks, mut pushes) = subscribe(&mut b).await?;
    let push = forge::next_push(&mut pushes).await?;
    assert_eq!(forge::delivered_doc(&push)?.header.id.to_string(), id);
    let text = "content does not verify\r\n\x1b[2Jforged line";
    send_ack(
        &acks,
        pb::Ack {
            seq: push.seq,
            refused: text.into(),
            ..Default::default()
        },
    )
    .await?;

    // The sender gets the hub's NOT_DELIVERED, which decodes and verifies, with the node's
    // text as its reason, each control character a space.
    let (_a_acks, mut a_pushes) = subscribe(&mut a).await?;
    let ev = next_evidence(&ex, &mut a_pushes).await?;
    assert_eq!(ev.evidence.kind, EvidenceKind::NotDelivered);
    assert_eq!(ev.evidence.doc_id.to_string(), id);
    assert_eq!(ev.evidence.recipient, Some("b".parse()?));
    assert_eq!(
        ev.evidence.reason,
        "content does not verify   [2Jforged line"
    );
    Ok(())
}

#[tokio::test]
async fn a_delivery_receipt_dated_in_the_future_is_refused_and_not_recorded() -> Result<()> {
    let mut ex = TestExchange::setup(&["a", "b"])?;
    ex.start_hub().await?;
    let key_b = forge::signing_key(&ex, "b")?;
    let (id, req) = forge::inline_doc(
        &forge::signing_key(&ex, "a")?,
        "receipt from the future",
        |_| {},
    );
    let mut a = ex.hub_client_as("a").await?;
    a.submit(req).await?;

    let mut b = ex.hub_client_as("b").await?;
    let (acks, mut pushes) = subscribe(&mut b).await?;
    let push = forge::next_push(&mut pushes).await?;
    let doc = forge::delivered_doc(&push)?;
    let future = now_ms() + HOUR_MS;
    send_ack(
        &acks,
        pb::Ack {
            seq: push.seq,
            delivery_receipt: Some(b_signs(&key_b, &doc, EvidenceKind::Delivered, future)?),
            ..Default::default()
        },
    )
    .await?;
    let why = refused(&mut pushes, push.seq, &doc).await?;
    assert!(why.contains("ack.delivery_receipt.at_ms"), "{why}");
    assert!(why.contains("ahead of the hub's clock"), "{why}");
    let audited = refusals_audited(&ex, &id).await?;
    assert_eq!(audited.len(), 1, "{audited:?}");
    assert!(
        audited[0].contains("ack.delivery_receipt.at_ms"),
        "{audited:?}"
    );
    drop((acks, pushes));

    // Not recorded: the delivery is still queued, and b's next stream brings it again; the
    // sender's first news of it is the receipt b then sends, dated now.
    let (acks, mut pushes) = subscribe(&mut b).await?;
    let push = forge::next_push(&mut pushes).await?;
    assert_eq!(forge::delivered_doc(&push)?.header.id, doc.header.id);
    let at = now_ms();
    send_ack(
        &acks,
        pb::Ack {
            seq: push.seq,
            delivery_receipt: Some(b_signs(&key_b, &doc, EvidenceKind::Delivered, at)?),
            ..Default::default()
        },
    )
    .await?;
    let (_a_acks, mut a_pushes) = subscribe(&mut a).await?;
    let ev = next_evidence(&ex, &mut a_pushes).await?;
    assert_eq!(ev.evidence.kind, EvidenceKind::Delivered);
    assert_eq!(ev.evidence.doc_id.to_string(), id);
    assert_eq!(
        ev.evidence.at_ms, at,
        "the refused receipt's time was never recorded"
    );
    Ok(())
}

#[tokio::test]
async fn a_recall_receipt_without_a_unix_time_is_refused_and_not_recorded() -> Result<()> {
    let mut ex = TestExchange::setup(&["a", "b"])?;
    ex.start_hub().await?;
    let key_a = forge::signing_key(&ex, "a")?;
    let key_b = forge::signing_key(&ex, "b")?;
    let (id, req) = forge::inline_doc(&key_a, "recalled", |_| {});
    let mut a = ex.hub_client_as("a").await?;
    a.submit(req).await?;

    // b holds the document, unsigned-for.
    let mut b = ex.hub_client_as("b").await?;
    let (acks, mut pushes) = subscribe(&mut b).await?;
    let push = forge::next_push(&mut pushes).await?;
    let doc = forge::delivered_doc(&push)?;
    send_ack(
        &acks,
        pb::Ack {
            seq: push.seq,
            delivery_receipt: Some(b_signs(&key_b, &doc, EvidenceKind::Delivered, now_ms())?),
            ..Default::default()
        },
    )
    .await?;
    let (_a_acks, mut a_pushes) = subscribe(&mut a).await?;
    let ev = next_evidence(&ex, &mut a_pushes).await?;
    assert_eq!(ev.evidence.kind, EvidenceKind::Delivered);

    // a recalls it; b answers the notice with a RECALLED dated 0.
    let mut recall = Evidence::about(&doc, EvidenceKind::Recall, None, now_ms());
    recall.reason = "sent in error".into();
    a.submit_evidence(pb::SubmitEvidenceRequest {
        evidence: Some(SignedEvidence::seal(recall, &key_a)?.wire),
    })
    .await?;
    let notice = forge::next_push(&mut pushes).await?;
    assert!(
        matches!(notice.item, Some(pb::hub_push::Item::Notice(_))),
        "{notice:?}"
    );
    let recalled = |at_ms| -> Result<pb::Ack> {
        Ok(pb::Ack {
            seq: notice.seq,
            recall: pb::RecallOutcome::Recalled.into(),
            recall_receipt: Some(b_signs(&key_b, &doc, EvidenceKind::Recalled, at_ms)?),
            ..Default::default()
        })
    };
    send_ack(&acks, recalled(0)?).await?;
    let why = refused(&mut pushes, notice.seq, &doc).await?;
    assert!(
        why.contains("ack.recall_receipt.at_ms: must be a Unix time in milliseconds"),
        "{why}"
    );
    let audited = refusals_audited(&ex, &id).await?;
    assert_eq!(audited.len(), 1, "{audited:?}");
    drop((acks, pushes));

    // Not recorded: the notice is still queued, and b's next stream brings it again; the
    // sender's next news is the RECALLED b then sends, dated now.
    let (acks, mut pushes) = subscribe(&mut b).await?;
    let again = forge::next_push(&mut pushes).await?;
    assert!(
        matches!(again.item, Some(pb::hub_push::Item::Notice(_))),
        "{again:?}"
    );
    let at = now_ms();
    send_ack(
        &acks,
        pb::Ack {
            seq: again.seq,
            ..recalled(at)?
        },
    )
    .await?;
    let ev = next_evidence(&ex, &mut a_pushes).await?;
    assert_eq!(ev.evidence.kind, EvidenceKind::Recalled);
    assert_eq!(
        ev.evidence.at_ms, at,
        "the refused receipt's time was never recorded"
    );
    Ok(())
}
