//! Conversions between the wire types (`exchange_proto::v1`) and the domain types: the only
//! place that sees both. Validation happens here, once, as data enters.

use std::collections::HashSet;

use exchange_proto::v1 as pb;

use crate::{
    crypto::DigestAlgorithm,
    document::{
        Classification, Evidence, EvidenceKind, FieldError, Header, PartInfo, Recipient,
        RecipientRole, Relay, Urgency, limits,
    },
    ids::{Address, DeptId, DocumentId, ExchangeName},
    signing::Digest,
};

/// The header format this version writes and reads.
pub const HEADER_FORMAT: u32 = 1;
/// The evidence format this version writes and reads.
pub const EVIDENCE_FORMAT: u32 = 1;

/// The digest algorithm a header's `digest_algorithm` names: empty (absent) is SHA-256, so that
/// every header sealed before the field existed, and every international header, reads as it
/// always did.
pub fn header_digest_algorithm(name: &str) -> Result<DigestAlgorithm, FieldError> {
    if name.is_empty() {
        return Ok(DigestAlgorithm::Sha256);
    }
    name.parse().map_err(|e: crate::crypto::CryptoError| {
        FieldError::new("header.digest_algorithm", e.to_string())
    })
}

/// The `digest_algorithm` a header is sealed with: empty for SHA-256 (the international
/// profile's bytes stay exactly as before the field existed), else the algorithm's name.
pub fn digest_algorithm_field(alg: DigestAlgorithm) -> String {
    match alg {
        DigestAlgorithm::Sha256 => String::new(),
        other => other.name().to_owned(),
    }
}

impl From<pb::Urgency> for Urgency {
    fn from(u: pb::Urgency) -> Self {
        match u {
            pb::Urgency::Normal => Urgency::Normal,
            pb::Urgency::Urgent => Urgency::Urgent,
            pb::Urgency::VeryUrgent => Urgency::VeryUrgent,
            pb::Urgency::Pingji => Urgency::Pingji,
            pb::Urgency::Teti => Urgency::Teti,
        }
    }
}

impl From<Urgency> for pb::Urgency {
    fn from(u: Urgency) -> Self {
        match u {
            Urgency::Normal => pb::Urgency::Normal,
            Urgency::Urgent => pb::Urgency::Urgent,
            Urgency::VeryUrgent => pb::Urgency::VeryUrgent,
            Urgency::Pingji => pb::Urgency::Pingji,
            Urgency::Teti => pb::Urgency::Teti,
        }
    }
}

impl From<pb::Classification> for Classification {
    fn from(c: pb::Classification) -> Self {
        match c {
            pb::Classification::Unclassified => Classification::Unclassified,
            pb::Classification::Secret => Classification::Secret,
            pb::Classification::Confidential => Classification::Confidential,
            pb::Classification::TopSecret => Classification::TopSecret,
        }
    }
}

impl From<RecipientRole> for pb::RecipientRole {
    fn from(r: RecipientRole) -> Self {
        match r {
            RecipientRole::Main => pb::RecipientRole::Main,
            RecipientRole::Cc => pb::RecipientRole::Cc,
        }
    }
}

fn enum_field<T: TryFrom<i32>>(field: &str, v: i32) -> Result<T, FieldError> {
    T::try_from(v).map_err(|_| FieldError::new(field, format!("unknown value {v}")))
}

/// Checks a free-text field: at most `max` characters, no control characters but newline and tab.
pub fn validate_text(field: &str, s: &str, max: usize) -> Result<(), FieldError> {
    let n = s.chars().count();
    if n > max {
        return Err(FieldError::new(
            field,
            format!("{n} characters, at most {max} allowed"),
        ));
    }
    if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(FieldError::new(field, "contains control characters"));
    }
    Ok(())
}

/// `text` from elsewhere (a node's refusal, a peer hub's status message, an error quoting a
/// request) made fit for a free-text field of signed evidence: each control character replaced
/// with a space, then cut to `max` characters. Evidence sealed with a field [`validate_text`]
/// refuses would verify nowhere, and its recipient would never learn of it. Newline and tab,
/// which `validate_text` allows, go too: such a text is also logged and audited as one line.
pub fn one_line_text(text: &str, max: usize) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect()
}

