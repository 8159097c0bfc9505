//! `SubmitBatch` (node → hub, v1.3): several documents in one call, each answered as `Submit`
//! would answer it alone, and a batch that costs its documents' worth of the caller's rate.

use anyhow::{Context as _, Result};
use exchange_core::{
    document::{EvidenceKind, SignedEvidence, limits::SUBMIT_BATCH},
    signing::{Digest, SigningKey},
    time::now_ms,
};
use exchange_proto::v1 as pb;
use exchange_tests::{DEADLINE, TestExchange, eventually, forge};
use tonic::Code;

/// A document from a to b with its content inline, signed with `key`; `edit` changes its
/// header first.
fn inline_doc(
    key: &SigningKey,
    title: &str,
    edit: impl FnOnce(&mut pb::DocumentHeader),
) -> (String, pb::SubmitRequest) {
    let data = format!("content of {title}").into_bytes();
    let mut header = forge::header("a", &["b"], title, vec![forge::part(&data)]);
    edit(&mut header);
    let req = pb::SubmitRequest {
        document: Some(forge::sign(&header, key)),
        content: vec![pb::InlineContent {
            sha256: Digest::of(&data).0.to_vec(),
            data,
        }],
    };
    (header.id, req)
}

/// The evidence in an outcome's acceptance, or in its details (a refusal).
fn evidence(wire: pb::SignedEvidence) -> Result<SignedEvidence> {
    Ok(SignedEvidence::decode(wire)?)
}

#[tokio::test]
async fn each_document_of_a_batch_is_answered_as_if_sent_alone() -> Result<()> {
    let ex = TestExchange::start(&["a", "b"]).await?;
    let key = forge::signing_key(&ex, "a")?;
    let (first, first_req) = inline_doc(&key, "first", |_| {});
    let (future, future_req) = inline_doc(&key, "from the future", |h| {
        h.created_at_ms = now_ms() + 3_600_000;
    });
    let (_, impostor_req) = inline_doc(&key, "claims to be from b", |h| {
        h.sender = "b".into();
        if let Some(m) = h.metadata.as_mut() {
            m.to_depts = vec!["a".into()];
        }
    });
    let (last, last_req) = inline_doc(&key, "last", |_| {});
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
        .map(|i| inline_doc(&key, &format!("doc {i}"), |_| {}).1)
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
        .map(|i| inline_doc(&key, &format!("doc {i}"), |_| {}).1)
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
