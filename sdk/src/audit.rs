//! Verification of the identity service's audit log, shared by e-services and the
//! auditor's tool: RFC 9162 Merkle tree hashing, inclusion and consistency proofs, and
//! checkpoints in the C2SP `tlog-checkpoint` format signed as C2SP signed notes (Ed25519).
//!
//! Nothing here trusts the server: a checkpoint is accepted only under a pinned key, and
//! every hash is recomputed from the bytes it covers.
//!
//! ```
//! use identity_sdk::audit::{leaf_hash, verify_inclusion, TreeBuilder};
//! let entries: Vec<&[u8]> = vec![b"a", b"b", b"c"];
//! let mut tree = TreeBuilder::new();
//! for e in &entries {
//!     tree.push(leaf_hash(e));
//! }
//! let root = tree.root();
//! // A one-leaf tree's root is its leaf hash; the proof is empty.
//! assert!(verify_inclusion(0, 1, &leaf_hash(b"a"), &[], &leaf_hash(b"a")).is_ok());
//! assert_eq!(tree.size(), 3);
//! # let _ = root;
//! ```

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::digest::{digest, Context, SHA256};
use ring::signature::{UnparsedPublicKey, ED25519};

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// Why a proof, checkpoint or key was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuditError {
    /// The leaf index is not below the tree size.
    #[error("leaf index {index} is not in a tree of size {size}")]
    IndexOutOfRange {
        /// The index asked for.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// The proof has the wrong number of hashes for these sizes.
    #[error("the proof has the wrong length")]
    ProofLength,
    /// The proof does not lead to the expected root.
    #[error("the proof does not match the root hash")]
    RootMismatch,
    /// The second tree is smaller than the first.
    #[error("the second tree ({second}) is smaller than the first ({first})")]
    Shrunk {
        /// First size.
        first: u64,
        /// Second size.
        second: u64,
    },
    /// The checkpoint text is not in the C2SP format.
    #[error("malformed checkpoint: {0}")]
    MalformedCheckpoint(&'static str),
    /// The verifier key is not a C2SP Ed25519 verifier key.
    #[error("malformed verifier key: {0}")]
    MalformedKey(&'static str),
    /// No signature line by the pinned key, or its signature is wrong.
    #[error("the checkpoint is not signed by the pinned key {0}")]
    BadSignature(String),
    /// The checkpoint's origin is not the expected log.
    #[error("the checkpoint is for another log: {0}")]
    WrongOrigin(String),
}

/// RFC 9162 leaf hash: SHA-256(0x00 || entry).
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut ctx = Context::new(&SHA256);
    ctx.update(&[0]);
    ctx.update(entry);
    to_hash(ctx.finish().as_ref())
}

/// RFC 9162 interior node hash: SHA-256(0x01 || left || right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut ctx = Context::new(&SHA256);
    ctx.update(&[1]);
    ctx.update(left);
    ctx.update(right);
    to_hash(ctx.finish().as_ref())
}

/// The root of the empty tree: SHA-256 of nothing.
pub fn empty_root() -> Hash {
    to_hash(digest(&SHA256, b"").as_ref())
}

fn to_hash(b: &[u8]) -> Hash {
    let mut h = [0u8; 32];
    h.copy_from_slice(b);
    h
}

/// Builds a tree's root from its leaf hashes in order, keeping only the O(log n) roots of
/// its complete subtrees (how an auditor recomputes a million-entry log in one pass).
#[derive(Clone, Debug, Default)]
pub struct TreeBuilder {
    /// (height, hash) of complete subtrees, left to right, heights strictly decreasing.
    stack: Vec<(u32, Hash)>,
    size: u64,
}

impl TreeBuilder {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut node = (0u32, leaf);
        while let Some(&(h, left)) = self.stack.last() {
            if h != node.0 {
                break;
            }
            self.stack.pop();
            node = (h + 1, node_hash(&left, &node.1));
        }
        self.stack.push(node);
        self.size += 1;
    }

    /// How many leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The root hash of the leaves so far.
    pub fn root(&self) -> Hash {
        let mut iter = self.stack.iter().rev();
        match iter.next() {
            None => empty_root(),
            Some(&(_, last)) => iter.fold(last, |acc, (_, left)| node_hash(left, &acc)),
        }
    }
}