fn list(field: &str, items: &[String]) -> Result<(), FieldError> {
    if items.len() > limits::LIST_ENTRIES {
        return Err(FieldError::new(
            field,
            format!(
                "{} entries, at most {} allowed",
                items.len(),
                limits::LIST_ENTRIES
            ),
        ));
    }
    items
        .iter()
        .try_for_each(|s| validate_text(field, s, limits::TEXT_CHARS))
}

fn date(field: &str, s: &str) -> Result<(), FieldError> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    if s.is_empty() || time::Date::parse(s, &fmt).is_ok() {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!("{s:?} is not a date in the form YYYY-MM-DD"),
        ))
    }
}

/// Validates the descriptive metadata and resolves its recipients (主送 first, then 抄送).
pub fn validate_metadata(m: &pb::DocumentMetadata) -> Result<Vec<Recipient>, FieldError> {
    if m.title.trim().is_empty() {
        return Err(FieldError::new("metadata.title", "required"));
    }
    validate_text("metadata.title", &m.title, limits::TITLE_CHARS)?;
    for (field, s) in [
        ("metadata.copy_number", &m.copy_number),
        ("metadata.classification_period", &m.classification_period),
        ("metadata.doc_number", &m.doc_number),
        ("metadata.main_recipients_text", &m.main_recipients_text),
        ("metadata.cc_text", &m.cc_text),
        ("metadata.attachment_note", &m.attachment_note),
        ("metadata.notes", &m.notes),
        ("metadata.printing_organ", &m.printing_organ),
        ("metadata.publication_level", &m.publication_level),
    ] {
        validate_text(field, s, limits::TEXT_CHARS)?;
    }
    list("metadata.issuing_organ_marks", &m.issuing_organ_marks)?;
    list("metadata.issuers", &m.issuers)?;
    list("metadata.signing_organs", &m.signing_organs)?;
    date("metadata.document_date", &m.document_date)?;
    date("metadata.printing_date", &m.printing_date)?;
    enum_field::<pb::DocumentType>("metadata.doc_type", m.doc_type)?;
    enum_field::<pb::Urgency>("metadata.urgency", m.urgency)?;
    enum_field::<pb::Classification>("metadata.classification", m.classification)?;
    // Links to another document (答复, 转发): empty, or a document id.
    for (field, link) in [
        ("metadata.in_reply_to", &m.in_reply_to),
        ("metadata.forwarded_from", &m.forwarded_from),
    ] {
        if !link.is_empty() {
            link.parse::<DocumentId>()
                .map_err(|e: crate::ids::IdError| FieldError::new(field, e.to_string()))?;
        }
    }
    if m.reply_deadline_ms < 0 {
        return Err(FieldError::new(
            "metadata.reply_deadline_ms",
            "must be 0 (none) or a Unix time in ms",
        ));
    }
    let total = m.to_depts.len() + m.cc_depts.len();
    if total == 0 {
        return Err(FieldError::new(
            "metadata.to_depts",
            "at least one recipient is required",
        ));
    }
    if total > limits::RECIPIENTS {
        return Err(FieldError::new(
            "metadata.to_depts",
            format!("{total} recipients, at most {} allowed", limits::RECIPIENTS),
        ));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(total);
    for (field, ids, role) in [
        ("metadata.to_depts", &m.to_depts, RecipientRole::Main),
        ("metadata.cc_depts", &m.cc_depts, RecipientRole::Cc),
    ] {
        for id in ids {
            let addr: Address = id
                .parse()
                .map_err(|e: crate::ids::IdError| FieldError::new(field, e.to_string()))?;
            if !seen.insert(addr.clone()) {
                return Err(FieldError::new(
                    field,
                    format!("department {addr} is named twice"),
                ));
            }
            out.push(Recipient { addr, role });
        }
    }
    Ok(out)
}

/// Validates one manifest entry.
pub fn validate_part_spec(
    field: &str,
    role: i32,
    name: &str,
    media_type: &str,
) -> Result<pb::PartRole, FieldError> {
    let role: pb::PartRole = enum_field(&format!("{field}.role"), role)?;
    if role == pb::PartRole::Unspecified {
        return Err(FieldError::new(
            format!("{field}.role"),
            "must be BODY or ATTACHMENT",
        ));
    }
    if name.trim().is_empty() {
        return Err(FieldError::new(format!("{field}.name"), "required"));
    }
    if name.contains(['/', '\\', '\0']) || name == "." || name == ".." {
        return Err(FieldError::new(
            format!("{field}.name"),
            "must be a plain file name (no path separators)",
        ));
    }
    validate_text(&format!("{field}.name"), name, limits::NAME_CHARS)?;
    validate_text(
        &format!("{field}.media_type"),
        media_type,
        limits::NAME_CHARS,
    )?;
    Ok(role)
}

impl TryFrom<pb::DocumentHeader> for Header {
    type Error = FieldError;

    fn try_from(h: pb::DocumentHeader) -> Result<Self, FieldError> {
        if h.format != HEADER_FORMAT {
            return Err(FieldError::new(
                "header.format",
                format!(
                    "version {} is not supported (expected {HEADER_FORMAT})",
                    h.format
                ),
            ));
        }
        let digest = header_digest_algorithm(&h.digest_algorithm)?;
        let id: DocumentId =
            h.id.parse()
                .map_err(|e: crate::ids::IdError| FieldError::new("header.id", e.to_string()))?;
        let sender: DeptId = h
            .sender
            .parse()
            .map_err(|e: crate::ids::IdError| FieldError::new("header.sender", e.to_string()))?;
        let metadata = h
            .metadata
            .ok_or_else(|| FieldError::new("header.metadata", "required"))?;
        let recipients = validate_metadata(&metadata)?;
        if recipients
            .iter()
            .any(|r| r.addr.exchange.is_none() && r.addr.dept == sender)
        {
            return Err(FieldError::new(
                "metadata.to_depts",
                "a department cannot send to itself",
            ));
        }
        if h.parts.is_empty() || h.parts.len() > limits::PARTS {
            return Err(FieldError::new(
                "header.parts",
                format!("{} parts; 1 to {} allowed", h.parts.len(), limits::PARTS),
            ));
        }
        let mut parts = Vec::with_capacity(h.parts.len());
        for (i, p) in h.parts.into_iter().enumerate() {
            let field = format!("header.parts[{i}]");
            let role = validate_part_spec(&field, p.role, &p.name, &p.media_type)?;
            let sha256 = Digest::from_slice(&p.sha256)
                .ok_or_else(|| FieldError::new(format!("{field}.sha256"), "must be 32 bytes"))?;
            parts.push(PartInfo {
                role,
                name: p.name,
                media_type: p.media_type,
                size: p.size,
                sha256,
            });
        }
        Ok(Header {
            id,
            sender,
            created_at_ms: h.created_at_ms,
            digest,
            urgency: pb::Urgency::try_from(metadata.urgency)
                .unwrap_or_default()
                .into(),
            classification: pb::Classification::try_from(metadata.classification)
                .unwrap_or_default()
                .into(),
            title: metadata.title.clone(),
            recipients,
            parts,
            metadata,
        })
    }
}

impl From<&PartInfo> for pb::Part {
    fn from(p: &PartInfo) -> Self {
        pb::Part {
            role: p.role.into(),
            name: p.name.clone(),
            media_type: p.media_type.clone(),
            size: p.size,
            sha256: p.sha256.0.to_vec(),
        }
    }
}

impl From<EvidenceKind> for pb::EvidenceKind {
    fn from(k: EvidenceKind) -> Self {
        match k {
            EvidenceKind::Accepted => pb::EvidenceKind::Accepted,
            EvidenceKind::Delivered => pb::EvidenceKind::Delivered,
            EvidenceKind::Confirmed => pb::EvidenceKind::Confirmed,
            EvidenceKind::Rejected => pb::EvidenceKind::Rejected,
            EvidenceKind::NotDelivered => pb::EvidenceKind::NotDelivered,
            EvidenceKind::Refused => pb::EvidenceKind::Refused,
            EvidenceKind::Recall => pb::EvidenceKind::Recall,
            EvidenceKind::Withdrawn => pb::EvidenceKind::Withdrawn,
            EvidenceKind::Recalled => pb::EvidenceKind::Recalled,
            EvidenceKind::RecallAcknowledged => pb::EvidenceKind::RecallAcknowledged,
            EvidenceKind::RecipientAdded => pb::EvidenceKind::RecipientAdded,
            EvidenceKind::Reminded => pb::EvidenceKind::Reminded,
            EvidenceKind::Relayed => pb::EvidenceKind::Relayed,
        }
    }
}

impl From<&Evidence> for pb::Evidence {
    fn from(e: &Evidence) -> Self {
        pb::Evidence {
            format: EVIDENCE_FORMAT,
            kind: pb::EvidenceKind::from(e.kind).into(),
            doc_id: e.doc_id.to_string(),
            header_digest: e.header_digest.0.to_vec(),
            sender: e.sender.to_string(),
            recipient: e
                .recipient
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            at_ms: e.at_ms,
            clerk: e.clerk.clone(),
            reason: e.reason.clone(),
            cc: e.cc,
            relay_hub: e
                .relay
                .as_ref()
                .map(|r| &r.hub)
                .or(e.custodian.as_ref())
                .map(ToString::to_string)
                .unwrap_or_default(),
            relay_from: e
                .relay
                .as_ref()
                .map(|r| r.from.to_string())
                .unwrap_or_default(),
            relay_to: e
                .relay
                .iter()
                .flat_map(|r| r.to.iter().map(ToString::to_string))
                .collect(),
        }
    }
}

/// RELAYED's fields: all three set (at least one recipient) for RELAYED; for NOT_DELIVERED
/// `relay_hub` alone may name the custodian that gave up; none for any other kind.
fn relay_fields(
    kind: EvidenceKind,
    hub: String,
    from: String,
    to: Vec<String>,
) -> Result<(Option<Relay>, Option<ExchangeName>), FieldError> {
    if kind == EvidenceKind::NotDelivered && from.is_empty() && to.is_empty() {
        if hub.is_empty() {
            return Ok((None, None));
        }
        let custodian = hub
            .parse::<ExchangeName>()
            .map_err(|e| FieldError::new("evidence.relay_hub", e.to_string()))?;
        return Ok((None, Some(custodian)));
    }
    if kind != EvidenceKind::Relayed {
        if !hub.is_empty() || !from.is_empty() || !to.is_empty() {
            return Err(FieldError::new(
                "evidence.relay_hub",
                "only RELAYED evidence may set relay_hub, relay_from or relay_to (NOT_DELIVERED: relay_hub alone)",
            ));
        }
        return Ok((None, None));
    }
    let name = |field: &str, s: &str| {
        s.parse::<ExchangeName>()
            .map_err(|e| FieldError::new(field, e.to_string()))
    };
    let (hub, from) = (
        name("evidence.relay_hub", &hub)?,
        name("evidence.relay_from", &from)?,
    );
    if to.is_empty() || to.len() > limits::RECIPIENTS {
        return Err(FieldError::new(
            "evidence.relay_to",
            format!("1 to {} recipients", limits::RECIPIENTS),
        ));
    }
    let to = to
        .iter()
        .map(|r| {
            r.parse::<Address>()
                .map_err(|e| FieldError::new("evidence.relay_to", e.to_string()))
        })
        .collect::<Result<_, _>>()?;
    Ok((Some(Relay { hub, from, to }), None))
}

impl TryFrom<pb::Evidence> for Evidence {
    type Error = FieldError;

    fn try_from(e: pb::Evidence) -> Result<Self, FieldError> {
        if e.format != EVIDENCE_FORMAT {
            return Err(FieldError::new(
                "evidence.format",
                format!("version {} is not supported", e.format),
            ));
        }
        let kind = match enum_field::<pb::EvidenceKind>("evidence.kind", e.kind)? {
            pb::EvidenceKind::Accepted => EvidenceKind::Accepted,
            pb::EvidenceKind::Delivered => EvidenceKind::Delivered,
            pb::EvidenceKind::Confirmed => EvidenceKind::Confirmed,
            pb::EvidenceKind::Rejected => EvidenceKind::Rejected,
            pb::EvidenceKind::NotDelivered => EvidenceKind::NotDelivered,
            pb::EvidenceKind::Refused => EvidenceKind::Refused,
            pb::EvidenceKind::Recall => EvidenceKind::Recall,
            pb::EvidenceKind::Withdrawn => EvidenceKind::Withdrawn,
            pb::EvidenceKind::Recalled => EvidenceKind::Recalled,
            pb::EvidenceKind::RecallAcknowledged => EvidenceKind::RecallAcknowledged,
            pb::EvidenceKind::RecipientAdded => EvidenceKind::RecipientAdded,
            pb::EvidenceKind::Reminded => EvidenceKind::Reminded,
            pb::EvidenceKind::Relayed => EvidenceKind::Relayed,
            pb::EvidenceKind::Unspecified => {
                return Err(FieldError::new("evidence.kind", "required"));
            }
        };
        let doc_id = e.doc_id.parse().map_err(|err: crate::ids::IdError| {
            FieldError::new("evidence.doc_id", err.to_string())
        })?;
        let header_digest = Digest::from_slice(&e.header_digest)
            .ok_or_else(|| FieldError::new("evidence.header_digest", "must be 32 bytes"))?;
        let sender = e.sender.parse().map_err(|err: crate::ids::IdError| {
            FieldError::new("evidence.sender", err.to_string())
        })?;
        let recipient = match (kind, e.recipient.as_str()) {
            (
                EvidenceKind::Accepted
                | EvidenceKind::Refused
                | EvidenceKind::Recall
                | EvidenceKind::Relayed,
                _,
            ) => None,
            (_, "") => return Err(FieldError::new("evidence.recipient", "required")),
            (_, r) => Some(r.parse().map_err(|err: crate::ids::IdError| {
                FieldError::new("evidence.recipient", err.to_string())
            })?),
        };
        validate_text("evidence.clerk", &e.clerk, limits::CLERK_CHARS)?;
        validate_text("evidence.reason", &e.reason, limits::TEXT_CHARS)?;
        if matches!(kind, EvidenceKind::Rejected | EvidenceKind::Refused)
            && e.reason.trim().is_empty()
        {
            return Err(FieldError::new(
                "evidence.reason",
                "a rejection (退回) needs a reason",
            ));
        }
        if kind == EvidenceKind::Recall && e.reason.trim().is_empty() {
            return Err(FieldError::new(
                "evidence.reason",
                "a recall (撤回) needs a reason",
            ));
        }
        if e.cc && kind != EvidenceKind::RecipientAdded {
            return Err(FieldError::new(
                "evidence.cc",
                "only RECIPIENT_ADDED evidence may set it",
            ));
        }
        let (relay, custodian) = relay_fields(kind, e.relay_hub, e.relay_from, e.relay_to)?;
        Ok(Evidence {
            kind,
            doc_id,
            header_digest,
            sender,
            recipient,
            at_ms: e.at_ms,
            clerk: e.clerk,
            reason: e.reason,
            cc: e.cc,
            relay,
            custodian,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_one_line_text_has_no_control_characters_and_fits_the_limit() {
        let reason = one_line_text(
            "disk full\r\n\x1b[31mred\t\u{7f}\u{85}end",
            limits::TEXT_CHARS,
        );
        assert_eq!(reason, "disk full   [31mred   end");
        validate_text("reason", &reason, limits::TEXT_CHARS)
            .expect("a cleaned reason passes the decoders' check");

        let long = format!("{}\n", "字".repeat(limits::TEXT_CHARS + 10));
        let cut = one_line_text(&long, limits::TEXT_CHARS);
        assert_eq!(cut.chars().count(), limits::TEXT_CHARS);
        assert!(
            cut.chars().all(|c| c == '字'),
            "cut by characters, not bytes"
        );
        assert_eq!(
            one_line_text("plain 文本", limits::TEXT_CHARS),
            "plain 文本"
        );
    }

    #[test]
    fn links_to_other_documents_must_be_document_ids() {
        let ok = pb::DocumentMetadata {
            title: "关于转发《关于检查的通知》的通知".into(),
            to_depts: vec!["c".into()],
            in_reply_to: DocumentId::new().to_string(),
            forwarded_from: DocumentId::new().to_string(),
            ..Default::default()
        };
        assert!(validate_metadata(&ok).is_ok());
        let forwarded = pb::DocumentMetadata {
            forwarded_from: "not-an-id".into(),
            ..ok.clone()
        };
        let err = validate_metadata(&forwarded).unwrap_err().to_string();
        assert!(err.contains("metadata.forwarded_from"), "{err}");
        let replied = pb::DocumentMetadata {
            in_reply_to: "not-an-id".into(),
            ..ok
        };
        let err = validate_metadata(&replied).unwrap_err().to_string();
        assert!(err.contains("metadata.in_reply_to"), "{err}");
    }
}
