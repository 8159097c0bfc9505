//! The exchange CA and the identities it issues.
//!
//! Every principal gets two certificates from the same CA: a TLS certificate (ECDSA P-256) that
//! only authenticates connections, and a document-signing certificate (Ed25519) whose only
//! extended key usage is RFC 9336 id-kp-documentSigning. Keeping the keys apart means a TLS key
//! can never sign an official document, and vice versa. Both name the holder by the URI SAN of
//! [`Principal::uri`], which is where the daemons read identities from (never from the CN).

use std::{collections::BTreeSet, fmt, fs, net::IpAddr, path::Path};

use anyhow::{Context, Result, bail, ensure};
use exchange_core::{
    identity::{DOCUMENT_SIGNING_EKU_ARCS, Principal, exchange_uri},
    ids::ExchangeName,
    signing::SigningKey,
};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, PKCS_ED25519, RevocationReason, RevokedCertParams, SanType,
    SerialNumber, SignatureAlgorithm,
};
use time::{Duration, OffsetDateTime};

use crate::files::{CA_CERT_FILE, CA_KEY_FILE, PRIVATE_MODE, PUBLIC_MODE, replace_file};

/// One revoked certificate, as a CRL lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedCert {
    /// The certificate's serial number (big-endian, without leading zero bytes).
    pub serial: Vec<u8>,
    /// When it was revoked.
    pub at: OffsetDateTime,
    /// Why.
    pub reason: RevocationReason,
}

/// The period in which a certificate is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// From one hour ago until `days` days from now. The hour absorbs clock skew between the
    /// machine that issues a certificate and the machines that check it.
    pub fn days_from_now(days: i64) -> Self {
        let now = OffsetDateTime::now_utc();
        Validity {
            not_before: now - Duration::hours(1),
            not_after: now + Duration::days(days),
        }
    }
}

/// An exchange CA that can issue identities: its certificate and its private key.
pub struct Ca {
    /// Subject, key identifier and key of the CA, as rcgen needs them to sign.
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    cert_der: Vec<u8>,
    /// Issued certificates never outlive the CA's own.
    not_after: OffsetDateTime,
}

/// A certificate and its private key, PEM-encoded.
#[derive(Clone)]
pub struct Identity {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The certificate, DER (what TLS peers and x509 parsers see).
    pub cert_der: Vec<u8>,
    /// The private key, PKCS#8 PEM (`PRIVATE KEY`).
    pub key_pem: String,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the private key.
        f.debug_struct("Identity")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Writes the certificate (mode 0644) and the key (mode 0600 from creation on), replacing
    /// earlier files atomically. The parent directories must exist.
    pub fn write(&self, cert_path: &Path, key_path: &Path) -> Result<()> {
        replace_file(key_path, self.key_pem.as_bytes(), PRIVATE_MODE)?;
        replace_file(cert_path, self.cert_pem.as_bytes(), PUBLIC_MODE)
    }
}

impl Ca {
    /// A new self-signed CA: ECDSA P-256, `CA:true` with path length 0 (it signs leaves only),
    /// key usage keyCertSign and cRLSign. It names no exchange ([`Ca::generate_for`]).
    pub fn generate(common_name: &str, validity: Validity) -> Result<Ca> {
        Ca::generate_for(common_name, None, validity)
    }

