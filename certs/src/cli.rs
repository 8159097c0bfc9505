//! The command line of `exchange-certs`, in the library so that argument parsing is tested
//! in process and `main` only maps results to exit codes.

use std::{net::IpAddr, path::PathBuf};

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use exchange_core::{crypto::Profile, identity::Principal, ids::DeptId};

use crate::{Authority, DeptSpec, Validity, demo_setup_with_profile, ensure_built};

/// Help shared by `init-ca --profile` and `demo-setup --profile`.
const PROFILE_HELP: &str = "Crypto profile of the new CA, and so of every certificate it \
    issues (later commands read it from ca.pem): `international` (ECDSA P-256 TLS, Ed25519 \
    document signing) or `shangmi` (国密: SM2 keys signed SM2-with-SM3, and TLCP's second, \
    encryption certificate tls-enc.pem/tls-enc.key beside each tls.pem; needs a build with \
    `--features shangmi`; see docs/shangmi.md)";

/// `--profile`: the names of [`Profile`], listed in `--help`.
fn profile_parser() -> impl clap::builder::TypedValueParser<Value = Profile> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(Profile::ALL.map(Profile::name))
        .try_map(|s| s.parse::<Profile>())
}

/// PKI tool of the document exchange: one CA; a TLS and a document-signing identity per principal.
#[derive(Debug, Parser)]
#[command(name = "exchange-certs", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub cmd: Command,
}

