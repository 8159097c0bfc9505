//! The CAs whose signatures a hub or node accepts: its own exchange's, and each linked
//! exchange's by name (docs/federation.md). A signature is checked only against the CA of the
//! exchange its signer must belong to, so a certificate from one exchange's CA can never stand
//! for another exchange's principal.

use std::{
    collections::BTreeMap,
    sync::{Arc, RwLock},
};

use super::{SignError, Verifier};
use crate::ids::ExchangeName;

/// This exchange's verifier and the linked exchanges'. Clones share the linked set, which a
/// node learns from its hub (and may learn again).
#[derive(Debug, Clone)]
pub struct Trust {
    own: Verifier,
    state: Arc<RwLock<Linked>>,
}

/// What a node may learn again from its hub.
#[derive(Debug, Default)]
struct Linked {
    own_name: Option<ExchangeName>,
    by_name: BTreeMap<ExchangeName, Verifier>,
}

impl Trust {
    /// Trusting only this exchange's CA (`own`), named `own_name` if it has a name.
    pub fn new(own: Verifier, own_name: Option<ExchangeName>) -> Self {
        Trust {
            own,
            state: Arc::new(RwLock::new(Linked {
                own_name,
                by_name: BTreeMap::new(),
            })),
        }
    }

    /// This exchange's verifier.
    pub fn own(&self) -> &Verifier {
        &self.own
    }

    /// This exchange's name, if it has one.
    pub fn own_name(&self) -> Option<ExchangeName> {
        self.read().own_name.clone()
    }

    /// Sets this exchange's name (a node learns it from its hub).
    pub fn set_own_name(&self, name: Option<ExchangeName>) {
        self.write().own_name = name;
    }

    /// Trusts `ca_der` for the principals of exchange `name` (replacing what was trusted for it).
    /// Our own name is refused: our CA is fixed.
    pub fn link(&self, name: ExchangeName, ca_der: &[u8]) -> Result<(), SignError> {
        if Some(&name) == self.read().own_name.as_ref() {
            return Err(SignError::Certificate(format!(
                "{name} is this exchange's own name; its CA is not replaced"
            )));
        }
        let v = Verifier::new(ca_der)?;
        self.write().by_name.insert(name, v);
        Ok(())
    }

    /// The names of the linked exchanges.
    pub fn linked_names(&self) -> Vec<ExchangeName> {
        self.read().by_name.keys().cloned().collect()
    }

    /// The verifier for principals of `exchange` (`None`, or our own name: this exchange's);
    /// `None` when no CA is known for it.
    pub fn verifier(&self, exchange: Option<&ExchangeName>) -> Option<Verifier> {
        let state = self.read();
        match exchange {
            None => Some(self.own.clone()),
            Some(e) if Some(e) == state.own_name.as_ref() => Some(self.own.clone()),
            Some(e) => state.by_name.get(e).cloned(),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Linked> {
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Linked> {
        self.state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
