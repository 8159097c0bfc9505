//! The official document (公文) as the exchange understands it: a validated header, its
//! signature, and the evidence of each step.
//!
//! The exchange routes on a handful of header fields (id, sender, recipients, urgency,
//! classification, content manifest); those are typed here. The other GB/T 33480 metadata
//! (document number, issuers, dates, ...) is validated for size and carried as signed, in
//! `metadata`, without interpretation.

use exchange_proto::v1 as pb;

use crate::{
    crypto::DigestAlgorithm,
    identity::{Principal, Qualified},
    ids::{Address, DeptId, DocumentId, ExchangeName},
    signing::{BatchSigner, Context, Digest, SignError, SigningKey, Trust, Verifier},
};

/// Limits on what a header may carry. Refusals name the field and the limit.
pub mod limits {
    /// Characters in a title.
    pub const TITLE_CHARS: usize = 500;
    /// Characters in any other text field.
    pub const TEXT_CHARS: usize = 2000;
    /// Entries in a list of names (issuers, organ marks, signing organs).
    pub const LIST_ENTRIES: usize = 64;
    /// Recipients (主送 + 抄送) of one document.
    pub const RECIPIENTS: usize = 5000;
    /// Content parts of one document.
    pub const PARTS: usize = 100;
    /// Characters in a part's file name or media type.
    pub const NAME_CHARS: usize = 255;
    /// Characters in a clerk's name.
    pub const CLERK_CHARS: usize = 100;
    /// Bytes of content a `Submit` or a delivery may carry inline (all parts together): a
    /// document this small travels in the one message, without `PutBlob` and `GetBlob`.
    pub const INLINE_BYTES: u64 = 256 * 1024;
    /// Documents in one `SubmitBatch` call (node → hub).
    pub const SUBMIT_BATCH: usize = 64;
    /// Encoded bytes of pushes the hub puts in one `HubPush.batch` (v1.4) before it starts
    /// another message: a batch of small documents with their inline content stays far below
    /// the 8 MiB message limit (one push may still be up to that limit, alone).
    pub const PUSH_BATCH_BYTES: usize = 1024 * 1024;
}

/// A header or evidence field is missing, malformed or over a limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    /// The field, as named in the proto (e.g. `metadata.title`).
    pub field: String,
    /// What is wrong, with the limit where there is one.
    pub reason: String,
}

impl FieldError {
    /// A refusal of `field`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Why a signed document or evidence is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DocError {
    /// The encoded header or evidence is not valid protobuf.
    #[error("{0} is not a valid encoded message")]
    Decode(&'static str),
    /// A field is wrong.
    #[error(transparent)]
    Field(#[from] FieldError),
    /// The signature is missing or does not verify.
    #[error(transparent)]
    Signature(#[from] SignError),
    /// The signer must belong to an exchange whose CA is not known here.
    #[error(
        "no CA is configured for exchange {0}, whose signature this is ([[peers]] or [[exchanges]] in hub.toml)"
    )]
    UnknownExchange(ExchangeName),
    /// Signed by someone other than who must sign it.
    #[error("signed by {signer}, but only {expected} may sign it")]
    WrongSigner {
        /// Who signed.
        signer: Box<Qualified>,
        /// Who must.
        expected: Box<Qualified>,
    },
}

/// 紧急程度. Ordered by how soon it must go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Urgency {
    /// 平件.
    Normal,
    /// 加急.
    Urgent,
    /// 特急.
    VeryUrgent,
    /// 平急 (telegram level; ranks with urgent).
    Pingji,
    /// 特提 (telegram level; ranks with very urgent).
    Teti,
}

impl Urgency {
    /// Queue priority: 0 goes first.
    pub fn priority(self) -> u8 {
        match self {
            Urgency::VeryUrgent | Urgency::Teti => 0,
            Urgency::Urgent | Urgency::Pingji => 1,
            Urgency::Normal => 2,
        }
    }

