//! TLS on the test server, for the `[store] ca_file` tests: a certificate made at test time
//! (rcgen, through `exchange-certs`), and every TCP connection required to use it.

use std::{path::Path, time::Duration};

use anyhow::{Context, Result, ensure};

use super::{PG_USER, Postgres, pg_user_ids};
use crate::{DEADLINE, eventually};

impl Postgres {
    /// Turns TLS on with the PEM `cert` (it must name `127.0.0.1`) and its `key`, and makes
    /// every TCP connection use it (`hostssl` in `pg_hba.conf`); returns once a plaintext
    /// connection is refused.
    pub async fn require_tls(&self, cert: &Path, key: &Path) -> Result<()> {
        let data = self.data_dir();
        for (from, to, mode) in [(cert, "server.crt", 0o644), (key, "server.key", 0o600)] {
            let to = data.join(to);
            std::fs::copy(from, &to).with_context(|| format!("copying {}", from.display()))?;
            std::fs::set_permissions(&to, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
            if self.as_pg_user {
                let (uid, gid) = pg_user_ids()?;
                std::os::unix::fs::chown(&to, Some(uid), Some(gid))
                    .with_context(|| format!("giving {} to user {PG_USER}", to.display()))?;
            }
        }
        let conf = data.join("postgresql.conf");
        let settings = std::fs::read_to_string(&conf)?;
        std::fs::write(&conf, format!("{settings}\nssl = on\n"))?;
        let hba = data.join("pg_hba.conf");
        let rules = std::fs::read_to_string(&hba)?;
        let rules: Vec<String> = rules
            .lines()
            .map(|l| match l.strip_prefix("host ") {
                Some(rest) => format!("hostssl {rest}"),
                None => l.to_owned(),
            })
            .collect();
        std::fs::write(&hba, rules.join("\n") + "\n")?;
        crate::signal(self.pid().context("the server is not running")?, "HUP")?;
        let url = self.url();
        eventually("plaintext connections refused", DEADLINE, || async {
            let attempt = tokio::time::timeout(
                Duration::from_secs(5),
                tokio_postgres::connect(&url, tokio_postgres::NoTls),
            )
            .await?;
            Ok(attempt.is_err().then_some(()))
        })
        .await?;
        ensure!(
            !self.log().contains("could not load server certificate"),
            "the server refused the certificate:\n{}",
            self.log_tail()
        );
        Ok(())
    }
}
