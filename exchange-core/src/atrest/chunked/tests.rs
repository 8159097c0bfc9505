use super::*;
use crate::atrest::{
    golden::*,
    keys::{test_keys, test_keys_for, test_suites},
};

#[test]
fn chunks_round_trip_through_sealer_and_opener() {
    for suite in test_suites() {
        round_trip(test_keys_for(suite, 1));
    }
}

fn round_trip(keys: DataKeys) {
    let (header, sealer) = BlobSealer::with_chunk_size(&keys, 4).unwrap();
    assert!(is_sealed_blob(&header));
    let opener = BlobOpener::from_header(&keys, &header).unwrap();
    assert_eq!(opener.layout().chunk_size(), 4);
    let c0 = sealer.seal_chunk(0, false, b"abcd").unwrap();
    let c1 = sealer.seal_chunk(1, true, b"ef").unwrap();
    assert_eq!(c1.len(), 2 + 16);
    assert_eq!(opener.open_chunk(0, false, &c0).unwrap(), b"abcd");
    assert_eq!(opener.open_chunk(1, true, &c1).unwrap(), b"ef");
    let empty = sealer.seal_chunk(0, true, b"").unwrap();
    assert_eq!(opener.open_chunk(0, true, &empty).unwrap(), b"");
}

#[test]
fn a_chunk_at_another_index_or_lastness_does_not_authenticate() {
    for suite in test_suites() {
        moved_chunks(test_keys_for(suite, 1));
    }
}

fn moved_chunks(keys: DataKeys) {
    let (header, sealer) = BlobSealer::with_chunk_size(&keys, 4).unwrap();
    let opener = BlobOpener::from_header(&keys, &header).unwrap();
    let c3 = sealer.seal_chunk(3, false, b"abcd").unwrap();
    let err = opener.open_chunk(2, false, &c3).unwrap_err();
    assert_eq!(err.to_string(), "chunk 2 does not authenticate");
    let err = opener.open_chunk(3, true, &c3).unwrap_err();
    assert_eq!(err.to_string(), "chunk 3 does not authenticate");
    assert!(opener.open_chunk(3, false, &c3[..10]).is_err());
    assert!(opener.open_chunk(3, false, &[]).is_err());
}

#[test]
fn a_chunk_of_another_blob_does_not_authenticate() {
    let keys = test_keys(1);
    let (_, a) = BlobSealer::with_chunk_size(&keys, 4).unwrap();
    let (header_b, _) = BlobSealer::with_chunk_size(&keys, 4).unwrap();
    let chunk = a.seal_chunk(0, true, b"ab").unwrap();
    let opener_b = BlobOpener::from_header(&keys, &header_b).unwrap();
    assert!(matches!(
        opener_b.open_chunk(0, true, &chunk),
        Err(AtRestError::ChunkNotAuthentic { index: 0 })
    ));
}

#[test]
fn a_chunk_of_the_wrong_length_is_not_sealed() {
    let (_, sealer) = BlobSealer::with_chunk_size(&test_keys(1), 4).unwrap();
    assert!(matches!(
        sealer.seal_chunk(0, false, b"abc"),
        Err(AtRestError::ChunkLength {
            index: 0,
            len: 3,
            chunk_size: 4
        })
    ));
    assert!(sealer.seal_chunk(1, true, b"abcde").is_err());
}

#[test]
fn every_flipped_header_byte_is_refused() {
    for suite in test_suites() {
        flipped_header(test_keys_for(suite, 1));
    }
}

fn flipped_header(keys: DataKeys) {
    let (header, _) = BlobSealer::new(&keys).unwrap();
    assert_eq!(header.len(), BLOB_HEADER_LEN);
    for i in 0..BLOB_HEADER_LEN {
        let mut bad = header;
        bad[i] ^= 0x01;
        let err = BlobOpener::from_header(&keys, &bad).unwrap_err();
        let expected = match i {
            0..5 => matches!(err, AtRestError::BlobHeaderFormat { .. }),
            5..9 => matches!(err, AtRestError::UnknownKeyId { .. }),
            // Out of range, or a valid size the header tag does not cover.
            9..13 => matches!(
                err,
                AtRestError::BlobHeaderFormat { .. } | AtRestError::BlobHeaderNotAuthentic
            ),
            _ => matches!(err, AtRestError::BlobHeaderNotAuthentic),
        };
        assert!(expected, "byte {i}: {err}");
    }
    assert!(BlobOpener::from_header(&keys, &header[..44]).is_err());
}

