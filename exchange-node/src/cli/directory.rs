//! `exchange-node directory`: the departments documents can be addressed to, as the hub last
//! told this node.

use exchange_proto::v1 as pb;
use serde::Serialize;

use super::{Ctx, ctx::Lookup, table::Table};

/// Flags of `directory`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print a JSON array of {id, name} instead of a table.
    #[arg(long)]
    json: bool,
}

/// One department in `--json` output.
#[derive(Debug, Serialize)]
struct DepartmentJson<'a> {
    /// The id to use with `send --to`.
    id: &'a str,
    /// Display name, e.g. 市财政局.
    name: &'a str,
}

/// Lists the departments.
pub async fn run(args: Args, ctx: &Ctx) -> anyhow::Result<()> {
    let departments = ctx
        .client()
        .list_departments(pb::ListDepartmentsRequest {})
        .await
        .map_err(|s| ctx.rpc_error(&s, Lookup::Received))?
        .into_inner()
        .departments;
    if args.json {
        let json: Vec<DepartmentJson<'_>> = departments
            .iter()
            .map(|d| DepartmentJson {
                id: &d.id,
                name: &d.name,
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(());
    }
    if departments.is_empty() {
        eprintln!("the directory is empty");
        return Ok(());
    }
    let mut t = Table::new(&["ID", "NAME"]);
    for d in &departments {
        t.row(vec![d.id.clone(), d.name.clone()]);
    }
    print!("{}", t.render());
    Ok(())
}
