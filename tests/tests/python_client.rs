//! The Python integration example (`docs/examples/python/submit_and_follow.py`) against a real
//! exchange: it generates its stubs from `proto/`, submits a document through node a's API and
//! follows it with `WatchEvents` until b's clerk has confirmed it (签收). The body is
//! `exchange_tests::scenario::python`, which `tests/shangmi_ops.rs` runs under the 国密 profile.
//!
//! Runs only where `python3 -c 'import grpc, grpc_tools'` works (`pip install grpcio
//! grpcio-tools`); elsewhere it prints SKIPPED and passes, unless `EXCHANGE_REQUIRE_PYTHON_GRPC`
//! is set (CI sets it after installing the packages in a venv): then it fails.

use anyhow::Result;
use exchange_core::crypto::Profile::International;

#[tokio::test]
async fn the_python_example_submits_and_follows_a_document_until_it_is_confirmed() -> Result<()> {
    exchange_tests::scenario::python::submit_and_follow(International).await
}
