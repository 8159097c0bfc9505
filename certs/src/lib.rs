//! The exchange's PKI: one CA, and for each principal (the hub, every department node) a TLS
//! identity and a separate document-signing identity, named by a URI SAN. The CA's crypto
//! profile decides the algorithms ([`Authority`]): `international` (ECDSA P-256 TLS, Ed25519
//! signing, through rcgen) or, with the cargo feature `shangmi`, `shangmi` (SM2 everywhere and
//! TLCP's double TLS certificates, through Tongsuo; docs/shangmi.md).
//!
//! It also checks evidence bundles offline ([`verify`]): the CA is the only trust it needs.
//!
//! This is the one rcgen path of the workspace: the `exchange-certs` binary, the end-to-end test
//! harness and `demo-setup` all issue certificates through [`Ca`], so a certificate made for a
//! test is the same shape as one made for production.
#![warn(missing_docs)]

mod authority;
mod ca;
pub mod cli;
mod demo;
pub mod federation;
mod files;
pub mod revoke;
#[cfg(feature = "shangmi")]
mod sm;
pub mod verify;

pub use authority::{Authority, UsageError, ca_profile, ensure_built};
pub use ca::{Ca, Identity, RevokedCert, Validity};
pub use demo::{DemoLayout, DeptSpec, DeptSpecError, demo_setup, demo_setup_with_profile};
pub use federation::{ExchangeSpec, FederationLayout, LinkedExchange, demo_federation};
pub use files::{
    CA_CERT_FILE, CA_KEY_FILE, SIGNING_CERT_FILE, SIGNING_KEY_FILE, TLS_CERT_FILE,
    TLS_ENC_CERT_FILE, TLS_ENC_KEY_FILE, TLS_KEY_FILE, issue_into_dir,
};
#[cfg(feature = "shangmi")]
pub use sm::SmCa;
