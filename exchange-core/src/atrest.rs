//! Encryption of stored documents at rest (issue 16): the cryptographic core that the blob
//! store, the database values, backups and the daemons build on. It protects a data directory,
//! or a backup of it, that leaves the machine (a stolen disk, a copied backup): without the KEK
//! its content and records are unreadable, and any change to them is detected when read.
//!
//! # Suites (issue 14)
//! Every algorithm below comes from the store's [`Suite`], chosen by the exchange's crypto
//! profile ([`Suite::for_profile`]; `store::sealing` passes `[crypto] profile`) when its key
//! ring is made, and named in the bytes of everything sealed since:
//!
//! | suite | profile | AEAD | KDF | KEK fingerprint | random | library | format byte | ring version |
//! |---|---|---|---|---|---|---|---|---|
//! | `aes-256-gcm/hkdf-sha256` | international | AES-256-GCM | HKDF-SHA256 | SHA-256 | OS | ring | 1 | 1 |
//! | `sm4-gcm/hkdf-sm3` | shangmi | SM4-GCM (128-bit key) | HKDF-SM3 | SM3 | Tongsuo's | Tongsuo | 2 | 2 |
//!
//! The layouts are the same under both (GCM's 12-byte nonces and 16-byte tags; HKDF outputs the
//! cipher's key length, 32 or 16 bytes); the international bytes are exactly those of the first
//! release. "HKDF" below is the suite's, "GCM" its cipher. A store keeps its suite: a key ring of
//! one suite is refused by a KEK loaded for the other ([`AtRestError::KeyringSuite`]), and a
//! value or blob whose format byte names the other suite is refused
//! ([`AtRestError::SuiteMismatch`]), each naming both suites and profiles.
//!
//! # Key hierarchy
//! - **KEK** (key-encryption key, [`Kek`]): 32 random bytes the operator keeps *outside* the
//!   data directory, in a mode-0600 file or a systemd credential (the same file serves either
//!   suite). It wraps data keys and nothing else (through a key derived from it: `HKDF(salt =
//!   "", ikm = KEK, info = "exchange at-rest kek wrap v1")`).
//! - **DEKs** (data-encryption keys, [`DataKeys`]): 32 random bytes each, per store (data
//!   directory), kept wrapped under the KEK in the store's key ring ([`Keyring`],
//!   `keyring.json`; for a hub on PostgreSQL, the same bytes in its database, shared by every hub
//!   on it: `store::sealing::database`). One is current (seals new data); older ones still open what they sealed.
//! - **Per-value and per-blob keys**: every sealed value and every blob gets its own GCM key,
//!   `HKDF(salt = its random 16-byte salt, ikm = DEK, info = label)` with label
//!   `"exchange at-rest value v1"` or `"exchange at-rest blob v1"` (the construction of Tink's
//!   `AesGcmHkdfStreaming`). A key encrypts one value or one blob, so its nonces can be fixed
//!   (values) or counted (chunks) and never repeat.
//!
//! # Formats (integers big-endian)
//! **KEK file**: 64 hex characters (either case), optionally followed by `\n` or `\r\n`; no
//! group or other permission bits (checked on the opened file). A systemd credential
//! (`$CREDENTIALS_DIRECTORY/<name>`) has the same content. Fingerprint: the first 8 bytes of
//! `H("exchange at-rest kek fingerprint v1\0" || KEK)`, as 16 hex characters, H being SHA-256
//! or SM3 by suite (one key file has a different fingerprint under each).
//!
//! **Key ring** (`<data dir>/keyring.json`, mode 0600, JSON, unknown fields refused):
//! ```json
//! { "format": "exchange-keyring", "version": 1, "kek_fingerprint": "<16 hex>",
//!   "current": 1, "keys": [ { "id": 1, "wrapped": "<120 hex>" } ] }
//! { "format": "exchange-keyring", "version": 2, "suite": "sm4-gcm/hkdf-sm3",
//!   "kek_fingerprint": "<16 hex>", "current": 1, "keys": [ { "id": 1, "wrapped": "<120 hex>" } ] }
//! ```
//! Version 1 has no `suite` and is the international suite (written so still, byte for byte);
//! version 2 names its suite in `suite` (this build writes it for the shangmi suite, and reads
//! either name). `wrapped` = nonce (12, random) | GCM(wrap key, DEK) (32) | tag (16), with AAD
//! `"exchange keyring dek v1" || id (u32)`: a wrapped key cannot be moved to another id. Ids are
//! non-zero and unique; `current` is one of them.
//!
//! **Sealed value** ([`DataKeys::seal`]; 41 bytes of overhead):
//! ```text
//! offset  len  field
//!      0    4  magic F7 45 58 56 ("\xF7EXV")
//!      4    1  format byte = the suite: 1 AES-256-GCM/HKDF-SHA256, 2 SM4-GCM/HKDF-SM3
//!      5    4  key id (u32) of the DEK
//!      9   16  salt (random)
//!     25    n  GCM ciphertext of the plaintext
//!   25+n   16  GCM tag
//! ```
//! Key: HKDF as above; nonce: 12 zero bytes (the key is used once); GCM AAD: bytes 0..25 then
//! the caller's AAD (the record's slot, e.g. table name and key).
//!
//! **Encrypted blob** ([`BlobSealer`], [`EncryptingWriter`]): a 45-byte header, then chunks.
//! ```text
//! offset  len  field
//!      0    4  magic F7 45 58 42 ("\xF7EXB")
//!      4    1  format byte = the suite: 1 AES-256-GCM/HKDF-SHA256, 2 SM4-GCM/HKDF-SM3
//!      5    4  key id (u32) of the DEK
//!      9    4  chunk size (u32, 1 ..= 16 MiB; 64 KiB by default)
//!     13   16  salt (random)
//!     29   16  header tag: GCM(blob key, nonce 02 00 00 00 | 0 (u64), AAD = bytes 0..29, "")
//!     45       chunk 0, chunk 1, ... chunk i at 45 + i * (chunk size + 16)
//! ```
//! Chunk i = GCM ciphertext of its plaintext, then its 16-byte tag; AAD = the whole 45-byte
//! header; nonce = `flag | 00 00 00 | i (u64)` with flag 00 for a non-last chunk and 01 for the
//! last. Non-last chunks hold exactly `chunk size` plaintext bytes; the last holds 0 to that
//! many ([`EncryptingWriter`] writes an empty last chunk when the length is a multiple). A
//! reader takes the number of chunks from the file length ([`ChunkLayout`]): reordering (the
//! index is the nonce), dropping, truncating (the new last chunk was not sealed as last) and
//! extending (the old last chunk no longer is) all fail authentication, named by chunk index.
//!
//! # Rotation
//! KEK rotation ([`Keyring::rewrap`]) rewraps the DEKs under the new KEK and atomically
//! replaces the key ring (temp file, fsync, rename, fsync of the directory): a crash leaves the
//! old ring or the new, each complete. Content is not re-encrypted, so rotation is instant; the
//! old KEK is needed only until the rename, and may be destroyed afterwards (backups taken
//! *before* the rotation hold the old ring and still need the old KEK). Data-key rotation
//! ([`Keyring::add_data_key`]) adds a DEK and makes it current; old DEKs stay to open old data.
//!
//! # Limits and how callers avoid them
//! - *Salt collisions*: two values (or blobs) with the same 16-byte salt under one DEK would
//!   reuse a key and nonce. With 10 million values a day for 30 years (~2^37 values) the
//!   probability of any collision is about 2^74 / 2^129 = 2^-55. A single key with random
//!   96-bit nonces would instead be limited to ~2^32 values (NIST SP 800-38D), a budget a busy
//!   store exhausts in about a year; this design has no such budget.
//! - *Blob size*: chunk indexes are 64-bit, each chunk at most 16 MiB; no practical limit.
//! - *Resumed writes*: [`ChunkLayout::resume_point`] continues under the same blob key, so the
//!   plaintext re-sent after the resume point must be the very bytes sent before (a torn chunk
//!   rewritten with other bytes reuses its nonce). Content-addressed partial files satisfy this
//!   (their digest fixes the bytes); content of unknown digest must start a new blob instead.
//! - *Plaintext from before encryption*: [`DataKeys::is_sealed`] is exact against protobuf
//!   values, because the magic's first byte 0xF7 has wire type 7, which no protobuf message can
//!   start with (and an empty value is not sealed). Blob *content* is arbitrary bytes and can
//!   start like a header, so the blob store should not sniff: it can tell a legacy plaintext
//!   blob by its digest (a plaintext file hashes to its name) or by its own layout. Once a store
//!   is fully encrypted, the integration should refuse plaintext (record that in the store),
//!   or an attacker with write access could substitute a plaintext value (a downgrade).
//! - *Replay*: the AAD binds a value to its slot, not to a version of it: an older sealed value
//!   of the same slot can be put back. Callers needing that put a generation in the AAD.
//! - *Lengths* of values and blobs are visible, as is the number of records.
//! - *Key material in memory*: keys are zeroed on drop on a best-effort basis only (no
//!   `unsafe`; derived SM4 keys through `zeroize`, AES keys live inside ring), and a process
//!   with the DEKs can read everything.
//! - *Library failures*: sealing returns an error, never panics, when the random source or the
//!   cipher library (Tongsuo's SM4, say) fails ([`AtRestError::Cipher`]); nothing is written.
//! - *A deleted key ring* cannot be recovered from the data: back it up with the store (it is
//!   useless without the KEK). [`Keyring::open_or_create`] creates a ring only when none exists;
//!   a caller opening a store that already has data uses [`Keyring::open`]. The daemons open
//!   their stores through `store::sealing::open_store`, which marks a store as encrypted and
//!   refuses a marked store whose ring is missing, rather than make a new one.

mod chunked;
mod error;
#[cfg(test)]
mod golden;
mod kek;
mod keyring;
mod keys;
mod layout;
mod replace;
mod stream;
mod suite;
mod value;

pub use chunked::{
    BLOB_HEADER_LEN, BLOB_MAGIC, BlobOpener, BlobSealer, DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE,
    is_sealed_blob,
};
pub use error::AtRestError;
pub use kek::{Kek, KekSource};
pub use keyring::{Keyring, KeyringSummary, Rewrapped};
pub use keys::DataKeys;
pub use layout::{CHUNK_OVERHEAD, ChunkLayout, ChunkPos};
pub use stream::{DecryptingReader, EncryptingWriter};
pub use suite::Suite;
pub use value::{VALUE_MAGIC, VALUE_OVERHEAD};
