//! The commitment to a challenge answer: a Merkle tree whose leaves are the hashes of the rows
//! of C = A·B. The worker publishes the root before it learns which rows will be checked.
//!
//! Hash choice: BLAKE3 in keyed mode. A row is n little-endian i32 (64 KiB at n = 16384), and
//! BLAKE3 splits its input into independent 1 KiB chunks joined by a binary tree, so a GPU
//! hashes one row with one thread per chunk and all rows at once: hashing runs near memory
//! speed, unlike SHA-256 whose blocks chain serially. Domain separation: leaves and inner nodes
//! use different BLAKE3 keys ([`leaf_key`], [`node_key`], derived from fixed context strings),
//! so a row can never be passed off as a node or the reverse. The tree is binary over the rows
//! in order; on a level with an odd count the last node moves up unchanged, so the shape
//! depends only on n, which the verifier knows.

use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

/// A 32-byte BLAKE3 output.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Digest(pub [u8; 32]);

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        f.write_str("…")
    }
}

const LEAF_CONTEXT: &str = "gpumesh 2026-11 proof-of-compute row leaf v1";
const NODE_CONTEXT: &str = "gpumesh 2026-11 proof-of-compute merkle node v1";

/// Key for hashing a row (a leaf). The CUDA backend passes it to its kernels as 8 LE words.
pub fn leaf_key() -> &'static [u8; 32] {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    KEY.get_or_init(|| blake3::derive_key(LEAF_CONTEXT, b""))
}

/// Key for hashing two children into a parent node.
pub fn node_key() -> &'static [u8; 32] {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    KEY.get_or_init(|| blake3::derive_key(NODE_CONTEXT, b""))
}