/// The largest power of two smaller than `n` (n > 1).
pub fn split_point(n: u64) -> u64 {
    debug_assert!(n > 1);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// RFC 9162 §2.1.3.2: checks that `leaf` is at `index` in the tree of `size` with `root`.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), AuditError> {
    if index >= size {
        return Err(AuditError::IndexOutOfRange { index, size });
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return Err(AuditError::ProofLength);
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(AuditError::ProofLength);
    }
    if r != *root {
        return Err(AuditError::RootMismatch);
    }
    Ok(())
}

/// RFC 9162 §2.1.4.2: checks that the tree of `size2` with `root2` extends the tree of
/// `size1` with `root1`.
pub fn verify_consistency(
    size1: u64,
    size2: u64,
    proof: &[Hash],
    root1: &Hash,
    root2: &Hash,
) -> Result<(), AuditError> {
    if size1 > size2 {
        return Err(AuditError::Shrunk {
            first: size1,
            second: size2,
        });
    }
    if size1 == size2 {
        if !proof.is_empty() {
            return Err(AuditError::ProofLength);
        }
        return if root1 == root2 {
            Ok(())
        } else {
            Err(AuditError::RootMismatch)
        };
    }
    if size1 == 0 {
        return if proof.is_empty() {
            Ok(())
        } else {
            Err(AuditError::ProofLength)
        };
    }
    if proof.is_empty() {
        return Err(AuditError::ProofLength);
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if size1.is_power_of_two() {
        path.push(*root1);
    }
    path.extend_from_slice(proof);
    let (mut fnode, mut snode) = (size1 - 1, size2 - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if snode == 0 {
            return Err(AuditError::ProofLength);
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(AuditError::ProofLength);
    }
    if fr != *root1 || sr != *root2 {
        return Err(AuditError::RootMismatch);
    }
    Ok(())
}

/// RFC 9162 §2.1.3.1 PATH: the inclusion proof of leaf `index` in a tree of `size`, given
/// a way to get the hash of any range of leaves `[start, end)`.
pub fn inclusion_proof<E>(
    index: u64,
    size: u64,
    mth: &mut impl FnMut(u64, u64) -> Result<Hash, E>,
) -> Result<Vec<Hash>, E> {
    let mut out = Vec::new();
    // Walk down from the whole tree, collecting siblings, then reverse (leaf first).
    let (mut start, mut end, mut m) = (0u64, size, index);
    while end - start > 1 {
        let k = split_point(end - start);
        if m < k {
            out.push(mth(start + k, end)?);
            end = start + k;
        } else {
            out.push(mth(start, start + k)?);
            start += k;
            m -= k;
        }
    }
    out.reverse();
    Ok(out)
}

/// RFC 9162 §2.1.4.1 PROOF: the consistency proof between sizes `m` and `n` (0 < m < n).
pub fn consistency_proof<E>(
    m: u64,
    n: u64,
    mth: &mut impl FnMut(u64, u64) -> Result<Hash, E>,
) -> Result<Vec<Hash>, E> {
    let mut out = Vec::new();
    if m == 0 || m >= n {
        return Ok(out);
    }
    let (mut start, mut end, mut m, mut whole) = (0u64, n, m, true);
    loop {
        let size = end - start;
        if m == size {
            if !whole {
                out.push(mth(start, end)?);
            }
            break;
        }
        let k = split_point(size);
        if m <= k {
            out.push(mth(start + k, end)?);
            end = start + k;
        } else {
            out.push(mth(start, start + k)?);
            start += k;
            m -= k;
            whole = false;
        }
    }
    out.reverse();
    Ok(out)
}

/// A checkpoint's body: which log, how many entries, and their root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin line.
    pub origin: String,
    /// Tree size.
    pub size: u64,
    /// Root hash.
    pub root: Hash,
}

impl Checkpoint {
    /// The note body that is signed: three lines, each ending in a newline.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        )
    }

    /// Parses a signed note and checks its signature by `key`. Other signatures are ignored.
    pub fn verify_note(note: &str, key: &VerifierKey) -> Result<Checkpoint, AuditError> {
        let (body, sigs) = note
            .split_once("\n\n")
            .ok_or(AuditError::MalformedCheckpoint(
                "no blank line before the signatures",
            ))?;
        let body = format!("{body}\n");
        let mut lines = body.lines();
        let origin = lines
            .next()
            .filter(|l| !l.is_empty())
            .ok_or(AuditError::MalformedCheckpoint("no origin"))?;
        let size: u64 = lines
            .next()
            .and_then(|l| {
                if l.starts_with('+') || (l.len() > 1 && l.starts_with('0')) {
                    None
                } else {
                    l.parse().ok()
                }
            })
            .ok_or(AuditError::MalformedCheckpoint("bad tree size"))?;
        let root_b64 = lines
            .next()
            .ok_or(AuditError::MalformedCheckpoint("no root hash"))?;
        let root: Hash = STANDARD
            .decode(root_b64)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(AuditError::MalformedCheckpoint("bad root hash"))?;
        let checkpoint = Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
        };
        let mut signed = false;
        for line in sigs.lines() {
            let Some(rest) = line.strip_prefix("\u{2014} ") else {
                return Err(AuditError::MalformedCheckpoint(
                    "a signature line does not start with an em dash",
                ));
            };
            let Some((name, sig_b64)) = rest.split_once(' ') else {
                return Err(AuditError::MalformedCheckpoint("bad signature line"));
            };
            if name != key.name {
                continue;
            }
            let Ok(sig) = STANDARD.decode(sig_b64) else {
                continue;
            };
            if sig.len() == 68 && sig[..4] == key.id && key.verify(body.as_bytes(), &sig[4..]) {
                signed = true;
            }
        }
        if !signed {
            return Err(AuditError::BadSignature(key.name.clone()));
        }
        if origin != key.name {
            return Err(AuditError::WrongOrigin(origin.to_owned()));
        }
        Ok(checkpoint)
    }
}

