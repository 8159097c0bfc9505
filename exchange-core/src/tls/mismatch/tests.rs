//! The wording of both sides of a handshake between profiles, and when a node gives its note.

use std::io;

use super::{hub_refused_note, of_client as mismatch};
use crate::{config::TlsProtocol, tls::hello::Hello};

#[test]
fn every_mismatch_names_both_sides() {
    let tlcp = mismatch(Hello::Tlcp, TlsProtocol::Tls13).unwrap();
    assert!(tlcp.contains("shangmi profile (TLCP)") && tlcp.contains("international server"));
    let rfc8998 = mismatch(Hello::Tlcp, TlsProtocol::Tls13Sm).unwrap();
    assert!(
        rfc8998.contains("TLCP") && rfc8998.contains("RFC 8998"),
        "{rfc8998}"
    );
    let intl = mismatch(
        Hello::Tls {
            sm: false,
            other: true,
        },
        TlsProtocol::Tls13Sm,
    )
    .unwrap();
    assert!(intl.contains("international profile") && intl.contains("shangmi server"));
    for server in [TlsProtocol::Tls13, TlsProtocol::Tlcp, TlsProtocol::Tls13Sm] {
        assert_eq!(mismatch(Hello::Unknown, server), None);
    }
    assert_eq!(mismatch(Hello::Tlcp, TlsProtocol::Tlcp), None);
}

/// A failed call as the node's uplink sees it: a status whose sources end in `e`.
fn status_of(e: io::Error) -> tonic::Status {
    tonic::Status::from_error(Box::new(e))
}

#[test]
fn an_international_node_refused_by_the_hub_says_it_is_international() {
    // A TLCP hub's alert is a record of version 1.1, which rustls cannot read.
    let e = io::Error::new(
        io::ErrorKind::InvalidData,
        rustls::Error::InvalidMessage(rustls::InvalidMessage::UnknownProtocolVersion),
    );
    assert_eq!(
        hub_refused_note(TlsProtocol::Tls13, &status_of(e)).unwrap(),
        "this node is of the international profile (TLS 1.3); the hub refused the handshake: \
         is it a shangmi hub?"
    );
    let alert = io::Error::new(
        io::ErrorKind::InvalidData,
        rustls::Error::AlertReceived(rustls::AlertDescription::HandshakeFailure),
    );
    assert!(hub_refused_note(TlsProtocol::Tls13, &status_of(alert)).is_some());
    // This node refusing the hub's certificate is not the hub refusing anything.
    let ours = io::Error::new(
        io::ErrorKind::InvalidData,
        rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
    );
    assert_eq!(hub_refused_note(TlsProtocol::Tls13, &status_of(ours)), None);
    let down = io::Error::from_raw_os_error(111); // ECONNREFUSED
    assert_eq!(hub_refused_note(TlsProtocol::Tls13, &status_of(down)), None);
}

#[test]
fn a_shangmi_node_refused_by_the_hub_says_it_is_shangmi() {
    let tongsuo = |text: &str| io::Error::new(io::ErrorKind::ConnectionRefused, text.to_owned());
    let alert = "error:0A00041A:SSL routines:ssl3_read_bytes:tlsv1 alert decode \
                 error:ssl/record/rec_layer_s3.c:1586:SSL alert number 50";
    let note = hub_refused_note(TlsProtocol::Tlcp, &status_of(tongsuo(alert))).unwrap();
    assert!(
        note.starts_with(
            "this node is of the shangmi profile (TLCP); the hub refused the handshake: is it \
             an international hub"
        ),
        "{note}"
    );
    let rfc8998 = hub_refused_note(TlsProtocol::Tls13Sm, &status_of(tongsuo(alert))).unwrap();
    assert!(rfc8998.contains("RFC 8998"), "{rfc8998}");
    for not_the_hub in [
        "error:0A000086:SSL routines::certificate verify failed (unable to get local issuer \
         certificate)",
        "no handshake within 10s",
    ] {
        assert_eq!(
            hub_refused_note(TlsProtocol::Tlcp, &status_of(tongsuo(not_the_hub))),
            None,
            "{not_the_hub}"
        );
    }
    let down = io::Error::from_raw_os_error(111);
    assert_eq!(hub_refused_note(TlsProtocol::Tlcp, &status_of(down)), None);
}
