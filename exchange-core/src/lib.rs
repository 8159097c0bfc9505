//! The shared core of the document exchange: what the hub, the node, the PKI tool and the tests
//! would otherwise each write again.
//!
//! - [`ids`], [`identity`]: who and what (department and document ids, certificate principals);
//! - [`document`], [`convert`], [`signing`]: the signed document and its evidence;
//! - [`state`]: the one place that owns the delivery state machine;
//! - [`tls`]: mutual TLS in both directions, and identity from the peer certificate;
//! - [`store`], [`blob`]: durable storage (redb) and content-addressed content files;
//! - [`config`], [`telemetry`], [`shutdown`], [`error`], [`backoff`]: daemon plumbing;
//! - [`metrics`], [`tooling`], [`sdnotify`], [`backup`]: what operators and their tools see.
#![warn(missing_docs)]

pub mod atrest;
pub mod audit;
pub mod backoff;
pub mod backup;
pub mod blob;
pub mod bundle;
pub mod cache;
pub mod config;
pub mod convert;
pub mod crypto;
pub mod document;
pub mod error;
pub mod identity;
pub mod ids;
pub mod metrics;
pub mod sdnotify;
pub mod shutdown;
pub mod signing;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod time;
pub mod tls;
pub mod tooling;
