//! `SubmitBatch` (node → hub, v1.3): several documents in one call, each answered as `Submit`
//! would answer it alone, and a batch that costs its documents' worth of the caller's rate.
//! Batches on the `Subscribe` stream (v1.4): several pushes per message to a node that asks for
//! them, several acknowledgements per message, each taken or refused as if sent alone.

use anyhow::{Context as _, Result};
use exchange_core::{
    document::{Evidence, EvidenceKind, SignedDoc, SignedEvidence, limits::SUBMIT_BATCH},
    time::now_ms,
};
use exchange_proto::v1 as pb;
use exchange_tests::{DEADLINE, TestExchange, eventually, forge};
use tonic::Code;

/// The evidence in an outcome's acceptance, or in its details (a refusal).
fn evidence(wire: pb::SignedEvidence) -> Result<SignedEvidence> {
    Ok(SignedEvidence::decode(wire)?)
}

#[tokio::test]
async fn each_document_of_a_batch_is_answered_as_if_sent_alone() -> Result<()> {
    let ex = TestExchange::start(&["a", "b"]).await?;
    let key = forge::signing_key(&ex, "a")?;
    let (first, first_req) = forge::inline_doc(&key, "first", |_| {});
    let (future, future_req) = forge::inline_doc(&key, "from the future", |h| {
        h.created_at_ms = now_ms() + 3_600_000;
    });
    let (_, impostor_req) = forge::inline_doc(&key, "claims to be from b", |h| {
        h.sender = "b".into();
        if let Some(m) = h.metadata.as_mut() {
            m.to_depts = vec!["a".into()];
        }
    });
    let (last, last_req) = forge::inline_doc(&key, "last", |_| {});
    let mut hub = ex.hub_client_as("a").await?;
    let outcomes = hub
        .submit_batch(pb::SubmitBatchRequest {
            documents: vec![
                first_req.clone(),
                future_req,
                impostor_req,
                last_req.clone(),
            ],
        })
        .await?
        .into_inner()
        .outcomes;
    assert_eq!(outcomes.len(), 4, "one outcome per document, in order");

    // Accepted: the hub's signed ACCEPTED about each.
    let mut accepted = Vec::new();
    for (o, id) in [(&outcomes[0], &first), (&outcomes[3], &last)] {
        assert_eq!(o.code, 0, "{}: {}", id, o.message);
        let acc = evidence(o.acceptance.clone().context("no acceptance")?)?;
        assert_eq!(acc.evidence.kind, EvidenceKind::Accepted);
        assert_eq!(acc.evidence.doc_id.to_string(), *id);
        accepted.push(acc.wire);
    }
    // Refused, each for its own reason, with the signed REFUSED of a verified document.
    let o = &outcomes[1];
    assert_eq!(Code::from(o.code), Code::InvalidArgument, "{}", o.message);
    assert!(o.message.contains("header.created_at_ms"), "{}", o.message);
    assert!(o.acceptance.is_none());
    let refusal = evidence(prost::Message::decode(o.details.as_slice())?)?;
    assert_eq!(refusal.evidence.kind, EvidenceKind::Refused);
    assert_eq!(refusal.evidence.doc_id.to_string(), future);
    let o = &outcomes[2];
    assert_eq!(Code::from(o.code), Code::PermissionDenied, "{}", o.message);
    assert!(
        o.message.contains("only department b may sign"),
        "{}",
        o.message
    );

    // The same documents again: the same acceptances (a resubmission after a lost answer).
    let again = hub
        .submit_batch(pb::SubmitBatchRequest {
            documents: vec![first_req, last_req],
        })
        .await?
        .into_inner()
        .outcomes;
    let again: Vec<_> = again.into_iter().filter_map(|o| o.acceptance).collect();
    assert_eq!(again, accepted, "a resubmission gets the acceptance it had");

    // Both accepted documents reach b, once each; the refused ones never do.
    let b = ex.node_api("b").await?;
    let inbox = eventually("both documents in b's inbox", DEADLINE, || {
        let mut b = b.clone();
        async move {
            let entries = b
                .list_inbox(pb::ListInboxRequest {})
                .await?
                .into_inner()
                .entries;
            Ok((entries.len() >= 2).then_some(entries))
        }
    })
    .await?;
    let mut ids: Vec<_> = inbox.iter().map(|e| e.doc_id.clone()).collect();
    ids.sort();
    let mut want = vec![first, last];
    want.sort();
    assert_eq!(ids, want);
    Ok(())
}

