//! What a client offers in its first flight, read before the TLS stack sees it, so that a
//! refused handshake between the two crypto profiles says so: "a client of the international
//! profile (TLS 1.3 without SM suites) reached this shangmi server (TLCP)" rather than only
//! "no shared cipher".
//!
//! Only a peek ([`TcpStream::peek`]): no byte is consumed, and rustls or Tongsuo then reads the
//! ClientHello as if nothing had looked. Bounded in size ([`PEEK_BYTES`], enough for the fixed
//! fields and the cipher suites of any real ClientHello) and in time ([`PEEK_TIMEOUT`]); a client
//! that sends something else, too little or too slowly is [`Hello::Unknown`], and its handshake
//! runs and is judged exactly as before. The verdict is only ever added to a refusal's reason
//! ([`super::mismatch::of_client`]): it decides nothing.

use std::time::Duration;

use tokio::net::TcpStream;

/// How many bytes of the first flight are looked at, at most.
pub(crate) const PEEK_BYTES: usize = 2048;
/// How long the peek waits for the ClientHello's cipher suites before giving up (the handshake
/// then runs, under its own timeout, as if there had been no peek).
pub(crate) const PEEK_TIMEOUT: Duration = Duration::from_secs(1);
/// Between two peeks while the ClientHello is still arriving (it almost always comes in one
/// segment, and then there is no wait at all).
const PEEK_PAUSE: Duration = Duration::from_millis(10);

/// TLS_SM4_GCM_SM3 and TLS_SM4_CCM_SM3 (RFC 8998).
const SM_SUITES: [u16; 2] = [0x00C6, 0x00C7];
/// The record layer's version in TLCP (GB/T 38636-2020): 1.1.
const TLCP_VERSION: u16 = 0x0101;

/// The kind of client a ClientHello shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hello {
    /// TLCP: a handshake record of version 1.1 (0x0101).
    Tlcp,
    /// A TLS ClientHello (record version 3.x): whether its cipher suites include one of RFC
    /// 8998's SM suites, and whether any other suite.
    Tls {
        /// TLS_SM4_GCM_SM3 or TLS_SM4_CCM_SM3 is offered.
        sm: bool,
        /// Some suite other than those is offered.
        other: bool,
    },
    /// Not a ClientHello that could be read within the bounds: no opinion.
    Unknown,
}

/// Reads what `bytes` (the start of a client's first flight) shows; `None` while more bytes are
/// needed to tell.
pub(crate) fn classify(bytes: &[u8]) -> Option<Hello> {
    let Some(&[content_type, major, minor, ..]) = bytes.get(..5) else {
        return None;
    };
    if content_type != 0x16 {
        return Some(Hello::Unknown); // not a handshake record
    }
    let record_version = u16::from_be_bytes([major, minor]);
    if record_version == TLCP_VERSION {
        return Some(Hello::Tlcp);
    }
    if major != 3 {
        return Some(Hello::Unknown);
    }
    // Record header (5), handshake type (1) and length (3), client_version (2), random (32).
    let body = &bytes[5..];
    match body.first() {
        None => return None,
        Some(0x01) => {}
        Some(_) => return Some(Hello::Unknown), // not a ClientHello
    }
    let session_id_len = usize::from(*body.get(4 + 2 + 32)?);
    if session_id_len > 32 {
        return Some(Hello::Unknown);
    }
    let suites_at = 4 + 2 + 32 + 1 + session_id_len;
    let suites_len = usize::from(u16::from_be_bytes([
        *body.get(suites_at)?,
        *body.get(suites_at + 1)?,
    ]));
    if suites_len == 0 || suites_len % 2 != 0 {
        return Some(Hello::Unknown);
    }
    if 5 + suites_at + 2 + suites_len > PEEK_BYTES {
        return Some(Hello::Unknown); // will never fit in the window
    }
    let suites = body.get(suites_at + 2..suites_at + 2 + suites_len)?;
    let (mut sm, mut other) = (false, false);
    for pair in suites.chunks_exact(2) {
        let suite = u16::from_be_bytes([pair[0], pair[1]]);
        if SM_SUITES.contains(&suite) {
            sm = true;
        } else if suite != 0x00FF && (suite & 0x0F0F) != 0x0A0A {
            // Neither the renegotiation SCSV nor a GREASE value: a real suite.
            other = true;
        }
    }
    Some(Hello::Tls { sm, other })
}

/// Peeks at the first flight of `tcp` (never consuming it), within [`PEEK_BYTES`] and
/// [`PEEK_TIMEOUT`].
pub(crate) async fn peek(tcp: &TcpStream) -> Hello {
    let mut buf = vec![0u8; PEEK_BYTES];
    let look = async {
        loop {
            let n = match tcp.peek(&mut buf).await {
                // Closed, or an error the handshake will meet and report.
                Ok(0) | Err(_) => return Hello::Unknown,
                Ok(n) => n,
            };
            if let Some(hello) = classify(&buf[..n]) {
                return hello;
            }
            if n == PEEK_BYTES {
                return Hello::Unknown; // the window is full and still tells nothing
            }
            // The same bytes are there until more arrive: wait a little rather than spin.
            tokio::time::sleep(PEEK_PAUSE).await;
        }
    };
    tokio::time::timeout(PEEK_TIMEOUT, look)
        .await
        .unwrap_or(Hello::Unknown)
}

#[cfg(test)]
mod tests;
