//! Several hubs on one PostgreSQL database (issue 17): two hub processes share the database,
//! every node knows both (`[hub] addresses`), and a department's queue is pushed by whichever
//! hub holds its lease. The README's journey crosses the two hubs (sender on one, recipients
//! spread over both); then, under steady load from two senders to two recipients, the hub
//! holding a receiving department's lease is SIGKILLed ten times (and restarted), and
//! PostgreSQL itself is killed and restarted once: every document ends up in each of its
//! recipients' inboxes exactly once, byte for byte, every 签收 is back at its sender, and the
//! audit chain the two hubs wrote together verifies. Skips without Debian's PostgreSQL
//! binaries unless EXCHANGE_REQUIRE_POSTGRES=1.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use exchange_proto::store::v1 as st;
use exchange_tests::{
    DEADLINE, TestExchange,
    chaos::Workload,
    cli::{send, wait_in_inbox, wait_state},
    eventually,
    postgres::Postgres,
};
use prost::Message as _;

const SENDERS: [&str; 2] = ["a", "b"];
const RECEIVERS: [&str; 2] = ["c", "d"];
const KILLS: usize = 10;

/// The pid of the hub process holding `dept`'s push lease, while one holds it.
async fn lease_holder(url: &str, dept: &str) -> Result<Option<u32>> {
    let (db, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    let conn = tokio::spawn(conn);
    let rows = db
        .query(
            "SELECT v FROM kv_push_leases WHERE k = $1",
            &[&dept.as_bytes()],
        )
        .await?;
    drop(db);
    conn.abort();
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    let lease = st::PushLease::decode(row.get::<_, &[u8]>(0))?;
    if lease.expires_ms <= exchange_core::time::now_ms() {
        return Ok(None); // given up or run out
    }
    let pid = lease
        .holder
        .split(" pid ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|p| p.parse().ok())
        .with_context(|| format!("no pid in lease holder {:?}", lease.holder))?;
    Ok(Some(pid))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hubs_lose_and_duplicate_nothing_when_either_is_killed() -> Result<()> {
    let Some(mut pg) = Postgres::for_test()? else {
        return Ok(());
    };
    let depts: Vec<&str> = [SENDERS, RECEIVERS].concat();
    let mut ex = TestExchange::setup(&depts)?;
    let url = pg.url();
    ex.edit_hub_config(|c| {
        c.store.backend = exchange_core::config::StoreBackend::Postgres;
        c.store.url = Some(url.clone());
        c.hub.lease_secs = 3;
    })?;
    let (ok, _, err) = ex.hub_cli(&["migrate"]).await?;
    ensure!(ok, "migrate failed: {err}");
    ex.start_hub().await?;
    let one = ex.hub_addr();
    let two = ex.start_other_hub("2").await?;
    // a and d try hub 1 first, b and c hub 2: the journey crosses the hubs both ways.
    ex.use_hubs(&[one, two], &["b", "c"])?;
    for d in &depts {
        ex.start_node(d).await?;
    }

    // The README's journey: a (on hub 1) to c (主送, on hub 2) and d (抄送, on hub 1).
    let id = send(
        &ex,
        "a",
        "关于两个交换中心的通知",
        &["--to", "c", "--cc", "d"],
    )
    .await?;
    for dept in RECEIVERS {
        wait_in_inbox(&ex, dept, &id).await?;
    }
    ex.cli_ok("c", &["confirm", &id, "--clerk", "王芳"]).await?;
    ex.cli_ok("d", &["reject", &id, "--reason", "不属于本单位职责范围"])
        .await?;
    wait_state(&ex, "a", &id, "c", "confirmed").await?;
    wait_state(&ex, "a", &id, "d", "rejected").await?;

    // Steady load while the hub pushing to a receiving department is killed, again and again.
    let seed = std::env::var("EXCHANGE_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("two hubs: chaos seed {seed}; replay with EXCHANGE_CHAOS_SEED={seed}");
    let work = Workload {
        seed,
        docs: 120,
        senders: SENDERS.to_vec(),
        receivers: RECEIVERS.to_vec(),
        converge: Duration::from_secs(180),
        pace: Duration::from_millis(600),
    };
    let mut running = work.start(&ex);
    let mut rng = fastrand::Rng::with_seed(seed);
    for k in 0..KILLS {
        let dept = RECEIVERS[k % RECEIVERS.len()];
        let victim = eventually(
            &format!("a live hub to hold {dept}'s lease"),
            DEADLINE,
            || {
                let (url, ex) = (&url, &ex);
                async move {
                    // The server may be starting again: no answer yet is no holder yet.
                    let holder = lease_holder(url, dept).await.unwrap_or(None);
                    Ok(match holder {
                        Some(p) if Some(p) == ex.hub_pid() => Some("1"),
                        Some(p) if Some(p) == ex.other_hub_pid("2") => Some("2"),
                        _ => None,
                    })
                }
            },
        )
        .await?;
        eprintln!(
            "two hubs: kill #{} of {KILLS}: SIGKILL hub {victim}, which pushes to {dept}",
            k + 1
        );
        if victim == "1" {
            ex.kill_hub().await?;
        } else {
            ex.kill_other_hub("2").await?;
        }
        if k == KILLS / 2 {
            eprintln!("two hubs: SIGKILL PostgreSQL, then start it again");
            tokio::task::block_in_place(|| pg.kill().and_then(|()| pg.start()))?;
        }
        tokio::time::sleep(Duration::from_millis(rng.u64(0..800))).await;
        if victim == "1" {
            ex.start_hub().await?;
        } else {
            ex.start_other_hub("2").await?;
        }
    }

    let ids = running.submitted().await?;
    ensure!(
        ids.len() == work.docs,
        "every document was acknowledged by its node"
    );
    let took = work.converge(&ex, &ids).await?;
    eprintln!("two hubs: converged {took:?} after the last kill");
    running.stop_clerks();
    // Besides the journey's document, once.
    work.check_inboxes(&ex, &ids, &[&id]).await?;

    // One audit chain, written by every hub process that ran, with no fork.
    ensure!(ex.stop_hub().await? == Some(0), "hub 1 stops cleanly");
    ex.kill_other_hub("2").await?;
    let (ok, out, err) = ex.hub_cli(&["audit", "verify"]).await?;
    ensure!(ok, "audit verify failed: {out}{err}");
    Ok(())
}
