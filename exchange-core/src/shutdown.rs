//! The shutdown signal every daemon waits on: SIGINT or SIGTERM.

/// Resolves on the first SIGINT or SIGTERM. The handlers are installed when this is called, not
/// when the future is first polled: a daemon calls it before it tells systemd it is ready, so a
/// SIGTERM sent right after `READY=1` is a graceful stop, never the default action (death).
/// Call it inside the runtime.
pub fn signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        let wait = |s: std::io::Result<tokio::signal::unix::Signal>| async move {
            match s {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = wait(term) => {}
            () = wait(int) => {}
        }
    }
}

/// How long in-flight requests may take to finish after a shutdown signal.
pub const GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Drives `server` to completion, but once `stopping` is cancelled gives it at most [`GRACE`]
/// to finish. A daemon acknowledges only what is committed, so cutting a request that outlives
/// the grace period loses nothing: its client was not answered and will retry.
pub async fn drain<E>(
    server: impl std::future::Future<Output = Result<(), E>>,
    stopping: &tokio_util::sync::CancellationToken,
) -> Result<(), E> {
    let grace = async {
        stopping.cancelled().await;
        tokio::time::sleep(GRACE).await;
    };
    tokio::select! {
        r = server => r,
        () = grace => {
            tracing::warn!(grace = ?GRACE, "requests still in flight after the grace period; stopping anyway");
            Ok(())
        }
    }
}
