//! HKDF with SM3 (RFC 5869's extract-then-expand over HMAC-SM3), as the shangmi profile derives
//! its at-rest keys. It is Tongsuo's HKDF (`EVP_PKEY_HKDF`) with SM3 as its digest: nothing of
//! the construction or of SM3 is written here.

use tongsuo::md::Md;
use tongsuo::pkey::Id;
use tongsuo::pkey_ctx::PkeyCtx;

use super::{SmError, ts};

/// The longest output HKDF-SM3 gives (255 blocks of SM3's 32 bytes, RFC 5869).
pub const MAX_OUTPUT: usize = 255 * 32;

/// Fills `out` with `HKDF-SM3(salt, ikm, info)`. An empty `salt` is RFC 5869's "not provided"
/// (32 zero bytes). `out` must be 1 to [`MAX_OUTPUT`] bytes long.
pub fn hkdf_sm3(ikm: &[u8], salt: &[u8], info: &[u8], out: &mut [u8]) -> Result<(), SmError> {
    if out.is_empty() || out.len() > MAX_OUTPUT {
        return Err(SmError::KdfLength(out.len()));
    }
    let mut ctx = PkeyCtx::new_id(Id::HKDF).map_err(ts("hkdf-sm3"))?;
    ctx.derive_init().map_err(ts("hkdf-sm3"))?;
    ctx.set_hkdf_md(Md::sm3()).map_err(ts("hkdf-sm3"))?;
    ctx.set_hkdf_key(ikm).map_err(ts("hkdf-sm3"))?;
    if !salt.is_empty() {
        ctx.set_hkdf_salt(salt).map_err(ts("hkdf-sm3"))?;
    }
    ctx.add_hkdf_info(info).map_err(ts("hkdf-sm3"))?;
    let len = ctx.derive(Some(out)).map_err(ts("hkdf-sm3"))?;
    if len != out.len() {
        return Err(SmError::KdfLength(len));
    }
    Ok(())
}