/// A C2SP Ed25519 note verifier key: `<name>+<hex key id>+<base64(0x01 || public key)>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    id: [u8; 4],
    public: [u8; 32],
}

/// The C2SP key id: SHA-256(name || 0x0A || 0x01 || public key)[:4].
pub fn key_id(name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut ctx = Context::new(&SHA256);
    ctx.update(name.as_bytes());
    ctx.update(&[0x0a, 0x01]);
    ctx.update(public);
    let d = ctx.finish();
    [d.as_ref()[0], d.as_ref()[1], d.as_ref()[2], d.as_ref()[3]]
}

impl VerifierKey {
    /// A key from its name and Ed25519 public key.
    pub fn new(name: &str, public: [u8; 32]) -> Self {
        VerifierKey {
            name: name.to_owned(),
            id: key_id(name, &public),
            public,
        }
    }

    /// Parses the text form.
    pub fn parse(text: &str) -> Result<Self, AuditError> {
        let mut parts = text.trim().splitn(3, '+');
        let name = parts
            .next()
            .filter(|n| !n.is_empty())
            .ok_or(AuditError::MalformedKey("no name"))?;
        let id_hex = parts.next().ok_or(AuditError::MalformedKey("no key id"))?;
        let key_b64 = parts.next().ok_or(AuditError::MalformedKey("no key"))?;
        let raw = STANDARD
            .decode(key_b64)
            .map_err(|_| AuditError::MalformedKey("bad base64"))?;
        if raw.len() != 33 || raw[0] != 0x01 {
            return Err(AuditError::MalformedKey("not an Ed25519 key"));
        }
        let mut public = [0u8; 32];
        public.copy_from_slice(&raw[1..]);
        let key = VerifierKey::new(name, public);
        if format!("{:08x}", u32::from_be_bytes(key.id)) != id_hex {
            return Err(AuditError::MalformedKey(
                "the key id does not match the key",
            ));
        }
        Ok(key)
    }

    /// The key's name (the log's origin).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The text form.
    pub fn to_text(&self) -> String {
        let mut raw = vec![0x01];
        raw.extend_from_slice(&self.public);
        format!(
            "{}+{:08x}+{}",
            self.name,
            u32::from_be_bytes(self.id),
            STANDARD.encode(raw)
        )
    }

    /// The four-byte key id.
    pub fn id(&self) -> [u8; 4] {
        self.id
    }

    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.public)
            .verify(msg, sig)
            .is_ok()
    }
}

