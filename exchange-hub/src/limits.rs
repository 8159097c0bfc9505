//! Limits against abuse, applied in front of every service (a tower layer), so that a slow,
//! buggy or compromised node cannot starve the others (`[limits]` in `hub.toml`):
//!
//! - **calls**: a token bucket per department over every call but `Subscribe` (its one
//!   long-lived stream is not a rate). An empty bucket answers `RESOURCE_EXHAUSTED` at once. A
//!   `SubmitBatch` of n documents costs n calls: admitted for one, the rest taken as debt.
//! - **bytes**: a token bucket per department over the request bytes of `Submit`,
//!   `SubmitBatch`, `PutBlob` and `SubmitEvidence`. A stream that goes over it is slowed to the
//!   sustained rate (its next message waits, and HTTP/2 flow control pushes back on the sender);
//!   a new call while the department is in debt gets `RESOURCE_EXHAUSTED`.
//! - **idle streams**: a request that sends nothing for `idle_stream_secs` is cut with
//!   `DEADLINE_EXCEEDED` (a PutBlob that stops half-way, a unary call whose body never ends).
//!
//! A node retries `RESOURCE_EXHAUSTED` and `DEADLINE_EXCEEDED` with backoff (they are not
//! refusals), so a genuine node that hits a limit only slows down. Callers that are not
//! departments (an administrator) are not metered, but their streams are cut when idle.
//!
//! The peer listener (`[hub] peer_listen`) has the same layer with `[peer_limits]`, one set of
//! buckets per linked exchange's hub (docs/federation.md); its `Relay` and `RelayEvidence` and
//! `PutBlob` are metered in bytes. A peer hub's worker retries the same way.

use std::{
    collections::HashMap,
    pin::Pin,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll, ready},
    time::Duration,
};

use exchange_core::{config::LimitsSection, identity::Principal, ids::DeptId, tls::ConnInfo};
use http_body::Frame;
use tokio::time::{Instant, Sleep};
use tonic::{
    Status,
    body::Body,
    codegen::{BoxFuture, Bytes, Service, http},
};

/// A token bucket: `rate` tokens a second, at most `burst` saved up; may go into debt.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
    rate: f64,
    burst: f64,
}

impl Bucket {
    fn new(rate: f64, burst: f64) -> Self {
        let burst = burst.max(rate).max(1.0);
        Bucket {
            tokens: burst,
            last: Instant::now(),
            rate,
            burst,
        }
    }

    fn refill(&mut self) {
        let now = Instant::now();
        let earned = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + earned).min(self.burst);
        self.last = now;
    }

    /// Takes `n` tokens if there are that many.
    fn try_take(&mut self, n: f64) -> bool {
        self.refill();
        let ok = self.tokens >= n;
        if ok {
            self.tokens -= n;
        }
        ok
    }

    /// Takes `n` tokens, going into debt if need be; returns how long until the debt is paid.
    fn charge(&mut self, n: f64) -> Duration {
        self.refill();
        self.tokens -= n;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }

    fn in_debt(&mut self) -> bool {
        self.refill();
        self.tokens < 0.0
    }
}

/// One department's buckets; a limit that is off has none.
#[derive(Debug)]
struct DeptBuckets {
    calls: Option<Bucket>,
    bytes: Option<Bucket>,
}

/// The buckets of every caller that has called (a department, or a peer exchange's hub, by
/// how messages name it), and the configured limits.
#[derive(Debug)]
pub(crate) struct Limits {
    cfg: LimitsSection,
    /// The section of hub.toml the limits come from, for messages.
    section: &'static str,
    buckets: Mutex<HashMap<String, DeptBuckets>>,
}

impl Limits {
    /// The departments' limits (`[limits]`).
    pub(crate) fn new(cfg: LimitsSection) -> Arc<Self> {
        Self::named(cfg, "[limits]")
    }

    /// Limits from `section` of hub.toml.
    pub(crate) fn named(cfg: LimitsSection, section: &'static str) -> Arc<Self> {
        Arc::new(Limits {
            cfg,
            section,
            buckets: Mutex::default(),
        })
    }

    /// Runs `f` on `dept`'s buckets, made on its first call.
    fn with<T>(&self, dept: &str, f: impl FnOnce(&mut DeptBuckets) -> T) -> T {
        // The map holds plain numbers; a panic elsewhere cannot leave it inconsistent.
        let mut map = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let cfg = &self.cfg;
        let entry = map.entry(dept.to_owned()).or_insert_with(|| {
            let calls = (cfg.requests_per_second > 0).then(|| {
                Bucket::new(
                    f64::from(cfg.requests_per_second),
                    f64::from(cfg.burst_requests),
                )
            });
            let bytes = (cfg.bytes_per_second > 0)
                .then(|| Bucket::new(cfg.bytes_per_second as f64, cfg.burst_bytes as f64));
            DeptBuckets { calls, bytes }
        });
        f(entry)
    }

