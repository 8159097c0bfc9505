//! Merkle trees over signed statements, as Certificate Transparency builds them (RFC 9162
//! §2.1): one signature over the root of a batch, and for each statement the path that leads
//! from it to that root.
//!
//! Hashes are the profile's digest ([`DigestAlgorithm`]: SHA-256, or SM3 under `shangmi`). A
//! leaf is `H(0x00 ‖ context ‖ bytes)` — the same context string that a single signature covers,
//! so a leaf over a header can never pass as one over evidence — and an inner node
//! `H(0x01 ‖ left ‖ right)`, so no leaf can pose as a node. The tree over `n` leaves splits at
//! the largest power of two below `n`, exactly as RFC 9162's `MTH`; a path lists the sibling
//! hashes from the leaf up to the root.

use ring::digest::{Context as Hasher, SHA256};

use crate::crypto::{CryptoError, DigestAlgorithm};

/// A hash in the tree (SHA-256 and SM3 are both 32 bytes).
pub type Hash = [u8; 32];

fn hash(alg: DigestAlgorithm, parts: &[&[u8]]) -> Result<Hash, CryptoError> {
    match alg {
        DigestAlgorithm::Sha256 => {
            let mut h = Hasher::new(&SHA256);
            for p in parts {
                h.update(p);
            }
            let mut out = [0u8; 32];
            out.copy_from_slice(h.finish().as_ref());
            Ok(out)
        }
        other => crate::crypto::digest(other, &parts.concat()),
    }
}

/// The leaf hash of `bytes` signed under the context string `prefix`.
pub fn leaf_hash(alg: DigestAlgorithm, prefix: &[u8], bytes: &[u8]) -> Result<Hash, CryptoError> {
    hash(alg, &[&[0x00], prefix, bytes])
}

fn node_hash(alg: DigestAlgorithm, left: &Hash, right: &Hash) -> Result<Hash, CryptoError> {
    hash(alg, &[&[0x01], left, right])
}

/// The root of the tree over `leaves` and, for each leaf, its inclusion path (sibling hashes,
/// leaf to root). `None` for no leaves.
#[allow(clippy::type_complexity)]
pub fn build(
    alg: DigestAlgorithm,
    leaves: &[Hash],
) -> Result<Option<(Hash, Vec<Vec<Hash>>)>, CryptoError> {
    if leaves.is_empty() {
        return Ok(None);
    }
    let depth = usize::BITS - (leaves.len() - 1).leading_zeros();
    let mut paths: Vec<Vec<Hash>> = leaves
        .iter()
        .map(|_| Vec::with_capacity(depth as usize))
        .collect();
    let root = subtree(alg, leaves, &mut paths)?;
    Ok(Some((root, paths)))
}

/// RFC 9162 `MTH` of `leaves`, appending to each leaf's path the sibling met at each level.
fn subtree(
    alg: DigestAlgorithm,
    leaves: &[Hash],
    paths: &mut [Vec<Hash>],
) -> Result<Hash, CryptoError> {
    if let [leaf] = leaves {
        return Ok(*leaf);
    }
    let k = split(leaves.len());
    let (ll, rl) = leaves.split_at(k);
    let (lp, rp) = paths.split_at_mut(k);
    let left = subtree(alg, ll, lp)?;
    let right = subtree(alg, rl, rp)?;
    lp.iter_mut().for_each(|p| p.push(right));
    rp.iter_mut().for_each(|p| p.push(left));
    node_hash(alg, &left, &right)
}

/// The largest power of two smaller than `n` (n ≥ 2).
fn split(n: usize) -> usize {
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// Why an inclusion path leads nowhere.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The leaf's position is not inside the tree.
    #[error("leaf index {index} is not below the tree size {size}")]
    Index {
        /// The claimed position.
        index: u64,
        /// The claimed size.
        size: u64,
    },
    /// The path has too many or too few hashes for that position in a tree of that size.
    #[error("{len} hashes do not fit leaf {index} of a tree of {size}")]
    Length {
        /// Hashes in the path.
        len: usize,
        /// The claimed position.
        index: u64,
        /// The claimed size.
        size: u64,
    },
    /// A hash in the path is not 32 bytes.
    #[error("hash {0} is not 32 bytes")]
    HashSize(usize),
    /// The digest could not be computed (an SM3 path in a build without the `shangmi`
    /// feature, or a failure inside the crypto module).
    #[error("{0}")]
    Digest(String),
}