/// The subcommands; each flag's help says what it is for.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new exchange CA: ca.pem (certificate) and ca.key (private key, mode 0600).
    InitCa {
        /// Directory to write ca.pem and ca.key into (created; an existing ca.key is never replaced).
        #[arg(long, value_name = "CA_DIR")]
        dir: PathBuf,
        /// Common name of the CA certificate.
        #[arg(long, default_value = "Exchange Root CA")]
        name: String,
        /// Crypto profile: international or shangmi (国密).
        #[arg(long, default_value = "international", value_parser = profile_parser(), long_help = PROFILE_HELP)]
        profile: Profile,
    },
    /// Issue the hub's TLS (server) and document-signing certificates into --out.
    IssueHub {
        /// Directory holding the CA's ca.pem and ca.key.
        #[arg(long, value_name = "CA_DIR")]
        ca_dir: PathBuf,
        /// Directory to write tls.pem, tls.key, signing.pem, signing.key (and under a shangmi CA
        /// tls-enc.pem, tls-enc.key) into (created).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Extra DNS name nodes may dial the hub by (localhost is always included); repeatable.
        #[arg(long = "dns", value_name = "NAME")]
        dns: Vec<String>,
        /// Extra IP address of the hub (127.0.0.1 and ::1 are always included); repeatable.
        #[arg(long = "ip", value_name = "IP")]
        ip: Vec<IpAddr>,
        /// Days the certificates stay valid.
        #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(i64).range(1..=36500))]
        days: i64,
    },
    /// Issue an administrator's TLS identity (tls.pem, tls.key; under a shangmi CA also
    /// tls-enc.pem, tls-enc.key for [admin] enc_cert/enc_key), for `exchange-hub audit ...`.
    IssueAdmin {
        /// Directory holding the CA's ca.pem and ca.key.
        #[arg(long, value_name = "CA_DIR")]
        ca_dir: PathBuf,
        /// The administrator's name (recorded in the audit log with each action).
        #[arg(long)]
        name: String,
        /// Directory to write tls.pem and tls.key (and under a shangmi CA tls-enc.pem,
        /// tls-enc.key) into (created).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Days the certificate stays valid.
        #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(i64).range(1..=36500))]
        days: i64,
    },
    /// Issue a node API's TLS server identity (tls.pem, tls.key; under a shangmi CA also
    /// tls-enc.pem, tls-enc.key), for `[api] tls` when the API is served over the network.
    IssueApi {
        /// Directory holding the CA's ca.pem and ca.key.
        #[arg(long, value_name = "CA_DIR")]
        ca_dir: PathBuf,
        /// The department whose node serves the API (named in the certificate, which is for
        /// serverAuth only and cannot connect to the hub).
        #[arg(long)]
        id: DeptId,
        /// Directory to write the files into (created).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Extra DNS name clients dial the API by (localhost is always included); repeatable.
        #[arg(long = "dns", value_name = "NAME")]
        dns: Vec<String>,
        /// Extra IP address of the API (127.0.0.1 and ::1 are always included); repeatable.
        #[arg(long = "ip", value_name = "IP")]
        ip: Vec<IpAddr>,
        /// Days the certificates stay valid.
        #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(i64).range(1..=36500))]
        days: i64,
    },
    /// Issue a department node's TLS (client) and document-signing certificates into --out.
    IssueDept {
        /// Directory holding the CA's ca.pem and ca.key.
        #[arg(long, value_name = "CA_DIR")]
        ca_dir: PathBuf,
        /// Department id, as in the hub's directory (lowercase letters, digits, '-', '_').
        #[arg(long)]
        id: DeptId,
        /// Directory to write tls.pem, tls.key, signing.pem, signing.key (and under a shangmi CA
        /// tls-enc.pem, tls-enc.key) into (created).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Days the certificates stay valid.
        #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(i64).range(1..=36500))]
        days: i64,
    },
    /// Create a complete local demo (CA, hub, one node per department); prints the config paths.
    DemoSetup {
        /// Directory for the demo; must be empty or missing unless --force.
        #[arg(long)]
        dir: PathBuf,
        /// Comma-separated departments, each `id` or `id=display name`, e.g. `fin=市财政局,edu`.
        #[arg(
            long,
            value_delimiter = ',',
            required = true,
            value_name = "ID[=NAME],..."
        )]
        departments: Vec<DeptSpec>,
        /// Hub port; department i's API gets port+1+i. Default: free ports chosen now.
        #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
        base_port: Option<u16>,
        /// Write into a non-empty directory, replacing an earlier demo's CA, keys and configs.
        #[arg(long)]
        force: bool,
        /// Crypto profile of the demo: international or shangmi (国密).
        #[arg(long, default_value = "international", value_parser = profile_parser(), long_help = PROFILE_HELP)]
        profile: Profile,
    },
    /// Revoke certificates: add them to the CA's list (CA_DIR/revoked.toml) and write a new
    /// revocation list (CRL) that hubs and nodes configured with `[tls] crl` pick up while they
    /// run. Prints the CRL's path.
    Revoke {
        /// Directory holding the CA's ca.pem and ca.key.
        #[arg(long, value_name = "CA_DIR")]
        ca_dir: PathBuf,
        /// A certificate to revoke (PEM, e.g. a department's tls.pem or signing.pem); repeatable.
        #[arg(long = "cert", value_name = "CERT.pem", required = true)]
        certs: Vec<PathBuf>,
        /// Why (recorded in the CRL).
        #[arg(long, value_enum, default_value = "unspecified")]
        reason: crate::revoke::Reason,
        /// Where to write the CRL (default CA_DIR/crl.pem).
        #[arg(long, value_name = "FILE")]
        crl: Option<PathBuf>,
    },
    /// Write the current revocation list again (an empty one if nothing is revoked yet): the
    /// first CRL to configure, or a renewal of its dates. Prints its path.
    Crl {
        /// Directory holding the CA's ca.pem and ca.key.
        #[arg(long, value_name = "CA_DIR")]
        ca_dir: PathBuf,
        /// Where to write the CRL (default CA_DIR/crl.pem).
        #[arg(long, value_name = "FILE")]
        crl: Option<PathBuf>,
    },
    /// Create a new key-encryption key for a data directory's encryption at rest
    /// (`[encryption] kek`, or `rotate-kek --new`): 32 random bytes as 64 hex characters, in a
    /// new file of mode 0600 (an existing file is never overwritten). Prints its fingerprint.
    NewKek {
        /// The file to create; keep it outside the data directory and its backups.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Check an evidence bundle (`exchange-node evidence`) offline and print each step with who
    /// signed it and when; exits 1 and names the failing item if anything does not verify.
    Verify {
        /// The bundle file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The exchange CA's certificate (ca.pem): the only thing the bundle is checked against.
        #[arg(long, value_name = "CA.pem")]
        ca: PathBuf,
    },
    /// Check an audit export (`exchange-hub audit export > FILE`) offline: the hash chain is
    /// unbroken and every checkpoint is signed by the hub. Exits 1 naming the first bad entry.
    VerifyAudit {
        /// The export file (JSON Lines).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The exchange CA's certificate (ca.pem), which issued the hub's signing certificate.
        #[arg(long, value_name = "CA.pem")]
        ca: PathBuf,
    },
}