#[test]
fn another_stores_key_does_not_open_the_header() {
    let (header, _) = BlobSealer::new(&test_keys(1)).unwrap();
    let err = BlobOpener::from_header(&test_keys(2), &header).unwrap_err();
    assert_eq!(
        err.to_string(),
        "encrypted blob header does not authenticate"
    );
}

#[test]
fn chunk_sizes_out_of_range_are_refused() {
    let keys = test_keys(1);
    assert!(BlobSealer::with_chunk_size(&keys, 0).is_err());
    assert!(BlobSealer::with_chunk_size(&keys, MAX_CHUNK_SIZE + 1).is_err());
    assert!(BlobSealer::with_chunk_size(&keys, MAX_CHUNK_SIZE).is_ok());
}

#[test]
fn a_resumed_sealer_continues_the_same_blob() {
    let keys = test_keys(1);
    let (header, sealer) = BlobSealer::with_chunk_size(&keys, 4).unwrap();
    let c0 = sealer.seal_chunk(0, false, b"abcd").unwrap();
    let resumed = BlobSealer::resume(&keys, &header).unwrap();
    assert_eq!(resumed.header(), &header);
    assert_eq!(
        resumed.seal_chunk(0, false, b"abcd").unwrap(),
        c0,
        "same key, same nonce"
    );
    let c1 = resumed.seal_chunk(1, true, b"e").unwrap();
    let opener = BlobOpener::from_header(&keys, &header).unwrap();
    assert_eq!(opener.open_chunk(1, true, &c1).unwrap(), b"e");
}

/// Opens every chunk of a whole blob file.
fn open_all(keys: &DataKeys, file: &[u8]) -> Result<Vec<u8>, AtRestError> {
    let opener = BlobOpener::from_header(keys, file)?;
    let layout = opener.layout();
    let count = layout.chunk_count(file.len() as u64)?;
    let mut out = Vec::new();
    for i in 0..count {
        let start = layout.chunk_file_offset(i) as usize;
        let end = (layout.chunk_file_offset(i + 1) as usize).min(file.len());
        out.extend(opener.open_chunk(i, i + 1 == count, &file[start..end])?);
    }
    Ok(out)
}

#[test]
fn a_version_1_aes_blob_still_opens() {
    let file = hex::decode(V1_AES_BLOB).unwrap();
    assert_eq!(
        open_all(&test_keys(0x42), &file).unwrap(),
        b"golden blob content v1"
    );
    let (header, _) = BlobSealer::new(&test_keys(0x42)).unwrap();
    assert_eq!(
        header[..9],
        file[..9],
        "new international blobs keep format byte 1"
    );
}

#[test]
fn a_blob_of_the_other_profile_is_refused_naming_both_suites() {
    let v1 = hex::decode(V1_AES_BLOB).unwrap();
    let err = open_all(&test_keys_for(Suite::Sm4Gcm, 0x42), &v1).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, AtRestError::SuiteMismatch { .. }), "{msg}");
    assert!(msg.contains("encrypted blob"), "{msg}");
    for name in ["aes-256-gcm", "international", "sm4-gcm", "shangmi"] {
        assert!(msg.contains(name), "{name} in {msg}");
    }
    let v2 = hex::decode(V2_SM4_BLOB).unwrap();
    let err = open_all(&test_keys(0x42), &v2).unwrap_err();
    assert!(matches!(err, AtRestError::SuiteMismatch { .. }), "{err}");
}

#[cfg(feature = "shangmi")]
#[test]
fn a_blob_sealed_by_another_sm4_gcm_implementation_opens_and_ours_names_sm4() {
    let keys = test_keys_for(Suite::Sm4Gcm, 0x42);
    let file = hex::decode(V2_SM4_BLOB).unwrap();
    assert_eq!(open_all(&keys, &file).unwrap(), b"golden blob content");
    let (header, _) = BlobSealer::new(&keys).unwrap();
    assert_eq!(header[4], 2, "format byte 2 names sm4-gcm/hkdf-sm3");
}
