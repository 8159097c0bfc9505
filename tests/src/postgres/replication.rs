//! Copies of a running test server made with `pg_basebackup`: a streaming standby (`-R`) that
//! can be made synchronous and promoted, for the failover tests, and a standalone base backup
//! started as a server of its own, for the backup tests (docs/operations.md, "High
//! availability" and "Backing up a PostgreSQL hub").
//!
//! Everything here waits by polling the server's own views (`pg_stat_replication`,
//! `pg_is_in_recovery()`, `SHOW`), never by sleeping a fixed time.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, ensure};

use super::{Postgres, pg_user_ids};
use crate::{DEADLINE, eventually};

impl Postgres {
    /// A streaming standby of this running server, started on its own loopback port:
    /// `pg_basebackup -R` (WAL streamed alongside) into a new temporary directory, with
    /// `primary_conninfo` naming `name` as its `application_name` — the name
    /// `synchronous_standby_names` and `pg_stat_replication` know it by. It starts asynchronous:
    /// [`set_synchronous_standby_names`](Self::set_synchronous_standby_names) on this server
    /// makes it synchronous.
    pub fn standby(&self, name: &str) -> Result<Postgres> {
        let standby = self.copy(Some(name), true)?;
        let auto = std::fs::read_to_string(standby.data_dir().join("postgresql.auto.conf"))
            .context("reading the standby's postgresql.auto.conf")?;
        ensure!(
            auto.lines().any(|l| l.starts_with("primary_conninfo")
                && l.contains(&format!("application_name={name}"))),
            "pg_basebackup -R wrote no primary_conninfo with application_name={name}:\n{auto}"
        );
        Ok(standby)
    }

    /// A base backup of this running server (`pg_basebackup -X stream`: consistent by itself,
    /// whatever is being written meanwhile), started as a server of its own on its own port.
    /// This is what restoring a base backup gives: the database as it was when the backup
    /// ended.
    pub fn base_backup(&self) -> Result<Postgres> {
        self.copy(None, true)
    }

    /// A base backup of this running server, as [`base_backup`](Self::base_backup), not started:
    /// for [`recover_to`](Self::recover_to) from an archive written since.
    pub fn base_backup_stopped(&self) -> Result<Postgres> {
        self.copy(None, false)
    }

    /// Turns on continuous archiving (restarting the server): every finished WAL segment is
    /// copied into the returned directory, the archive a point-in-time recovery replays.
    pub fn archive_wal(&mut self) -> Result<PathBuf> {
        let archive = self.root.join("archive");
        std::fs::create_dir(&archive).context("creating the WAL archive")?;
        if self.as_pg_user {
            let (uid, gid) = pg_user_ids()?;
            std::os::unix::fs::chown(&archive, Some(uid), Some(gid))?;
        }
        let a = archive.display();
        self.append_setting(&format!(
            "archive_mode = on\narchive_command = 'test ! -f {a}/%f && cp %p {a}/%f'"
        ))?;
        self.stop()?;
        self.start()?;
        Ok(archive)
    }

    /// Starts this stopped base backup as a point-in-time recovery: it replays `archive` up to
    /// the restore point `name` (`pg_create_restore_point`), stops there and takes writes.
    pub async fn recover_to(&mut self, archive: &Path, name: &str) -> Result<()> {
        self.append_setting(&format!(
            "restore_command = 'cp {}/%f %p'\nrecovery_target_name = '{name}'\n\
             recovery_target_action = 'promote'\n\
             # Not into the archive it recovers from.\n\
             archive_mode = off",
            archive.display()
        ))?;
        std::fs::write(self.data_dir().join("recovery.signal"), "")
            .context("writing recovery.signal")?;
        self.start_on_free_port()?;
        let client = self.connect().await?;
        eventually("the recovery to end", DEADLINE, || async {
            let row = client.query_one("SELECT pg_is_in_recovery()", &[]).await?;
            Ok((!row.get::<_, bool>(0)).then_some(()))
        })
        .await
    }

    /// Appends `lines` to `postgresql.auto.conf` (read at the next start or reload).
    fn append_setting(&self, lines: &str) -> Result<()> {
        std::fs::OpenOptions::new()
            .append(true)
            .open(self.data_dir().join("postgresql.auto.conf"))
            .and_then(|mut f| std::io::Write::write_all(&mut f, format!("{lines}\n").as_bytes()))
            .context("writing postgresql.auto.conf")
    }