    /// The Chinese label clerks know.
    pub fn label(self) -> &'static str {
        match self {
            Urgency::Normal => "平件",
            Urgency::Urgent => "加急",
            Urgency::VeryUrgent => "特急",
            Urgency::Pingji => "平急",
            Urgency::Teti => "特提",
        }
    }

    /// The stable machine name used in `--json` output and CLI flags.
    pub fn name(self) -> &'static str {
        match self {
            Urgency::Normal => "normal",
            Urgency::Urgent => "urgent",
            Urgency::VeryUrgent => "very-urgent",
            Urgency::Pingji => "pingji",
            Urgency::Teti => "teti",
        }
    }
}

/// 密级.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Classification {
    /// 非密.
    Unclassified,
    /// 秘密.
    Secret,
    /// 机密.
    Confidential,
    /// 绝密.
    TopSecret,
}

impl Classification {
    /// Why 机密 and 绝密 are refused, by every node and hub whatever its config.
    pub const NEVER_TRAVELS: &str =
        "metadata.classification: 机密 and 绝密 documents never travel on this network";

    /// 机密 and 绝密: never sent on this network (a hub may allow 秘密, `[hub] allow_classified`).
    pub fn never_travels(self) -> bool {
        self >= Classification::Confidential
    }
}

/// 主送 or 抄送.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecipientRole {
    /// 主送.
    Main,
    /// 抄送.
    Cc,
}

impl RecipientRole {
    /// `main` or `cc`.
    pub fn name(self) -> &'static str {
        match self {
            RecipientRole::Main => "main",
            RecipientRole::Cc => "cc",
        }
    }
}

/// One addressee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The department, as the header names it: bare for a department of the document's own
    /// exchange (the sender's), `dept@exchange` for one of a linked exchange.
    pub addr: Address,
    /// 主送 or 抄送.
    pub role: RecipientRole,
}

/// One entry of the content manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartInfo {
    /// 正文 or 附件.
    pub role: pb::PartRole,
    /// File name.
    pub name: String,
    /// Media type.
    pub media_type: String,
    /// Size in bytes.
    pub size: u64,
    /// The content's digest under the header's [`Header::digest`] (the wire field keeps its
    /// first name, `sha256`).
    pub sha256: Digest,
}

/// A validated document header.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    /// 公文标识.
    pub id: DocumentId,
    /// The sending department.
    pub sender: DeptId,
    /// When the sending node sealed it (Unix ms).
    pub created_at_ms: i64,
    /// The algorithm of every part digest and of the header digest (`digest_algorithm` on the
    /// wire; absent = SHA-256).
    pub digest: DigestAlgorithm,
    /// 紧急程度.
    pub urgency: Urgency,
    /// 密级.
    pub classification: Classification,
    /// 标题.
    pub title: String,
    /// 主送 then 抄送, no department twice.
    pub recipients: Vec<Recipient>,
    /// The content manifest, body first.
    pub parts: Vec<PartInfo>,
    /// All descriptive metadata as signed (including the fields typed above).
    pub metadata: pb::DocumentMetadata,
}

impl Header {
    /// Total content size (saturating: sizes are the sender's claims, and parts of 2^64 − 1 and
    /// 2 bytes must not add up to 1).
    pub fn total_size(&self) -> u64 {
        self.parts
            .iter()
            .fold(0u64, |total, p| total.saturating_add(p.size))
    }

    /// The role of `addr` among the recipients, if it is one.
    pub fn role_of(&self, addr: &Address) -> Option<RecipientRole> {
        self.recipients
            .iter()
            .find(|r| &r.addr == addr)
            .map(|r| r.role)
    }

    /// The role of `dept` of the sender's own exchange among the recipients, if it is one.
    pub fn role_of_local(&self, dept: &DeptId) -> Option<RecipientRole> {
        self.recipients
            .iter()
            .find(|r| r.addr.exchange.is_none() && &r.addr.dept == dept)
            .map(|r| r.role)
    }
}

