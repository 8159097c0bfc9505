//! `exchange-node remind ID [--to DEPT[,DEPT]] [--note TEXT]`: 催办, remind recipients that have
//! not yet signed for a document this department sent. Their clerk's inbox counts and shows the
//! reminder; without --to every recipient not yet finished with it is reminded.

use exchange_proto::v1 as pb;

use super::{Ctx, ctx::Lookup};

/// Flags of `remind`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The id of a document this department sent (as `send` printed it).
    id: String,
    /// Only these recipients, comma-separated (default: all that have not finished with it).
    #[arg(long, value_name = "DEPT[,DEPT]", value_delimiter = ',')]
    to: Vec<String>,
    /// A note for the recipient's clerk, e.g. "请于今日下班前签收".
    #[arg(long, value_name = "TEXT", default_value = "")]
    note: String,
}

/// Sends the reminders; prints the reminded recipients, one per line.
pub async fn run(args: Args, ctx: &Ctx) -> anyhow::Result<()> {
    let id = args.id.trim().to_owned();
    let resp = ctx
        .client()
        .remind(pb::RemindRequest {
            doc_id: id,
            recipients: args
                .to
                .into_iter()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
            note: args.note,
        })
        .await
        .map_err(|s| ctx.rpc_error(&s, Lookup::Sent))?
        .into_inner();
    for d in &resp.reminded {
        println!("{d}");
    }
    Ok(())
}
