//! A backup's summary on the way out: to the wire (`BackupResponse`), to the gRPC boundary
//! (`ServiceError`), and to the operator's terminal.

use std::io;

use super::{BackupError, Summary};

impl From<Summary> for exchange_proto::v1::BackupResponse {
    fn from(s: Summary) -> Self {
        exchange_proto::v1::BackupResponse {
            dir: s.dir.display().to_string(),
            tables: s
                .tables
                .into_iter()
                .map(|(name, rows)| exchange_proto::v1::BackupTable { name, rows })
                .collect(),
            blobs: s.blobs,
            blob_bytes: s.blob_bytes,
            blobs_copied: s.copied,
            at_ms: s.at_ms,
        }
    }
}

/// A backup's summary for the operator, as the `backup` commands print it on stdout: a line
/// per table and one for the blobs, or (`json`) one JSON document.
pub fn describe(s: &exchange_proto::v1::BackupResponse, json: bool) -> String {
    if json {
        let tables: serde_json::Map<String, serde_json::Value> = s
            .tables
            .iter()
            .map(|t| (t.name.clone(), t.rows.into()))
            .collect();
        return serde_json::json!({
            "dir": s.dir,
            "at_ms": s.at_ms,
            "tables": tables,
            "blobs": s.blobs,
            "blob_bytes": s.blob_bytes,
            "blobs_copied": s.blobs_copied,
        })
        .to_string();
    }
    let mut text = String::new();
    for t in &s.tables {
        text.push_str(&format!("{:<20} {:>10} rows\n", t.name, t.rows));
    }
    text.push_str(&format!(
        "{:<20} {:>10} files, {} bytes ({} copied, the rest hard-linked)\nbackup written to {}",
        "blobs", s.blobs, s.blob_bytes, s.blobs_copied, s.dir
    ));
    text
}

impl From<BackupError> for crate::error::ServiceError {
    fn from(e: BackupError) -> Self {
        use crate::error::{ErrorCode, ServiceError};
        match e {
            BackupError::Destination { .. } => ServiceError::invalid(e.to_string()),
            BackupError::Store(s) => ServiceError::from(s),
            BackupError::Io { ref source, .. } if source.kind() == io::ErrorKind::StorageFull => {
                ServiceError::new(ErrorCode::ResourceExhausted, e.to_string())
            }
            BackupError::Io { .. } => ServiceError::new(ErrorCode::Unavailable, e.to_string()),
            BackupError::Blob(ref b) if b.is_disk_full() => {
                ServiceError::new(ErrorCode::ResourceExhausted, e.to_string())
            }
            BackupError::Blob(ref b) if b.is_damage() => {
                ServiceError::new(ErrorCode::DataLoss, e.to_string())
            }
            BackupError::Blob(_) => ServiceError::new(ErrorCode::Unavailable, e.to_string()),
            BackupError::UnknownTable(_) => ServiceError::new(ErrorCode::Internal, e.to_string()),
        }
    }
}