/// A signed document whose header has been validated.
#[derive(Debug, Clone)]
pub struct SignedDoc {
    /// The validated header.
    pub header: Header,
    /// The digest of the encoded header under [`Header::digest`] (SHA-256, or SM3 under the
    /// shangmi profile): the document's name in all evidence.
    pub digest: Digest,
    /// As signed and sent.
    pub wire: pb::SignedDocument,
}

impl SignedDoc {
    /// Validates `header`, encodes and signs it. Its `digest_algorithm` must be the key's
    /// scheme's (see [`SignedDoc::digest_algorithm_for`]).
    pub fn seal(header: &pb::DocumentHeader, key: &SigningKey) -> Result<Self, DocError> {
        let mut doc = Self::unsigned(header, key.scheme().digest())?;
        doc.wire.signature = Some(key.sign(Context::DocumentHeader, &doc.wire.header)?);
        Ok(doc)
    }

    /// As [`SignedDoc::seal`], signed together with whatever else `signer` has waiting (one
    /// batch signature, see [`BatchSigner`]). The header is validated before it is signed.
    pub async fn seal_batched(
        header: &pb::DocumentHeader,
        signer: &BatchSigner,
    ) -> Result<Self, DocError> {
        let mut doc = Self::unsigned(header, signer.key().scheme().digest())?;
        let signature = signer
            .sign(Context::DocumentHeader, &doc.wire.header)
            .await?;
        doc.wire.signature = Some(signature);
        Ok(doc)
    }

    /// `header` encoded and validated, not signed yet; it must name `key_digest`, the signing
    /// key's (checked before anything is hashed with it).
    fn unsigned(
        header: &pb::DocumentHeader,
        key_digest: DigestAlgorithm,
    ) -> Result<Self, DocError> {
        let wire = pb::SignedDocument {
            header: prost::Message::encode_to_vec(header),
            signature: None,
        };
        let parsed = Self::parse(&wire)?;
        check_algorithm(parsed.digest, key_digest)?;
        Self::digested(parsed, wire)
    }

    /// The `digest_algorithm` a header sealed by `key` carries, and the algorithm its parts are
    /// hashed with: the key's scheme's digest. Empty for SHA-256, so that an international
    /// header is byte for byte what it was before the field existed.
    pub fn digest_algorithm_for(key: &SigningKey) -> (DigestAlgorithm, String) {
        let alg = key.scheme().digest();
        (alg, crate::convert::digest_algorithm_field(alg))
    }

    /// Decodes and validates without checking the signature: for documents read back from this
    /// process's own store, which were verified before they were stored. The header digest is
    /// computed with the algorithm the header names.
    pub fn decode(wire: pb::SignedDocument) -> Result<Self, DocError> {
        let header = Self::parse(&wire)?;
        Self::digested(header, wire)
    }

    fn parse(wire: &pb::SignedDocument) -> Result<Header, DocError> {
        let pbh: pb::DocumentHeader = prost::Message::decode(wire.header.as_slice())
            .map_err(|_| DocError::Decode("header"))?;
        Ok(Header::try_from(pbh)?)
    }

    fn digested(header: Header, wire: pb::SignedDocument) -> Result<Self, DocError> {
        let digest = Digest::with(header.digest, &wire.header).map_err(|e| {
            FieldError::new("header.digest_algorithm", format!("{}: {e}", header.digest))
        })?;
        Ok(SignedDoc {
            header,
            digest,
            wire,
        })
    }

    /// Decodes, validates, and checks that the header's sender signed it with a valid
    /// document-signing certificate of this exchange, and that it names this exchange's digest
    /// (the verifier's profile's): a header naming another is refused before anything is
    /// hashed with it.
    pub fn verify(
        wire: pb::SignedDocument,
        verifier: &Verifier,
        now_secs: u64,
    ) -> Result<Self, DocError> {
        let sig = wire
            .signature
            .clone()
            .ok_or_else(|| FieldError::new("signature", "missing"))?;
        let header = Self::parse(&wire)?;
        check_profile_digest(header.digest, verifier)?;
        let doc = Self::digested(header, wire)?;
        let signer = Qualified::local(verifier.verify(
            &sig,
            Context::DocumentHeader,
            &doc.wire.header,
            now_secs,
        )?);
        let expected = Qualified::local(Principal::Dept(doc.header.sender.clone()));
        if signer != expected {
            return Err(DocError::WrongSigner {
                signer: Box::new(signer),
                expected: Box::new(expected),
            });
        }
        Ok(doc)
    }
}

