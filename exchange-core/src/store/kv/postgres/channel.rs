//! Wake-ups between processes sharing the database: PostgreSQL's `LISTEN`/`NOTIFY`.
//!
//! A notification carries no data the receiver relies on (the queue in the database is the
//! truth); it only saves the receiver from polling. It is delivered to every session listening
//! on the channel, once the sending transaction commits, and lost if a listener's connection
//! drops: a listener looks again at everything after it reconnects.

use std::time::{Duration, Instant};

use postgres::fallible_iterator::FallibleIterator as _;

use super::PgConnection;
use crate::store::StoreError;

/// A channel name: an SQL identifier, checked, since `LISTEN` takes no parameters.
fn checked(channel: &str) -> Result<&str, StoreError> {
    let ok = !channel.is_empty()
        && channel.len() <= 63
        && channel
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !channel.as_bytes()[0].is_ascii_digit();
    if ok {
        Ok(channel)
    } else {
        Err(StoreError::Database {
            message: format!("notification channel {channel:?}: lower-case letters, digits, _"),
            retry: false,
            disk_full: false,
        })
    }
}

impl PgConnection {
    /// Sends one notification per payload on `channel`, in one statement.
    pub fn notify(&mut self, channel: &str, payloads: &[String]) -> Result<(), StoreError> {
        let channel = checked(channel)?;
        self.client.execute(
            "SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p",
            &[&channel, &payloads],
        )?;
        Ok(())
    }

    /// Starts listening on `channel`.
    pub fn listen(&mut self, channel: &str) -> Result<(), StoreError> {
        let channel = checked(channel)?;
        self.client.batch_execute(&format!("LISTEN {channel}"))?;
        Ok(())
    }

    /// The payloads of the notifications that arrive within `timeout` (empty if none do):
    /// waits for the first, then takes whatever else has arrived without waiting.
    pub fn notifications(&mut self, timeout: Duration) -> Result<Vec<String>, StoreError> {
        let started = Instant::now();
        let mut out = Vec::new();
        let mut n = self.client.notifications();
        let first = n.timeout_iter(timeout).next()?;
        if let Some(first) = first {
            out.push(first.payload().to_owned());
            let mut more = n.iter();
            while let Some(m) = more.next()? {
                out.push(m.payload().to_owned());
            }
        }
        drop(n);
        // A closed connection yields nothing at once, every time: report it instead.
        if out.is_empty() && started.elapsed() < timeout / 2 && self.client.is_closed() {
            return Err(StoreError::Database {
                message: "PostgreSQL: the listening connection is closed".into(),
                retry: false,
                disk_full: false,
            });
        }
        Ok(out)
    }
}
