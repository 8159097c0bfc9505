//! The CA of either crypto profile, behind one type, so that the commands never branch on it.
//!
//! The CA decides an exchange's profile (docs/shangmi.md): `init-ca --profile` picks it once,
//! and every later command reads it back from the CA certificate's key algorithm, so an
//! operator never has to repeat it (and cannot get it wrong).

use std::{fmt, net::IpAddr, path::Path};

use anyhow::{Context, Result};
use exchange_core::{crypto::Profile, identity::Principal, ids::ExchangeName};

use crate::{
    Ca, Validity,
    files::{CA_CERT_FILE, SIGNING_CERT_FILE, SIGNING_KEY_FILE, TLS_CERT_FILE, TLS_KEY_FILE},
};

/// The program name in "built without 国密 support" messages.
const PROGRAM: &str = "exchange-certs";

/// A command line or CA this build cannot serve as asked: exit code 64 (EX_USAGE), like a bad
/// flag, and nothing written.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Refuses `profile` if this binary cannot issue it (`shangmi` without the cargo feature).
pub fn ensure_built(profile: Profile) -> Result<()> {
    profile
        .ensure_built(PROGRAM)
        .map_err(|e| UsageError(e.to_string()).into())
}

/// The profile of the CA in `ca_dir`, from the key algorithm of its `ca.pem`.
pub fn ca_profile(ca_dir: &Path) -> Result<Profile> {
    let path = ca_dir.join(CA_CERT_FILE);
    let der = exchange_core::tls::read_pem_file(&path, "CERTIFICATE")
        .with_context(|| format!("reading {}", path.display()))?;
    let (profile, _) = exchange_core::crypto::cert_profile(&der)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(profile)
}

/// An exchange CA of either profile.
#[derive(Debug)]
#[non_exhaustive]
pub enum Authority {
    /// ECDSA P-256 CA; TLS certificates P-256, document signing Ed25519 (rcgen and ring).
    /// Boxed: rcgen's issuer is large beside the SM2 CA's handful of pointers.
    International(Box<Ca>),
    /// SM2 CA; every certificate SM2, signed SM2-with-SM3 (Tongsuo).
    #[cfg(feature = "shangmi")]
    Shangmi(crate::sm::SmCa),
}

impl Authority {
    /// A new CA of `profile`, valid for `validity`, naming its exchange (`Some`) in the URI
    /// SAN `urn:exchange:name:<exchange>` ([`exchange_core::identity::exchange_uri`]) for linked
    /// exchanges (docs/federation.md). Linking is international-only for now: a name under
    /// `shangmi` is refused ([`UsageError`]) before any key is made.
    pub fn generate(
        profile: Profile,
        common_name: &str,
        exchange: Option<&ExchangeName>,
        validity: Validity,
    ) -> Result<Self> {
        if let (Profile::Shangmi, Some(exchange)) = (profile, exchange) {
            return Err(UsageError(format!(
                "exchange name {exchange}: linked exchanges are not supported with the \
                 {profile} profile yet; use the international profile"
            ))
            .into());
        }
        ensure_built(profile)?;
        match profile {
            Profile::International => Ok(Authority::International(Box::new(Ca::generate_for(
                common_name,
                exchange,
                validity,
            )?))),
            #[cfg(feature = "shangmi")]
            Profile::Shangmi => Ok(Authority::Shangmi(crate::sm::SmCa::generate(
                common_name,
                validity,
            )?)),
            #[cfg(not(feature = "shangmi"))]
            Profile::Shangmi => Err(UsageError(format!("{profile}: not built")).into()),
        }
    }

    /// Loads the CA in `dir`, of whichever profile its certificate says.
    pub fn load(dir: &Path) -> Result<Self> {
        let profile = ca_profile(dir)?;
        ensure_built(profile)
            .with_context(|| format!("the CA in {} is a {profile} (SM2) CA", dir.display()))?;
        match profile {
            Profile::International => Ok(Authority::International(Box::new(Ca::load(dir)?))),
            #[cfg(feature = "shangmi")]
            Profile::Shangmi => Ok(Authority::Shangmi(crate::sm::SmCa::load(dir)?)),
            #[cfg(not(feature = "shangmi"))]
            Profile::Shangmi => Err(UsageError(format!("{profile}: not built")).into()),
        }
    }

    /// The profile of everything this CA issues.
    pub fn profile(&self) -> Profile {
        match self {
            Authority::International(_) => Profile::International,
            #[cfg(feature = "shangmi")]
            Authority::Shangmi(_) => Profile::Shangmi,
        }
    }

    /// Writes `dir/ca.pem` and `dir/ca.key` (0600; an existing key is never replaced).
    pub fn write(&self, dir: &Path) -> Result<()> {
        match self {
            Authority::International(ca) => ca.write(dir),
            #[cfg(feature = "shangmi")]
            Authority::Shangmi(ca) => ca.write(dir),
        }
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        match self {
            Authority::International(ca) => ca.cert_der(),
            #[cfg(feature = "shangmi")]
            Authority::Shangmi(ca) => ca.cert_der(),
        }
    }

