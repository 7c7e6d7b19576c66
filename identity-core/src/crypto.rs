//! Randomness, the key-encryption key and the keys derived from it.
//!
//! One 256-bit key-encryption key (KEK) comes from the configuration. It wraps every private
//! key the service holds with AES-256-GCM, and each keyed hash (pairwise subjects, client
//! secrets, CSRF tokens, throttling keys) uses its own key derived from it with HKDF under a
//! distinct label, so that one leaked derived key does not open the others.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use ring::{digest, hkdf, hmac};
use std::fmt;

use crate::error::{Error, Result};

/// `n` random bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // SystemRandom only fails if the OS has no randomness at all; nothing can continue then.
    SystemRandom::new()
        .fill(&mut buf)
        .expect("the operating system's random number generator failed");
    buf
}

/// A random 128-bit identifier, base64url (22 characters).
pub fn random_id() -> String {
    B64.encode(random_bytes::<16>())
}

/// A random id, as [`random_id`], that never begins with `-`, which a command line
/// (`client remove ID`, `keys revoke KID`) would read as an option: for ids an operator types.
pub fn random_name() -> String {
    loop {
        let id = random_id();
        if !id.starts_with('-') {
            return id;
        }
    }
}

/// A random 256-bit secret token, base64url (43 characters).
pub fn random_token() -> String {
    B64.encode(random_bytes::<32>())
}

/// SHA-256 of a token, base64url: how codes, refresh tokens and session ids are stored, so
/// that a copy of the database does not hand out live credentials.
pub fn token_hash(token: &str) -> String {
    B64.encode(digest::digest(&digest::SHA256, token.as_bytes()))
}

/// base64url without padding.
pub fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// Decodes base64url without padding.
pub fn b64_decode(s: &str) -> Result<Vec<u8>> {
    B64.decode(s)
        .map_err(|_| Error::InvalidRequest("bad base64url".into()))
}

/// The 256-bit key-encryption key. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct Kek([u8; 32]);

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Kek(<redacted>)")
    }
}

/// What each derived key is for. Each label gives an unrelated key.
#[derive(Clone, Copy, Debug)]
pub enum Purpose {
    /// Pairwise subject identifiers.
    PairwiseSubject,
    /// Keyed hashes of client secrets.
    ClientSecret,
    /// CSRF tokens on the hosted pages.
    Csrf,
    /// Keys of throttling counters (usernames and addresses are not stored in clear).
    Throttle,
    /// Pseudonyms of citizens in the audit log.
    AuditPseudonym,
    /// Look-up hashes of identity document numbers (one account per document).
    IdDocument,
    /// DPoP server nonces (stateless: any replica checks them).
    DpopNonce,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Purpose::PairwiseSubject => b"identity/pairwise-subject/v1",
            Purpose::ClientSecret => b"identity/client-secret/v1",
            Purpose::Csrf => b"identity/csrf/v1",
            Purpose::Throttle => b"identity/throttle/v1",
            Purpose::AuditPseudonym => b"identity/audit-pseudonym/v1",
            Purpose::IdDocument => b"identity/id-document/v1",
            Purpose::DpopNonce => b"identity/dpop-nonce/v1",
        }
    }
}