    /// Admits one call from `dept`, or says which limit it is over.
    fn admit(&self, dept: &str, metered: bool) -> Result<(), Status> {
        let (cfg, section) = (&self.cfg, self.section);
        self.with(dept, |DeptBuckets { calls, bytes }| {
            if calls.as_mut().is_some_and(|b| !b.try_take(1.0)) {
                return Err(Status::resource_exhausted(format!(
                    "rate limit: {dept} is over {section} requests_per_second = {} \
                     (burst_requests = {}); retry later",
                    cfg.requests_per_second, cfg.burst_requests
                )));
            }
            if metered && bytes.as_mut().is_some_and(Bucket::in_debt) {
                return Err(Status::resource_exhausted(format!(
                    "rate limit: {dept} is over {section} bytes_per_second = {} \
                     (burst_bytes = {}); retry later",
                    cfg.bytes_per_second, cfg.burst_bytes
                )));
            }
            Ok(())
        })
    }

    /// Charges `n` more calls to `dept`, going into debt if need be: a `SubmitBatch` of n
    /// documents costs n calls (the layer admitted it for one), so batching does not multiply a
    /// department's `requests_per_second`; its later calls are refused until the debt is paid.
    pub(crate) fn charge_calls(&self, dept: &str, n: usize) {
        self.with(dept, |DeptBuckets { calls, .. }| {
            if let Some(b) = calls.as_mut() {
                b.charge(n as f64);
            }
        });
    }

    /// Charges `n` request bytes to `dept`; returns how long to hold them back.
    fn charge(&self, dept: &str, n: usize) -> Duration {
        self.with(dept, |DeptBuckets { bytes, .. }| {
            bytes
                .as_mut()
                .map_or(Duration::ZERO, |b| b.charge(n as f64))
        })
    }
}

/// Who a call is from, as the limits name it (`None`: not metered).
pub(crate) type Who = Arc<dyn Fn(&http::Request<Body>) -> Option<String> + Send + Sync>;

/// The layer for `Server::builder().layer(..)`.
#[derive(Clone)]
pub(crate) struct LimitsLayer {
    limits: Arc<Limits>,
    who: Who,
}

impl std::fmt::Debug for LimitsLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LimitsLayer")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl LimitsLayer {
    /// The node listener's: each department by its verified certificate.
    pub(crate) fn departments(limits: Arc<Limits>) -> Self {
        LimitsLayer {
            limits,
            who: Arc::new(department),
        }
    }

    /// The peer listener's: each linked exchange's hub, as `who` names it.
    pub(crate) fn peers(limits: Arc<Limits>, who: Who) -> Self {
        LimitsLayer { limits, who }
    }
}

impl<S> tower_layer::Layer<S> for LimitsLayer {
    type Service = Limited<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Limited {
            inner,
            limits: Arc::clone(&self.limits),
            who: Arc::clone(&self.who),
        }
    }
}

/// A service behind the limits.
#[derive(Clone)]
pub(crate) struct Limited<S> {
    inner: S,
    limits: Arc<Limits>,
    who: Who,
}

/// The name under which department `d` is metered (and named in a refusal).
pub(crate) fn metered_name(d: &DeptId) -> String {
    format!("department {d}")
}

/// The department whose verified certificate the connection carries, if it is one.
fn department(req: &http::Request<Body>) -> Option<String> {
    let info = req.extensions().get::<ConnInfo>()?;
    match info.principal.as_ref()? {
        Principal::Dept(d) => Some(metered_name(d)),
        _ => None,
    }
}

