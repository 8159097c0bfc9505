//! `exchange-node directory`: the departments and groups documents can be addressed to, as the
//! hub last told this node. A group is addressed as `group:<id>` (e.g. `send --to
//! group:all-counties`); the node resolves it to the members when it seals the document.

use exchange_proto::v1 as pb;
use serde::Serialize;

use super::{Ctx, ctx::Lookup, table::Table};

/// Flags of `directory`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print a JSON array of {kind, id, name, ...} instead of a table: the departments
    /// (`kind` = "department", with `level` and `parent`), then the groups (`kind` = "group",
    /// `id` = "group:<id>", with `members`).
    #[arg(long)]
    json: bool,
    /// Also list the departments of linked exchanges (docs/federation.md), as
    /// `dept@exchange`, and departments this department may not address (the hub's routing
    /// policy scopes each sender), marked as such. By default only this exchange's addressable
    /// departments are listed.
    #[arg(long)]
    all: bool,
}

/// One department or group in `--json` output.
#[derive(Debug, Serialize)]
struct EntryJson<'a> {
    /// `department` or `group`.
    kind: &'static str,
    /// The id to use with `send --to` (`group:<id>` for a group, `dept@exchange` for a
    /// department of a linked exchange).
    id: String,
    /// The linked exchange of a department of another exchange; null for this exchange's.
    exchange: Option<&'a str>,
    /// Display name, e.g. 市财政局, or a group's printed wording, e.g. 各县区人民政府.
    name: &'a str,
    /// A department's level (city, county, township, ...); null if not set or a group.
    level: Option<&'a str>,
    /// A department's parent department; null if none or a group.
    parent: Option<&'a str>,
    /// A group's members; empty for a department.
    members: &'a [String],
    /// False for a department the routing policy does not let this department address
    /// (listed only with `--all`).
    addressable: bool,
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

fn to_json(listing: &pb::ListDepartmentsResponse) -> Vec<EntryJson<'_>> {
    let depts = listing.departments.iter().map(|d| EntryJson {
        kind: "department",
        id: address(d),
        exchange: non_empty(&d.exchange),
        name: &d.name,
        level: non_empty(&d.level),
        parent: non_empty(&d.parent),
        members: &[],
        addressable: !d.outside_scope,
    });
    let groups = listing.groups.iter().map(|g| EntryJson {
        kind: "group",
        id: format!("{}{}", crate::groups::GROUP_PREFIX, g.id),
        exchange: None,
        name: &g.name,
        level: None,
        parent: None,
        members: &g.members,
        addressable: true,
    });
    depts.chain(groups).collect()
}

/// Lists the departments, then the groups.
pub async fn run(args: Args, ctx: &Ctx) -> anyhow::Result<()> {
    let listing = ctx
        .client()
        .list_departments(pb::ListDepartmentsRequest {})
        .await
        .map_err(|s| ctx.rpc_error(&s, Lookup::Received))?
        .into_inner();
    let mut listing = listing;
    if !args.all {
        listing
            .departments
            .retain(|d| !d.outside_scope && d.exchange.is_empty());
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&to_json(&listing))?);
        return Ok(());
    }
    if listing.departments.is_empty() {
        eprintln!("the directory is empty");
        return Ok(());
    }
    print!("{}", table(&listing).render());
    Ok(())
}

/// How `send --to` names a department: `dept@exchange` for one of a linked exchange.
fn address(d: &pb::Department) -> String {
    if d.exchange.is_empty() {
        d.id.clone()
    } else {
        format!("{}@{}", d.id, d.exchange)
    }
}

fn table(listing: &pb::ListDepartmentsResponse) -> Table {
    let mut t = Table::new(&["ID", "NAME", "LEVEL", "PARENT / MEMBERS"]);
    for d in &listing.departments {
        t.row(vec![
            address(d),
            if d.outside_scope {
                format!("{} (not addressable)", d.name)
            } else {
                d.name.clone()
            },
            d.level.clone(),
            d.parent.clone(),
        ]);
    }
    for g in &listing.groups {
        t.row(vec![
            format!("{}{}", crate::groups::GROUP_PREFIX, g.id),
            g.name.clone(),
            "group".to_owned(),
            g.members.join(","),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_listed_after_departments_with_their_prefix() {
        let listing = pb::ListDepartmentsResponse {
            departments: vec![pb::Department {
                id: "b".into(),
                name: "甲县人民政府".into(),
                level: "county".into(),
                parent: "a".into(),
                outside_scope: false,
                exchange: String::new(),
            }],
            groups: vec![pb::Group {
                id: "all-counties".into(),
                name: "各县区人民政府".into(),
                members: vec!["b".into()],
            }],
            ..Default::default()
        };
        let v = serde_json::to_value(to_json(&listing)).unwrap();
        assert_eq!(v[0]["kind"], "department");
        assert_eq!(v[0]["level"], "county");
        assert_eq!(v[1]["id"], "group:all-counties");
        assert_eq!(v[1]["members"][0], "b");
        let out = table(&listing).render();
        assert!(out.contains("group:all-counties"), "{out}");
    }
}