impl SignedDoc {
    /// [`SignedDoc::verify`] for a document of exchange `origin` (`None`: this exchange's own):
    /// the sender's signature is checked against `origin`'s CA in `trust`.
    pub fn verify_from(
        wire: pb::SignedDocument,
        trust: &Trust,
        origin: Option<&ExchangeName>,
        now_secs: u64,
    ) -> Result<Self, DocError> {
        Self::verify(wire, &verifier_for(trust, origin)?, now_secs)
    }
}

/// The verifier of `exchange`'s principals (`None`: this exchange's).
fn verifier_for(trust: &Trust, exchange: Option<&ExchangeName>) -> Result<Verifier, DocError> {
    match exchange {
        None => Ok(trust.own().clone()),
        Some(e) => trust
            .verifier(Some(e))
            .ok_or_else(|| DocError::UnknownExchange(e.clone())),
    }
}

/// Refuses a header whose `digest_algorithm` is not `verifier`'s exchange's (its CA's
/// profile's), naming the field and both algorithms.
pub fn check_profile_digest(named: DigestAlgorithm, verifier: &Verifier) -> Result<(), FieldError> {
    let profile = verifier.profile();
    if named == profile.digest() {
        return Ok(());
    }
    Err(FieldError::new(
        "header.digest_algorithm",
        format!(
            "{named} is not this exchange's ({profile} uses {})",
            profile.digest()
        ),
    ))
}

/// Refuses to seal a header naming another digest than the signing key's scheme uses.
fn check_algorithm(named: DigestAlgorithm, key: DigestAlgorithm) -> Result<(), FieldError> {
    if named == key {
        return Ok(());
    }
    Err(FieldError::new(
        "header.digest_algorithm",
        format!("{named} is not the signing key's digest ({key})"),
    ))
}

/// The kind of step a piece of evidence records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EvidenceKind {
    /// The hub accepted the document.
    Accepted,
    /// The document is on the recipient's disk.
    Delivered,
    /// 签收.
    Confirmed,
    /// 退回.
    Rejected,
    /// The recipient node refused the delivery, or it expired (recorded and signed by the hub).
    NotDelivered,
    /// The hub refused the document at submission (signed by the hub).
    Refused,
    /// 撤回: the sender recalls the document (signed by the sender, no recipient).
    Recall,
    /// The recall reached the recipient before the document did (signed by the hub).
    Withdrawn,
    /// The recipient held it unsigned-for and marked it recalled (signed by the recipient).
    Recalled,
    /// The recipient had signed for it and a clerk acknowledged the recall (signed by the
    /// recipient).
    RecallAcknowledged,
    /// 补发: the sender added the recipient after sending (signed by the sender).
    RecipientAdded,
    /// 催办: the sender reminds the recipient (signed by the sender).
    Reminded,
    /// The hub of a linked exchange took custody of the document from a peer hub (signed by
    /// that hub; docs/federation.md). It moves no delivery.
    Relayed,
}

impl EvidenceKind {
    /// A small stable number for store keys.
    pub fn code(self) -> u8 {
        match self {
            EvidenceKind::Accepted => 1,
            EvidenceKind::Delivered => 2,
            EvidenceKind::Confirmed => 3,
            EvidenceKind::Rejected => 4,
            EvidenceKind::NotDelivered => 5,
            EvidenceKind::Refused => 6,
            EvidenceKind::Recall => 7,
            EvidenceKind::Withdrawn => 8,
            EvidenceKind::Recalled => 9,
            EvidenceKind::RecallAcknowledged => 10,
            EvidenceKind::RecipientAdded => 11,
            EvidenceKind::Reminded => 12,
            EvidenceKind::Relayed => 13,
        }
    }

