//! Backing up a hub on PostgreSQL (issue 17, docs/operations.md "Backing up a PostgreSQL hub"):
//! `pg_basebackup` of the running hub's database while a department sends steadily, a server
//! started on the copy, and the hub started on that server. The restored hub serves every
//! document acknowledged before the backup began: a department that was offline all along
//! receives each exactly once, and the audit chain verifies. And point-in-time recovery from a
//! base backup and the WAL archive stops where it is told to. Skips without Debian's PostgreSQL
//! unless EXCHANGE_REQUIRE_POSTGRES=1.

use std::collections::BTreeSet;

use anyhow::{Result, bail, ensure};
use exchange_proto::v1 as pb;
use exchange_tests::{
    DEADLINE, eventually,
    postgres::{
        Postgres,
        hub::{SteadySender, accepted, exchange_on, wait_accepted},
    },
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_backup_taken_under_load_serves_what_was_acknowledged_before_it() -> Result<()> {
    let Some(pg) = Postgres::for_test()? else {
        return Ok(());
    };
    // c stays offline: its documents wait in the hub's queue, in the database.
    let mut ex = exchange_on(&pg.url(), &["a", "b", "c"], &["a", "b"]).await?;
    let sender = SteadySender::start(&ex, "a", &["b", "c"]);
    let before = wait_accepted(&ex, "a", 15).await?;
    // pg_basebackup blocks this thread; the sender and the hub go on meanwhile.
    let copy = tokio::task::block_in_place(|| pg.base_backup())?;
    let after = accepted(&ex, "a").await?;
    let ids = sender.finish().await?;
    eprintln!(
        "{} accepted when the backup began, {} when it ended, {} sent",
        before.len(),
        after.len(),
        ids.len()
    );

    // Restore: the hub, with its data directory, on a server started from the copy.
    ex.stop_hub().await?;
    let url = copy.url();
    ex.edit_hub_config(|c| c.store.url = Some(url))?;
    let (ok, out, err) = ex.hub_cli(&["audit", "verify"]).await?;
    ensure!(
        ok,
        "audit verify on the restored database failed: {out}{err}"
    );
    ex.start_hub().await?;
    ex.start_node("c").await?;

    // Everything acknowledged before the backup reaches c, once each.
    let inbox = eventually(
        "c to receive every document accepted before the backup",
        DEADLINE,
        || async {
            let entries = ex
                .node_api("c")
                .await?
                .list_inbox(pb::ListInboxRequest {})
                .await?
                .into_inner()
                .entries;
            let ids: Vec<String> = entries.into_iter().map(|e| e.doc_id).collect();
            Ok(before.iter().all(|id| ids.contains(id)).then_some(ids))
        },
    )
    .await?;
    let unique: BTreeSet<&String> = inbox.iter().collect();
    if unique.len() != inbox.len() {
        bail!("a document is twice in c's inbox: {inbox:?}");
    }
    ensure!(
        unique.iter().all(|id| ids.contains(id)),
        "c received a document nobody sent"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_in_time_recovery_stops_before_the_mistake() -> Result<()> {
    let Some(mut pg) = Postgres::for_test()? else {
        return Ok(());
    };
    let archive = pg.archive_wal()?;
    let client = pg.connect().await?;
    client
        .batch_execute("CREATE TABLE kept (k int PRIMARY KEY); INSERT INTO kept VALUES (1)")
        .await?;
    let mut backup = pg.base_backup_stopped()?;
    // After the backup: a row to keep, the moment to recover to, then the mistake.
    // (One statement each: several in one query would be one transaction, committed after
    // the restore point.)
    for sql in [
        "INSERT INTO kept VALUES (2)",
        "SELECT pg_create_restore_point('before-mistake')",
        "DELETE FROM kept",
    ] {
        client.batch_execute(sql).await?;
    }
    // Close the WAL segment holding all of it, and wait until it is archived.
    let segment: String = client
        .query_one("SELECT pg_walfile_name(pg_switch_wal())", &[])
        .await?
        .get(0);
    eventually("the last WAL segment archived", DEADLINE, || async {
        let row = client
            .query_one("SELECT last_archived_wal FROM pg_stat_archiver", &[])
            .await?;
        let last: Option<String> = row.get(0);
        Ok(last.is_some_and(|l| l >= segment).then_some(()))
    })
    .await?;

    backup.recover_to(&archive, "before-mistake").await?;
    let rows = backup
        .connect()
        .await?
        .query("SELECT k FROM kept ORDER BY k", &[])
        .await?;
    let kept: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    ensure!(kept == [1, 2], "recovered to the restore point: {kept:?}");
    Ok(())
}
