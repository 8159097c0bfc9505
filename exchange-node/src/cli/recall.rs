//! `exchange-node recall ID --reason TEXT`: 撤回, recall a document this department sent.
//! Recipients that have not signed for it no longer can (their inbox shows it recalled, or they
//! never receive it); recipients that already signed for it are told and must acknowledge.
//! Follow the effect with `status ID`.

use exchange_proto::v1 as pb;

use super::{Ctx, clerk_name, ctx::Lookup};

/// Flags of `recall`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The id of a document this department sent (as `send` printed it).
    id: String,
    /// Why it is recalled (required, signed with the recall), e.g. "文号有误，重新印发".
    #[arg(long, value_name = "TEXT")]
    reason: String,
    /// Who recalls it (recorded and signed); defaults to $USER.
    #[arg(long, value_name = "NAME")]
    clerk: Option<String>,
}

/// Recalls the document.
pub async fn run(args: Args, ctx: &Ctx) -> anyhow::Result<()> {
    let id = args.id.trim().to_owned();
    ctx.client()
        .recall(pb::RecallRequest {
            doc_id: id.clone(),
            reason: args.reason,
            clerk: clerk_name(args.clerk),
        })
        .await
        .map_err(|s| ctx.rpc_error(&s, Lookup::Sent))?;
    println!(
        "recall of {id} queued; follow it with: {}",
        ctx.command(&format!("status {id}"))
    );
    Ok(())
}
