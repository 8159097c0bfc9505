//! Group addressing (收文通讯组): a draft may name `group:<id>` among its 主送 or 抄送
//! recipients, e.g. `group:all-counties` for 各县区人民政府. The node resolves it from the
//! directory it last fetched from the hub, *before* sealing, so the signed header records both
//! forms: the printed wording (`main_recipients_text` / `cc_text`) and the resolved department
//! ids (`to_depts` / `cc_depts`) that the hub routes on and every recipient can check.

use std::collections::HashSet;

use exchange_core::error::{ErrorCode, ServiceError};
use exchange_proto::v1 as pb;

use crate::Node;

/// The prefix that marks a group in `to_depts` / `cc_depts`.
pub(crate) const GROUP_PREFIX: &str = "group:";

/// Resolves every `group:` entry of the draft's recipients, in place.
pub(crate) fn resolve_draft(
    node: &Node,
    draft: &mut pb::DocumentDraft,
) -> Result<(), ServiceError> {
    let Some(meta) = draft.metadata.as_mut() else {
        return Ok(()); // check_draft explains the missing metadata
    };
    let named = |ids: &[String]| ids.iter().any(|d| d.trim().starts_with(GROUP_PREFIX));
    if !named(&meta.to_depts) && !named(&meta.cc_depts) {
        return Ok(());
    }
    let groups = node
        .groups
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    if groups.is_empty()
        && node
            .directory
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_none()
    {
        return Err(ServiceError::new(
            ErrorCode::Unavailable,
            "the hub has not been reached yet; group addressing needs its directory",
        ));
    }
    resolve(meta, &groups, node.cfg.node.id.as_str())
}

/// Expands groups to their members (主送 first, then 抄送; a department named twice keeps its
/// first place; the sender is left out of its own groups) and writes the printed wording where
/// the draft gave none, or gave just the raw entries.
pub(crate) fn resolve(
    meta: &mut pb::DocumentMetadata,
    groups: &[pb::Group],
    me: &str,
) -> Result<(), ServiceError> {
    let mut seen: HashSet<String> = HashSet::new();
    let (to, to_text) = expand("metadata.to_depts", &meta.to_depts, groups, me, &mut seen)?;
    let (cc, cc_text) = expand("metadata.cc_depts", &meta.cc_depts, groups, me, &mut seen)?;
    if meta.main_recipients_text.trim().is_empty()
        || meta.main_recipients_text == meta.to_depts.join("、")
    {
        meta.main_recipients_text = to_text;
    }
    if meta.cc_text.trim().is_empty() || meta.cc_text == meta.cc_depts.join("、") {
        meta.cc_text = cc_text;
    }
    meta.to_depts = to;
    meta.cc_depts = cc;
    Ok(())
}

/// One list: the resolved ids, and the printed wording (a group's name, a department's id).
fn expand(
    field: &str,
    entries: &[String],
    groups: &[pb::Group],
    me: &str,
    seen: &mut HashSet<String>,
) -> Result<(Vec<String>, String), ServiceError> {
    let mut ids = Vec::new();
    let mut words = Vec::new();
    for raw in entries {
        let entry = raw.trim();
        match entry.strip_prefix(GROUP_PREFIX) {
            Some(gid) => {
                let g = groups.iter().find(|g| g.id == gid).ok_or_else(|| {
                    ServiceError::invalid(format!(
                        "{field}: unknown group {gid} (see `exchange-node directory`)"
                    ))
                })?;
                words.push(g.name.clone());
                for m in &g.members {
                    if m != me && seen.insert(m.clone()) {
                        ids.push(m.clone());
                    }
                }
            }
            None => {
                words.push(entry.to_owned());
                if seen.insert(entry.to_owned()) {
                    ids.push(entry.to_owned());
                }
            }
        }
    }
    Ok((ids, words.join("、")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counties() -> pb::Group {
        pb::Group {
            id: "all-counties".into(),
            name: "各县区人民政府".into(),
            members: vec!["b".into(), "c".into(), "a".into()],
        }
    }

    #[test]
    fn a_group_resolves_to_its_members_and_keeps_its_wording() {
        let mut m = pb::DocumentMetadata {
            to_depts: vec!["group:all-counties".into()],
            cc_depts: vec!["c".into(), "d".into()],
            main_recipients_text: "group:all-counties".into(),
            ..Default::default()
        };
        resolve(&mut m, &[counties()], "a").unwrap();
        assert_eq!(m.to_depts, ["b", "c"], "the sender is left out");
        assert_eq!(m.cc_depts, ["d"], "c is already a main recipient");
        assert_eq!(m.main_recipients_text, "各县区人民政府");
        assert_eq!(m.cc_text, "c、d");
    }

    #[test]
    fn the_senders_own_wording_is_kept() {
        let mut m = pb::DocumentMetadata {
            to_depts: vec!["group:all-counties".into()],
            main_recipients_text: "各县（市、区）人民政府".into(),
            ..Default::default()
        };
        resolve(&mut m, &[counties()], "x").unwrap();
        assert_eq!(m.main_recipients_text, "各县（市、区）人民政府");
        assert_eq!(m.to_depts, ["b", "c", "a"]);
    }

    #[test]
    fn an_unknown_group_is_named() {
        let mut m = pb::DocumentMetadata {
            to_depts: vec!["group:nope".into()],
            ..Default::default()
        };
        let err = resolve(&mut m, &[counties()], "a").unwrap_err();
        assert!(format!("{err:?}").contains("nope"));
    }
}
