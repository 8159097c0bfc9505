//! SM4-GCM (GB/T 32907 block cipher in GCM mode, as TLCP and RFC 8998 use it), for the
//! shangmi profile's encryption at rest. Sealed data is `ciphertext || tag` (16-byte tag).
//!
//! The caller owns nonce uniqueness: a (key, nonce) pair must never seal two messages.

use std::sync::OnceLock;

use tongsuo::cipher::Cipher;
use tongsuo::cipher_ctx::CipherCtx;

use super::{SmError, fetched, ts};

/// An SM4 key: 128 bits.
pub const KEY_LEN: usize = 16;
/// The GCM nonce length used here: 96 bits, the length GCM is defined for without hashing.
pub const NONCE_LEN: usize = 12;
/// The authentication tag appended to each sealed message.
pub const TAG_LEN: usize = 16;

/// Tongsuo's SM4-GCM implementation, fetched by name (the `tongsuo` crate has no shortcut) once
/// per process.
fn sm4_gcm() -> Result<&'static Cipher, SmError> {
    static SM4_GCM: OnceLock<Cipher> = OnceLock::new();
    fetched(&SM4_GCM, || {
        Cipher::fetch(None, "SM4-GCM", None).map_err(ts("sm4-gcm fetch"))
    })
}

/// Encrypts and authenticates `plaintext`, binding `aad` (authenticated, not encrypted).
pub fn seal(
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, SmError> {
    let cipher = sm4_gcm()?;
    let mut ctx = CipherCtx::new().map_err(ts("sm4-gcm seal"))?;
    ctx.encrypt_init(Some(cipher), Some(key), Some(nonce))
        .map_err(ts("sm4-gcm seal"))?;
    ctx.cipher_update(aad, None).map_err(ts("sm4-gcm seal"))?;
    let mut out = Vec::with_capacity(plaintext.len() + TAG_LEN);
    ctx.cipher_update_vec(plaintext, &mut out)
        .map_err(ts("sm4-gcm seal"))?;
    ctx.cipher_final_vec(&mut out).map_err(ts("sm4-gcm seal"))?;
    let mut tag = [0u8; TAG_LEN];
    ctx.tag(&mut tag).map_err(ts("sm4-gcm tag"))?;
    out.extend_from_slice(&tag);
    Ok(out)
}

/// Checks and decrypts what [`seal`] produced. Any mismatch (key, nonce, AAD, a flipped bit, a
/// truncation) is [`SmError::Unauthentic`], and no plaintext is returned.
pub fn open(
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    sealed: &[u8],
) -> Result<Vec<u8>, SmError> {
    let Some(split) = sealed.len().checked_sub(TAG_LEN) else {
        return Err(SmError::Unauthentic);
    };
    let (ciphertext, tag) = sealed.split_at(split);
    let cipher = sm4_gcm()?;
    let mut ctx = CipherCtx::new().map_err(ts("sm4-gcm open"))?;
    ctx.decrypt_init(Some(cipher), Some(key), Some(nonce))
        .map_err(ts("sm4-gcm open"))?;
    ctx.set_tag(tag).map_err(ts("sm4-gcm open"))?;
    ctx.cipher_update(aad, None).map_err(ts("sm4-gcm open"))?;
    let mut out = Vec::with_capacity(ciphertext.len());
    ctx.cipher_update_vec(ciphertext, &mut out)
        .map_err(ts("sm4-gcm open"))?;
    // The tag is checked here; on failure the partial plaintext is dropped unread.
    if ctx.cipher_final_vec(&mut out).is_err() {
        return Err(SmError::Unauthentic);
    }
    Ok(out)
}
