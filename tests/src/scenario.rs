//! Scenario bodies that both crypto profiles run: each takes the [`Profile`] of the exchange it
//! starts, so that an international test (`tests/recall.rs`, ...) and its 国密 twin
//! (`tests/shangmi_ops.rs`) are one body, not two copies.
//!
//! [`Profile`]: exchange_core::crypto::Profile

pub mod audit;
pub mod backup;
pub mod forward;
pub mod python;
pub mod recall;
