//! What the scenario tests do through `exchange-node`'s command line, and wait for: send a
//! document, list an inbox, and poll until an inbox entry or a recipient's row at the sender
//! says what the test expects.

use anyhow::{Context as _, Result};
use serde_json::Value;

use crate::{DEADLINE, TestExchange, eventually, random_file};

/// The last line of a command's output, trimmed: where `send` prints the new document's id.
pub fn last_line(out: &str) -> String {
    out.lines().last().unwrap_or_default().trim().to_owned()
}

/// `send --title TITLE --file BODY FLAGS` at `from`, the body a random 2,000-byte file
/// `<title>.ofd` in the test's directory (`flags` name the recipients: `--to b,c`); returns the
/// new document's id.
pub async fn send(ex: &TestExchange, from: &str, title: &str, flags: &[&str]) -> Result<String> {
    let body = random_file(ex.root(), &format!("{title}.ofd"), 2000, title.len() as u64)?;
    let body = body.to_str().context("utf-8 path")?.to_owned();
    let mut args = vec!["send", "--title", title, "--file", &body];
    args.extend_from_slice(flags);
    Ok(last_line(&ex.cli_ok(from, &args).await?))
}

/// `inbox --json FLAGS` at `dept`: its entries.
pub async fn inbox(ex: &TestExchange, dept: &str, flags: &[&str]) -> Result<Vec<Value>> {
    let mut args = vec!["inbox", "--json"];
    args.extend_from_slice(flags);
    let v = ex.cli_json(dept, &args).await?;
    v.as_array().cloned().context("inbox --json is an array")
}

/// `id`'s entry in `dept`'s inbox, once it satisfies `ok` (`what` says what is awaited, for the
/// message on a timeout).
pub async fn entry_when(
    ex: &TestExchange,
    dept: &str,
    id: &str,
    what: &str,
    ok: impl Fn(&Value) -> bool,
) -> Result<Value> {
    eventually(
        &format!("{id} in {dept}'s inbox: {what}"),
        DEADLINE,
        || async {
            Ok(inbox(ex, dept, &[])
                .await?
                .into_iter()
                .find(|e| e["id"] == id && ok(e)))
        },
    )
    .await
}

/// `id`'s entry in `dept`'s inbox, once it is there.
pub async fn wait_in_inbox(ex: &TestExchange, dept: &str, id: &str) -> Result<Value> {
    entry_when(ex, dept, id, "received", |_| true).await
}

/// `dept`'s row of `id` in the sender's `status --json` at `from`, once it satisfies `ok`
/// (`what` says what is awaited, for the message on a timeout).
pub async fn row_when(
    ex: &TestExchange,
    from: &str,
    id: &str,
    dept: &str,
    what: &str,
    ok: impl Fn(&Value) -> bool,
) -> Result<Value> {
    eventually(
        &format!("{dept}'s row of {id} at {from}: {what}"),
        DEADLINE,
        || async {
            let s = ex.cli_json(from, &["status", id, "--json"]).await?;
            Ok(s["recipients"]
                .as_array()
                .and_then(|rs| rs.iter().find(|r| r["dept"] == dept && ok(r)).cloned()))
        },
    )
    .await
}

/// `dept`'s row of `id` at the sender `from`, once its state is `state`.
pub async fn wait_state(
    ex: &TestExchange,
    from: &str,
    id: &str,
    dept: &str,
    state: &str,
) -> Result<Value> {
    row_when(ex, from, id, dept, state, |r| r["state"] == state).await
}
