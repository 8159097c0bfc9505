//! Reason classes for the refusal counters: a refusal's message (free text, meant for people)
//! mapped to a small closed set of label values, so that a dashboard can group them and the
//! number of series stays bounded whatever the messages say.

/// A refusal's reason, from its message, as a small closed set of label values.
pub(super) fn refusal_class(detail: &str) -> &'static str {
    let d = detail.to_lowercase();
    let has = |s: &str| d.contains(s);
    if has("routing policy") {
        "routing"
    } else if has("classification") {
        "classified"
    } else if has("unknown department") {
        "unknown_recipient"
    } else if has("the hub's limit") {
        "too_large"
    } else if has("not uploaded") {
        "content_missing"
    } else if has("already submitted") {
        "duplicate_id"
    } else if has("header.sender") {
        "wrong_sender"
    } else if has("signature") || has("certificate") || has("document refused") {
        "signature"
    } else if has("disk full") || has("storage") {
        "storage"
    } else if has("expired") {
        "expired"
    } else if d.contains(':') {
        "invalid"
    } else {
        "other"
    }
}

/// A refused handshake's reason (a rustls error, a timeout, the acceptor's own checks).
pub(super) fn handshake_class(detail: &str) -> &'static str {
    let d = detail.to_lowercase();
    let has = |s: &str| d.contains(s);
    if has("revoked") {
        "revoked"
    } else if has("expired") || has("notvalidyet") || has("not valid yet") {
        "expired"
    } else if has("unknownissuer") || has("unknown issuer") || has("badsignature") {
        "unknown_ca"
    } else if has("no certificates") || has("nocertificatespresented") {
        "no_certificate"
    } else if has("no handshake within") {
        "timeout"
    } else if has("already holds") {
        "connection_limit"
    } else if has("certificate") {
        "bad_certificate"
    } else {
        "protocol"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_fall_into_their_classes() {
        assert_eq!(
            refusal_class("metadata.to_depts: unknown department(s) zz"),
            "unknown_recipient"
        );
        assert_eq!(
            refusal_class(
                "metadata.to_depts: the routing policy ([routing] in hub.toml) does not allow a"
            ),
            "routing"
        );
        assert_eq!(
            refusal_class("header.parts: 9 bytes in all, the hub's limit is 8"),
            "too_large"
        );
        assert_eq!(
            refusal_class("document refused: bad signature"),
            "signature"
        );
        assert_eq!(refusal_class("metadata.title: required"), "invalid");
        assert_eq!(
            handshake_class("invalid peer certificate: UnknownIssuer"),
            "unknown_ca"
        );
        assert_eq!(handshake_class("the certificate is revoked"), "revoked");
        assert_eq!(handshake_class("no handshake within 10s"), "timeout");
        assert_eq!(
            handshake_class("peer sent no certificates"),
            "no_certificate"
        );
        assert_eq!(handshake_class("received corrupt message"), "protocol");
    }
}
