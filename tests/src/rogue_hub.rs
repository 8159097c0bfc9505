//! A hub the test plays toward a real node, for what a genuine hub never sends (a compromised
//! hub, or one with a bug): it presents the exchange hub's own TLS certificate, so the node
//! takes it for its hub, answers `ListDepartments`, and on `Subscribe` pushes exactly the
//! items the test hands it, recording the node's acknowledgements. Every other call is
//! refused as unimplemented. TLS 1.3 through tonic's rustls: the international profile only.

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
};

use anyhow::{Context as _, Result};
use exchange_core::config::HubConfig;
use exchange_proto::v1::{self as pb, hub_server::HubServer};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{
    Request, Response, Status, Streaming,
    transport::{Certificate, Identity, Server, ServerTlsConfig},
};

use crate::{DEADLINE, TestExchange, eventually};

type Pushes = mpsc::Sender<Result<pb::HubPush, Status>>;

/// A running rogue hub; stops when dropped.
pub struct RogueHub {
    addr: SocketAddr,
    /// The push stream of the node's latest `Subscribe`.
    subscriber: Arc<Mutex<Option<Pushes>>>,
    /// The seqs the node has acknowledged.
    acks: watch::Receiver<BTreeSet<u64>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for RogueHub {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl RogueHub {
    /// Where it listens: a node's `[hub] addr`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Pushes `evidence` (about a document the node sent) as item `seq`, once the node has
    /// subscribed.
    pub async fn push_evidence(&self, seq: u64, evidence: pb::SignedEvidence) -> Result<()> {
        let push = pb::HubPush {
            seq,
            item: Some(pb::hub_push::Item::Evidence(evidence)),
            ..Default::default()
        };
        let stream = eventually("the node to subscribe", DEADLINE, || {
            let s = self
                .subscriber
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let s = s.clone();
            async move { Ok(s) }
        })
        .await?;
        stream.send(Ok(push)).await.context("the node hung up")
    }

    /// Waits until the node has acknowledged item `seq`.
    pub async fn wait_acked(&self, seq: u64) -> Result<()> {
        eventually(&format!("the node to acknowledge {seq}"), DEADLINE, || {
            let done = self.acks.borrow().contains(&seq);
            async move { Ok(done.then_some(())) }
        })
        .await
    }
}

impl TestExchange {
    /// Starts a [`RogueHub`] on a port of its own with the hub's TLS certificate and key
    /// (trusting client certificates of the exchange CA); the real hub is left as it is.
    pub async fn rogue_hub(&self) -> Result<RogueHub> {
        let cfg: HubConfig = exchange_core::config::load(&self.hub_config)?;
        let read = |p: &std::path::Path| {
            std::fs::read(p).with_context(|| format!("reading {}", p.display()))
        };
        let tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(
                read(&cfg.tls.cert)?,
                read(&cfg.tls.key)?,
            ))
            .client_ca_root(Certificate::from_pem(read(&cfg.tls.ca)?));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (acks_tx, acks) = watch::channel(BTreeSet::new());
        let subscriber = Arc::default();
        let service = Service {
            subscriber: Arc::clone(&subscriber),
            acks: Arc::new(acks_tx),
        };
        let server = Server::builder()
            .tls_config(tls)?
            .add_service(HubServer::new(service))
            .serve_with_incoming(TcpListenerStream::new(listener));
        let server = tokio::spawn(async move {
            if let Err(e) = server.await {
                eprintln!("rogue hub: {e}");
            }
        });
        Ok(RogueHub {
            addr,
            subscriber,
            acks,
            server,
        })
    }
}

struct Service {
    subscriber: Arc<Mutex<Option<Pushes>>>,
    acks: Arc<watch::Sender<BTreeSet<u64>>>,
}

fn unimplemented<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented("a rogue hub"))
}

#[tonic::async_trait]
impl pb::hub_server::Hub for Service {
    async fn list_departments(
        &self,
        _: Request<pb::ListDepartmentsRequest>,
    ) -> Result<Response<pb::ListDepartmentsResponse>, Status> {
        Ok(Response::new(pb::ListDepartmentsResponse::default()))
    }

    type SubscribeStream = ReceiverStream<Result<pb::HubPush, Status>>;

    async fn subscribe(
        &self,
        req: Request<Streaming<pb::SubscribeRequest>>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let mut inbound = req.into_inner();
        let acks = Arc::clone(&self.acks);
        tokio::spawn(async move {
            use pb::subscribe_request::Msg;
            while let Ok(Some(m)) = inbound.message().await {
                let seqs: Vec<u64> = match m.msg {
                    Some(Msg::Ack(a)) => vec![a.seq],
                    Some(Msg::Acks(b)) => b.acks.iter().map(|a| a.seq).collect(),
                    None => Vec::new(),
                };
                acks.send_modify(|s| s.extend(seqs));
            }
        });
        let (tx, rx) = mpsc::channel(16);
        *self
            .subscriber
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(tx);
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn blob_status(
        &self,
        _: Request<pb::BlobStatusRequest>,
    ) -> Result<Response<pb::BlobStatusResponse>, Status> {
        unimplemented()
    }

    async fn put_blob(
        &self,
        _: Request<Streaming<pb::BlobChunk>>,
    ) -> Result<Response<pb::PutBlobResponse>, Status> {
        unimplemented()
    }

    async fn submit(
        &self,
        _: Request<pb::SubmitRequest>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        unimplemented()
    }

    async fn submit_batch(
        &self,
        _: Request<pb::SubmitBatchRequest>,
    ) -> Result<Response<pb::SubmitBatchResponse>, Status> {
        unimplemented()
    }

    type GetBlobStream = ReceiverStream<Result<pb::BlobData, Status>>;

    async fn get_blob(
        &self,
        _: Request<pb::GetBlobRequest>,
    ) -> Result<Response<Self::GetBlobStream>, Status> {
        unimplemented()
    }

    async fn submit_evidence(
        &self,
        _: Request<pb::SubmitEvidenceRequest>,
    ) -> Result<Response<pb::SubmitEvidenceResponse>, Status> {
        unimplemented()
    }
}
