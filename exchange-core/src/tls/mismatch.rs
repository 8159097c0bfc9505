//! What each side says when the other end of a refused handshake is of the other crypto
//! profile (or of the other protocol of the shangmi profile), so that an operator reads the cause
//! rather than only "no shared cipher" or "received corrupt message":
//!
//! - the server (the hub), from the ClientHello it peeked at ([`super::hello`]): [`of_client`],
//!   e.g. "a client of the international profile (TLS 1.3 without SM suites) reached this
//!   shangmi server (TLCP)", put before the TLS error in the refusal's log line and audit entry;
//! - the client (a node), from the error of its failed connection: [`hub_refused_note`], e.g.
//!   "this node is of the shangmi profile (TLCP); the hub refused the handshake: is it an
//!   international hub?".
//!
//! Neither decides anything: the handshake is refused (or not) exactly as before.

use std::error::Error;

use super::hello::Hello;
use crate::config::TlsProtocol;

/// What a server speaking `server` says of a refused client that offered `hello`, when they are
/// of different profiles (or different protocols of the shangmi profile); `None` when the hello
/// does not show a mismatch.
pub(crate) fn of_client(hello: Hello, server: TlsProtocol) -> Option<String> {
    const INTERNATIONAL_CLIENT: &str =
        "a client of the international profile (TLS 1.3 without SM suites)";
    let text = match (server, hello) {
        (_, Hello::Unknown) => return None,
        (TlsProtocol::Tls13, Hello::Tlcp) => {
            "a client of the shangmi profile (TLCP) reached this international server (TLS 1.3 \
             without SM suites)"
        }
        (
            TlsProtocol::Tls13,
            Hello::Tls {
                sm: true,
                other: false,
            },
        ) => {
            "a client of the shangmi profile (TLS 1.3 with only SM suites, RFC 8998) reached this \
             international server (TLS 1.3 without SM suites)"
        }
        (TlsProtocol::Tls13, Hello::Tls { .. }) => return None,
        (TlsProtocol::Tlcp, Hello::Tls { sm: false, .. }) => {
            return Some(format!(
                "{INTERNATIONAL_CLIENT} reached this shangmi server (TLCP)"
            ));
        }
        (TlsProtocol::Tlcp, Hello::Tls { sm: true, .. }) => {
            "a client of the shangmi profile speaking TLS 1.3 with SM suites (RFC 8998) reached \
             this shangmi server, which speaks TLCP: the two ends' [tls] protocol differ"
        }
        (TlsProtocol::Tlcp, Hello::Tlcp) => return None,
        (TlsProtocol::Tls13Sm, Hello::Tls { sm: false, .. }) => {
            return Some(format!(
                "{INTERNATIONAL_CLIENT} reached this shangmi server (TLS 1.3 with SM suites, \
                 RFC 8998)"
            ));
        }
        (TlsProtocol::Tls13Sm, Hello::Tlcp) => {
            "a client of the shangmi profile speaking TLCP reached this shangmi server, which \
             speaks TLS 1.3 with SM suites (RFC 8998): the two ends' [tls] protocol differ"
        }
        (TlsProtocol::Tls13Sm, Hello::Tls { sm: true, .. }) => return None,
    };
    Some(text.to_owned())
}

/// The note for a node's log when `err` (a failed call to the hub, with its sources) shows that
/// the hub refused the TLS handshake or answered in a protocol this node does not speak: this
/// node's profile and protocol (`protocol`), and the likely cause. `None` for every other
/// failure — the address unreachable, a timeout, this node refusing the hub's certificate — so
/// that the note is not given where it would mislead.
pub fn hub_refused_note(protocol: TlsProtocol, err: &(dyn Error + 'static)) -> Option<String> {
    refused_by_peer(protocol, err).then(|| {
        match protocol {
            TlsProtocol::Tls13 => {
                "this node is of the international profile (TLS 1.3); the hub refused the \
                 handshake: is it a shangmi hub?"
            }
            TlsProtocol::Tlcp => {
                "this node is of the shangmi profile (TLCP); the hub refused the handshake: is it \
                 an international hub (or a shangmi hub with [tls] protocol = \"tls13-sm\")?"
            }
            TlsProtocol::Tls13Sm => {
                "this node is of the shangmi profile (TLS 1.3 with SM suites, RFC 8998); the hub \
                 refused the handshake: is it an international hub (or a shangmi hub speaking \
                 TLCP)?"
            }
        }
        .to_owned()
    })
}

/// Whether the chain of `err` holds a handshake failure that came from the peer: an alert it
/// sent, or bytes that are not this protocol's.
fn refused_by_peer(protocol: TlsProtocol, err: &(dyn Error + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return rustls_refused(r);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            // io::Error's `source` skips the error it wraps: look at that one too.
            if let Some(r) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                return rustls_refused(r);
            }
            if protocol != TlsProtocol::Tls13 && tongsuo_refused(io) {
                return true;
            }
        }
        cur = e.source();
    }
    false
}

/// rustls' client: an alert from the server, or a record or message it could not read (a TLCP
/// server's alert is a record of version 1.1, "UnknownProtocolVersion"); not this side's
/// verdict on the server's certificate.
fn rustls_refused(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::AlertReceived(_)
            | rustls::Error::InvalidMessage(_)
            | rustls::Error::PeerIncompatible(_)
            | rustls::Error::InappropriateHandshakeMessage { .. }
            | rustls::Error::InappropriateMessage { .. }
    )
}

/// Tongsuo's client ([`super::sm::connect`]) reports a failed handshake as a connection refused
/// with no OS error (a refused TCP connection has one), worded with Tongsuo's error queue. An
/// alert received ("... alert ...") or a reply that is not TLCP ("wrong version number", "unknown
/// protocol") is the hub's doing; "certificate verify failed" is this node's, a timeout nobody's.
fn tongsuo_refused(io: &std::io::Error) -> bool {
    if io.kind() != std::io::ErrorKind::ConnectionRefused || io.raw_os_error().is_some() {
        return false;
    }
    let text = io.to_string();
    !text.contains("certificate verify failed")
        && [
            "alert",
            "wrong version number",
            "unknown protocol",
            "unsupported protocol",
        ]
        .iter()
        .any(|t| text.contains(t))
}

#[cfg(test)]
mod tests;