#[tokio::test]
async fn an_empty_or_oversized_batch_is_refused_naming_the_limit() -> Result<()> {
    let ex = TestExchange::start(&["a", "b"]).await?;
    let key = forge::signing_key(&ex, "a")?;
    let mut hub = ex.hub_client_as("a").await?;
    let empty = hub
        .submit_batch(pb::SubmitBatchRequest { documents: vec![] })
        .await
        .expect_err("an empty batch");
    assert_eq!(empty.code(), Code::InvalidArgument, "{empty:?}");
    assert!(
        empty
            .message()
            .contains("documents: 0 in the batch, 1 to 64"),
        "{}",
        empty.message()
    );
    let too_many: Vec<_> = (0..=SUBMIT_BATCH)
        .map(|i| forge::inline_doc(&key, &format!("doc {i}"), |_| {}).1)
        .collect();
    let over = hub
        .submit_batch(pb::SubmitBatchRequest {
            documents: too_many,
        })
        .await
        .expect_err("a batch over the limit");
    assert_eq!(over.code(), Code::InvalidArgument, "{over:?}");
    assert!(
        over.message()
            .contains("documents: 65 in the batch, 1 to 64"),
        "{}",
        over.message()
    );
    // Nothing of the refused batch was taken.
    let mut b = ex.node_api("b").await?;
    let inbox = b.list_inbox(pb::ListInboxRequest {}).await?.into_inner();
    assert!(inbox.entries.is_empty(), "{:?}", inbox.entries);
    Ok(())
}

#[tokio::test]
async fn a_batch_costs_the_caller_one_call_per_document() -> Result<()> {
    let mut ex = TestExchange::setup(&["a", "b"])?;
    ex.edit_hub_config(|c| {
        c.limits.requests_per_second = 1;
        c.limits.burst_requests = 5;
    })?;
    ex.start_hub().await?;
    let key = forge::signing_key(&ex, "a")?;
    let mut hub = ex.hub_client_as("a").await?;
    let docs: Vec<_> = (0..10)
        .map(|i| forge::inline_doc(&key, &format!("doc {i}"), |_| {}).1)
        .collect();
    let outcomes = hub
        .submit_batch(pb::SubmitBatchRequest { documents: docs })
        .await?
        .into_inner()
        .outcomes;
    assert!(outcomes.iter().all(|o| o.code == 0), "{outcomes:?}");
    // The batch was admitted as one call; its ten documents spent the burst of five and five
    // seconds more: the next call is refused, naming the limit.
    let s = hub
        .list_departments(pb::ListDepartmentsRequest {})
        .await
        .expect_err("the batch spent the burst");
    assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
    assert!(
        s.message().contains("requests_per_second = 1"),
        "{}",
        s.message()
    );
    Ok(())
}

/// A `Subscribe` stream opened as a node opens it, asking for batches (v1.4) or not: where to
/// send acknowledgements, the pushes, and whether the hub said it takes acknowledgements in
/// batches.
async fn subscribe(
    hub: &mut forge::Hub,
    batches: bool,
) -> Result<(
    tokio::sync::mpsc::Sender<pb::SubscribeRequest>,
    tonic::Streaming<pb::HubPush>,
    bool,
)> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    if batches {
        exchange_proto::say_batches(request.metadata_mut());
    }
    let response = hub.subscribe(request).await?;
    let takes_batches = exchange_proto::says_batches(response.metadata());
    Ok((tx, response.into_inner(), takes_batches))
}

