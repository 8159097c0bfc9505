//! `exchange-node reject ID --reason TEXT`: 退回, a clerk sends a received document back to its
//! sender. The reason is required, and signed with the rejection.

use exchange_proto::v1 as pb;

use super::{Ctx, clerk_name, ctx::Lookup};

/// Flags of `reject`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The document id, as `inbox` lists it.
    id: String,
    /// Why it is sent back (required), e.g. "附件缺页".
    #[arg(long, value_name = "TEXT")]
    reason: String,
    /// Who rejects it (recorded and signed); defaults to $USER.
    #[arg(long, value_name = "NAME")]
    clerk: Option<String>,
}

/// Rejects the document.
pub async fn run(args: Args, ctx: &Ctx) -> anyhow::Result<()> {
    let id = args.id.trim().to_owned();
    let req = pb::RejectRequest {
        doc_id: id.clone(),
        reason: args.reason,
        clerk: clerk_name(args.clerk),
    };
    ctx.client()
        .reject(req)
        .await
        .map_err(|s| ctx.rpc_error(&s, Lookup::Received))?;
    println!("rejected {id}");
    Ok(())
}
