//! The exchange's PKI: one CA, and for each principal (the hub, every department node) a TLS
//! identity and a separate Ed25519 document-signing identity, named by a URI SAN.
//!
//! It also checks evidence bundles offline ([`verify`]): the CA is the only trust it needs.
//!
//! This is the one rcgen path of the workspace: the `exchange-certs` binary, the end-to-end test
//! harness and `demo-setup` all issue certificates through [`Ca`], so a certificate made for a
//! test is the same shape as one made for production.
#![warn(missing_docs)]

mod ca;
pub mod cli;
mod demo;
mod files;
pub mod revoke;
pub mod verify;

pub use ca::{Ca, Identity, RevokedCert, Validity};
pub use demo::{DemoLayout, DeptSpec, DeptSpecError, demo_setup};
pub use files::{
    CA_CERT_FILE, CA_KEY_FILE, SIGNING_CERT_FILE, SIGNING_KEY_FILE, TLS_CERT_FILE, TLS_KEY_FILE,
    issue_into_dir,
};