    /// `pg_basebackup` of this server into a new server, then started if `start`; a standby
    /// named `standby` (`-R`), or with `None` a standalone server.
    fn copy(&self, standby: Option<&str>, start: bool) -> Result<Postgres> {
        ensure!(self.server.is_some(), "the server to copy is not running");
        let mut copy = Postgres::unstarted(self.bin.clone(), self.as_pg_user)?;
        let mut conninfo = format!("host=127.0.0.1 port={} user=postgres", self.port);
        let mut cmd = self.command("pg_basebackup");
        cmd.arg("-D")
            .arg(copy.data_dir())
            // WAL written during the copy comes along, so the copy is consistent by itself;
            // "fast": checkpoint now rather than wait for the next one.
            .args(["-X", "stream", "-c", "fast"]);
        if let Some(name) = standby {
            conninfo.push_str(&format!(" application_name={name}"));
            // standby.signal, and primary_conninfo from this connection's parameters.
            cmd.arg("-R");
        }
        let out = cmd
            .arg("-d")
            .arg(&conninfo)
            .stdin(Stdio::null())
            .output()
            .context("running pg_basebackup")?;
        ensure!(
            out.status.success(),
            "pg_basebackup failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if standby.is_none() {
            // A copy of a primary with a synchronous standby would wait for that standby on
            // every commit, forever: a restored server starts with none.
            copy.append_setting("synchronous_standby_names = ''")?;
        }
        if start {
            copy.start_on_free_port()?;
        }
        Ok(copy)
    }

    /// Sets `synchronous_standby_names` (`ALTER SYSTEM`, then a reload) and waits until the
    /// server uses it: `'FIRST 1 (s1)'` makes every commit wait until standby `s1` has flushed
    /// it; `''` makes replication asynchronous.
    pub async fn set_synchronous_standby_names(&self, value: &str) -> Result<()> {
        let client = self.connect().await?;
        let quoted = value.replace('\'', "''");
        // Two statements: ALTER SYSTEM refuses to run in the implicit transaction of a
        // multi-statement query.
        client
            .batch_execute(&format!(
                "ALTER SYSTEM SET synchronous_standby_names = '{quoted}'"
            ))
            .await
            .context("setting synchronous_standby_names")?;
        client
            .batch_execute("SELECT pg_reload_conf()")
            .await
            .context("reloading the configuration")?;
        eventually(
            &format!("synchronous_standby_names = '{value}' in effect"),
            DEADLINE,
            || async {
                let row = client
                    .query_one("SHOW synchronous_standby_names", &[])
                    .await?;
                Ok((row.get::<_, String>(0) == value).then_some(()))
            },
        )
        .await
    }

    /// Waits until this (primary) server streams to standby `name` with `sync_state` (`sync`
    /// or `async`) in `pg_stat_replication`.
    pub async fn wait_standby(&self, name: &str, sync_state: &str) -> Result<()> {
        let client = self.connect().await?;
        eventually(
            &format!("standby {name} streaming with sync_state {sync_state}"),
            DEADLINE,
            || async {
                let rows = client
                    .query(
                        "SELECT state, sync_state FROM pg_stat_replication \
                         WHERE application_name = $1",
                        &[&name],
                    )
                    .await?;
                Ok(rows
                    .iter()
                    .any(|r| {
                        r.get::<_, Option<String>>(0).as_deref() == Some("streaming")
                            && r.get::<_, Option<String>>(1).as_deref() == Some(sync_state)
                    })
                    .then_some(()))
            },
        )
        .await
    }

    /// Promotes this standby to a primary (`pg_ctl promote`) and waits until it takes writes
    /// (`pg_is_in_recovery()` is false); returns how long that took.
    pub async fn promote(&self) -> Result<Duration> {
        let start = Instant::now();
        let mut cmd = tokio::process::Command::from(self.command("pg_ctl"));
        let out = cmd
            .arg("promote")
            .arg("-D")
            .arg(self.data_dir())
            // pg_ctl's own wait would poll once a second; the loop below polls faster.
            .arg("--no-wait")
            .stdin(Stdio::null())
            .output()
            .await
            .context("running pg_ctl promote")?;
        ensure!(
            out.status.success(),
            "pg_ctl promote failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let client = self.connect().await?;
        eventually("the standby to leave recovery", DEADLINE, || async {
            let row = client.query_one("SELECT pg_is_in_recovery()", &[]).await?;
            Ok((!row.get::<_, bool>(0)).then_some(()))
        })
        .await?;
        Ok(start.elapsed())
    }
}
