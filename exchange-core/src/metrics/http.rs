//! The smallest HTTP/1.1 server that Prometheus can scrape: `GET /metrics` (and `HEAD`), one
//! request per connection, `Connection: close`. It exists so that the daemons need no web
//! framework for one read-only page.
//!
//! It is meant for an admin address (loopback or a management network): it has no TLS and no
//! authentication, and it serves nothing but the metrics. Requests are bounded in size (8 KiB of
//! head), in time (5 s to send it) and in number (16 at once), so a misbehaving client cannot tie
//! the daemon up.

use std::{future::Future, sync::Arc, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
};
use tokio_util::sync::CancellationToken;

/// Largest request head read.
const MAX_HEAD: usize = 8 * 1024;
/// How long a client may take to send its request and read the answer.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Most connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 16;

/// The content type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Binds `listen` for `[metrics]`, writes the bound address to `<data_dir>/metrics.addr` (for
/// port 0), and serves scrapes with `render` on a task of its own until `stop`. Both daemons
/// start their endpoint through this.
pub async fn start<F, Fut>(
    listen: std::net::SocketAddr,
    data_dir: &std::path::Path,
    render: F,
    stop: CancellationToken,
) -> Result<std::net::SocketAddr, String>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<String, String>> + Send + 'static,
{
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| format!("binding [metrics] listen = {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    crate::config::write_addr_file(data_dir, "metrics.addr", addr)
        .map_err(|e| format!("writing {}/metrics.addr: {e}", data_dir.display()))?;
    tracing::info!(%addr, "metrics listening");
    tokio::spawn(serve(listener, render, stop));
    Ok(addr)
}

/// Serves `GET /metrics` on `listener` with the text `render` produces, until `stop` is
/// cancelled. `render` is called once per scrape; an `Err` is answered with status 500 and its
/// message.
pub async fn serve<F, Fut>(listener: TcpListener, render: F, stop: CancellationToken)
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<String, String>> + Send + 'static,
{
    let render = Arc::new(render);
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            () = stop.cancelled() => return,
        };
        let tcp = tokio::select! {
            r = listener.accept() => match r {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: accepting a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await; // e.g. out of fds
                    continue;
                }
            },
            () = stop.cancelled() => return,
        };
        let render = Arc::clone(&render);
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tokio::time::timeout(TIMEOUT, answer(tcp, &*render)).await;
        });
    }
}

/// What a request asked for.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    /// `GET /metrics`; `HEAD` too (headers only).
    Metrics { head: bool },
    /// Another path.
    NotFound,
    /// Another method.
    NotAllowed,
    /// Not HTTP.
    Bad,
}

fn route(head: &[u8]) -> Route {
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.trim_end().split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Route::Bad;
    };
    if !version.starts_with("HTTP/1.") {
        return Route::Bad;
    }
    let path = target.split('?').next().unwrap_or_default();
    match (method, path) {
        ("GET", "/metrics") => Route::Metrics { head: false },
        ("HEAD", "/metrics") => Route::Metrics { head: true },
        ("GET" | "HEAD", _) => Route::NotFound,
        _ => Route::NotAllowed,
    }
}

async fn answer<F, Fut>(mut tcp: TcpStream, render: &F) -> std::io::Result<()>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<String, String>>,
{
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let n = tcp.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_HEAD {
            return respond(&mut tcp, "431 Request Header Fields Too Large", "", false).await;
        }
    }
    match route(&head) {
        Route::Metrics { head } => match render().await {
            Ok(body) => respond(&mut tcp, "200 OK", &body, head).await,
            Err(e) => {
                tracing::warn!(error = %e, "metrics: scrape failed");
                respond(&mut tcp, "500 Internal Server Error", &e, head).await
            }
        },
        Route::NotFound => respond(&mut tcp, "404 Not Found", "try /metrics\n", false).await,
        Route::NotAllowed => {
            respond(
                &mut tcp,
                "405 Method Not Allowed",
                "GET /metrics only\n",
                false,
            )
            .await
        }
        Route::Bad => respond(&mut tcp, "400 Bad Request", "", false).await,
    }
}

async fn respond(
    tcp: &mut TcpStream,
    status: &str,
    body: &str,
    head_only: bool,
) -> std::io::Result<()> {
    let content_type = if status.starts_with("200") {
        CONTENT_TYPE
    } else {
        "text/plain; charset=utf-8"
    };
    let header = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tcp.write_all(header.as_bytes()).await?;
    if !head_only {
        tcp.write_all(body.as_bytes()).await?;
    }
    tcp.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_get_metrics_is_served() {
        assert_eq!(
            route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Route::Metrics { head: false }
        );
        assert_eq!(
            route(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Route::Metrics { head: false }
        );
        assert_eq!(
            route(b"HEAD /metrics HTTP/1.1\r\n\r\n"),
            Route::Metrics { head: true }
        );
        assert_eq!(route(b"GET / HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(route(b"POST /metrics HTTP/1.1\r\n\r\n"), Route::NotAllowed);
        assert_eq!(route(b"\x16\x03\x01garbage"), Route::Bad);
    }

    #[tokio::test]
    async fn a_scrape_gets_the_rendered_text() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        tokio::spawn(serve(
            listener,
            || async { Ok("up 1\n".to_owned()) },
            stop.clone(),
        ));
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut text = String::new();
        tcp.read_to_string(&mut text).await.unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains(CONTENT_TYPE), "{text}");
        assert!(text.ends_with("\r\n\r\nup 1\n"), "{text}");
        stop.cancel();
    }
}
