//! Several hubs serving one exchange: a connection goes to the hub that answered last, or else
//! to each of the others in turn (`[hub] addresses`). A hub that is down refuses the TCP
//! connection at once; one that does not answer is given [`DIAL_TIMEOUT`].

use std::{
    future::Future,
    io,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tracing::{info, warn};

/// How long one hub has to answer before the next one is tried.
pub(super) const DIAL_TIMEOUT: Duration = Duration::from_secs(3);

/// The hubs, and which one answered last.
#[derive(Debug, Clone)]
pub(super) struct Hubs {
    addrs: Arc<[SocketAddr]>,
    last: Arc<AtomicUsize>,
}

impl Hubs {
    pub(super) fn new(addrs: &[SocketAddr]) -> Self {
        Hubs {
            addrs: addrs.into(),
            last: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The hub tried first.
    pub(super) fn first(&self) -> Option<SocketAddr> {
        self.addrs.first().copied()
    }

    /// How many hubs there are.
    pub(super) fn len(&self) -> usize {
        self.addrs.len()
    }

    /// Runs `connect` against the hub that answered last, then each other hub in turn, until
    /// one succeeds; the error is the last hub's.
    pub(super) async fn connect<T, F, Fut>(&self, connect: F) -> io::Result<T>
    where
        F: Fn(SocketAddr) -> Fut,
        Fut: Future<Output = io::Result<T>>,
    {
        let n = self.addrs.len();
        let start = self.last.load(Ordering::Relaxed) % n.max(1);
        let mut last_error = io::Error::new(io::ErrorKind::InvalidInput, "no hub address");
        for i in 0..n {
            let at = (start + i) % n;
            let addr = self.addrs[at];
            let result = match tokio::time::timeout(DIAL_TIMEOUT, connect(addr)).await {
                Ok(r) => r,
                Err(_) => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no answer within {DIAL_TIMEOUT:?}"),
                )),
            };
            match result {
                Ok(conn) => {
                    if at != start {
                        info!(hub = %addr, "connected to another hub");
                    }
                    self.last.store(at, Ordering::Relaxed);
                    return Ok(conn);
                }
                Err(e) => {
                    if n > 1 {
                        warn!(hub = %addr, error = %e, "hub unreachable; trying the next one");
                    }
                    last_error = io::Error::new(e.kind(), format!("hub {addr}: {e}"));
                }
            }
        }
        Err(last_error)
    }
}

/// TCP to one of `hubs` (tonic runs TLS over it).
pub(super) fn tcp(
    hubs: Hubs,
) -> impl tower::Service<
    tonic::transport::Uri,
    Response = hyper_util::rt::TokioIo<tokio::net::TcpStream>,
    Error = io::Error,
    Future = impl Future<Output = io::Result<hyper_util::rt::TokioIo<tokio::net::TcpStream>>> + Send,
> + Clone
+ Send {
    tower::service_fn(move |_: tonic::transport::Uri| {
        let hubs = hubs.clone();
        async move {
            let stream = hubs
                .connect(|addr| async move {
                    let s = tokio::net::TcpStream::connect(addr).await?;
                    s.set_nodelay(true)?;
                    Ok(s)
                })
                .await?;
            Ok(hyper_util::rt::TokioIo::new(stream))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_hub_that_answers_is_used_and_tried_first_next_time() {
        let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let live_addr = live.local_addr().unwrap();
        // A port nothing listens on: bound, then closed.
        let dead_addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let hubs = Hubs::new(&[dead_addr, live_addr]);
        let tried = std::sync::Mutex::new(Vec::new());
        let dial = |addr| {
            tried.lock().unwrap().push(addr);
            async move { tokio::net::TcpStream::connect(addr).await }
        };
        let s = hubs.connect(dial).await.unwrap();
        assert_eq!(s.peer_addr().unwrap(), live_addr);
        hubs.connect(dial).await.unwrap();
        assert_eq!(
            *tried.lock().unwrap(),
            [dead_addr, live_addr, live_addr],
            "the hub that answered is tried first the next time"
        );

        drop(live);
        let err = hubs.connect(dial).await.unwrap_err();
        assert!(err.to_string().contains(&dead_addr.to_string()), "{err}");
    }
}