/// The root that `leaf` at `index` in a tree of `size` leads to through `path` (RFC 9162
/// §2.1.3.2). An error when the path cannot belong to such a tree.
pub fn root_from_path(
    alg: DigestAlgorithm,
    leaf: Hash,
    index: u64,
    size: u64,
    path: &[impl AsRef<[u8]>],
) -> Result<Hash, PathError> {
    if index >= size {
        return Err(PathError::Index { index, size });
    }
    let length = || PathError::Length {
        len: path.len(),
        index,
        size,
    };
    let (mut f, mut s) = (index, size - 1);
    let mut r = leaf;
    for (i, p) in path.iter().enumerate() {
        let p: &Hash = p.as_ref().try_into().map_err(|_| PathError::HashSize(i))?;
        if s == 0 {
            return Err(length());
        }
        if f & 1 == 1 || f == s {
            r = node_hash(alg, p, &r).map_err(|e| PathError::Digest(e.to_string()))?;
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(alg, &r, p).map_err(|e| PathError::Digest(e.to_string()))?;
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(length());
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: DigestAlgorithm = DigestAlgorithm::Sha256;

    /// The digests this build can compute.
    fn digests() -> Vec<DigestAlgorithm> {
        DigestAlgorithm::ALL
            .into_iter()
            .filter(|a| crate::crypto::digest(*a, b"").is_ok())
            .collect()
    }

    fn leaves(alg: DigestAlgorithm, n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(alg, b"t\0", &i.to_le_bytes()).unwrap())
            .collect()
    }

    /// RFC 9162's definition, computed naively.
    fn mth(alg: DigestAlgorithm, l: &[Hash]) -> Hash {
        match l {
            [x] => *x,
            _ => {
                let k = split(l.len());
                node_hash(alg, &mth(alg, &l[..k]), &mth(alg, &l[k..])).unwrap()
            }
        }
    }

    #[test]
    fn every_path_of_every_small_tree_leads_to_its_root() {
        for alg in digests() {
            for n in 1..=70 {
                let l = leaves(alg, n);
                let (root, paths) = build(alg, &l).unwrap().unwrap();
                assert_eq!(root, mth(alg, &l), "{alg} n={n}");
                for (i, p) in paths.iter().enumerate() {
                    let got = root_from_path(alg, l[i], i as u64, n as u64, p).unwrap();
                    assert_eq!(got, root, "{alg}: leaf {i} of {n}");
                }
            }
            assert!(build(alg, &[]).unwrap().is_none());
        }
    }

    /// A tree built with one digest is not the tree of the other: a path cannot be read with
    /// the wrong function.
    #[cfg(feature = "shangmi")]
    #[test]
    fn the_two_digests_build_different_trees() {
        let l = leaves(SHA, 5);
        let (sha_root, paths) = build(SHA, &l).unwrap().unwrap();
        let (sm3_root, _) = build(DigestAlgorithm::Sm3, &l).unwrap().unwrap();
        assert_ne!(sha_root, sm3_root);
        let read_as_sm3 = root_from_path(DigestAlgorithm::Sm3, l[2], 2, 5, &paths[2]).unwrap();
        assert_ne!(read_as_sm3, sha_root);
    }

    #[test]
    fn a_path_does_not_fit_another_leaf_position_or_a_changed_hash() {
        let l = leaves(SHA, 11);
        let (root, paths) = build(SHA, &l).unwrap().unwrap();
        for i in 0..11u64 {
            let p = &paths[i as usize];
            // Another position never leads to the root. (Another tree size may: the root does
            // not encode the size, which is why a batch signature signs the size with it.)
            let j = i ^ 1;
            if j < 11 {
                assert_ne!(
                    root_from_path(SHA, l[i as usize], j, 11, p).ok(),
                    Some(root),
                    "leaf {i} as {j}"
                );
            }
            let mut flipped = p.clone();
            flipped[0][0] ^= 1;
            assert_ne!(
                root_from_path(SHA, l[i as usize], i, 11, &flipped).unwrap(),
                root
            );
        }
        assert_eq!(
            root_from_path(SHA, l[0], 11, 11, &paths[0]),
            Err(PathError::Index {
                index: 11,
                size: 11
            })
        );
        let long = [paths[0].clone(), vec![[0; 32]]].concat();
        assert!(matches!(
            root_from_path(SHA, l[0], 0, 11, &long),
            Err(PathError::Length { len: 5, .. })
        ));
        assert!(matches!(
            root_from_path(SHA, l[0], 0, 11, &paths[0][..2]),
            Err(PathError::Length { len: 2, .. })
        ));
        let short_hash: Vec<Vec<u8>> = vec![vec![0; 31]];
        assert_eq!(
            root_from_path(SHA, l[0], 0, 2, &short_hash),
            Err(PathError::HashSize(0))
        );
    }

    /// Known-answer: the RFC 6962 test vectors of the Certificate Transparency project
    /// (`merkle_tree_test.cc`): the root of the eight test leaves, and the inclusion path of
    /// leaf 5 in that tree.
    #[test]
    fn known_answers_of_the_certificate_transparency_project() {
        let data: [&[u8]; 8] = [
            b"",
            b"\x00",
            b"\x10",
            b"\x20\x21",
            b"\x30\x31",
            b"\x40\x41\x42\x43",
            b"\x50\x51\x52\x53\x54\x55\x56\x57",
            b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
        ];
        let l: Vec<Hash> = data
            .iter()
            .map(|d| leaf_hash(SHA, b"", d).unwrap())
            .collect();
        let (root, paths) = build(SHA, &l).unwrap().unwrap();
        assert_eq!(
            hex::encode(root),
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
        );
        let (root3, _) = build(SHA, &l[..3]).unwrap().unwrap();
        assert_eq!(
            hex::encode(root3),
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"
        );
        let p5: Vec<String> = paths[5].iter().map(hex::encode).collect();
        assert_eq!(
            p5,
            [
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ]
        );
    }
}
