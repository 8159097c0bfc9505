//! Bytes made outside the code under test, pinning the formats of [`super`]: sealed values,
//! blobs and a key ring written by the code before the shangmi suite existed (which every
//! existing store holds, and which must keep opening), and shangmi ones made by an independent
//! SM4-GCM and HKDF-SM3 implementation. All use the data key 32 x 0x42 with id 1.

/// The slot (AAD) of the golden values.
pub(super) const GOLDEN_SLOT: &[u8] = b"documents\0golden";

/// A value sealed by the code before the shangmi suite existed (format byte 1, AES-256-GCM):
/// DEK 32 x 0x42, key id 1, slot "documents\0golden", plaintext "golden record v1". It pins the
/// bytes existing stores hold.
pub(super) const V1_AES_VALUE: &str = "f74558560100000001c6961bbcc13935d987ce684e9fb81e23158a50dd0d6ba2d3\
                            aeb9ec2437348c732ae334d5d2d4d6f20c66e7a4183754e0";

/// A value sealed with the shangmi suite (format byte 2: SM4-GCM, HKDF-SM3) by an independent
/// implementation (OpenSSL's SM4 and SM3 through Python's `cryptography`, from the layout in the
/// module doc): DEK 32 x 0x42, key id 1, salt 00..0f, slot "documents\0golden", plaintext
/// "golden record".
pub(super) const V2_SM4_VALUE: &str = "f74558560200000001000102030405060708090a0b0c0d0e0fe9f41668b22bf9f51d\
                            0cd2ba9c10486c402968396fd0e1e34000aa1c1b";

/// A blob written by the code before the shangmi suite existed (format byte 1, AES-256-GCM):
/// DEK 32 x 0x42, key id 1, chunk size 8, content "golden blob content v1" (three chunks).
pub(super) const V1_AES_BLOB: &str = "f7455842010000000100000008d2745769650488b553111e53efab9bc838f3aeb94\
                           0c38f3737c6861ecd43394ad974e188c63d88db5afc3809eb51e81e1955c5b3d201\
                           04f63c8b1e824aa6531f3c80c7ef6094be39d4b0152aa5e7352ddb55f9419bf23e0\
                           b1c01a98fd0dcfbbcd2655c95911f";

/// A blob sealed with the shangmi suite (format byte 2: SM4-GCM, HKDF-SM3) by an independent
/// implementation (OpenSSL's SM4 and SM3 through Python's `cryptography`, from the layout in the
/// module doc): DEK 32 x 0x42, key id 1, chunk size 8, salt 00..0f, content "golden blob
/// content" (19 bytes: three chunks).
pub(super) const V2_SM4_BLOB: &str = "f7455842020000000100000008000102030405060708090a0b0c0d0e0f7c9e03adb\
                           11fac9e4997885083982a98e34c276c156d8d5e49280165ac6a4fbd0de03814ae3a\
                           2f255fc3ce35e43bbdd3997aae494667601802adebfa488b891ac8856d57d91d827\
                           e21098fa2a9684d8bec8ef9";

/// A version 1 key ring (the international suite), as the code before the shangmi suite wrote
/// it: KEK 32 x 0x01 (fingerprint = SHA-256 over the label and the KEK), one data key 32 x 0x42
/// with id 1 wrapped with AES-256-GCM under nonce 00..0b. Made with Python's `cryptography` from
/// the layout in the module doc.
pub(super) const V1_KEYRING: &str = r#"{
  "format": "exchange-keyring",
  "version": 1,
  "kek_fingerprint": "ea24a068283c992c",
  "current": 1,
  "keys": [
    {
      "id": 1,
      "wrapped": "000102030405060708090a0b821228799229dc6a64cc49bceab9e107f4b7c4782fd06b7b9e636ad16fee26e22ea6067a9e5521317da30af7b0112cd6"
    }
  ]
}
"#;
