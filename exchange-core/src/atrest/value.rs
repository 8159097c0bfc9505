//! Sealing small values (database records, inline content) one by one, each under its own
//! derived key and bound to its slot by the caller's AAD. The byte layout is in [`super`].

use ring::aead::{Aad, NONCE_LEN, Nonce};

use super::{
    AtRestError, DataKeys,
    keys::{SALT_LEN, derive, random},
};

/// Marks a sealed value. The first byte, 0xF7, has protobuf wire type 7 (`0xF7 & 7`), which no
/// protobuf message can start with, so a plaintext protobuf value is never taken for a sealed
/// one; the other three bytes ("EXV") guard against other plaintext.
pub const VALUE_MAGIC: [u8; 4] = [0xF7, b'E', b'X', b'V'];
/// The layout version after the magic.
const VERSION: u8 = 1;
/// HKDF info of value keys (blob keys use another, so the two never coincide).
const INFO: &[u8] = b"exchange at-rest value v1";
/// magic | version | key id | salt.
const HEADER_LEN: usize = VALUE_MAGIC.len() + 1 + 4 + SALT_LEN;
/// The AES-GCM tag.
const TAG_LEN: usize = 16;
/// Each value key encrypts exactly one message, so a fixed nonce never repeats under a key.
const NONCE: [u8; NONCE_LEN] = [0; NONCE_LEN];

/// Bytes a sealed value adds to its plaintext: 25 of header and a 16-byte tag.
pub const VALUE_OVERHEAD: usize = HEADER_LEN + TAG_LEN;

impl DataKeys {
    /// Seals `plaintext` under the current data key, bound to `aad` (the record's slot: table
    /// and key, say). The result is [`VALUE_OVERHEAD`] bytes longer and never repeats, even for
    /// equal plaintexts (fresh salt).
    ///
    /// # Panics
    /// When the OS random source fails, or for a plaintext over AES-GCM's 64 GiB limit.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let (id, dek) = self.current();
        let salt: [u8; SALT_LEN] = random();
        let mut out = Vec::with_capacity(VALUE_OVERHEAD + plaintext.len());
        out.extend_from_slice(&VALUE_MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&salt);
        out.extend_from_slice(plaintext);
        let (header, body) = out.split_at_mut(HEADER_LEN);
        let tag = derive(&dek.0, &salt, INFO)
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(NONCE),
                Aad::from(gcm_aad(header, aad)),
                body,
            )
            .expect("BUG: a value over AES-GCM's 64 GiB limit was sealed");
        out.extend_from_slice(tag.as_ref());
        out
    }

    /// Opens a value [`DataKeys::seal`] made with the same `aad`. Anything altered, a value
    /// moved to another slot, or one sealed by another store fails as
    /// [`AtRestError::ValueNotAuthentic`]; the caller adds which record.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, AtRestError> {
        let malformed = |reason| AtRestError::ValueFormat { reason };
        if !Self::is_sealed(sealed) {
            return Err(malformed("no sealed-value marker"));
        }
        if sealed.len() < VALUE_OVERHEAD {
            return Err(malformed("shorter than a sealed value's header and tag"));
        }
        if sealed[4] != VERSION {
            return Err(malformed("unknown version (written by a newer build?)"));
        }
        let (header, body) = sealed.split_at(HEADER_LEN);
        let id = u32::from_be_bytes([header[5], header[6], header[7], header[8]]);
        let salt = &header[9..HEADER_LEN];
        let dek = self.get(id)?;
        let mut buf = body.to_vec();
        let len = derive(&dek.0, salt, INFO)
            .open_in_place(
                Nonce::assume_unique_for_key(NONCE),
                Aad::from(gcm_aad(header, aad)),
                &mut buf,
            )
            .map_err(|_| AtRestError::ValueNotAuthentic)?
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
mod tests {
    use super::*;
    use crate::atrest::keys::test_keys;

    const AAD: &[u8] = b"documents/0190c0de";

    #[test]
    fn round_trips_empty_small_and_large_values() {
        let keys = test_keys(1);
        for len in [0usize, 1, 15, 16, 17, 1000, 100_000] {
            let plain: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let sealed = keys.seal(AAD, &plain);
            assert_eq!(sealed.len(), plain.len() + VALUE_OVERHEAD);
            assert!(DataKeys::is_sealed(&sealed));
            assert_eq!(keys.open(AAD, &sealed).unwrap(), plain);
        }
    }

    #[test]
    fn sealed_value_never_contains_the_plaintext() {
        let keys = test_keys(1);
        let marker = b"CONFIDENTIAL-MARKER-4242";
        let plain = [&b"prefix "[..], marker, b" suffix"].concat();
        let a = keys.seal(AAD, &plain);
        let b = keys.seal(AAD, &plain);
        assert!(!a.windows(marker.len()).any(|w| w == marker));
        assert_ne!(a, b, "a fresh salt per value: equal plaintexts do not show");
    }

    #[test]
    fn every_flipped_byte_is_refused() {
        let keys = test_keys(1);
        let sealed = keys.seal(AAD, b"some record");
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            let err = keys.open(AAD, &bad).unwrap_err();
            match i {
                0..4 => assert!(matches!(err, AtRestError::ValueFormat { .. })),
                4 => assert!(matches!(err, AtRestError::ValueFormat { .. })),
                5..9 => assert!(matches!(err, AtRestError::UnknownKeyId { .. })),
                _ => assert_eq!(err.to_string(), AtRestError::ValueNotAuthentic.to_string()),
            }
        }
        let truncated = &sealed[..sealed.len() - 1];
        assert!(keys.open(AAD, truncated).is_err());
        assert!(keys.open(AAD, &sealed[..10]).is_err());
    }

    #[test]
    fn a_value_moved_to_another_slot_does_not_authenticate() {
        let keys = test_keys(1);
        let sealed = keys.seal(b"documents/a", b"record a");
        let err = keys.open(b"documents/b", &sealed).unwrap_err();
        assert!(matches!(err, AtRestError::ValueNotAuthentic));
        assert!(err.to_string().contains("does not authenticate"), "{err}");
    }

    #[test]
    fn another_stores_key_does_not_open_a_value() {
        let sealed = test_keys(1).seal(AAD, b"record");
        let err = test_keys(2).open(AAD, &sealed).unwrap_err();
        assert!(matches!(err, AtRestError::ValueNotAuthentic));
    }

    #[test]
    fn plaintext_protobuf_is_never_taken_for_sealed() {
        // Wire type 7 does not exist: no protobuf message's first byte looks like ours.
        assert_eq!(VALUE_MAGIC[0] & 7, 7);
        let legacy = prost::Message::encode_to_vec(&exchange_proto::v1::SignedEvidence {
            evidence: b"x".to_vec(),
            ..Default::default()
        });
        assert!(!DataKeys::is_sealed(&legacy));
        assert!(!DataKeys::is_sealed(&[]));
        assert!(matches!(
            test_keys(1).open(AAD, &legacy),
            Err(AtRestError::ValueFormat { .. })
        ));
    }
}
