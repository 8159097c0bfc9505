//! The 国密 primitives, all from Tongsuo (a certified module; docs/shangmi.md): SM3 digests,
//! SM2-with-SM3 signatures (GM/T 0009), SM4-GCM ([`sm4`]), HKDF-SM3 ([`kdf`]) and SM2
//! certificates ([`cert`]).
//!
//! Nothing here implements an SM algorithm: every operation is one call into Tongsuo through the
//! `tongsuo` crate's safe API. The workspace forbids `unsafe`, so only what that API exposes is
//! used; see [`DISTID`] for the one consequence.

use std::{fmt, sync::OnceLock};

use tongsuo::error::ErrorStack;
use tongsuo::hash::MessageDigest;
use tongsuo::md::Md;
use tongsuo::md_ctx::MdCtx;
use tongsuo::pkey::{Id, PKey, PKeyRef, Private, Public};
use tongsuo::pkey_ctx::PkeyCtx;
use tongsuo::sign::{Signer, Verifier};
use tongsuo::x509::X509;
use zeroize::Zeroizing;

pub mod cert;
pub mod kdf;
pub mod sm4;

/// The algorithm name of an SM2 signature over the SM3-with-Z digest of the message (GM/T 0009),
/// as written in `Signature.algorithm`.
pub const SM2_SM3: &str = "sm2-sm3";

/// The SM2 distinguishing ID every signature of the exchange uses: GM/T 0009's default, and the
/// value Tongsuo applies when none is set (`SM2_DEFAULT_USERID`). The `tongsuo` crate has no safe
/// binding for `EVP_PKEY_CTX_set1_id`, so this is fixed rather than passed in; the interop tests
/// prove that Tongsuo really uses it (OpenSSL verifies our signatures with `distid:` this value
/// and refuses them with any other).
pub const DISTID: &str = "1234567812345678";

/// Why an SM operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SmError {
    /// Tongsuo reported an error (bad DER, an internal failure).
    #[error("tongsuo {op} failed")]
    Tongsuo {
        /// The operation, e.g. "sm2 sign".
        op: &'static str,
        /// Tongsuo's error queue.
        #[source]
        source: ErrorStack,
    },
    /// A key that decodes but is not an SM2 key (an SM2 signature would be something else).
    #[error("not an sm2 key (tongsuo key type {0})")]
    NotSm2Key(i32),
    /// The signature is not valid for this message and key.
    #[error("sm2 signature does not verify")]
    BadSignature,
    /// SM4-GCM refused sealed data: wrong key, nonce or AAD, or tampered or truncated bytes.
    #[error("sm4-gcm authentication failed")]
    Unauthentic,
    /// A key derivation was asked for an output length HKDF-SM3 cannot give (0, or over
    /// [`kdf::MAX_OUTPUT`]).
    #[error("hkdf-sm3 cannot derive {0} bytes (1 to 8160)")]
    KdfLength(usize),
    /// A certificate request Tongsuo would accept but the exchange should not issue.
    #[error("invalid certificate request: {0}")]
    CertRequest(&'static str),
}

/// Wraps a Tongsuo error with the operation it failed in.
pub(crate) fn ts(op: &'static str) -> impl FnOnce(ErrorStack) -> SmError {
    move |source| SmError::Tongsuo { op, source }
}

/// What `cell` holds, fetched from Tongsuo with `fetch` the first time (a failed fetch is
/// returned and tried again next time). An algorithm fetched by name walks OpenSSL 3's name map:
/// about 1 % of a 国密 daemon's samples each for SM3 and SM4-GCM when every value did it.
pub(crate) fn fetched<T>(
    cell: &'static OnceLock<T>,
    fetch: impl FnOnce() -> Result<T, SmError>,
) -> Result<&'static T, SmError> {
    if let Some(v) = cell.get() {
        return Ok(v);
    }
    let v = fetch()?;
    Ok(cell.get_or_init(|| v))
}

/// The SM3 digest of `bytes` (GB/T 32905-2016), with SM3 fetched once per process.
pub fn sm3(bytes: &[u8]) -> Result<[u8; 32], SmError> {
    static SM3: OnceLock<Md> = OnceLock::new();
    let md = fetched(&SM3, || {
        Md::fetch(None, "SM3", None).map_err(ts("sm3 fetch"))
    })?;
    let mut ctx = MdCtx::new().map_err(ts("sm3"))?;
    ctx.digest_init(md).map_err(ts("sm3"))?;
    ctx.digest_update(bytes).map_err(ts("sm3"))?;
    // SM3's output is 32 bytes by definition: Tongsuo writes all of them.
    let mut out = [0u8; 32];
    ctx.digest_final(&mut out).map_err(ts("sm3"))?;
    Ok(out)
}

