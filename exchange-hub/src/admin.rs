//! The `Admin` gRPC service: administrators question the audit log, take backups and ask for
//! statistics while the hub runs. Callers must present a certificate naming an administrator;
//! every call is itself audited.

use std::{pin::Pin, sync::Arc};

use exchange_core::{error::ServiceError, identity::Principal, tls::peer_principal};
use exchange_proto::v1::{self as pb, admin_server};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::{
    Hub,
    audit::{self, Event, Filter},
};

type Stream_<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The tonic service.
#[derive(Debug, Clone)]
pub(crate) struct AdminService {
    hub: Arc<Hub>,
}

impl AdminService {
    pub(crate) fn new(hub: Arc<Hub>) -> Self {
        AdminService { hub }
    }

    /// The calling administrator; records the action in the audit log.
    async fn admin<T>(&self, req: &Request<T>, action: String) -> Result<String, Status> {
        match peer_principal(req)? {
            Principal::Admin(name) => {
                audit::record(
                    &self.hub.store,
                    Event::new(pb::AuditKind::AdminAction)
                        .dept(format!("admin:{name}"))
                        .detail(action),
                )
                .await;
                Ok(name)
            }
            other => Err(Status::permission_denied(format!(
                "{other} is not an administrator"
            ))),
        }
    }
}

fn stream<T: Send + 'static>(items: Vec<T>) -> Stream_<T> {
    Box::pin(tokio_stream::iter(items.into_iter().map(Ok)))
}

#[tonic::async_trait]
impl admin_server::Admin for AdminService {
    type ListAuditStream = Stream_<pb::AuditRecord>;

    async fn list_audit(
        &self,
        req: Request<pb::ListAuditRequest>,
    ) -> Result<Response<Self::ListAuditStream>, Status> {
        let r = req.get_ref().clone();
        self.admin(
            &req,
            format!(
                "audit list doc={} dept={} kind={} since={} until={}",
                r.doc_id, r.dept, r.kind, r.since_ms, r.until_ms
            ),
        )
        .await?;
        let f = Filter {
            doc_id: r.doc_id,
            dept: r.dept,
            kind: r.kind,
            since_ms: r.since_ms,
            until_ms: r.until_ms,
            limit: r.limit as usize,
        };
        let records = audit::list(&self.hub.store, f)
            .await
            .map_err(ServiceError::from)?;
        Ok(Response::new(stream(records)))
    }

    async fn verify_audit(
        &self,
        req: Request<pb::VerifyAuditRequest>,
    ) -> Result<Response<pb::VerifyAuditResponse>, Status> {
        self.admin(&req, "audit verify".into()).await?;
        let r = audit::verify(&self.hub.store, &self.hub.verifier)
            .await
            .map_err(ServiceError::from)?;
        Ok(Response::new(r))
    }

    type ExportAuditStream = Stream_<pb::ExportItem>;

    async fn export_audit(
        &self,
        req: Request<pb::ExportAuditRequest>,
    ) -> Result<Response<Self::ExportAuditStream>, Status> {
        let since = req.get_ref().since_ms;
        self.admin(&req, format!("audit export since={since}"))
            .await?;
        // Sign the head first, so the export ends on a checkpoint and can be checked whole.
        let cfg = &self.hub.cfg.audit;
        audit::checkpoint(
            &self.hub.store,
            &self.hub.signer,
            cfg.checkpoint_every,
            0,
            true,
        )
        .await?;
        let items = audit::export(&self.hub.store, since)
            .await
            .map_err(ServiceError::from)?;
        Ok(Response::new(stream(items)))
    }

    async fn backup(
        &self,
        req: Request<pb::BackupRequest>,
    ) -> Result<Response<pb::BackupResponse>, Status> {
        let out = std::path::PathBuf::from(&req.get_ref().out_dir);
        // Audited before the snapshot, so the backup holds the record of its own taking.
        self.admin(&req, format!("backup to {}", out.display()))
            .await?;
        let data = &self.hub.cfg.hub.data_dir;
        let summary = crate::backup::take(&self.hub.store, data, &out)
            .await
            .map_err(ServiceError::from)?;
        Ok(Response::new(summary.into()))
    }

    async fn record_key_rotation(
        &self,
        req: Request<pb::KeyRotation>,
    ) -> Result<Response<pb::KeyRotationResponse>, Status> {
        let action = crate::cli::rotate_kek::describe(req.get_ref());
        self.admin(&req, action).await?;
        Ok(Response::new(pb::KeyRotationResponse {}))
    }

    async fn get_stats(
        &self,
        req: Request<pb::GetStatsRequest>,
    ) -> Result<Response<pb::GetStatsResponse>, Status> {
        let r = req.get_ref().clone();
        self.admin(
            &req,
            format!(
                "stats from={} until={} dept={}",
                r.from_ms, r.until_ms, r.dept
            ),
        )
        .await?;
        let now = exchange_core::time::now_ms();
        let stats = crate::stats::compute(&self.hub.store, &self.hub.cfg, r, now).await?;
        Ok(Response::new(stats))
    }
}
