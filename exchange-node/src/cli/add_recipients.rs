//! `exchange-node add-recipients ID --to DEPT[,DEPT] [--cc DEPT[,DEPT]]`: 补发, send a document
//! this department already sent to further departments. They receive the same signed document
//! with this department's signed statement that it added them; recipients it already had are
//! left alone.

use exchange_proto::v1 as pb;

use super::{Ctx, ctx::Lookup};

/// Flags of `add-recipients`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The id of a document this department sent (as `send` printed it).
    id: String,
    /// 主送: department ids to add, comma-separated.
    #[arg(long, value_name = "DEPT[,DEPT]", value_delimiter = ',')]
    to: Vec<String>,
    /// 抄送: department ids to add as copy-to, comma-separated.
    #[arg(long, value_name = "DEPT[,DEPT]", value_delimiter = ',')]
    cc: Vec<String>,
}

/// Adds the recipients; prints the ones actually added, one per line.
pub async fn run(args: Args, ctx: &Ctx) -> anyhow::Result<()> {
    let clean = |v: Vec<String>| -> Vec<String> {
        v.into_iter()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    };
    let (to, cc) = (clean(args.to), clean(args.cc));
    if to.is_empty() && cc.is_empty() {
        anyhow::bail!("name the departments to add with --to and/or --cc (see `directory`)");
    }
    let id = args.id.trim().to_owned();
    let resp = ctx
        .client()
        .add_recipients(pb::AddRecipientsRequest {
            doc_id: id.clone(),
            to_depts: to,
            cc_depts: cc,
        })
        .await
        .map_err(|s| ctx.rpc_error(&s, Lookup::Sent))?
        .into_inner();
    if resp.added.is_empty() {
        eprintln!("every department named already is a recipient of {id}: nothing added");
    }
    for d in &resp.added {
        println!("{d}");
    }
    Ok(())
}
