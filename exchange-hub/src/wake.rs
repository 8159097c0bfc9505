//! Wake-ups between hubs sharing one PostgreSQL database.
//!
//! A hub that queues something for a department whose node is not connected to it says so on
//! the channel [`CHANNEL`] (payload: the department's id); every hub listens, and the one the
//! department's node is connected to wakes its push loop. A notification only saves polling —
//! the queue in the database is what is pushed — so a lost one delays, never loses: push loops
//! also look at their queue every few seconds (`delivery::RECHECK`), and a hub whose listening
//! connection came back wakes all of its push loops.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use exchange_core::{
    ids::DeptId,
    store::kv::postgres::{PgConnection, PgTarget},
};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::Hub;

/// The `LISTEN`/`NOTIFY` channel of queue wake-ups.
pub(crate) const CHANNEL: &str = "exchange_queue";

/// Most departments named in one `NOTIFY` round trip.
const MAX_BATCH: usize = 1024;

/// How to tell the other hubs that something was queued for a department.
#[derive(Debug, Clone)]
pub(crate) struct Others {
    tx: UnboundedSender<DeptId>,
}

impl Others {
    /// Tells the other hubs, soon, without waiting.
    pub(crate) fn tell(&self, dept: &DeptId) {
        // The sending thread only stops with the hub.
        let _ = self.tx.send(dept.clone());
    }
}

/// What the listening connection heard.
enum Heard {
    /// Something was queued for this department.
    Dept(DeptId),
    /// The connection was (re)established: anything may have been missed.
    Everything,
}

/// Starts telling and hearing the other hubs on `target`, until `stop`.
pub(crate) fn start(
    hub: &Arc<Hub>,
    target: &PgTarget,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let (tx, rx) = unbounded_channel();
    hub.sessions.tell_others(Others { tx });
    let sending = target.clone();
    std::thread::Builder::new()
        .name("hub-wake-send".into())
        .spawn(move || send(&sending, rx))?;
    let (heard_tx, mut heard) = unbounded_channel();
    let listening = target.clone();
    std::thread::Builder::new()
        .name("hub-wake-listen".into())
        .spawn(move || listen(&listening, &heard_tx, &stop))?;
    let hub = Arc::clone(hub);
    tokio::spawn(async move {
        while let Some(h) = heard.recv().await {
            match h {
                Heard::Dept(d) => {
                    hub.sessions.wake_here(&d);
                }
                Heard::Everything => hub.sessions.wake_all(),
            }
        }
    });
    Ok(())
}

/// Sends the queued wake-ups, several per round trip, until the hub drops its sender.
fn send(target: &PgTarget, mut rx: UnboundedReceiver<DeptId>) {
    let mut conn: Option<PgConnection> = None;
    while let Some(first) = rx.blocking_recv() {
        let mut batch = BTreeSet::from([first.to_string()]);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(d) => batch.insert(d.to_string()),
                Err(_) => break,
            };
        }
        let payloads: Vec<String> = batch.into_iter().collect();
        // A broken connection is replaced once; if that fails too, these wake-ups are lost
        // and the other hubs find the items by looking again.
        for _ in 0..2 {
            let mut c = match conn.take().map_or_else(|| target.connect(), Ok) {
                Ok(c) => c,
                Err(e) => {
                    warn!(error = %e, "cannot tell the other hubs what was queued");
                    break;
                }
            };
            match c.notify(CHANNEL, &payloads) {
                Ok(()) => {
                    conn = Some(c);
                    break;
                }
                Err(e) => warn!(error = %e, "telling the other hubs failed; reconnecting"),
            }
        }
    }
}

/// Listens for the other hubs' wake-ups until `stop`, reconnecting after failures.
fn listen(target: &PgTarget, heard: &UnboundedSender<Heard>, stop: &CancellationToken) {
    let mut pause = Duration::from_millis(100);
    while !stop.is_cancelled() {
        let conn = target
            .connect()
            .and_then(|mut c| c.listen(CHANNEL).map(|()| c));
        let mut conn = match conn {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "cannot listen for the other hubs' wake-ups; retrying");
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        pause = Duration::from_millis(100);
        if heard.send(Heard::Everything).is_err() {
            return;
        }
        while !stop.is_cancelled() {
            match conn.notifications(Duration::from_secs(1)) {
                Ok(payloads) => {
                    for p in payloads {
                        let Ok(dept) = p.parse::<DeptId>() else {
                            continue; // not ours
                        };
                        if heard.send(Heard::Dept(dept)).is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    warn!(error = %e, "lost the connection hearing the other hubs; reconnecting");
                    break;
                }
            }
        }
    }
}