    /// [`Ca::generate`], naming the CA's exchange (`Some`) in the URI SAN
    /// [`exchange_uri`] (`urn:exchange:name:<exchange>`): how a linked exchange's hub tells
    /// whose CA a pinned certificate is (docs/federation.md).
    pub fn generate_for(
        common_name: &str,
        exchange: Option<&ExchangeName>,
        validity: Validity,
    ) -> Result<Ca> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).context("generating CA key")?;
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name_dn(common_name);
        if let Some(exchange) = exchange {
            let uri = exchange_uri(exchange)
                .try_into()
                .with_context(|| format!("exchange name {exchange} is not an ASCII URI"))?;
            params.subject_alt_names = vec![SanType::URI(uri)];
        }
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        let cert = params.self_signed(&key).context("signing CA certificate")?;
        Ok(Ca {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            not_after: validity.not_after,
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads `dir/ca.pem` and `dir/ca.key`, checking that the certificate is a CA and that the
    /// key belongs to it.
    pub fn load(dir: &Path) -> Result<Ca> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let cert_pem = fs::read_to_string(&cert_path)
            .with_context(|| format!("reading {}", cert_path.display()))?;
        let key_pem = fs::read_to_string(&key_path)
            .with_context(|| format!("reading {}", key_path.display()))?;
        let key = KeyPair::from_pem(&key_pem)
            .with_context(|| format!("parsing private key {}", key_path.display()))?;

        let bad_cert = || format!("parsing certificate {}", cert_path.display());
        let (_, pem) =
            x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).with_context(bad_cert)?;
        ensure!(
            pem.label == "CERTIFICATE",
            "{} holds no certificate",
            cert_path.display()
        );
        let (_, cert) =
            x509_parser::parse_x509_certificate(&pem.contents).with_context(bad_cert)?;
        ensure!(
            cert.is_ca(),
            "{} is not a CA certificate",
            cert_path.display()
        );
        ensure!(
            cert.public_key().subject_public_key.data.as_ref() == key.public_key_raw(),
            "{} does not belong to {}",
            key_path.display(),
            cert_path.display()
        );
        let not_after = OffsetDateTime::from_unix_timestamp(cert.validity().not_after.timestamp())
            .with_context(bad_cert)?;
        ensure!(
            not_after > OffsetDateTime::now_utc(),
            "CA certificate {} has expired",
            cert_path.display()
        );
        let issuer = Issuer::from_ca_cert_der(&pem.contents.as_slice().into(), key)
            .with_context(bad_cert)?;
        Ok(Ca {
            issuer,
            cert_der: pem.contents,
            cert_pem,
            not_after,
        })
    }

    /// Writes `dir/ca.pem` (0644) and `dir/ca.key` (0600), creating `dir`. Refuses to overwrite
    /// an existing `ca.key`: losing a CA key orphans every certificate it issued.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let key_pem = self.issuer.key().serialize_pem();
        crate::files::write_ca(dir, key_pem.as_bytes(), &self.cert_pem)
    }

    /// The CA certificate, PEM: what every hub and node trusts.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// Issues a TLS identity (ECDSA P-256, key usage digitalSignature).
    ///
    /// [`Principal::Hub`] gets EKU serverAuth and SANs DNS `localhost` plus `dns_names`, IP
    /// `127.0.0.1` and `::1` plus `ips`: nodes dialling by IP still verify a name. Departments and
    /// administrators get EKU clientAuth and no DNS or IP SANs (`dns_names` and `ips` must be
    /// empty). Every certificate carries the principal's URI SAN.
    pub fn issue_tls(
        &self,
        who: &Principal,
        dns_names: &[String],
        ips: &[IpAddr],
        validity: Validity,
    ) -> Result<Identity> {
        if *who == Principal::Hub {
            return self.issue_server_tls(who, dns_names, ips, validity);
        }
        if !dns_names.is_empty() || !ips.is_empty() {
            bail!("only the hub's TLS certificate carries DNS names or IP addresses");
        }
        let mut params = self.leaf_params(who, validity)?;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(&params, &PKCS_ECDSA_P256_SHA256)
            .with_context(|| format!("issuing TLS certificate for {who}"))
    }

    /// A server's TLS identity for `who`: serverAuth only, DNS `localhost` plus `dns_names`, IP
    /// `127.0.0.1` and `::1` plus `ips`. The hub's, and a node API's (`issue-api`: it names
    /// the department but, without clientAuth, can never connect to the hub as it).
    pub fn issue_server_tls(
        &self,
        who: &Principal,
        dns_names: &[String],
        ips: &[IpAddr],
        validity: Validity,
    ) -> Result<Identity> {
        let params = self.server_params(who, dns_names, ips, validity)?;
        self.sign(&params, &PKCS_ECDSA_P256_SHA256)
            .with_context(|| format!("issuing TLS server certificate for {who}"))
    }

    /// The TLS identity of a hub linked to other exchanges (`[[peers]]`, docs/federation.md):
    /// the hub's server certificate ([`Ca::issue_server_tls`]) with clientAuth beside
    /// serverAuth, because the hub also presents it when it dials a peer hub's `peer_listen`,
    /// which requires clientAuth. A peer hub trusts it only through its pinned copy of this CA,
    /// and our own nodes' listener accepts only department certificates, so the extra usage
    /// gives the hub no other door.
    pub fn issue_linked_hub_tls(
        &self,
        dns_names: &[String],
        ips: &[IpAddr],
        validity: Validity,
    ) -> Result<Identity> {
        let mut params = self.server_params(&Principal::Hub, dns_names, ips, validity)?;
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ClientAuth);
        self.sign(&params, &PKCS_ECDSA_P256_SHA256)
            .context("issuing TLS certificate for the linked hub")
    }

    /// A server certificate's parameters: serverAuth only, DNS `localhost` plus `dns_names`, IP
    /// `127.0.0.1` and `::1` plus `ips`.
    fn server_params(
        &self,
        who: &Principal,
        dns_names: &[String],
        ips: &[IpAddr],
        validity: Validity,
    ) -> Result<CertificateParams> {
        let mut params = self.leaf_params(who, validity)?;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let dns: BTreeSet<&str> = std::iter::once("localhost")
            .chain(dns_names.iter().map(String::as_str))
            .collect();
        for name in dns {
            ensure!(!name.is_empty(), "empty DNS name");
            let name = name
                .try_into()
                .with_context(|| format!("invalid DNS name {name:?}"))?;
            params.subject_alt_names.push(SanType::DnsName(name));
        }
        let loopback: [IpAddr; 2] = [[127, 0, 0, 1].into(), std::net::Ipv6Addr::LOCALHOST.into()];
        let ips: BTreeSet<IpAddr> = loopback.into_iter().chain(ips.iter().copied()).collect();
        params
            .subject_alt_names
            .extend(ips.into_iter().map(SanType::IpAddress));
        Ok(params)
    }

    /// Issues a document-signing identity: an Ed25519 key, key usage digitalSignature and
    /// contentCommitment (non-repudiation), and id-kp-documentSigning as the only extended key
    /// usage, so that no TLS stack accepts it for a connection.
    pub fn issue_signing(&self, who: &Principal, validity: Validity) -> Result<Identity> {
        let mut params = self.leaf_params(who, validity)?;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::ContentCommitment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::Other(
            DOCUMENT_SIGNING_EKU_ARCS.to_vec(),
        )];
        self.sign(&params, &PKCS_ED25519)
            .with_context(|| format!("issuing document-signing certificate for {who}"))
    }

    /// A document-signing key for `who` ([`Ca::issue_signing`]) held in memory, without writing
    /// key files: for tests and tools that sign documents or evidence as a principal.
    pub fn issue_signing_key(&self, who: &Principal, validity: Validity) -> Result<SigningKey> {
        let id = self.issue_signing(who, validity)?;
        let key = KeyPair::from_pem(&id.key_pem)
            .with_context(|| format!("reading the signing key issued for {who}"))?;
        SigningKey::from_der(&key.serialize_der(), id.cert_der)
            .with_context(|| format!("loading the signing key issued for {who}"))
    }

    /// Signs a certificate revocation list (PEM) listing `revoked`, numbered `number`, valid
    /// from now for `days` days. An empty list is a valid CRL too: it says nothing is revoked.
    pub fn issue_crl(&self, revoked: &[RevokedCert], number: u64, days: i64) -> Result<String> {
        let now = OffsetDateTime::now_utc();
        let params = CertificateRevocationListParams {
            this_update: now,
            next_update: now + Duration::days(days),
            crl_number: SerialNumber::from_slice(&number.to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|r| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&r.serial),
                    revocation_time: r.at,
                    reason_code: Some(r.reason),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.issuer).context("signing the CRL")?;
        crl.pem().context("encoding the CRL")
    }

    /// Whether `cert_der` was issued by this CA (its issuer is our subject and our key signed
    /// it), so that `revoke` never lists a stranger's serial number.
    pub fn issued(&self, cert_der: &[u8]) -> Result<bool> {
        let (_, ca) = x509_parser::parse_x509_certificate(&self.cert_der)?;
        let (_, cert) = x509_parser::parse_x509_certificate(cert_der)?;
        Ok(cert.issuer().as_raw() == ca.subject().as_raw()
            && cert.verify_signature(Some(ca.public_key())).is_ok())
    }

    /// What TLS and signing certificates share: subject CN, URI SAN, validity, not a CA.
    fn leaf_params(&self, who: &Principal, validity: Validity) -> Result<CertificateParams> {
        let not_after = validity.not_after.min(self.not_after);
        ensure!(validity.not_before < not_after, "empty validity period");
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name_dn(&common_name(who));
        let uri = who.uri().try_into().context("principal URI is not ASCII")?;
        params.subject_alt_names = vec![SanType::URI(uri)];
        params.is_ca = IsCa::ExplicitNoCa;
        params.not_before = validity.not_before;
        params.not_after = not_after;
        params.use_authority_key_identifier_extension = true;
        Ok(params)
    }

    /// Generates a fresh key for `alg` and signs `params` for it with the CA key.
    fn sign(
        &self,
        params: &CertificateParams,
        alg: &'static SignatureAlgorithm,
    ) -> Result<Identity> {
        let key = KeyPair::generate_for(alg)?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Identity {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// The subject CN of a principal's certificates: informational only, identities come from the
/// URI SAN. Both profiles' CAs use it.
pub(crate) fn common_name(who: &Principal) -> String {
    match who {
        Principal::Dept(id) => id.to_string(),
        Principal::Hub => "hub".to_owned(),
        Principal::Admin(name) => name.clone(),
    }
}

fn common_name_dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

#[cfg(test)]
mod tests {
    use x509_parser::prelude::parse_x509_certificate;

    use super::*;

    #[test]
    fn loaded_ca_issues_certificates_that_chain_to_it() -> Result<()> {
        let dir = tempfile::tempdir()?;
        Ca::generate("Test CA", Validity::days_from_now(30))?.write(dir.path())?;
        let ca = Ca::load(dir.path())?;
        let leaf = ca.issue_tls(&Principal::Hub, &[], &[], Validity::days_from_now(400))?;

        let (_, ca_cert) = parse_x509_certificate(ca.cert_der())?;
        let (_, cert) = parse_x509_certificate(&leaf.cert_der)?;
        assert_eq!(cert.issuer().as_raw(), ca_cert.subject().as_raw());
        cert.verify_signature(Some(ca_cert.public_key()))?;
        // Clamped to the CA's own lifetime.
        assert_eq!(cert.validity().not_after, ca_cert.validity().not_after);
        let bc = ca_cert
            .basic_constraints()?
            .context("no basic constraints")?
            .value;
        assert!(bc.ca && bc.path_len_constraint == Some(0));
        Ok(())
    }

    #[test]
    fn a_ca_names_its_exchange_only_when_given_one() -> Result<()> {
        use exchange_core::identity::exchange_of_ca;
        let city: ExchangeName = "city".parse()?;
        let named = Ca::generate_for("City CA", Some(&city), Validity::days_from_now(1))?;
        assert_eq!(exchange_of_ca(named.cert_der()), Some(city.clone()));
        let (_, cert) = parse_x509_certificate(named.cert_der())?;
        assert!(cert.is_ca());
        // A leaf it issues still chains to it, SAN or not.
        let leaf = named.issue_tls(&Principal::Hub, &[], &[], Validity::days_from_now(1))?;
        let (_, parsed) = parse_x509_certificate(&leaf.cert_der)?;
        parsed.verify_signature(Some(cert.public_key()))?;
        assert_eq!(exchange_of_ca(&leaf.cert_der), None);

        let plain = Ca::generate("Plain CA", Validity::days_from_now(1))?;
        assert_eq!(exchange_of_ca(plain.cert_der()), None);
        // Written and loaded back, the name survives.
        let dir = tempfile::tempdir()?;
        named.write(dir.path())?;
        assert_eq!(exchange_of_ca(Ca::load(dir.path())?.cert_der()), Some(city));
        Ok(())
    }

    #[test]
    fn only_a_linked_hub_certificate_allows_client_authentication() -> Result<()> {
        let ca = Ca::generate_for("CA", Some(&"city".parse()?), Validity::days_from_now(1))?;
        let eku = |id: &Identity| -> Result<(bool, bool)> {
            let (_, cert) = parse_x509_certificate(&id.cert_der)?;
            let eku = cert.extended_key_usage()?.context("no EKU")?.value;
            Ok((eku.server_auth, eku.client_auth))
        };
        let linked = ca.issue_linked_hub_tls(&[], &[], Validity::days_from_now(1))?;
        assert_eq!(eku(&linked)?, (true, true));
        assert_eq!(
            Principal::from_cert_der(&linked.cert_der),
            Some(Principal::Hub)
        );
        let plain = ca.issue_tls(&Principal::Hub, &[], &[], Validity::days_from_now(1))?;
        assert_eq!(eku(&plain)?, (true, false));
        Ok(())
    }

    #[test]
    fn write_refuses_to_replace_a_ca_key() -> Result<()> {
        let dir = tempfile::tempdir()?;
        Ca::generate("One", Validity::days_from_now(1))?.write(dir.path())?;
        let err = Ca::generate("Two", Validity::days_from_now(1))?.write(dir.path());
        assert!(format!("{:#}", err.err().context("second write succeeded")?).contains("ca.key"));
        assert!(
            Ca::load(dir.path())?
                .cert_pem()
                .contains("BEGIN CERTIFICATE")
        );
        Ok(())
    }

    #[test]
    fn load_rejects_a_key_from_another_ca() -> Result<()> {
        let (a, b) = (tempfile::tempdir()?, tempfile::tempdir()?);
        Ca::generate("A", Validity::days_from_now(1))?.write(a.path())?;
        Ca::generate("B", Validity::days_from_now(1))?.write(b.path())?;
        fs::copy(b.path().join(CA_KEY_FILE), a.path().join("other.key"))?;
        fs::rename(a.path().join("other.key"), a.path().join(CA_KEY_FILE))?;
        assert!(Ca::load(a.path()).is_err());
        Ok(())
    }

    #[test]
    fn a_node_api_certificate_names_the_department_for_server_auth_only() -> Result<()> {
        let dir = tempfile::tempdir()?;
        Ca::generate("CA", Validity::days_from_now(1))?.write(dir.path())?;
        let out = dir.path().join("api");
        crate::Authority::load(dir.path())?.issue_api_into(
            &"a".parse()?,
            &["oa-gw.example.gov".into()],
            &["10.1.2.3".parse()?],
            Validity::days_from_now(1),
            &out,
        )?;
        let der =
            exchange_core::tls::read_pem_file(&out.join(crate::TLS_CERT_FILE), "CERTIFICATE")?;
        assert_eq!(
            Principal::from_cert_der(&der),
            Some(Principal::Dept("a".parse()?))
        );
        let (_, cert) = parse_x509_certificate(&der)?;
        let eku = cert.extended_key_usage()?.context("no EKU")?.value;
        assert!(eku.server_auth && !eku.client_auth, "{eku:?}");
        let san = cert.subject_alternative_name()?.context("no SAN")?.value;
        let names = format!("{:?}", san.general_names);
        for name in [
            "localhost",
            "oa-gw.example.gov",
            "[127, 0, 0, 1]",
            "[10, 1, 2, 3]",
        ] {
            assert!(names.contains(name), "{name} in {names}");
        }
        Ok(())
    }

    #[test]
    fn departments_get_no_dns_or_ip_names() -> Result<()> {
        let ca = Ca::generate("CA", Validity::days_from_now(1))?;
        let dept = Principal::Dept("a".parse()?);
        let err = ca.issue_tls(&dept, &["x".into()], &[], Validity::days_from_now(1));
        assert!(err.is_err());
        Ok(())
    }
}
