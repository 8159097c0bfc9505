//! The refused calls of the security suite: what each sends, and the exact refusal it must get.

use std::time::Duration;

use anyhow::{Context as _, Result};
use exchange_core::signing::Digest;
use exchange_proto::v1 as pb;
use exchange_tests::{
    Draft, TestExchange,
    forge::{self, Hub},
};
use tonic::Code;

/// One refused call: what is sent, and the refusal it must get.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Case {
    SenderIsAnotherDepartment,
    ForgedSignature,
    NoSignature,
    ContentNotMatchingItsDigest,
    StreamBeyondItsDeclaredSize,
    UnknownRecipient,
    OversizeDocument,
    PartSizesThatWrapAround,
    OversizeBlob,
    TooManyRecipients,
    OverLongTitle,
    RoutingPolicyViolation,
    IdleStream,
    ClumsySystemOverLongTitle,
}

pub(crate) const CASES: &[(Case, Code, &str)] = &[
    (
        Case::SenderIsAnotherDepartment,
        Code::PermissionDenied,
        "header.sender is c, but the caller is a",
    ),
    (
        Case::ForgedSignature,
        Code::PermissionDenied,
        "signature does not match the signed bytes",
    ),
    (
        Case::NoSignature,
        Code::InvalidArgument,
        "signature: missing",
    ),
    (
        Case::ContentNotMatchingItsDigest,
        Code::InvalidArgument,
        "content does not match its digest",
    ),
    (
        Case::StreamBeyondItsDeclaredSize,
        Code::InvalidArgument,
        "more than the declared 10 bytes",
    ),
    (
        Case::UnknownRecipient,
        Code::InvalidArgument,
        "metadata.to_depts: unknown department(s) nowhere",
    ),
    (
        Case::OversizeDocument,
        Code::InvalidArgument,
        "header.parts: 536870913 bytes in all, the hub's limit is 536870912",
    ),
    (
        Case::PartSizesThatWrapAround,
        Code::InvalidArgument,
        "header.parts: 18446744073709551615 bytes in all, the hub's limit is 536870912",
    ),
    (
        Case::OversizeBlob,
        Code::InvalidArgument,
        "size: 536870913 bytes, the hub's limit is 536870912",
    ),
    (
        Case::TooManyRecipients,
        Code::InvalidArgument,
        "metadata.to_depts: 5001 recipients, at most 5000 allowed",
    ),
    (
        Case::OverLongTitle,
        Code::InvalidArgument,
        "metadata.title: 501 characters, at most 500 allowed",
    ),
    (
        Case::RoutingPolicyViolation,
        Code::PermissionDenied,
        "does not allow c to send to b",
    ),
    (
        Case::IdleStream,
        Code::DeadlineExceeded,
        "idle for 2 s ([limits] idle_stream_secs)",
    ),
    (
        Case::ClumsySystemOverLongTitle,
        Code::InvalidArgument,
        "metadata.title: 501 characters, at most 500 allowed",
    ),
];

