//! HKDF with SM3 (RFC 5869's extract-then-expand over HMAC-SM3), as the shangmi profile derives
//! its at-rest keys. It is Tongsuo's HKDF (`EVP_PKEY_HKDF`) with SM3 as its digest: nothing of
//! the construction or of SM3 is written here.

use std::cell::RefCell;

use tongsuo::md::Md;
use tongsuo::pkey::Id;
use tongsuo::pkey_ctx::PkeyCtx;
use zeroize::Zeroizing;

use super::{SmError, ts};

/// The longest output HKDF-SM3 gives (255 blocks of SM3's 32 bytes, RFC 5869).
pub const MAX_OUTPUT: usize = 255 * 32;

/// RFC 5869's salt when none is provided: as many zero bytes as SM3's output.
const NO_SALT: [u8; 32] = [0; 32];

/// A context set up with SM3, one input key and one `info`, ready to derive under any salt.
struct Prepared {
    ikm: Zeroizing<Vec<u8>>,
    info: Vec<u8>,
    ctx: PkeyCtx<()>,
}

thread_local! {
    /// The context of this thread's last derivation. Setting one up goes through OpenSSL 3's
    /// provider lookups and cost as much as the derivation itself (a 国密 node derives a key
    /// for every value it seals or opens, all under the same data key and `info`), so a thread
    /// keeps it and only sets the salt for the next value. Tongsuo clears the key it holds when
    /// the context is freed.
    static LAST: RefCell<Option<Prepared>> = const { RefCell::new(None) };
}

impl Prepared {
    fn new(ikm: &[u8], info: &[u8]) -> Result<Self, SmError> {
        let mut ctx = PkeyCtx::new_id(Id::HKDF).map_err(ts("hkdf-sm3"))?;
        ctx.derive_init().map_err(ts("hkdf-sm3"))?;
        ctx.set_hkdf_md(Md::sm3()).map_err(ts("hkdf-sm3"))?;
        ctx.set_hkdf_key(ikm).map_err(ts("hkdf-sm3"))?;
        ctx.add_hkdf_info(info).map_err(ts("hkdf-sm3"))?;
        Ok(Prepared {
            ikm: Zeroizing::new(ikm.to_vec()),
            info: info.to_vec(),
            ctx,
        })
    }

    fn derive(&mut self, salt: &[u8], out: &mut [u8]) -> Result<(), SmError> {
        let salt = if salt.is_empty() { &NO_SALT[..] } else { salt };
        self.ctx.set_hkdf_salt(salt).map_err(ts("hkdf-sm3"))?;
        let len = self.ctx.derive(Some(out)).map_err(ts("hkdf-sm3"))?;
        if len != out.len() {
            return Err(SmError::KdfLength(len));
        }
        Ok(())
    }
}

/// Fills `out` with `HKDF-SM3(salt, ikm, info)`. An empty `salt` is RFC 5869's "not provided"
/// (32 zero bytes). `out` must be 1 to [`MAX_OUTPUT`] bytes long.
pub fn hkdf_sm3(ikm: &[u8], salt: &[u8], info: &[u8], out: &mut [u8]) -> Result<(), SmError> {
    if out.is_empty() || out.len() > MAX_OUTPUT {
        return Err(SmError::KdfLength(out.len()));
    }
    LAST.with_borrow_mut(|last| {
        let mut prepared = match last.take() {
            Some(p) if p.ikm.as_slice() == ikm && p.info == info => p,
            _ => Prepared::new(ikm, info)?,
        };
        let derived = prepared.derive(salt, out);
        // A context that failed is not trusted with the next derivation.
        if derived.is_ok() {
            *last = Some(prepared);
        }
        derived
    })
}