    /// Issues `who` its TLS identity into `out` (which must exist): `tls.pem`/`tls.key`, and
    /// under shangmi TLCP's encryption pair `tls-enc.pem`/`tls-enc.key` too.
    pub fn issue_tls_into(
        &self,
        who: &Principal,
        dns_names: &[String],
        ips: &[IpAddr],
        validity: Validity,
        out: &Path,
    ) -> Result<()> {
        match self {
            Authority::International(ca) => ca
                .issue_tls(who, dns_names, ips, validity)?
                .write(&out.join(TLS_CERT_FILE), &out.join(TLS_KEY_FILE)),
            #[cfg(feature = "shangmi")]
            Authority::Shangmi(ca) => {
                use crate::files::{TLS_ENC_CERT_FILE, TLS_ENC_KEY_FILE};
                use exchange_core::crypto::sm::cert::CertUsage;
                ca.issue_tls(who, dns_names, ips, validity, CertUsage::Signing)?
                    .write(&out.join(TLS_CERT_FILE), &out.join(TLS_KEY_FILE))?;
                ca.issue_tls(who, dns_names, ips, validity, CertUsage::Encryption)?
                    .write(&out.join(TLS_ENC_CERT_FILE), &out.join(TLS_ENC_KEY_FILE))
            }
        }
    }

    /// Issues a node API's server identity for department `dept` into `out` (created):
    /// `tls.pem`/`tls.key` with serverAuth only and the names `localhost`, `127.0.0.1`, `::1`
    /// plus `dns_names` and `ips`; under shangmi TLCP's encryption pair `tls-enc.pem`/
    /// `tls-enc.key` too. For `[api] tls` of a node whose API is served over the network.
    pub fn issue_api_into(
        &self,
        dept: &exchange_core::ids::DeptId,
        dns_names: &[String],
        ips: &[IpAddr],
        validity: Validity,
        out: &Path,
    ) -> Result<()> {
        let who = Principal::Dept(dept.clone());
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        match self {
            Authority::International(ca) => ca
                .issue_server_tls(&who, dns_names, ips, validity)?
                .write(&out.join(TLS_CERT_FILE), &out.join(TLS_KEY_FILE)),
            #[cfg(feature = "shangmi")]
            Authority::Shangmi(ca) => {
                use crate::files::{TLS_ENC_CERT_FILE, TLS_ENC_KEY_FILE};
                use exchange_core::crypto::sm::cert::CertUsage;
                ca.issue_server_tls(&who, dns_names, ips, validity, CertUsage::Signing)?
                    .write(&out.join(TLS_CERT_FILE), &out.join(TLS_KEY_FILE))?;
                ca.issue_server_tls(&who, dns_names, ips, validity, CertUsage::Encryption)?
                    .write(&out.join(TLS_ENC_CERT_FILE), &out.join(TLS_ENC_KEY_FILE))
            }
        }
    }

    /// Issues `who` its TLS identity ([`Authority::issue_tls_into`]) and its document-signing
    /// identity (`signing.pem`/`signing.key`) into `out`, created if missing.
    pub fn issue_into_dir(
        &self,
        who: &Principal,
        dns_names: &[String],
        ips: &[IpAddr],
        validity: Validity,
        out: &Path,
    ) -> Result<()> {
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        self.issue_tls_into(who, dns_names, ips, validity, out)?;
        self.issue_signing_into(who, validity, out)
    }

    /// Issues the hub of an exchange linked to others (`[[peers]]`) its identities into `out`
    /// (created), as [`Authority::issue_into_dir`] does for [`Principal::Hub`], but with a TLS
    /// certificate that also allows client authentication ([`Ca::issue_linked_hub_tls`]): the
    /// hub presents it to the peer hubs it dials. International profile only, for now.
    pub fn issue_linked_hub_into(
        &self,
        dns_names: &[String],
        ips: &[IpAddr],
        validity: Validity,
        out: &Path,
    ) -> Result<()> {
        match self {
            Authority::International(ca) => {
                std::fs::create_dir_all(out)
                    .with_context(|| format!("creating {}", out.display()))?;
                ca.issue_linked_hub_tls(dns_names, ips, validity)?
                    .write(&out.join(TLS_CERT_FILE), &out.join(TLS_KEY_FILE))?;
                self.issue_signing_into(&Principal::Hub, validity, out)
            }
            #[cfg(feature = "shangmi")]
            Authority::Shangmi(_) => Err(UsageError(format!(
                "linked exchanges are not supported with the {} profile yet",
                self.profile()
            ))
            .into()),
        }
    }

    /// Writes `who`'s document-signing identity (`signing.pem`/`signing.key`) into `out`.
    fn issue_signing_into(&self, who: &Principal, validity: Validity, out: &Path) -> Result<()> {
        let signing = match self {
            Authority::International(ca) => ca.issue_signing(who, validity)?,
            #[cfg(feature = "shangmi")]
            Authority::Shangmi(ca) => ca.issue_signing(who, validity)?,
        };
        signing.write(&out.join(SIGNING_CERT_FILE), &out.join(SIGNING_KEY_FILE))
    }
}

#[cfg(test)]
mod tests {
    use exchange_core::identity::exchange_of_ca;

    use super::*;

    #[test]
    fn an_authority_names_its_exchange_and_shangmi_refuses_a_name() -> Result<()> {
        let county: ExchangeName = "county".parse()?;
        let validity = Validity::days_from_now(1);
        let named =
            Authority::generate(Profile::International, "County CA", Some(&county), validity)?;
        assert_eq!(exchange_of_ca(named.cert_der()), Some(county.clone()));
        let plain = Authority::generate(Profile::International, "CA", None, validity)?;
        assert_eq!(exchange_of_ca(plain.cert_der()), None);

        let err = Authority::generate(Profile::Shangmi, "SM CA", Some(&county), validity)
            .err()
            .context("a named shangmi CA was made")?;
        assert!(err.downcast_ref::<UsageError>().is_some(), "{err:#}");
        assert!(format!("{err}").contains("linked exchanges"), "{err:#}");
        Ok(())
    }
}