/// The signature line of a note signed by `key` with `signature` over the body.
pub fn signature_line(key: &VerifierKey, signature: &[u8]) -> String {
    let mut raw = key.id.to_vec();
    raw.extend_from_slice(signature);
    format!("\u{2014} {} {}\n", key.name, STANDARD.encode(raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hx(s: &str) -> Hash {
        let v: Vec<u8> = (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect();
        v.try_into().unwrap()
    }

    // Published Certificate Transparency test vectors (RFC 6962 hashing, as in
    // transparency-dev/merkle's testonly data).
    const LEAVES: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];
    const ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn leaves() -> Vec<Hash> {
        LEAVES
            .iter()
            .map(|l| {
                let bytes: Vec<u8> = (0..l.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&l[i..i + 2], 16).unwrap())
                    .collect();
                leaf_hash(&bytes)
            })
            .collect()
    }

    /// The tree hash straight from RFC 9162's definition, for comparison.
    pub(super) fn reference_mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split_point(n as u64) as usize;
                node_hash(&reference_mth(&leaves[..k]), &reference_mth(&leaves[k..]))
            }
        }
    }

    #[test]
    fn roots_match_published_vectors() {
        let l = leaves();
        assert_eq!(
            TreeBuilder::new().root(),
            hx("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
        let mut t = TreeBuilder::new();
        for (i, leaf) in l.iter().enumerate() {
            t.push(*leaf);
            assert_eq!(t.root(), hx(ROOTS[i]), "size {}", i + 1);
            assert_eq!(reference_mth(&l[..=i]), hx(ROOTS[i]));
        }
    }

    #[test]
    fn inclusion_vectors() {
        let l = leaves();
        let cases: [(u64, u64, &[&str]); 4] = [
            (
                0,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                5,
                8,
                &[
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                3,
                &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
            ),
            (
                1,
                5,
                &[
                    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (index, size, proof) in cases {
            let proof: Vec<Hash> = proof.iter().map(|h| hx(h)).collect();
            let root = hx(ROOTS[size as usize - 1]);
            verify_inclusion(index, size, &l[index as usize], &proof, &root).unwrap();
            let mut mth = |a: u64, b: u64| Ok::<_, ()>(reference_mth(&l[a as usize..b as usize]));
            assert_eq!(inclusion_proof(index, size, &mut mth).unwrap(), proof);
            // Corruptions are refused.
            assert!(verify_inclusion(index + 1, size, &l[index as usize], &proof, &root).is_err());
            assert!(verify_inclusion(index, size * 2, &l[index as usize], &proof, &root).is_err());
            let mut bad = proof.clone();
            bad[0][0] ^= 8;
            assert!(verify_inclusion(index, size, &l[index as usize], &bad, &root).is_err());
            assert!(verify_inclusion(
                index,
                size,
                &l[index as usize],
                &proof[..proof.len() - 1],
                &root
            )
            .is_err());
            let mut longer = proof.clone();
            longer.push(root);
            assert!(verify_inclusion(index, size, &l[index as usize], &longer, &root).is_err());
        }
    }

    #[test]
    fn consistency_vectors() {
        let l = leaves();
        let cases: [(u64, u64, &[&str]); 4] = [
            (
                1,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                6,
                8,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                5,
                &[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
            (
                6,
                7,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
        ];
        for (m, n, proof) in cases {
            let proof: Vec<Hash> = proof.iter().map(|h| hx(h)).collect();
            let (r1, r2) = (hx(ROOTS[m as usize - 1]), hx(ROOTS[n as usize - 1]));
            verify_consistency(m, n, &proof, &r1, &r2).unwrap();
            let mut mth = |a: u64, b: u64| Ok::<_, ()>(reference_mth(&l[a as usize..b as usize]));
            assert_eq!(consistency_proof(m, n, &mut mth).unwrap(), proof);
            assert!(verify_consistency(m, n, &proof, &r2, &r1).is_err());
            assert!(verify_consistency(m, n, &[], &r1, &r2).is_err());
            assert!(verify_consistency(m, n, &proof[..proof.len() - 1], &r1, &r2).is_err());
            let mut bad = proof.clone();
            bad[0][0] ^= 16;
            assert!(verify_consistency(m, n, &bad, &r1, &r2).is_err());
        }
        let r = hx(ROOTS[0]);
        assert!(verify_consistency(1, 1, &[], &r, &r).is_ok());
        assert!(verify_consistency(0, 5, &[], &r, &r).is_ok());
        assert!(verify_consistency(2, 1, &[], &r, &r).is_err());
    }

    #[test]
    fn signed_note_round_trip_and_refusals() {
        use ring::signature::{Ed25519KeyPair, KeyPair};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let public: [u8; 32] = pair.public_key().as_ref().try_into().unwrap();
        let key = VerifierKey::new("idp.example/audit", public);
        assert_eq!(VerifierKey::parse(&key.to_text()).unwrap(), key);
        let cp = Checkpoint {
            origin: "idp.example/audit".into(),
            size: 8,
            root: hx(ROOTS[7]),
        };
        let note = format!(
            "{}\n{}",
            cp.body(),
            signature_line(&key, pair.sign(cp.body().as_bytes()).as_ref())
        );
        assert_eq!(Checkpoint::verify_note(&note, &key).unwrap(), cp);
        // Another key, a changed size, or a stripped signature are refused.
        let other =
            Ed25519KeyPair::from_pkcs8(Ed25519KeyPair::generate_pkcs8(&rng).unwrap().as_ref())
                .unwrap();
        let forged = format!(
            "{}\n{}",
            cp.body(),
            signature_line(&key, other.sign(cp.body().as_bytes()).as_ref())
        );
        assert!(matches!(
            Checkpoint::verify_note(&forged, &key),
            Err(AuditError::BadSignature(_))
        ));
        let changed = note.replacen("\n8\n", "\n9\n", 1);
        assert!(Checkpoint::verify_note(&changed, &key).is_err());
        assert!(Checkpoint::verify_note(&cp.body(), &key).is_err());
        let mut bad_key = key.to_text();
        bad_key.replace_range(
            bad_key.len() - 3..bad_key.len() - 2,
            if bad_key.ends_with("A=") { "B" } else { "A" },
        );
        assert!(VerifierKey::parse(&bad_key).is_err());
    }
}

#[cfg(test)]
mod properties {
    use super::tests::reference_mth;
    use super::*;
    use proptest::prelude::*;

    fn tree(n: usize) -> Vec<Hash> {
        (0..n as u64).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    proptest! {
        #[test]
        fn builder_matches_reference(n in 0usize..300) {
            let l = tree(n);
            let mut t = TreeBuilder::new();
            for h in &l { t.push(*h); }
            prop_assert_eq!(t.root(), reference_mth(&l));
        }

        #[test]
        fn every_inclusion_proof_verifies(n in 1u64..300, seed in any::<u64>()) {
            let l = tree(n as usize);
            let i = seed % n;
            let mut mth = |a: u64, b: u64| Ok::<_, ()>(reference_mth(&l[a as usize..b as usize]));
            let proof = inclusion_proof(i, n, &mut mth).unwrap();
            let root = reference_mth(&l);
            prop_assert!(verify_inclusion(i, n, &l[i as usize], &proof, &root).is_ok());
            let other = (i + 1) % n;
            if other != i {
                prop_assert!(verify_inclusion(i, n, &l[other as usize], &proof, &root).is_err());
            }
        }

        #[test]
        fn every_consistency_proof_verifies(n in 2u64..300, seed in any::<u64>()) {
            let l = tree(n as usize);
            let m = 1 + seed % (n - 1);
            let mut mth = |a: u64, b: u64| Ok::<_, ()>(reference_mth(&l[a as usize..b as usize]));
            let proof = consistency_proof(m, n, &mut mth).unwrap();
            let (r1, r2) = (reference_mth(&l[..m as usize]), reference_mth(&l));
            prop_assert!(verify_consistency(m, n, &proof, &r1, &r2).is_ok());
            // A tree that differs in one early leaf is not consistent with the first.
            let mut forked = l.clone();
            forked[(seed % m) as usize] = leaf_hash(b"forged");
            prop_assert!(verify_consistency(m, n, &proof, &r1, &reference_mth(&forked)).is_err());
        }
    }
}
