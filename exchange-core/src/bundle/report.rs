//! What verifying a bundle tells: the [`Report`] of a bundle that verifies, or the
//! [`BundleError`] that names the first item that does not.

use std::fmt;

use crate::{
    crypto::DigestAlgorithm,
    document::{DocError, EvidenceKind, PartInfo, Recipient, SignedEvidence},
    identity::Qualified,
    ids::{Address, DeptId, DocumentId},
    signing::{Digest, digest_label},
};

/// A verified bundle: the document and each proven step, in file order.
#[derive(Debug, Clone)]
pub struct Report {
    /// 公文标识.
    pub doc_id: DocumentId,
    /// 标题, as signed.
    pub title: String,
    /// 发文字号, as signed (may be empty).
    pub doc_number: String,
    /// The sending department (it signed the header).
    pub sender: DeptId,
    /// The digest of the signed header: the document's name in every piece of evidence.
    pub header_digest: Digest,
    /// The algorithm the header names for its digest and every part's (`sha256` or `sm3`).
    pub digest: DigestAlgorithm,
    /// 主送 then 抄送, as signed.
    pub recipients: Vec<Recipient>,
    /// The signed content manifest.
    pub parts: Vec<PartInfo>,
    /// The sealing of the document, the hub's acceptance, then every other piece of evidence.
    pub steps: Vec<Step>,
    /// Whether the content was bundled (and then matched the manifest, part by part).
    pub content_verified: bool,
}

/// What one step proves, and who vouches for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Which step.
    pub kind: StepKind,
    /// The recipient concerned (`None` for sending and acceptance, which concern all).
    pub recipient: Option<Address>,
    /// Who signed it; already checked to be the one principal allowed to.
    pub signer: Qualified,
    /// When, by the signer's clock (Unix ms); the signer's certificate was valid then.
    pub at_ms: i64,
    /// Who acted (CONFIRMED / REJECTED).
    pub clerk: String,
    /// Why (REJECTED, NOT_DELIVERED), or a note (CONFIRMED).
    pub reason: String,
}

impl Step {
    /// The step a verified piece of evidence proves.
    pub(super) fn of(ev: &SignedEvidence) -> Self {
        let e = &ev.evidence;
        Step {
            kind: StepKind::Evidence(e.kind),
            recipient: e.recipient.clone(),
            signer: e.required_signer(),
            at_ms: e.at_ms,
            clerk: e.clerk.clone(),
            reason: e.reason.clone(),
        }
    }
}

/// The kinds of step in a bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    /// The sender sealed (signed) the document.
    Sent,
    /// A piece of evidence of this kind.
    Evidence(EvidenceKind),
}

impl StepKind {
    /// Stable lowercase name for output: `sent`, `accepted`, `delivered`, `confirmed`,
    /// `rejected`, `not-delivered` (the same words as the sender's status).
    pub fn name(self) -> &'static str {
        match self {
            StepKind::Sent => "sent",
            StepKind::Evidence(EvidenceKind::Accepted) => "accepted",
            StepKind::Evidence(EvidenceKind::Delivered) => "delivered",
            StepKind::Evidence(EvidenceKind::Confirmed) => "confirmed",
            StepKind::Evidence(EvidenceKind::Rejected) => "rejected",
            StepKind::Evidence(EvidenceKind::NotDelivered) => "not-delivered",
            StepKind::Evidence(EvidenceKind::Refused) => "refused",
            StepKind::Evidence(EvidenceKind::Recall) => "recall",
            StepKind::Evidence(EvidenceKind::Withdrawn) => "withdrawn",
            StepKind::Evidence(EvidenceKind::Recalled) => "recalled",
            StepKind::Evidence(EvidenceKind::RecallAcknowledged) => "recall-acknowledged",
            StepKind::Evidence(EvidenceKind::RecipientAdded) => "recipient-added",
            StepKind::Evidence(EvidenceKind::Reminded) => "reminded",
            StepKind::Evidence(EvidenceKind::Relayed) => "relayed",
        }
    }
}

/// The evidence kind as the proto names it, without the prefix (`DELIVERED`).
pub(super) fn kind_label(kind: EvidenceKind) -> &'static str {
    match kind {
        EvidenceKind::Accepted => "ACCEPTED",
        EvidenceKind::Delivered => "DELIVERED",
        EvidenceKind::Confirmed => "CONFIRMED",
        EvidenceKind::Rejected => "REJECTED",
        EvidenceKind::NotDelivered => "NOT_DELIVERED",
        EvidenceKind::Refused => "REFUSED",
        EvidenceKind::Recall => "RECALL",
        EvidenceKind::Withdrawn => "WITHDRAWN",
        EvidenceKind::Recalled => "RECALLED",
        EvidenceKind::RecallAcknowledged => "RECALL_ACKNOWLEDGED",
        EvidenceKind::RecipientAdded => "RECIPIENT_ADDED",
        EvidenceKind::Reminded => "REMINDED",
        EvidenceKind::Relayed => "RELAYED",
    }
}