/// Runs one subcommand. Results go to stdout (only `demo-setup`, `new-kek` and `verify` have
/// any), nothing else does.
pub fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::InitCa { dir, name, profile } => {
            // Before anything touches the disk: a build without 国密 writes nothing.
            ensure_built(profile)?;
            Authority::generate(profile, &name, Validity::days_from_now(3650))?.write(&dir)
        }
        Command::IssueHub {
            ca_dir,
            out,
            dns,
            ip,
            days,
        } => Authority::load(&ca_dir)?.issue_into_dir(
            &Principal::Hub,
            &dns,
            &ip,
            Validity::days_from_now(days),
            &out,
        ),
        Command::IssueAdmin {
            ca_dir,
            name,
            out,
            days,
        } => {
            anyhow::ensure!(
                !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'),
                "--name: use letters, digits, '-', '_' or '.'"
            );
            let ca = Authority::load(&ca_dir)?;
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            ca.issue_tls_into(
                &Principal::Admin(name),
                &[],
                &[],
                Validity::days_from_now(days),
                &out,
            )
        }
        Command::IssueApi {
            ca_dir,
            id,
            out,
            dns,
            ip,
            days,
        } => Authority::load(&ca_dir)?.issue_api_into(
            &id,
            &dns,
            &ip,
            Validity::days_from_now(days),
            &out,
        ),
        Command::IssueDept {
            ca_dir,
            id,
            out,
            days,
        } => Authority::load(&ca_dir)?.issue_into_dir(
            &Principal::Dept(id),
            &[],
            &[],
            Validity::days_from_now(days),
            &out,
        ),
        Command::NewKek { out } => {
            let kek = exchange_core::atrest::Kek::generate(&out)
                .with_context(|| format!("creating {}", out.display()))?;
            println!("{}", kek.fingerprint());
            Ok(())
        }
        Command::DemoSetup {
            dir,
            departments,
            base_port,
            force,
            profile,
        } => {
            ensure_built(profile)?;
            let layout = demo_setup_with_profile(&dir, &departments, base_port, force, profile)?;
            println!("{}", layout.hub_config.display());
            layout
                .nodes
                .iter()
                .for_each(|(_, node)| println!("{}", node.display()));
            Ok(())
        }
        Command::Revoke {
            ca_dir,
            certs,
            reason,
            crl,
        } => {
            let (out, named) = crate::revoke::revoke(&ca_dir, &certs, reason, crl.as_deref())?;
            for who in named {
                eprintln!("revoked: {who}");
            }
            println!("{}", out.display());
            Ok(())
        }
        Command::Crl { ca_dir, crl } => {
            let out = crate::revoke::write_current_crl(&ca_dir, crl.as_deref())?;
            println!("{}", out.display());
            Ok(())
        }
        Command::Verify { file, ca } => {
            print!("{}", crate::verify::verify_file(&file, &ca)?);
            Ok(())
        }
        Command::VerifyAudit { file, ca } => {
            print!("{}", crate::verify::verify_audit_file(&file, &ca)?);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn flags_parse_as_documented() -> Result<()> {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "exchange-certs",
            "demo-setup",
            "--dir",
            "d",
            "--departments",
            "a,b=乙局",
            "--base-port",
            "7000",
        ])?;
        let Command::DemoSetup {
            departments,
            base_port,
            force,
            ..
        } = cli.cmd
        else {
            anyhow::bail!("parsed as another command");
        };
        let names: Vec<_> = departments.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(
            (names, base_port, force),
            (vec!["a", "乙局"], Some(7000), false)
        );
        let bad_id = [
            "exchange-certs",
            "issue-dept",
            "--ca-dir",
            "c",
            "--id",
            "A",
            "--out",
            "o",
        ];
        assert!(Cli::try_parse_from(bad_id).is_err());
        Ok(())
    }
}