/// Refuses keys that Tongsuo would not sign with SM2: an EC key on another curve, RSA, etc.
fn ensure_sm2<T>(key: &PKeyRef<T>) -> Result<(), SmError> {
    match key.id() {
        Id::SM2 => Ok(()),
        other => Err(SmError::NotSm2Key(other.as_raw())),
    }
}

/// An SM2 private key held inside Tongsuo (which clears it on free). It has no `Clone`, and its
/// `Debug` prints nothing of the key.
pub struct Sm2PrivateKey(PKey<Private>);

impl Sm2PrivateKey {
    /// A fresh key from Tongsuo's generator.
    pub fn generate() -> Result<Self, SmError> {
        let mut ctx = PkeyCtx::new_id(Id::SM2).map_err(ts("sm2 keygen"))?;
        ctx.keygen_init().map_err(ts("sm2 keygen"))?;
        let key = ctx.keygen().map_err(ts("sm2 keygen"))?;
        ensure_sm2(&key)?;
        Ok(Self(key))
    }

    /// Reads an unencrypted PKCS#8 `PrivateKeyInfo` (DER), as `openssl genpkey -algorithm SM2`
    /// writes it.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, SmError> {
        let key = PKey::private_key_from_pkcs8(der).map_err(ts("sm2 pkcs8 decode"))?;
        ensure_sm2(&key)?;
        Ok(Self(key))
    }

    /// The key as unencrypted PKCS#8 DER, wiped from memory when the result is dropped.
    pub fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>, SmError> {
        let der = self
            .0
            .private_key_to_pkcs8()
            .map_err(ts("sm2 pkcs8 encode"))?;
        Ok(Zeroizing::new(der))
    }

    /// The key as unencrypted PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), as key files are
    /// written; wiped from memory when the result is dropped.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<Vec<u8>>, SmError> {
        let pem = self
            .0
            .private_key_to_pem_pkcs8()
            .map_err(ts("sm2 pkcs8 encode"))?;
        Ok(Zeroizing::new(pem))
    }

    /// The matching public key.
    pub fn public_key(&self) -> Result<Sm2PublicKey, SmError> {
        let spki = self.0.public_key_to_der().map_err(ts("sm2 spki encode"))?;
        Sm2PublicKey::from_spki_der(&spki)
    }

    /// An SM2 signature of `msg` with SM3 and [`DISTID`] (GM/T 0009), DER-encoded
    /// (`SEQUENCE { r INTEGER, s INTEGER }`). Randomised: two signatures of one message differ.
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, SmError> {
        let mut signer = Signer::new(MessageDigest::sm3(), &self.0).map_err(ts("sm2 sign"))?;
        signer.sign_oneshot_to_vec(msg).map_err(ts("sm2 sign"))
    }

    /// Tongsuo's key, for certificate signing in [`cert`].
    pub(crate) fn pkey(&self) -> &PKeyRef<Private> {
        &self.0
    }
}

impl fmt::Debug for Sm2PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sm2PrivateKey(..)")
    }
}

/// An SM2 public key: a signer's, or the subject of a certificate.
#[derive(Clone)]
pub struct Sm2PublicKey(PKey<Public>);

impl Sm2PublicKey {
    /// Reads a `SubjectPublicKeyInfo` (DER).
    pub fn from_spki_der(der: &[u8]) -> Result<Self, SmError> {
        let key = PKey::public_key_from_der(der).map_err(ts("sm2 spki decode"))?;
        ensure_sm2(&key)?;
        Ok(Self(key))
    }

    /// The subject key of an X.509 certificate (DER). This does not check the certificate's
    /// chain, validity or key usage: that is the caller's business.
    pub fn from_certificate_der(der: &[u8]) -> Result<Self, SmError> {
        let cert = X509::from_der(der).map_err(ts("x509 decode"))?;
        let key = cert.public_key().map_err(ts("x509 public key"))?;
        ensure_sm2(&key)?;
        Ok(Self(key))
    }

    /// The key as `SubjectPublicKeyInfo` DER.
    pub fn to_spki_der(&self) -> Result<Vec<u8>, SmError> {
        self.0.public_key_to_der().map_err(ts("sm2 spki encode"))
    }

    /// Checks a DER SM2-with-SM3 signature over `msg` made with [`DISTID`]. A signature that does
    /// not decode is [`SmError::BadSignature`] too: to a verifier both are just invalid.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<(), SmError> {
        let mut verifier =
            Verifier::new(MessageDigest::sm3(), &self.0).map_err(ts("sm2 verify"))?;
        match verifier.verify_oneshot(sig, msg) {
            Ok(true) => Ok(()),
            Ok(false) | Err(_) => Err(SmError::BadSignature),
        }
    }

    /// Tongsuo's key, for certificate issuance in [`cert`].
    pub(crate) fn pkey(&self) -> &PKeyRef<Public> {
        &self.0
    }
}

impl fmt::Debug for Sm2PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sm2PublicKey(..)")
    }
}

#[cfg(test)]
mod tests;
