//! Sealing small values (database records, inline content) one by one, each under its own
//! derived key and bound to its slot by the caller's AAD. The byte layout is in [`super`].

use super::{
    AtRestError, DataKeys, Suite,
    keys::SALT_LEN,
    suite::{NONCE_LEN, TAG_LEN},
};

/// Marks a sealed value. The first byte, 0xF7, has protobuf wire type 7 (`0xF7 & 7`), which no
/// protobuf message can start with, so a plaintext protobuf value is never taken for a sealed
/// one; the other three bytes ("EXV") guard against other plaintext.
pub const VALUE_MAGIC: [u8; 4] = [0xF7, b'E', b'X', b'V'];
/// HKDF info of value keys (blob keys use another, so the two never coincide).
const INFO: &[u8] = b"exchange at-rest value v1";
/// magic | format byte (the suite) | key id | salt.
const HEADER_LEN: usize = VALUE_MAGIC.len() + 1 + 4 + SALT_LEN;
/// Each value key encrypts exactly one message, so a fixed nonce never repeats under a key.
const NONCE: [u8; NONCE_LEN] = [0; NONCE_LEN];

/// Bytes a sealed value adds to its plaintext: 25 of header and a 16-byte tag.
pub const VALUE_OVERHEAD: usize = HEADER_LEN + TAG_LEN;

impl DataKeys {
    /// Seals `plaintext` under the current data key with the store's suite, bound to `aad`
    /// (the record's slot: table and key, say). The result is [`VALUE_OVERHEAD`] bytes longer
    /// and never repeats, even for equal plaintexts (fresh salt). Fails only when the random
    /// source or the cipher library fails (or for a plaintext over GCM's 64 GiB limit).
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, AtRestError> {
        let suite = self.suite();
        let (id, dek) = self.current()?;
        let salt: [u8; SALT_LEN] = suite.random()?;
        let mut out = Vec::with_capacity(VALUE_OVERHEAD + plaintext.len());
        out.extend_from_slice(&VALUE_MAGIC);
        out.push(suite.format_byte());
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&salt);
        out.extend_from_slice(plaintext);
        let (header, body) = out.split_at_mut(HEADER_LEN);
        let tag = suite
            .derive(&dek.0, &salt, INFO)?
            .seal(NONCE, &gcm_aad(header, aad), body)?;
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// Opens a value [`DataKeys::seal`] made with the same `aad`. Anything altered, a value
    /// moved to another slot, or one sealed by another store fails as
    /// [`AtRestError::ValueNotAuthentic`]; the caller adds which record. A value sealed with the
    /// other profile's suite is [`AtRestError::SuiteMismatch`], naming both.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, AtRestError> {
        let malformed = |reason| AtRestError::ValueFormat { reason };
        if !Self::is_sealed(sealed) {
            return Err(malformed("no sealed-value marker"));
        }
        if sealed.len() < VALUE_OVERHEAD {
            return Err(malformed("shorter than a sealed value's header and tag"));
        }
        let Some(suite) = Suite::from_format_byte(sealed[4]) else {
            return Err(malformed("unknown version (written by a newer build?)"));
        };
        if suite != self.suite() {
            return Err(AtRestError::SuiteMismatch {
                what: "sealed value",
                found: suite,
                expected: self.suite(),
            });
        }
        let (header, body) = sealed.split_at(HEADER_LEN);
        let id = u32::from_be_bytes([header[5], header[6], header[7], header[8]]);
        let salt = &header[9..HEADER_LEN];
        let dek = self.get(id)?;
        let mut buf = body.to_vec();
        let len = suite
            .derive(&dek.0, salt, INFO)?
            .open(NONCE, &gcm_aad(header, aad), &mut buf)
            .map_err(|e| e.or(AtRestError::ValueNotAuthentic))?
            .len();
        buf.truncate(len);
        Ok(buf)
    }

    /// Whether `bytes` carry the sealed-value marker, so that a reader can tell sealed values
    /// from those written before encryption. Exact for plaintext protobuf values (none starts
    /// with 0xF7) and for the empty value; see [`super`] for other plaintext and for downgrades.
    pub fn is_sealed(bytes: &[u8]) -> bool {
        bytes.starts_with(&VALUE_MAGIC)
    }
}

/// The AAD GCM authenticates: the value's own header, then the caller's slot. The header has a
/// fixed length, so the concatenation is unambiguous.
fn gcm_aad(header: &[u8], aad: &[u8]) -> Vec<u8> {
    let mut all = Vec::with_capacity(header.len() + aad.len());
    all.extend_from_slice(header);
    all.extend_from_slice(aad);
    all
}

#[cfg(test)]
mod tests;