/// A key as the eight little-endian u32 words BLAKE3 uses internally.
pub fn key_words(key: &[u8; 32]) -> [u32; 8] {
    let mut words = [0u32; 8];
    for (w, b) in words.iter_mut().zip(key.chunks_exact(4)) {
        *w = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
    words
}

/// Hash of one row of C: keyed BLAKE3 over its values as little-endian i32.
pub fn leaf_hash(row: &[i32]) -> Digest {
    let mut hasher = blake3::Hasher::new_keyed(leaf_key());
    // Feed in modest pieces so no row-sized byte copy is needed.
    let mut buf = [0u8; 4096];
    for piece in row.chunks(buf.len() / 4) {
        for (dst, v) in buf.chunks_exact_mut(4).zip(piece) {
            dst.copy_from_slice(&v.to_le_bytes());
        }
        hasher.update(&buf[..piece.len() * 4]);
    }
    Digest(*hasher.finalize().as_bytes())
}

/// Hash of an inner node.
pub fn node_hash(left: &Digest, right: &Digest) -> Digest {
    let mut hasher = blake3::Hasher::new_keyed(node_key());
    hasher.update(&left.0);
    hasher.update(&right.0);
    Digest(*hasher.finalize().as_bytes())
}

/// All levels of the tree, leaves first.
#[derive(Debug, Clone)]
pub struct MerkleTree {
    levels: Vec<Vec<Digest>>,
}

impl MerkleTree {
    /// Builds the tree over `leaves`; an empty tree has no root and is refused by callers
    /// before this point (a challenge always has n ≥ 64 rows).
    pub fn from_leaves(leaves: Vec<Digest>) -> Self {
        let mut levels = vec![leaves];
        while levels.last().is_some_and(|level| level.len() > 1) {
            let below = &levels[levels.len() - 1];
            let above = below
                .chunks(2)
                .map(|pair| match pair {
                    [left, right] => node_hash(left, right),
                    [single] => *single,
                    _ => unreachable!("chunks(2) yields one or two"),
                })
                .collect();
            levels.push(above);
        }
        MerkleTree { levels }
    }

    pub fn leaf_count(&self) -> usize {
        self.levels[0].len()
    }

    pub fn root(&self) -> Digest {
        self.levels
            .last()
            .and_then(|level| level.first())
            .copied()
            .unwrap_or(Digest([0; 32]))
    }

    /// Sibling hashes from the leaf up; levels where the node has no sibling contribute nothing.
    pub fn path(&self, index: usize) -> Option<Vec<Digest>> {
        if index >= self.leaf_count() {
            return None;
        }
        let mut path = Vec::with_capacity(self.levels.len());
        let mut i = index;
        for level in &self.levels[..self.levels.len() - 1] {
            let sibling = i ^ 1;
            if sibling < level.len() {
                path.push(level[sibling]);
            }
            i /= 2;
        }
        Some(path)
    }

    /// The levels, leaves first (the CUDA backend builds the same levels on the device).
    pub fn levels(&self) -> &[Vec<Digest>] {
        &self.levels
    }
}

/// Positions of the siblings a path must contain for `index` in a tree of `leaf_count` leaves:
/// `(level, sibling index)` from the leaf up. Shared by the verifier and the CUDA backend,
/// which reads exactly these nodes off the device.
pub fn path_positions(leaf_count: usize, index: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let (mut width, mut i, mut level) = (leaf_count, index, 0);
    while width > 1 {
        if (i ^ 1) < width {
            out.push((level, i ^ 1));
        }
        i /= 2;
        width = width.div_ceil(2);
        level += 1;
    }
    out
}

/// Recomputes the root from a leaf and its path; `true` when it equals `root`.
pub fn verify_path(
    root: &Digest,
    leaf_count: usize,
    index: usize,
    leaf: &Digest,
    path: &[Digest],
) -> bool {
    if index >= leaf_count {
        return false;
    }
    let positions = path_positions(leaf_count, index);
    if positions.len() != path.len() {
        return false;
    }
    let mut node = *leaf;
    let (mut width, mut i) = (leaf_count, index);
    let mut siblings = path.iter();
    while width > 1 {
        if (i ^ 1) < width {
            let Some(sibling) = siblings.next() else {
                return false;
            };
            node = if i % 2 == 0 {
                node_hash(&node, sibling)
            } else {
                node_hash(sibling, &node)
            };
        }
        i /= 2;
        width = width.div_ceil(2);
    }
    node == *root
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leaves(count: usize, salt: u8) -> Vec<Digest> {
        (0..count)
            .map(|i| leaf_hash(&[i as i32, i32::from(salt), -7]))
            .collect()
    }

    #[test]
    fn leaf_hash_is_keyed_blake3_of_le_bytes() {
        let row: Vec<i32> = (0..3000).map(|i| i * 7919 - 1_000_000).collect();
        let bytes: Vec<u8> = row.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(
            leaf_hash(&row).0,
            *blake3::keyed_hash(leaf_key(), &bytes).as_bytes()
        );
        assert_ne!(leaf_key(), node_key());
    }

    #[test]
    fn single_leaf_tree_is_its_leaf() {
        let l = leaves(1, 0);
        let tree = MerkleTree::from_leaves(l.clone());
        assert_eq!(tree.root(), l[0]);
        assert_eq!(tree.path(0), Some(vec![]));
        assert!(verify_path(&tree.root(), 1, 0, &l[0], &[]));
    }

    proptest! {
        #[test]
        fn paths_verify_for_random_trees(count in 1usize..300, pick in any::<prop::sample::Index>(), salt in any::<u8>()) {
            let l = leaves(count, salt);
            let tree = MerkleTree::from_leaves(l.clone());
            let index = pick.index(count);
            let path = tree.path(index).unwrap();
            prop_assert_eq!(path.len(), path_positions(count, index).len());
            prop_assert!(verify_path(&tree.root(), count, index, &l[index], &path));
            // The same leaf at another index, or another leaf at this index, fails.
            if count > 1 {
                let other = (index + 1) % count;
                prop_assert!(!verify_path(&tree.root(), count, other, &l[index], &path));
                prop_assert!(!verify_path(&tree.root(), count, index, &l[other], &path));
            }
            // A flipped bit anywhere in the path fails.
            if !path.is_empty() {
                let mut bad = path.clone();
                bad[0].0[0] ^= 1;
                prop_assert!(!verify_path(&tree.root(), count, index, &l[index], &bad));
            }
        }
    }
}
