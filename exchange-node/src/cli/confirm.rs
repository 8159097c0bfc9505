//! `exchange-node confirm ID`: 签收, a clerk confirms receipt of a received document. The node
//! signs the confirmation and sends it back to the sender through the hub.

use exchange_proto::v1 as pb;

use super::{Ctx, clerk_name, ctx::Lookup};

/// Flags of `confirm`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The document id, as `inbox` lists it.
    id: String,
    /// Who confirms it (recorded and signed); defaults to $USER.
    #[arg(long, value_name = "NAME")]
    clerk: Option<String>,
    /// An optional note for the sender.
    #[arg(long, value_name = "TEXT")]
    note: Option<String>,
}

/// Confirms receipt.
pub async fn run(args: Args, ctx: &Ctx) -> anyhow::Result<()> {
    let id = args.id.trim().to_owned();
    let req = pb::ConfirmRequest {
        doc_id: id.clone(),
        clerk: clerk_name(args.clerk),
        note: args.note.unwrap_or_default(),
    };
    ctx.client()
        .confirm(req)
        .await
        .map_err(|s| ctx.rpc_error(&s, Lookup::Received))?;
    println!("confirmed {id}");
    Ok(())
}