impl<S> Service<http::Request<Body>> for Limited<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        // The service that was polled ready handles this call; a clone takes its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let method = req
            .uri()
            .path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        if method == "Subscribe" {
            return Box::pin(inner.call(req));
        }
        let metered = matches!(
            method.as_str(),
            "Submit" | "SubmitBatch" | "PutBlob" | "SubmitEvidence" | "Relay" | "RelayEvidence"
        );
        let dept = (self.who)(&req);
        if let Some(d) = &dept
            && let Err(status) = self.limits.admit(d, metered)
        {
            tracing::warn!(dept = %d, method, "call refused: {}", status.message());
            return Box::pin(std::future::ready(Ok(status.into_http())));
        }
        let idle_secs = self.limits.cfg.idle_stream_secs;
        let fired = Arc::new(AtomicBool::new(false));
        let idle = (idle_secs > 0).then(|| Duration::from_secs(idle_secs));
        let meter = dept
            .filter(|_| metered)
            .map(|d| (Arc::clone(&self.limits), d));
        let flag = Arc::clone(&fired);
        let req = req.map(move |inner| {
            Body::new(Guarded {
                inner,
                idle,
                timer: None,
                armed: false,
                fired: flag,
                meter,
                held: None,
            })
        });
        Box::pin(async move {
            let response = inner.call(req).await?;
            if fired.load(Ordering::Acquire) {
                // Whatever the handler made of the cut stream, the caller learns why.
                tracing::warn!(method, idle_secs, "request stream cut: idle");
                return Ok(Status::deadline_exceeded(format!(
                    "request stream idle for {idle_secs} s ([limits] idle_stream_secs); cut"
                ))
                .into_http());
            }
            Ok(response)
        })
    }
}

/// A request body with an idle deadline and, for a department's metered calls, the byte rate.
struct Guarded {
    inner: Body,
    idle: Option<Duration>,
    timer: Option<Pin<Box<Sleep>>>,
    /// Whether the idle deadline counts from the current wait (it restarts after each frame,
    /// so time the handler spends on a frame is not the sender's idleness).
    armed: bool,
    fired: Arc<AtomicBool>,
    meter: Option<(Arc<Limits>, String)>,
    /// A frame held back by the byte rate, and until when.
    held: Option<(Frame<Bytes>, Pin<Box<Sleep>>)>,
}

impl http_body::Body for Guarded {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        if let Some((_, wait)) = &mut this.held {
            ready!(wait.as_mut().poll(cx));
            this.armed = false;
            return Poll::Ready(this.held.take().map(|(frame, _)| Ok(frame)));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.armed = false;
                let n = frame.data_ref().map_or(0, Bytes::len);
                let wait = match &this.meter {
                    Some((limits, dept)) if n > 0 => limits.charge(dept, n),
                    _ => Duration::ZERO,
                };
                if wait.is_zero() {
                    return Poll::Ready(Some(Ok(frame)));
                }
                let mut sleep = Box::pin(tokio::time::sleep(wait));
                if sleep.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Some(Ok(frame)));
                }
                this.held = Some((frame, sleep));
                Poll::Pending
            }
            Poll::Pending => {
                let Some(idle) = this.idle else {
                    return Poll::Pending;
                };
                let deadline = Instant::now() + idle;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if !this.armed {
                    timer.as_mut().reset(deadline);
                    this.armed = true;
                }
                if timer.as_mut().poll(cx).is_ready() {
                    this.fired.store(true, Ordering::Release);
                    return Poll::Ready(Some(Err(Status::deadline_exceeded(
                        "request stream idle; cut",
                    ))));
                }
                Poll::Pending
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.held.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pretends `d` has passed since the bucket was last refilled.
    fn age(b: &mut Bucket, d: Duration) {
        b.last = Instant::now().checked_sub(d).unwrap();
    }

    #[test]
    fn buckets_refuse_over_the_burst_and_refill_at_the_rate() {
        let mut calls = Bucket::new(2.0, 4.0);
        assert!((0..4).all(|_| calls.try_take(1.0)));
        assert!(!calls.try_take(1.0));
        age(&mut calls, Duration::from_millis(510));
        assert!(calls.try_take(1.0));
        assert!(!calls.try_take(1.0));

        let mut bytes = Bucket::new(100.0, 100.0);
        assert_eq!(bytes.charge(100.0), Duration::ZERO);
        let wait = bytes.charge(50.0);
        assert!(
            wait > Duration::from_millis(490) && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        assert!(bytes.in_debt());
        age(&mut bytes, Duration::from_millis(510));
        assert!(!bytes.in_debt());
    }

    #[test]
    fn a_department_over_its_call_rate_is_told_which_limit() {
        let cfg = LimitsSection {
            requests_per_second: 1,
            burst_requests: 2,
            ..LimitsSection::default()
        };
        let limits = Limits::new(cfg);
        let (a, b) = ("department a", "department b");
        assert!(limits.admit(a, false).is_ok());
        assert!(limits.admit(a, false).is_ok());
        let refused = limits.admit(a, false).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(
            refused.message().contains("requests_per_second = 1"),
            "{refused:?}"
        );
        assert!(
            refused.message().contains("department a is over [limits]"),
            "{refused:?}"
        );
        assert!(limits.admit(b, false).is_ok(), "b has its own bucket");
    }
}