    /// A statement the document's sender makes (and signs) about its own document.
    pub fn is_senders(self) -> bool {
        matches!(
            self,
            EvidenceKind::Recall | EvidenceKind::RecipientAdded | EvidenceKind::Reminded
        )
    }
}

/// One signed step of a document's journey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    /// What happened.
    pub kind: EvidenceKind,
    /// Which document.
    pub doc_id: DocumentId,
    /// The digest of its signed header, under the algorithm the header names.
    pub header_digest: Digest,
    /// Its sender.
    pub sender: DeptId,
    /// The recipient concerned (`None` only for `Accepted`), as the document's header names it.
    pub recipient: Option<Address>,
    /// When (signer's clock, Unix ms).
    pub at_ms: i64,
    /// Who acted (confirm / reject).
    pub clerk: String,
    /// Why (reject, recall), or a note (confirm, remind).
    pub reason: String,
    /// `RecipientAdded`: added as 抄送 rather than 主送.
    pub cc: bool,
    /// `Relayed`: who took custody, from whom, for which recipients.
    pub relay: Option<Relay>,
    /// `NotDelivered` signed by a hub of a linked exchange that held custody of the document and
    /// gave up on this recipient (it expired in that hub's queue towards the recipient): that
    /// exchange. `None`: the recipient's own hub signed.
    pub custodian: Option<ExchangeName>,
}

/// What a RELAYED statement says besides the document: the exchange whose hub took custody
/// (and signed), the exchange it took it from, and the recipients it is now responsible for
/// (as the header names them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relay {
    /// The exchange whose hub signed.
    pub hub: ExchangeName,
    /// The exchange it took custody from.
    pub from: ExchangeName,
    /// The recipients it took custody for.
    pub to: Vec<Address>,
}

impl Evidence {
    /// Evidence of `kind` about `doc`.
    pub fn about(
        doc: &SignedDoc,
        kind: EvidenceKind,
        recipient: Option<Address>,
        at_ms: i64,
    ) -> Self {
        Evidence {
            kind,
            doc_id: doc.header.id,
            header_digest: doc.digest,
            sender: doc.header.sender.clone(),
            recipient,
            at_ms,
            clerk: String::new(),
            reason: String::new(),
            cc: false,
            relay: None,
            custodian: None,
        }
    }

    /// Who must sign evidence of this kind: the sender for its own statements, the hub that
    /// holds the recipient for the hub's (the document's own hub for ACCEPTED and REFUSED),
    /// the recipient for the rest, each of the exchange the header names it in.
    pub fn required_signer(&self) -> Qualified {
        let exchange = self.recipient.as_ref().and_then(|r| r.exchange.clone());
        if let Some(relay) = &self.relay {
            return Qualified {
                exchange: Some(relay.hub.clone()),
                principal: Principal::Hub,
            };
        }
        if let (EvidenceKind::NotDelivered, Some(c)) = (&self.kind, &self.custodian) {
            return Qualified {
                exchange: Some(c.clone()),
                principal: Principal::Hub,
            };
        }
        match (&self.kind, &self.recipient) {
            (kind, _) if kind.is_senders() => {
                Qualified::local(Principal::Dept(self.sender.clone()))
            }
            (EvidenceKind::Accepted | EvidenceKind::Refused, _) | (_, None) => {
                Qualified::local(Principal::Hub)
            }
            (EvidenceKind::NotDelivered | EvidenceKind::Withdrawn, _) => Qualified {
                exchange,
                principal: Principal::Hub,
            },
            (_, Some(r)) => Qualified {
                exchange,
                principal: Principal::Dept(r.dept.clone()),
            },
        }
    }
}

/// Evidence with its signature.
#[derive(Debug, Clone)]
pub struct SignedEvidence {
    /// The statement.
    pub evidence: Evidence,
    /// As signed and sent.
    pub wire: pb::SignedEvidence,
}