impl Kek {
    /// Wraps 32 bytes of key material.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Kek(bytes)
    }

    /// Parses 64 hex digits or 43 base64url characters.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|e| e.to_string())?
        } else {
            B64.decode(text)
                .map_err(|_| "expected 64 hex digits or 43 base64url characters".to_string())?
        };
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "the key-encryption key must be exactly 256 bits".to_string())?;
        Ok(Kek(arr))
    }

    /// A fresh random key; for `demo` and tests only.
    pub fn generate() -> Self {
        Kek(random_bytes())
    }

    /// The key as hex, to save a demo key to a file.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The HMAC key for one purpose, derived with HKDF-SHA256.
    pub fn derive(&self, purpose: Purpose) -> KeyedHash {
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"identity-service kek");
        let prk = salt.extract(&self.0);
        let info = [purpose.label()];
        let okm = prk
            .expand(&info, hmac::HMAC_SHA256)
            .expect("HKDF output length is the HMAC key length");
        KeyedHash(hmac::Key::from(okm))
    }

    fn aead_key(&self) -> LessSafeKey {
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &self.0).expect("32-byte AES key"))
    }

    /// Encrypts `plaintext` with AES-256-GCM; `context` is bound as associated data so a
    /// ciphertext cannot be moved to another row. Output: base64url(nonce || ciphertext || tag).
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> String {
        let nonce_bytes = random_bytes::<NONCE_LEN>();
        let mut in_out = plaintext.to_vec();
        self.aead_key()
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(context.as_bytes()),
                &mut in_out,
            )
            .expect("AES-GCM sealing cannot fail for in-memory buffers");
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&in_out);
        B64.encode(out)
    }

    /// Reverses [`Kek::seal`]; fails if the key, context or ciphertext is wrong.
    pub fn open(&self, context: &str, sealed: &str) -> Result<Vec<u8>> {
        let mut data = B64.decode(sealed).map_err(Error::internal)?;
        if data.len() < NONCE_LEN + aead::AES_256_GCM.tag_len() {
            return Err(Error::internal("sealed value too short"));
        }
        let mut in_out = data.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&data).map_err(Error::internal)?;
        let plain = self
            .aead_key()
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut in_out)
            .map_err(|_| {
                Error::internal("cannot decrypt a stored key: wrong key-encryption key?")
            })?;
        Ok(plain.to_vec())
    }
}

/// An HMAC-SHA256 key for one purpose.
#[derive(Clone)]
pub struct KeyedHash(hmac::Key);

impl fmt::Debug for KeyedHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyedHash(<redacted>)")
    }
}

impl KeyedHash {
    /// HMAC over the parts, each length-prefixed so that ("ab","c") and ("a","bc") differ.
    pub fn hash(&self, parts: &[&[u8]]) -> String {
        B64.encode(self.tag(parts))
    }

    /// The HMAC over the parts (as [`KeyedHash::hash`]), as 32 raw bytes.
    pub fn bytes(&self, parts: &[&[u8]]) -> Vec<u8> {
        self.tag(parts).as_ref().to_vec()
    }

    fn message(parts: &[&[u8]]) -> Vec<u8> {
        let mut msg = Vec::new();
        for p in parts {
            msg.extend_from_slice(&(p.len() as u64).to_be_bytes());
            msg.extend_from_slice(p);
        }
        msg
    }

    fn tag(&self, parts: &[&[u8]]) -> hmac::Tag {
        hmac::sign(&self.0, &Self::message(parts))
    }

    /// Checks, in constant time, that `expected` is the base64url hash of the parts.
    pub fn verify(&self, parts: &[&[u8]], expected: &str) -> bool {
        let Ok(expected) = B64.decode(expected) else {
            return false;
        };
        hmac::verify(&self.0, &Self::message(parts), &expected).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_never_look_like_an_option() {
        // A random base64url id starts with '-' once in 64 draws; among 10,000 one would
        // all but surely do so (a signing key's kid did, and `keys revoke KID` failed).
        assert!((0..10_000).all(|_| !random_name().starts_with('-')));
    }

    #[test]
    fn seal_and_open_round_trip_and_bind_context() {
        let kek = Kek::generate();
        let sealed = kek.seal("key:1", b"secret");
        assert_eq!(kek.open("key:1", &sealed).unwrap(), b"secret");
        assert!(kek.open("key:2", &sealed).is_err());
        assert!(Kek::generate().open("key:1", &sealed).is_err());
    }

    #[test]
    fn derived_keys_differ_by_purpose() {
        let kek = Kek::generate();
        let a = kek.derive(Purpose::PairwiseSubject).hash(&[b"x"]);
        let b = kek.derive(Purpose::ClientSecret).hash(&[b"x"]);
        assert_ne!(a, b);
        assert!(kek.derive(Purpose::ClientSecret).verify(&[b"x"], &b));
        assert!(!kek.derive(Purpose::ClientSecret).verify(&[b"y"], &b));
    }

    #[test]
    fn kek_parses_hex_and_base64_and_rejects_short() {
        let k = Kek::generate();
        assert!(Kek::parse(&k.to_hex()).is_ok());
        assert!(Kek::parse(&B64.encode([7u8; 32])).is_ok());
        assert!(Kek::parse("abcd").is_err());
        assert_eq!(format!("{k:?}"), "Kek(<redacted>)");
    }
}
