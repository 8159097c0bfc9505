//! The directory of departments: who may be addressed, their display names, where they sit
//! (level and parent: city → county → township), and the named groups senders may address
//! (各县区人民政府 and the like).

use std::collections::{BTreeMap, BTreeSet};

use exchange_core::{
    config::{DirectoryEntry, GroupEntry},
    ids::DeptId,
};
use exchange_proto::v1 as pb;

/// The departments this hub serves, from `[[departments]]` in `hub.toml`, and the groups of
/// `[[groups]]`.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    entries: BTreeMap<DeptId, DirectoryEntry>,
    /// In config order: the order the hub lists them is the order the operator chose.
    groups: Vec<GroupEntry>,
}

impl Directory {
    /// Builds the directory; a department listed twice, or a parent that is not in the
    /// directory, is a config error.
    pub fn from_config(entries: &[DirectoryEntry]) -> anyhow::Result<Self> {
        let mut map = BTreeMap::new();
        for e in entries {
            if map.insert(e.id.clone(), e.clone()).is_some() {
                anyhow::bail!("department {} is listed twice in [[departments]]", e.id);
            }
        }
        for e in entries {
            if let Some(p) = &e.parent
                && (!map.contains_key(p) || p == &e.id)
            {
                anyhow::bail!(
                    "[[departments]] {}: parent {p} is not another department in the directory",
                    e.id
                );
            }
        }
        Ok(Directory {
            entries: map,
            groups: Vec::new(),
        })
    }

    /// Adds the `[[groups]]`: each id once, not a department's id, every member in the
    /// directory.
    pub fn with_groups(mut self, groups: &[GroupEntry]) -> anyhow::Result<Self> {
        let mut ids = BTreeSet::new();
        for g in groups {
            if !ids.insert(g.id.clone()) {
                anyhow::bail!("group {} is listed twice in [[groups]]", g.id);
            }
            if g.members.is_empty() {
                anyhow::bail!("[[groups]] {}: no members", g.id);
            }
            // A member of a linked exchange is checked when a document is routed to it.
            if let Some(m) = g
                .members
                .iter()
                .find(|m| m.exchange.is_none() && !self.entries.contains_key(&m.dept))
            {
                anyhow::bail!("[[groups]] {}: member {m} is not in [[departments]]", g.id);
            }
        }
        self.groups = groups.to_vec();
        Ok(self)
    }

    /// Whether `dept` is known.
    pub fn contains(&self, dept: &DeptId) -> bool {
        self.entries.contains_key(dept)
    }

    /// How many departments.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// As sent to nodes.
    pub fn to_proto(&self) -> Vec<pb::Department> {
        self.entries
            .values()
            .map(|e| pb::Department {
                id: e.id.to_string(),
                name: e.name.clone(),
                level: e.level.clone().unwrap_or_default(),
                parent: e
                    .parent
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                outside_scope: false,
                exchange: String::new(),
            })
            .collect()
    }

    /// The groups, as sent to nodes.
    pub fn groups_proto(&self) -> Vec<pb::Group> {
        self.groups
            .iter()
            .map(|g| pb::Group {
                id: g.id.to_string(),
                name: g.name.clone(),
                members: g.members.iter().map(ToString::to_string).collect(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dept(id: &str, parent: Option<&str>) -> DirectoryEntry {
        DirectoryEntry {
            id: id.parse().unwrap(),
            name: id.to_uppercase(),
            level: Some("county".into()),
            parent: parent.map(|p| p.parse().unwrap()),
        }
    }

    #[test]
    fn groups_must_name_known_departments() {
        let dir = Directory::from_config(&[dept("city", None), dept("x", Some("city"))]).unwrap();
        let good = GroupEntry {
            id: "all".parse().unwrap(),
            name: "各县区人民政府".into(),
            members: vec!["x".parse().unwrap()],
        };
        let dir2 = dir
            .clone()
            .with_groups(std::slice::from_ref(&good))
            .unwrap();
        assert_eq!(dir2.groups_proto()[0].members, ["x"]);
        assert_eq!(dir2.to_proto()[1].parent, "city");
        let bad = GroupEntry {
            members: vec!["nobody".parse().unwrap()],
            ..good
        };
        let err = dir.with_groups(&[bad]).unwrap_err().to_string();
        assert!(err.contains("nobody"), "{err}");
    }

    #[test]
    fn an_unknown_parent_is_refused() {
        let err = Directory::from_config(&[dept("x", Some("nowhere"))])
            .unwrap_err()
            .to_string();
        assert!(err.contains("nowhere"), "{err}");
    }
}
