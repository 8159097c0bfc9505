//! The command line of `exchange-certs`, in the library so that argument parsing is tested
//! in process and `main` only maps results to exit codes.

use std::{net::IpAddr, path::PathBuf};

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use exchange_core::{
    crypto::Profile,
    identity::Principal,
    ids::{DeptId, ExchangeName},
};

use crate::{
    Authority, DeptSpec, ExchangeSpec, Validity, demo_federation, demo_setup_with_profile,
    ensure_built, federation::PORT_SCHEME_HELP,
};

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
        /// The exchange's name among linked exchanges (its hubs' `[hub] exchange`, e.g. `city`),
        /// written into the CA certificate as the URI SAN urn:exchange:name:NAME. International
        /// profile only, for now.
        #[arg(long, value_name = "NAME")]
        exchange: Option<ExchangeName>,
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
        /// The hub links to other exchanges' hubs (`[[peers]]`, docs/federation.md): its TLS
        /// certificate also allows client authentication, which peer hubs require of the hub
        /// that dials them. International CAs only, for now.
        #[arg(long)]
        linked: bool,
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
    /// Create linked local demo exchanges (e.g. province, city, county), each a complete
    /// demo-setup layout in DIR/EXCHANGE with its own CA naming the exchange, chained in the
    /// order given: each hub's `[[peers]]` are the exchange before it (parent, routes "*") and
    /// the one after it (child, routes the exchanges below it), with their CAs pinned in
    /// hub/peers/; `[[exchanges]]` lists the rest. Prints each hub.toml, then its node.toml files.
    DemoFederation {
        /// Directory for the demo; must be empty or missing unless --force.
        #[arg(long)]
        dir: PathBuf,
        /// The exchanges, parent first: at least two values `NAME=DEPT[,DEPT...]`, each
        /// department `id` or `id=display name`, e.g. `province=office,health city=finance
        /// county=tax`.
        #[arg(long, num_args = 1.., required = true, value_name = "NAME=DEPT[,DEPT...]")]
        exchanges: Vec<ExchangeSpec>,
        /// First port of the demo's consecutive ports (see --help). Default: free ports.
        #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..),
            long_help = PORT_SCHEME_HELP)]
        base_port: Option<u16>,
        /// Write into a non-empty directory, replacing an earlier demo's CAs, keys and configs.
        #[arg(long)]
        force: bool,
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
        /// For a document that crossed linked exchanges, give every exchange's CA (`--ca
        /// county.pem --ca city.pem --ca province.pem`): each must name its exchange, and each
        /// signature is checked against the CA of the exchange its signer belongs to.
        #[arg(long, value_name = "CA.pem", required = true)]
        ca: Vec<PathBuf>,
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

/// Runs one subcommand. Results go to stdout (only `demo-setup`, `demo-federation`, `new-kek`
/// and `verify` have any), nothing else does.
pub fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::InitCa {
            dir,
            name,
            profile,
            exchange,
        } => {
            // Before anything touches the disk: a build without 国密 writes nothing.
            ensure_built(profile)?;
            Authority::generate(
                profile,
                &name,
                exchange.as_ref(),
                Validity::days_from_now(3650),
            )?
            .write(&dir)
        }
        Command::IssueHub {
            ca_dir,
            out,
            dns,
            ip,
            days,
            linked,
        } => {
            let ca = Authority::load(&ca_dir)?;
            let validity = Validity::days_from_now(days);
            if linked {
                ca.issue_linked_hub_into(&dns, &ip, validity, &out)
            } else {
                ca.issue_into_dir(&Principal::Hub, &dns, &ip, validity, &out)
            }
        }
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
        Command::DemoFederation {
            dir,
            exchanges,
            base_port,
            force,
        } => {
            let layout =
                demo_federation(&dir, &exchanges, base_port, force, Profile::International)?;
            for e in &layout.exchanges {
                println!("{}", e.layout.hub_config.display());
                e.layout
                    .nodes
                    .iter()
                    .for_each(|(_, node)| println!("{}", node.display()));
            }
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

    #[test]
    fn demo_federation_and_init_ca_exchange_parse() -> Result<()> {
        let cli = Cli::try_parse_from([
            "exchange-certs",
            "demo-federation",
            "--dir",
            "d",
            "--exchanges",
            "province=office,health",
            "city=finance,education",
            "county=tax",
            "--base-port",
            "7000",
            "--force",
        ])?;
        let Command::DemoFederation {
            exchanges,
            base_port,
            force,
            ..
        } = cli.cmd
        else {
            anyhow::bail!("parsed as another command");
        };
        let parsed: Vec<(String, usize)> = exchanges
            .iter()
            .map(|e| (e.name.to_string(), e.departments.len()))
            .collect();
        assert_eq!(
            (parsed, base_port, force),
            (
                vec![
                    ("province".to_owned(), 2),
                    ("city".to_owned(), 2),
                    ("county".to_owned(), 1)
                ],
                Some(7000),
                true
            )
        );
        let no_depts = [
            "exchange-certs",
            "demo-federation",
            "--dir",
            "d",
            "--exchanges",
            "province",
            "city=a",
        ];
        assert!(Cli::try_parse_from(no_depts).is_err());

        let cli = Cli::try_parse_from([
            "exchange-certs",
            "init-ca",
            "--dir",
            "c",
            "--exchange",
            "city",
        ])?;
        let Command::InitCa { exchange, .. } = cli.cmd else {
            anyhow::bail!("parsed as another command");
        };
        assert_eq!(exchange.map(|e| e.to_string()).as_deref(), Some("city"));
        let bad = [
            "exchange-certs",
            "init-ca",
            "--dir",
            "c",
            "--exchange",
            "City",
        ];
        assert!(Cli::try_parse_from(bad).is_err());
        Ok(())
    }

    #[test]
    fn init_ca_names_the_exchange_in_the_written_ca() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let ca_dir = dir.path().join("ca");
        let path = |p: &std::path::Path| p.to_str().map(str::to_owned).context("non-UTF-8 path");
        let cli = Cli::try_parse_from([
            "exchange-certs",
            "init-ca",
            "--dir",
            &path(&ca_dir)?,
            "--exchange",
            "county",
        ])?;
        run(cli.cmd)?;
        let der = exchange_core::tls::read_pem_file(&ca_dir.join("ca.pem"), "CERTIFICATE")?;
        assert_eq!(
            exchange_core::identity::exchange_of_ca(&der).map(|e| e.to_string()),
            Some("county".to_owned())
        );
        let shangmi = Cli::try_parse_from([
            "exchange-certs",
            "init-ca",
            "--dir",
            &path(&dir.path().join("sm"))?,
            "--profile",
            "shangmi",
            "--exchange",
            "county",
        ])?;
        assert!(run(shangmi.cmd).is_err());
        assert!(!dir.path().join("sm").exists());
        Ok(())
    }
}