/// Sends `case` and returns the refusal.
pub(crate) async fn run(
    ex: &TestExchange,
    case: Case,
    uploaded: &pb::Part,
) -> Result<tonic::Status> {
    let mut a: Hub = ex.hub_client_as("a").await?;
    let a_key = forge::signing_key(ex, "a")?;
    let doc = |to: &[&str], title: &str| forge::header("a", to, title, vec![uploaded.clone()]);
    let refused = match case {
        Case::SenderIsAnotherDepartment => {
            let c_key = forge::signing_key(ex, "c")?;
            let h = forge::header("c", &["b"], "claims to be from c", vec![uploaded.clone()]);
            forge::submit(&mut a, forge::sign(&h, &c_key)).await.err()
        }
        Case::ForgedSignature => {
            let mut signed = forge::sign(&doc(&["b"], "tampered"), &a_key);
            if let Some(sig) = signed.signature.as_mut() {
                sig.value[0] ^= 1;
            }
            forge::submit(&mut a, signed).await.err()
        }
        Case::NoSignature => {
            let mut signed = forge::sign(&doc(&["b"], "unsigned"), &a_key);
            signed.signature = None;
            forge::submit(&mut a, signed).await.err()
        }
        Case::ContentNotMatchingItsDigest => {
            let claimed = Digest::of(b"what the manifest promises");
            forge::put_blob(
                &mut a,
                claimed,
                26,
                vec![b"something else, 26 bytes!!".to_vec()],
            )
            .await
            .err()
        }
        Case::StreamBeyondItsDeclaredSize => {
            let data = vec![7u8; 20];
            forge::put_blob(&mut a, Digest::of(&data), 10, vec![data])
                .await
                .err()
        }
        Case::UnknownRecipient => forge::submit(
            &mut a,
            forge::sign(&doc(&["b", "nowhere"], "to no one"), &a_key),
        )
        .await
        .err(),
        Case::OversizeDocument => {
            let mut big = uploaded.clone();
            big.size = 512 * 1024 * 1024 + 1;
            let h = forge::header("a", &["b"], "too big", vec![big]);
            forge::submit(&mut a, forge::sign(&h, &a_key)).await.err()
        }
        Case::PartSizesThatWrapAround => {
            // 2^64 − 1 and 2 bytes: a wrapping sum would make them 1 byte in all.
            let mut huge = uploaded.clone();
            huge.size = u64::MAX;
            let mut two = forge::part(b"xy");
            two.name = "two.txt".into();
            two.role = pb::PartRole::Attachment.into();
            let h = forge::header("a", &["b"], "wraps", vec![huge, two]);
            forge::submit(&mut a, forge::sign(&h, &a_key)).await.err()
        }
        Case::OversizeBlob => {
            let size = 512 * 1024 * 1024 + 1;
            forge::put_blob(&mut a, Digest::of(b"x"), size, vec![b"x".to_vec()])
                .await
                .err()
        }
        Case::TooManyRecipients => {
            let names: Vec<String> = (0..5001).map(|i| format!("dept-{i}")).collect();
            let to: Vec<&str> = names.iter().map(String::as_str).collect();
            forge::submit(&mut a, forge::sign(&doc(&to, "to everyone"), &a_key))
                .await
                .err()
        }
        Case::OverLongTitle => {
            let title = "题".repeat(501);
            forge::submit(&mut a, forge::sign(&doc(&["b"], &title), &a_key))
                .await
                .err()
        }
        Case::RoutingPolicyViolation => {
            let mut c = ex.hub_client_as("c").await?;
            let h = forge::header("c", &["b"], "c may only write to a", vec![uploaded.clone()]);
            forge::submit(&mut c, forge::sign(&h, &forge::signing_key(ex, "c")?))
                .await
                .err()
        }
        Case::IdleStream => {
            // Half a blob, then silence with the stream left open.
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            let data = vec![1u8; 64];
            tx.send(pb::BlobChunk {
                sha256: Digest::of(&data).0.to_vec(),
                size: 64,
                offset: 0,
                data: data[..32].to_vec(),
            })
            .await?;
            let call = a.put_blob(tokio_stream::wrappers::ReceiverStream::new(rx));
            let answer = tokio::time::timeout(Duration::from_secs(20), call).await?;
            drop(tx);
            answer.err()
        }
        Case::ClumsySystemOverLongTitle => {
            let mut api = ex.node_api("a").await?;
            let draft = Draft {
                to: vec!["b".into()],
                title: "长".repeat(501),
                urgency: pb::Urgency::Normal,
                parts: vec![("body.txt".into(), b"hello".to_vec())],
                key: String::new(),
            };
            exchange_tests::submit(&mut api, &draft).await.err()
        }
    };
    refused.with_context(|| format!("{case:?} was accepted"))
}