#[tokio::test]
async fn pushes_and_acknowledgements_travel_in_batches_each_taken_as_if_alone() -> Result<()> {
    let mut ex = TestExchange::setup(&["a", "b"])?;
    ex.start_hub().await?; // no nodes: this test speaks for them
    let key_a = forge::signing_key(&ex, "a")?;
    let key_b = forge::signing_key(&ex, "b")?;
    let mut a = ex.hub_client_as("a").await?;
    let docs: Vec<_> = (0..5)
        .map(|i| forge::inline_doc(&key_a, &format!("doc {i}"), |_| {}))
        .collect();
    let outcomes = a
        .submit_batch(pb::SubmitBatchRequest {
            documents: docs.iter().map(|(_, req)| req.clone()).collect(),
        })
        .await?
        .into_inner()
        .outcomes;
    assert!(outcomes.iter().all(|o| o.code == 0), "{outcomes:?}");

    // A node that does not ask for batches (before v1.4) gets one item per message.
    let mut b = ex.hub_client_as("b").await?;
    let (acks, mut pushes, takes_batches) = subscribe(&mut b, false).await?;
    assert!(
        takes_batches,
        "a v1.4 hub says it takes acknowledgements in batches"
    );
    for seq in 1..=5 {
        let push = forge::next_push(&mut pushes).await?;
        assert_eq!(push.seq, seq, "{push:?}");
        assert!(push.batch.is_empty(), "a batch to a node that did not ask");
        forge::delivered_doc(&push)?;
    }
    drop((acks, pushes));

    // One that asks gets the five together, each with its own seq.
    let (acks, mut pushes, _) = subscribe(&mut b, true).await?;
    let push = forge::next_push(&mut pushes).await?;
    assert_eq!((push.seq, &push.item), (0, &None), "{push:?}");
    let seqs: Vec<u64> = push.batch.iter().map(|p| p.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    let delivered: Vec<SignedDoc> = push
        .batch
        .iter()
        .map(forge::delivered_doc)
        .collect::<Result<_>>()?;
    let mut ids: Vec<String> = delivered.iter().map(|d| d.header.id.to_string()).collect();
    let mut want: Vec<String> = docs.iter().map(|(id, _)| id.clone()).collect();
    ids.sort();
    want.sort();
    assert_eq!(ids, want);

    // All five acknowledged in one message; the third carries the first one's receipt, which
    // the hub refuses alone.
    let me: exchange_core::ids::Address = "b".parse()?;
    let receipt = |doc: &SignedDoc| -> Result<pb::SignedEvidence> {
        let ev = Evidence::about(doc, EvidenceKind::Delivered, Some(me.clone()), now_ms());
        Ok(SignedEvidence::seal(ev, &key_b)?.wire)
    };
    let mut batch = Vec::new();
    for (i, p) in push.batch.iter().enumerate() {
        let doc = if i == 2 { &delivered[0] } else { &delivered[i] };
        batch.push(pb::Ack {
            seq: p.seq,
            delivery_receipt: Some(receipt(doc)?),
            ..Default::default()
        });
    }
    acks.send(pb::SubscribeRequest {
        msg: Some(pb::subscribe_request::Msg::Acks(pb::AckBatch {
            acks: batch,
        })),
    })
    .await?;
    let refused = forge::next_push(&mut pushes).await?;
    let Some(pb::hub_push::Item::AckRefused(r)) = &refused.item else {
        anyhow::bail!("expected the third acknowledgement refused, got {refused:?}");
    };
    assert_eq!(r.seq, 3);
    assert_eq!(r.doc_id, delivered[2].header.id.to_string());
    assert!(
        r.reason
            .contains("ack.delivery_receipt: not a delivery receipt of b for this document"),
        "{}",
        r.reason
    );
    drop((acks, pushes));

    // The other four are delivered: their sender gets the four receipts, and nothing else.
    let (_a_acks, mut a_pushes, _) = subscribe(&mut a, true).await?;
    let mut receipts = Vec::new();
    while receipts.len() < 4 {
        let push = forge::next_push(&mut a_pushes).await?;
        let items = if push.batch.is_empty() {
            vec![push]
        } else {
            push.batch
        };
        for p in items {
            let Some(pb::hub_push::Item::Evidence(e)) = p.item else {
                anyhow::bail!("expected evidence, got {p:?}");
            };
            let e = evidence(e)?;
            assert_eq!(e.evidence.kind, EvidenceKind::Delivered);
            receipts.push(e.evidence.doc_id.to_string());
        }
    }
    receipts.sort();
    let mut good: Vec<String> = [0, 1, 3, 4]
        .iter()
        .map(|&i| delivered[i].header.id.to_string())
        .collect();
    good.sort();
    assert_eq!(receipts, good);

    // The refused one stayed queued: b's next stream brings it, alone.
    let (_acks, mut pushes, _) = subscribe(&mut b, true).await?;
    let again = forge::next_push(&mut pushes).await?;
    assert!(again.batch.is_empty(), "{again:?}");
    assert_eq!(
        forge::delivered_doc(&again)?.header.id,
        delivered[2].header.id
    );
    Ok(())
}
