//! The directory of departments: who may be addressed, and their display names.

use std::collections::BTreeMap;

use exchange_core::{config::DirectoryEntry, ids::DeptId};
use exchange_proto::v1 as pb;

/// The departments this hub serves, from `[[departments]]` in `hub.toml`.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    names: BTreeMap<DeptId, String>,
}

impl Directory {
    /// Builds the directory; a department listed twice is a config error.
    pub fn from_config(entries: &[DirectoryEntry]) -> anyhow::Result<Self> {
        let mut names = BTreeMap::new();
        for e in entries {
            if names.insert(e.id.clone(), e.name.clone()).is_some() {
                anyhow::bail!("department {} is listed twice in [[departments]]", e.id);
            }
        }
        Ok(Directory { names })
    }

    /// Whether `dept` is known.
    pub fn contains(&self, dept: &DeptId) -> bool {
        self.names.contains_key(dept)
    }

    /// How many departments.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// As sent to nodes.
    pub fn to_proto(&self) -> Vec<pb::Department> {
        self.names
            .iter()
            .map(|(id, name)| pb::Department {
                id: id.to_string(),
                name: name.clone(),
            })
            .collect()
    }
}
