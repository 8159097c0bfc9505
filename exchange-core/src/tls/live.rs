//! The TLS connections a server has open, by certificate: so that a certificate revoked while
//! its holder is connected is cut at once rather than at its next handshake (a compromised node
//! would otherwise simply keep its connection), and so that one principal cannot hold more than
//! its share of connections.

use std::{
    collections::HashMap,
    io,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::{
    conn::{ConnInfo, ServerStream},
    crl::{Crl, serial},
};
use crate::{identity::Principal, ids::ExchangeName};

/// Every open connection, and how many each holder (a principal, or a linked exchange's hub)
/// holds.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next: u64,
    conns: HashMap<u64, Entry>,
    /// Open connections by holder, as [`Entry::holder`] names it.
    held: HashMap<String, usize>,
}

#[derive(Debug)]
struct Entry {
    /// Whom the connection counts against, as errors name it (`department a`, `the hub of
    /// exchange city`); `None` for a certificate that names no principal.
    holder: Option<String>,
    /// The serials of every certificate the client presented (TLCP: signing and encryption).
    serials: Vec<Vec<u8>>,
    cut: CancellationToken,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The map stays consistent across a panic elsewhere (each update is one insert/remove).
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a connection whose client presented `certs` (DER, the signing certificate
    /// first). Refuses it if its principal already holds `max` connections (0: no limit).
    pub(crate) fn admit(self: &Arc<Self>, certs: &[Vec<u8>], max: usize) -> Result<Ticket, String> {
        let holder = certs
            .first()
            .and_then(|leaf| Principal::from_cert_der(leaf))
            .map(|p| p.to_string());
        self.enter(certs, holder, max, "limits.connections_per_principal")
    }

    /// Registers a connection of linked exchange `peer`'s hub (docs/federation.md): every
    /// peer's hub is the same principal (`urn:exchange:hub`), so connections count by exchange.
    /// Refuses it if that exchange's hub already holds `max` connections (0: no limit). A
    /// connection of no known peer (`None`) is registered without being counted.
    pub(crate) fn admit_peer(
        self: &Arc<Self>,
        certs: &[Vec<u8>],
        peer: Option<&ExchangeName>,
        max: usize,
    ) -> Result<Ticket, String> {
        let holder = peer.map(|p| format!("the hub of exchange {p}"));
        self.enter(certs, holder, max, "peer_limits.connections_per_principal")
    }

    fn enter(
        self: &Arc<Self>,
        certs: &[Vec<u8>],
        holder: Option<String>,
        max: usize,
        key: &str,
    ) -> Result<Ticket, String> {
        let mut inner = self.lock();
        if let Some(h) = &holder {
            let held = inner.held.get(h).copied().unwrap_or(0);
            if max > 0 && held >= max {
                return Err(format!(
                    "{h} already holds {held} connections ({key} = {max})"
                ));
            }
            *inner.held.entry(h.clone()).or_default() += 1;
        }
        inner.next += 1;
        let id = inner.next;
        let cut = CancellationToken::new();
        inner.conns.insert(
            id,
            Entry {
                holder,
                serials: certs.iter().filter_map(|c| serial(c)).collect(),
                cut: cut.clone(),
            },
        );
        Ok(Ticket {
            registry: Arc::clone(self),
            id,
            cut,
        })
    }

    /// Cuts every open connection whose certificate `crl` revokes; returns whom they named.
    pub(crate) fn cut_revoked(&self, crl: &Crl) -> Vec<String> {
        let inner = self.lock();
        inner
            .conns
            .values()
            .filter(|e| e.serials.iter().any(|s| crl.revoked.contains(s)))
            .map(|e| {
                e.cut.cancel();
                e.holder
                    .clone()
                    .unwrap_or_else(|| "unknown principal".to_owned())
            })
            .collect()
    }

    fn remove(&self, id: u64) {
        let mut inner = self.lock();
        if let Some(Entry {
            holder: Some(h), ..
        }) = inner.conns.remove(&id)
            && let Some(n) = inner.held.get_mut(&h)
        {
            *n -= 1;
            if *n == 0 {
                inner.held.remove(&h);
            }
        }
    }
}

/// A connection's place in the [`Registry`]; leaving it (drop) frees the place.
#[derive(Debug)]
pub(crate) struct Ticket {
    registry: Arc<Registry>,
    id: u64,
    cut: CancellationToken,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.registry.remove(self.id);
    }
}

/// A server-side TLS stream that fails with `ConnectionAborted` once its certificate is revoked.
/// HTTP/2 always has a read pending on the connection, so the cut takes effect at once, and
/// every stream on the connection ends.
#[derive(Debug)]
pub struct Revocable<S> {
    inner: S,
    cut: Pin<Box<WaitForCancellationFutureOwned>>,
    ticket: Ticket,
}

impl<S> Revocable<S> {
    pub(crate) fn new(inner: S, ticket: Ticket) -> Self {
        let cut = Box::pin(ticket.cut.clone().cancelled_owned());
        Revocable { inner, cut, ticket }
    }

    /// Whether the connection was cut; registers the task to be woken when it is.
    fn poll_cut(&mut self, cx: &mut Context<'_>) -> bool {
        self.ticket.cut.is_cancelled() || self.cut.as_mut().poll(cx).is_ready()
    }
}

fn revoked() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "the peer's certificate was revoked",
    )
}

impl<S: AsyncRead + Unpin> AsyncRead for Revocable<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.poll_cut(cx) {
            return Poll::Ready(Err(revoked()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Revocable<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.poll_cut(cx) {
            return Poll::Ready(Err(revoked()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Every request on the connection carries the handshake's [`ConnInfo`] (whichever stack ran
/// it), which `peer_principal` and the hub's limits read.
impl tonic::transport::server::Connected for Revocable<ServerStream> {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.inner.info().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(name: &str) -> ExchangeName {
        name.parse().expect("an exchange name")
    }

    #[test]
    fn each_peer_holds_its_share_of_connections_and_a_closed_one_frees_its_place() {
        let live = Arc::new(Registry::default());
        let (city, county) = (peer("city"), peer("county"));
        let first = live.admit_peer(&[], Some(&city), 2).expect("first");
        let _second = live.admit_peer(&[], Some(&city), 2).expect("second");
        let refused = live.admit_peer(&[], Some(&city), 2).expect_err("a third");
        assert_eq!(
            refused,
            "the hub of exchange city already holds 2 connections \
             (peer_limits.connections_per_principal = 2)"
        );
        // Another exchange's hub has a share of its own.
        let _other = live.admit_peer(&[], Some(&county), 2).expect("county");
        drop(first);
        let _again = live.admit_peer(&[], Some(&city), 2).expect("a freed place");
        assert!(live.admit_peer(&[], Some(&city), 2).is_err());
    }

    #[test]
    fn no_limit_at_zero_and_no_peer_is_not_counted() {
        let live = Arc::new(Registry::default());
        let city = peer("city");
        let kept: Vec<Ticket> = (0..100)
            .map(|_| live.admit_peer(&[], Some(&city), 0).expect("no limit"))
            .collect();
        let unknown: Vec<Ticket> = (0..3)
            .map(|_| live.admit_peer(&[], None, 1).expect("not counted"))
            .collect();
        assert_eq!(kept.len() + unknown.len(), 103);
        assert_eq!(live.lock().held.get("the hub of exchange city"), Some(&100));
        drop(kept);
        assert!(live.lock().held.is_empty(), "every place freed");
        assert_eq!(live.lock().conns.len(), 3);
    }
}
