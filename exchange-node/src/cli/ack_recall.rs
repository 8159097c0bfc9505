//! `exchange-node ack-recall ID`: acknowledge that the sender recalled (撤回) a document this
//! department had already signed for (`inbox --state recall-pending` lists them). The
//! acknowledgement is signed and goes back to the sender.

use exchange_proto::v1 as pb;

use super::{Ctx, clerk_name, ctx::Lookup};

/// Flags of `ack-recall`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The document id, as `inbox` lists it.
    id: String,
    /// Who acknowledges it (recorded and signed); defaults to $USER.
    #[arg(long, value_name = "NAME")]
    clerk: Option<String>,
}

/// Acknowledges the recall.
pub async fn run(args: Args, ctx: &Ctx) -> anyhow::Result<()> {
    let id = args.id.trim().to_owned();
    ctx.client()
        .acknowledge_recall(pb::AcknowledgeRecallRequest {
            doc_id: id.clone(),
            clerk: clerk_name(args.clerk),
        })
        .await
        .map_err(|s| ctx.rpc_error(&s, Lookup::Received))?;
    println!("acknowledged the recall of {id}");
    Ok(())
}