impl SignedEvidence {
    /// Encodes and signs `evidence`. Fails only if the crypto module does.
    pub fn seal(evidence: Evidence, key: &SigningKey) -> Result<Self, SignError> {
        let bytes = prost::Message::encode_to_vec(&pb::Evidence::from(&evidence));
        let signature = key.sign(Context::Evidence, &bytes)?;
        Ok(SignedEvidence {
            evidence,
            wire: pb::SignedEvidence {
                evidence: bytes,
                signature: Some(signature),
            },
        })
    }

    /// As [`SignedEvidence::seal`], signed together with whatever else `signer` has waiting
    /// (one batch signature, see [`BatchSigner`]).
    pub async fn seal_batched(evidence: Evidence, signer: &BatchSigner) -> Result<Self, SignError> {
        let bytes = prost::Message::encode_to_vec(&pb::Evidence::from(&evidence));
        let signature = signer.sign(Context::Evidence, &bytes).await?;
        Ok(SignedEvidence {
            evidence,
            wire: pb::SignedEvidence {
                evidence: bytes,
                signature: Some(signature),
            },
        })
    }

    /// Decodes and validates without checking the signature (this process's own store).
    pub fn decode(wire: pb::SignedEvidence) -> Result<Self, DocError> {
        let pbe: pb::Evidence = prost::Message::decode(wire.evidence.as_slice())
            .map_err(|_| DocError::Decode("evidence"))?;
        Ok(SignedEvidence {
            evidence: Evidence::try_from(pbe)?,
            wire,
        })
    }

    /// Decodes, validates and checks that the right principal of this exchange signed it.
    pub fn verify(
        wire: pb::SignedEvidence,
        verifier: &Verifier,
        now_secs: u64,
    ) -> Result<Self, DocError> {
        Self::verify_by(wire, now_secs, |exchange| match exchange {
            None => Ok(std::borrow::Cow::Borrowed(verifier)),
            Some(e) => Err(DocError::UnknownExchange(e.clone())),
        })
    }

    /// [`SignedEvidence::verify`] for evidence about a document of exchange `origin` (`None`:
    /// this exchange's own): the signature is checked against the CA of the exchange its
    /// required signer belongs to (the recipient's, the relaying hub's, or `origin`'s).
    pub fn verify_in(
        wire: pb::SignedEvidence,
        trust: &Trust,
        origin: Option<&ExchangeName>,
        now_secs: u64,
    ) -> Result<Self, DocError> {
        Self::verify_by(wire, now_secs, |exchange| {
            verifier_for(trust, exchange.or(origin)).map(std::borrow::Cow::Owned)
        })
    }

    /// The one check behind both: `pick` gives the verifier of the exchange the required
    /// signer belongs to (`None`: the document's own).
    fn verify_by<'v>(
        wire: pb::SignedEvidence,
        now_secs: u64,
        pick: impl FnOnce(Option<&ExchangeName>) -> Result<std::borrow::Cow<'v, Verifier>, DocError>,
    ) -> Result<Self, DocError> {
        let sig = wire
            .signature
            .clone()
            .ok_or_else(|| FieldError::new("signature", "missing"))?;
        let ev = Self::decode(wire)?;
        let expected = ev.evidence.required_signer();
        let verifier = pick(expected.exchange.as_ref())?;
        let principal = verifier.verify(&sig, Context::Evidence, &ev.wire.evidence, now_secs)?;
        let signer = Qualified {
            exchange: expected.exchange.clone(),
            principal,
        };
        if signer != expected {
            return Err(DocError::WrongSigner {
                signer: Box::new(signer),
                expected: Box::new(expected),
            });
        }
        Ok(ev)
    }

    /// Whether this evidence is about `doc` (same id and header digest).
    pub fn is_about(&self, doc: &SignedDoc) -> bool {
        self.evidence.doc_id == doc.header.id && self.evidence.header_digest == doc.digest
    }
}