/// A bundle that does not verify.
///
/// The message of [`BundleError::Item`] includes its [`Problem`]; the problem is deliberately not
/// also a `source()`, so that `{:#}` chains do not print it twice.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// The file does not start with [`super::MAGIC`].
    #[error(
        "not an evidence bundle: the file does not start with \"EXCHANGE-EVIDENCE-BUNDLE-V1\\n\""
    )]
    BadMagic,
    /// The bytes after the magic are not one encoded `EvidenceBundle`.
    #[error("the bundle does not decode: {0}")]
    Decode(prost::DecodeError),
    /// Bytes that are not part of the bundle message: trailing garbage, fields this version does
    /// not know, or a field given twice.
    #[error(
        "the bundle has {bytes} bytes that are not part of its message (trailing garbage, unknown or repeated fields)"
    )]
    Unaccounted {
        /// How many.
        bytes: usize,
    },
    /// A bundle format this version cannot read.
    #[error("bundle format {0} is not supported (this version reads formats 1, 2 and 3)")]
    Format(u32),
    /// The format does not fit the digest the document names: format 3 is exactly for a
    /// document whose header names another digest than SHA-256, formats 1 and 2 for SHA-256.
    #[error(
        "bundle format {format} does not fit a document whose digests are {digest} (sha256: format 1 or 2; sm3: format 3)"
    )]
    FormatDigest {
        /// The bundle's `format`.
        format: u32,
        /// The header's `digest_algorithm`.
        digest: DigestAlgorithm,
    },
    /// One item of the bundle does not verify.
    #[error("{item}: {problem}")]
    Item {
        /// Which item.
        item: Item,
        /// What is wrong with it.
        problem: Problem,
    },
}

/// An item of a bundle, as errors name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// The signed document (its header and the sender's signature).
    Document,
    /// The hub's acceptance.
    Acceptance,
    /// A piece of evidence in `EvidenceBundle.evidence`.
    Evidence {
        /// Its position, counting from 1.
        number: usize,
        /// Its kind and recipient, if it decodes.
        label: Option<(EvidenceKind, Option<Address>)>,
    },
    /// Bundled content.
    Content {
        /// The part's index in the signed manifest, from 0.
        index: u32,
        /// The part's name, if the manifest has such a part.
        name: Option<String>,
    },
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Item::Document => f.write_str("document header"),
            Item::Acceptance => f.write_str("acceptance"),
            Item::Evidence { number, label } => {
                write!(f, "evidence #{number}")?;
                match label {
                    Some((kind, Some(r))) => write!(f, " ({} for {r})", kind_label(*kind)),
                    Some((kind, None)) => write!(f, " ({})", kind_label(*kind)),
                    None => Ok(()),
                }
            }
            Item::Content { index, name } => {
                write!(f, "content part {index}")?;
                match name {
                    Some(n) => write!(f, " ({n})"),
                    None => Ok(()),
                }
            }
        }
    }
}

/// What is wrong with an item.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// A required item is absent.
    #[error("missing")]
    Missing,
    /// It does not decode, a field is invalid, the signature does not verify (or its
    /// certificate was not valid at the claimed time), or the wrong principal signed it.
    #[error(transparent)]
    Invalid(DocError),
    /// Its claimed time is before 1970, when no certificate can be valid.
    #[error("claims time {0} ms, before 1970")]
    Time(i64),
    /// The acceptance field holds evidence of another kind.
    #[error("is {}, not ACCEPTED", kind_label(*.0))]
    NotAcceptance(EvidenceKind),
    /// The hub's verdict (ACCEPTED or REFUSED) in the evidence list: it belongs in the
    /// acceptance field, once.
    #[error("{} evidence belongs in the acceptance field", kind_label(*.0))]
    ExtraAcceptance(EvidenceKind),
    /// A statement after the hub's REFUSED verdict: a refused document went no further.
    #[error("follows the hub's REFUSED verdict (a refused document goes no further)")]
    AfterRefusal,
    /// It names another document, or another version of this one.
    #[error("is about another document ({doc_id}, header digest {header_digest})")]
    OtherDocument {
        /// The document it names.
        doc_id: DocumentId,
        /// The header digest it names.
        header_digest: Digest,
    },
    /// It names another sender than the document's.
    #[error("names {0} as the sender, who did not send this document")]
    WrongSender(DeptId),
    /// It concerns a department the document was not addressed to.
    #[error("{0} is not a recipient of the document")]
    NotRecipient(Address),
    /// Content for a part the manifest does not have.
    #[error("the signed manifest has no such part")]
    NoSuchPart,
    /// Content for a part given twice.
    #[error("appears twice")]
    Duplicate,
    /// Content of some parts is bundled, but not of this one.
    #[error("missing (the bundle carries the content of other parts)")]
    MissingPart,
    /// The content has another size than the signed manifest says.
    #[error("{actual} bytes, but the signed manifest says {expected}")]
    Size {
        /// Bytes bundled.
        actual: u64,
        /// Bytes signed.
        expected: u64,
    },
    /// The content's digest (under the header's algorithm) is not the one signed.
    #[error("{} does not match the signed manifest", digest_label(*.0))]
    Digest(DigestAlgorithm),
    /// The content could not be hashed (the crypto module failed).
    #[error("hashing the content: {0}")]
    Crypto(String),
}
