//! Token-signing keys: generated with ring, stored sealed under the key-encryption key,
//! published as a JWKS, and used through jsonwebtoken with our ring provider.

use diesel::prelude::*;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::clock::Clock;
use crate::crypto::{b64, b64_decode, Kek};
use crate::error::{Error, Result};
use crate::model::SigningAlg;
use crate::schema::signing_keys;
use crate::storage::{Db, DbConnection};

/// A key loaded for signing and verifying.
#[derive(Clone)]
struct LoadedKey {
    kid: String,
    alg: SigningAlg,
    encoding: EncodingKey,
    decoding: DecodingKey,
    public_jwk: Value,
    active_from: i64,
    retired_at: Option<i64>,
}

/// How long a cached view of the key table is trusted. Keys change rarely; replicas agree
/// within this time because the table, not the cache, is the truth.
const CACHE_SECONDS: i64 = 10;

#[derive(Default)]
struct Cache {
    loaded_at: i64,
    /// The registrations' generation read just before the keys were loaded
    /// ([`storage::clients_generation`](crate::storage::clients_generation)): any change to the
    /// key table moves it, so a copy whose stamp is no longer the table's is never used.
    generation: Option<i64>,
    /// Shared, not copied, with every signing and verification: a copy per token cost
    /// several allocations for each key (its DER, its JWK) on the hot path.
    keys: Arc<[LoadedKey]>,
}

/// The signing keys of the provider.
#[derive(Clone)]
pub struct KeyStore {
    db: Db,
    kek: Kek,
    clock: Clock,
    cache: Arc<RwLock<Cache>>,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyStore")
    }
}

#[derive(Queryable)]
struct KeyRow {
    kid: String,
    alg: String,
    private_key: String,
    public_jwk: String,
    _created_at: i64,
    active_from: i64,
    retired_at: Option<i64>,
    _revoked_at: Option<i64>,
}

/// A summary of a key for `keys list`.
#[derive(Clone, Debug)]
pub struct KeyInfo {
    /// Key id.
    pub kid: String,
    /// Algorithm.
    pub alg: String,
    /// When it was made.
    pub created_at: i64,
    /// When it starts signing.
    pub active_from: i64,
    /// When it stopped signing.
    pub retired_at: Option<i64>,
    /// When it was revoked: from then on it is neither published nor trusted.
    pub revoked_at: Option<i64>,
}

/// A new key of `alg`: its PKCS#8 DER and its public JWK (also what a test client uses to
/// make keys the way the service does).
pub fn generate(alg: SigningAlg) -> Result<(Vec<u8>, Value)> {
    let rng = SystemRandom::new();
    match alg {
        SigningAlg::Es256 => {
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(Error::internal)?;
            let pair =
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                    .map_err(Error::internal)?;
            // Uncompressed point: 0x04 || x || y.
            let point = pair.public_key().as_ref();
            let jwk = json!({
                "kty": "EC", "crv": "P-256",
                "x": b64(&point[1..33]), "y": b64(&point[33..65]),
            });
            Ok((pkcs8.as_ref().to_vec(), jwk))
        }
        SigningAlg::EdDsa => {
            let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(Error::internal)?;
            let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(Error::internal)?;
            let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref())});
            Ok((pkcs8.as_ref().to_vec(), jwk))
        }
        SigningAlg::Rs256 => {
            use rsa::pkcs8::EncodePrivateKey;
            use rsa::traits::PublicKeyParts;
            let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)
                .map_err(Error::internal)?;
            let der = key.to_pkcs8_der().map_err(Error::internal)?;
            let jwk = json!({
                "kty": "RSA",
                "n": b64(&key.n().to_bytes_be()),
                "e": b64(&key.e().to_bytes_be()),
            });
            Ok((der.as_bytes().to_vec(), jwk))
        }
    }
}

fn jwt_alg(alg: SigningAlg) -> Algorithm {
    match alg {
        SigningAlg::Es256 => Algorithm::ES256,
        SigningAlg::EdDsa => Algorithm::EdDSA,
        SigningAlg::Rs256 => Algorithm::RS256,
    }
}

fn load(kek: &Kek, row: KeyRow) -> Result<LoadedKey> {
    let alg = SigningAlg::parse(&row.alg)?;
    let der = kek.open(&format!("signing-key:{}", row.kid), &row.private_key)?;
    let public_jwk: Value = serde_json::from_str(&row.public_jwk).map_err(Error::internal)?;
    let comp = |k: &str| public_jwk[k].as_str().unwrap_or_default().to_owned();
    let (encoding, decoding) = match alg {
        SigningAlg::Es256 => (
            EncodingKey::from_ec_der(&der),
            DecodingKey::from_ec_components(&comp("x"), &comp("y")).map_err(Error::internal)?,
        ),
        SigningAlg::EdDsa => (
            EncodingKey::from_ed_der(&der),
            DecodingKey::from_ed_components(&comp("x")).map_err(Error::internal)?,
        ),
        SigningAlg::Rs256 => (
            EncodingKey::from_rsa_der(&der),
            DecodingKey::from_rsa_components(&comp("n"), &comp("e")).map_err(Error::internal)?,
        ),
    };
    Ok(LoadedKey {
        kid: row.kid,
        alg,
        encoding,
        decoding,
        public_jwk,
        active_from: row.active_from,
        retired_at: row.retired_at,
    })
}

impl KeyStore {
    /// A store over the key table.
    pub fn new(db: Db, kek: Kek, clock: Clock) -> Result<Self> {
        crate::jwt_ring::install().map_err(Error::internal)?;
        Ok(KeyStore {
            db,
            kek,
            clock,
            cache: Arc::default(),
        })
    }

    /// Adds a key of `alg` that signs from `active_from` (now, or later to pre-publish it).
    pub fn add_key(
        &self,
        conn: &mut DbConnection,
        alg: SigningAlg,
        active_from: i64,
    ) -> Result<String> {
        let (der, jwk) = generate(alg)?;
        // An operator types it (`keys revoke KID`).
        let kid = crate::crypto::random_name();
        let sealed = self.kek.seal(&format!("signing-key:{kid}"), &der);
        diesel::insert_into(signing_keys::table)
            .values((
                signing_keys::kid.eq(&kid),
                signing_keys::alg.eq(alg.as_str()),
                signing_keys::private_key.eq(sealed),
                signing_keys::public_jwk.eq(jwk.to_string()),
                signing_keys::created_at.eq(self.clock.now()),
                signing_keys::active_from.eq(active_from),
            ))
            .execute(conn)?;
        self.invalidate();
        Ok(kid)
    }

    /// Makes sure each algorithm has a key that signs now; used at start.
    pub fn ensure_keys(&self) -> Result<()> {
        let now = self.clock.now();
        self.db.tx(|conn| {
            for alg in SigningAlg::ALL {
                let n: i64 = signing_keys::table
                    .filter(signing_keys::alg.eq(alg.as_str()))
                    .filter(
                        signing_keys::retired_at
                            .is_null()
                            .or(signing_keys::retired_at.gt(now)),
                    )
                    .filter(signing_keys::active_from.le(now))
                    .filter(signing_keys::revoked_at.is_null())
                    .count()
                    .get_result(conn)?;
                if n == 0 {
                    self.add_key(conn, alg, now)?;
                }
            }
            Ok(())
        })
    }

    /// Rotates the signing key of `alg`. The new key is published at once and starts
    /// signing after `prepublish` seconds, so relying parties that cache the JWKS see it
    /// before any token it signs; the current key signs until then. Retired keys stay
    /// published for a day, longer than any token lives. `prepublish = 0` replaces the key
    /// at once (for a compromised key).
    pub fn rotate(&self, alg: SigningAlg, prepublish: i64) -> Result<String> {
        let now = self.clock.now();
        let switch = now + prepublish.max(0);
        let kid = self.db.tx(|conn| {
            diesel::update(signing_keys::table)
                .filter(signing_keys::alg.eq(alg.as_str()))
                .filter(
                    signing_keys::retired_at
                        .is_null()
                        .or(signing_keys::retired_at.gt(switch)),
                )
                .set(signing_keys::retired_at.eq(switch))
                .execute(conn)?;
            self.add_key(conn, alg, switch)
        })?;
        self.invalidate();
        Ok(kid)
    }

    /// Revokes key `kid` at once (a key known or feared to be compromised): from the commit
    /// on, no replica publishes it or verifies a token with it, whatever it has cached (the
    /// change moves the generation that every cached copy is checked against). If it was
    /// the key that signs for its algorithm, a new key signs from now, without
    /// pre-publication: relying parties refetch the JWKS when they meet an unknown `kid`.
    /// Returns the algorithm and the new key's id, if one was made.
    pub fn revoke(
        &self,
        conn: &mut DbConnection,
        kid: &str,
    ) -> Result<(SigningAlg, Option<String>)> {
        let now = self.clock.now();
        let (alg, revoked): (String, Option<i64>) = signing_keys::table
            .find(kid)
            .select((signing_keys::alg, signing_keys::revoked_at))
            .first(conn)
            .optional()?
            .ok_or(Error::NotFound)?;
        if revoked.is_some() {
            return Err(Error::InvalidRequest(format!(
                "key {kid} is already revoked"
            )));
        }
        let alg = SigningAlg::parse(&alg)?;
        diesel::update(signing_keys::table.find(kid))
            .set(signing_keys::revoked_at.eq(now))
            .execute(conn)?;
        diesel::update(signing_keys::table.find(kid))
            .filter(
                signing_keys::retired_at
                    .is_null()
                    .or(signing_keys::retired_at.gt(now)),
            )
            .set(signing_keys::retired_at.eq(now))
            .execute(conn)?;
        let signing: i64 = signing_keys::table
            .filter(signing_keys::alg.eq(alg.as_str()))
            .filter(signing_keys::revoked_at.is_null())
            .filter(signing_keys::active_from.le(now))
            .filter(
                signing_keys::retired_at
                    .is_null()
                    .or(signing_keys::retired_at.gt(now)),
            )
            .count()
            .get_result(conn)?;
        let new = if signing == 0 {
            Some(self.add_key(conn, alg, now)?)
        } else {
            None
        };
        self.invalidate();
        Ok((alg, new))
    }

    /// Scheduled rotation: rotates each algorithm whose newest key is older than
    /// `max_age` seconds, pre-publishing the new key for `prepublish` seconds. Returns the
    /// new key ids. Run from every replica's housekeeping: the check and the rotation are
    /// one transaction, so on SQLite only one replica rotates; on PostgreSQL two replicas
    /// racing may each add a key, which is harmless (the newest active one signs).
    pub fn rotate_due(&self, max_age: i64, prepublish: i64) -> Result<Vec<String>> {
        let now = self.clock.now();
        let mut rotated = Vec::new();
        for alg in SigningAlg::ALL {
            let newest: Option<i64> = self.db.with(|conn| {
                Ok(signing_keys::table
                    .filter(signing_keys::alg.eq(alg.as_str()))
                    // A revoked key is not one that keeps the algorithm fresh.
                    .filter(signing_keys::revoked_at.is_null())
                    .select(diesel::dsl::max(signing_keys::created_at))
                    .get_result::<Option<i64>>(conn)?)
            })?;
            if newest.is_some_and(|t| now - t >= max_age) {
                rotated.push(self.rotate(alg, prepublish)?);
            }
        }
        Ok(rotated)
    }

    /// Every key, newest first.
    pub fn list(&self) -> Result<Vec<KeyInfo>> {
        self.db.with(|conn| {
            let rows: Vec<KeyRow> = signing_keys::table
                .order(signing_keys::created_at.desc())
                .load(conn)?;
            Ok(rows
                .into_iter()
                .map(|r| KeyInfo {
                    kid: r.kid,
                    alg: r.alg,
                    created_at: r._created_at,
                    active_from: r.active_from,
                    retired_at: r.retired_at,
                    revoked_at: r._revoked_at,
                })
                .collect())
        })
    }

    fn invalidate(&self) {
        if let Ok(mut c) = self.cache.write() {
            c.loaded_at = i64::MIN;
        }
    }

    /// Keys that are published: never revoked, and not retired or retired less than a day
    /// ago. `max_age` is how old the cached copy may be; whatever its age, it is used only
    /// while the table's generation is the one it was loaded at (one primary-key read).
    fn keys_within(&self, max_age: i64) -> Result<Arc<[LoadedKey]>> {
        let now = self.clock.now();
        let generation = self.db.with(crate::storage::clients_generation)?;
        if let Some(keys) = self
            .cached_keys(now, max_age)
            .filter(|(g, _)| g.is_some() && *g == generation)
            .map(|(_, k)| k)
        {
            return Ok(keys);
        }
        let horizon = now - 86_400;
        let rows: Vec<KeyRow> = self.db.with(|conn| {
            Ok(signing_keys::table
                .filter(signing_keys::revoked_at.is_null())
                .filter(
                    signing_keys::retired_at
                        .is_null()
                        .or(signing_keys::retired_at.gt(horizon)),
                )
                .order(signing_keys::active_from.desc())
                .load(conn)?)
        })?;
        let keys: Arc<[LoadedKey]> = rows
            .into_iter()
            .map(|r| load(&self.kek, r))
            .collect::<Result<Vec<_>>>()?
            .into();
        if let Ok(mut c) = self.cache.write() {
            c.loaded_at = now;
            c.generation = generation;
            c.keys = keys.clone();
        }
        Ok(keys)
    }

    /// The cached keys and the generation they were loaded at, if loaded less than
    /// `max_age` seconds before `now`.
    fn cached_keys(&self, now: i64, max_age: i64) -> Option<(Option<i64>, Arc<[LoadedKey]>)> {
        let c = self.cache.read().ok()?;
        let fresh = c.loaded_at != i64::MIN && now - c.loaded_at < max_age && !c.keys.is_empty();
        fresh.then(|| (c.generation, c.keys.clone()))
    }

    fn keys(&self) -> Result<Arc<[LoadedKey]>> {
        self.keys_within(CACHE_SECONDS)
    }

    /// The key of `alg` that signs now: the newest one already active and not retired.
    pub fn signer(&self, alg: SigningAlg) -> Result<Signer> {
        signing_now(&self.keys()?, alg, self.clock.now())
    }

    /// The signers of two algorithms (a grant's access and ID tokens) from one look at the
    /// keys: each look reads the generation stamp, which a grant should pay once.
    pub fn signer_pair(&self, a: SigningAlg, b: SigningAlg) -> Result<(Signer, Signer)> {
        let keys = self.keys()?;
        let now = self.clock.now();
        Ok((signing_now(&keys, a, now)?, signing_now(&keys, b, now)?))
    }

    /// Like [`KeyStore::signer`] from memory alone, for a caller that holds the
    /// registrations' `generation` and has its commit checked against it: `None` when the
    /// cached keys are due for a reload, which only [`KeyStore::signer`] does, or were
    /// loaded at another generation (a key may have been revoked since). For work on an
    /// async thread, which must not wait for the database.
    pub fn cached_signer(&self, alg: SigningAlg, generation: i64) -> Option<Signer> {
        let now = self.clock.now();
        let (at, keys) = self.cached_keys(now, CACHE_SECONDS)?;
        if at != Some(generation) {
            return None;
        }
        active_signer(&keys, alg, now)
    }

    /// The JWKS document.
    pub fn jwks(&self) -> Result<Value> {
        let keys: Vec<Value> = self
            .keys()?
            .iter()
            .map(|k| {
                let mut jwk = k.public_jwk.clone();
                jwk["kid"] = json!(k.kid);
                jwk["alg"] = json!(k.alg.as_str());
                jwk["use"] = json!("sig");
                jwk
            })
            .collect();
        Ok(json!({ "keys": keys }))
    }

    /// Signs `claims` with the active key of `alg`, with header `typ`.
    pub fn sign<T: Serialize>(&self, alg: SigningAlg, typ: &str, claims: &T) -> Result<String> {
        self.signer(alg)?.sign(typ, claims)
    }

    /// Verifies a JWT we signed: known `kid`, the key's own algorithm, `typ`, issuer,
    /// audience and expiry. Any failure is [`Error::InvalidToken`].
    pub fn verify<T: DeserializeOwned>(
        &self,
        token: &str,
        typ: &str,
        issuer: &str,
        audience: &str,
    ) -> Result<T> {
        self.verify_with(token, typ, issuer, Some(audience), true)
    }

    /// Verifies an ID token we issued that comes back as a hint (`id_token_hint`): our
    /// signature and issuer, any audience, and expired ones too (OpenID Connect RP-Initiated
    /// Logout §2: the hint may have expired).
    pub fn verify_id_token_hint(&self, token: &str, issuer: &str) -> Result<Value> {
        self.verify_with(token, "JWT", issuer, None, false)
    }

    fn verify_with<T: DeserializeOwned>(
        &self,
        token: &str,
        typ: &str,
        issuer: &str,
        audience: Option<&str>,
        check_exp: bool,
    ) -> Result<T> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| Error::InvalidToken)?;
        if header.typ.as_deref() != Some(typ) {
            return Err(Error::InvalidToken);
        }
        let kid = header.kid.ok_or(Error::InvalidToken)?;
        // A key another replica added a moment ago may not be cached yet: look again, at
        // most once a second, before calling the token invalid.
        let mut keys = self.keys()?;
        if !keys.iter().any(|k| k.kid == kid) {
            keys = self.keys_within(1)?;
        }
        let key = keys
            .iter()
            .find(|k| k.kid == kid)
            .ok_or(Error::InvalidToken)?;
        // The key decides the algorithm, never the token's header.
        if header.alg != jwt_alg(key.alg) {
            return Err(Error::InvalidToken);
        }
        let mut v = Validation::new(jwt_alg(key.alg));
        v.set_issuer(&[issuer]);
        match audience {
            Some(a) => v.set_audience(&[a]),
            None => v.validate_aud = false,
        }
        if !check_exp {
            v.validate_exp = false;
            v.required_spec_claims.remove("exp");
        }
        v.leeway = 0;
        v.validate_nbf = true;
        let data = jsonwebtoken::decode::<HashMap<String, Value>>(token, &key.decoding, &v)
            .map_err(|_| Error::InvalidToken)?;
        let value = serde_json::to_value(data.claims).map_err(Error::internal)?;
        serde_json::from_value(value).map_err(|_| Error::InvalidToken)
    }
}

/// A loaded private key, ready to sign without touching the database.
#[derive(Clone)]
pub struct Signer {
    kid: String,
    alg: SigningAlg,
    encoding: EncodingKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Signs `claims` as a JWT with header `typ`.
    pub fn sign<T: Serialize>(&self, typ: &str, claims: &T) -> Result<String> {
        let mut header = Header::new(jwt_alg(self.alg));
        header.kid = Some(self.kid.clone());
        header.typ = Some(typ.to_owned());
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(Error::internal)
    }
}

/// [`active_signer`], or the internal error of a store with no key for `alg`.
fn signing_now(keys: &[LoadedKey], alg: SigningAlg, now: i64) -> Result<Signer> {
    active_signer(keys, alg, now)
        .ok_or_else(|| Error::internal(format!("no active {} key", alg.as_str())))
}

/// The key of `alg` that signs at `now`: the newest one already active and not retired.
fn active_signer(keys: &[LoadedKey], alg: SigningAlg, now: i64) -> Option<Signer> {
    keys.iter()
        .filter(|k| k.alg == alg && k.active_from <= now && k.retired_at.is_none_or(|r| r > now))
        .max_by_key(|k| k.active_from)
        .map(|k| Signer {
            kid: k.kid.clone(),
            alg: k.alg,
            encoding: k.encoding.clone(),
        })
}

/// `at_hash`: the left half of the hash of the access token that the ID token's algorithm
/// uses (SHA-256 for ES256, SHA-512 for Ed25519), base64url (OpenID Connect §3.1.3.6).
pub fn at_hash(alg: SigningAlg, access_token: &str) -> String {
    let d = match alg {
        SigningAlg::Es256 | SigningAlg::Rs256 => {
            ring::digest::digest(&ring::digest::SHA256, access_token.as_bytes())
        }
        SigningAlg::EdDsa => ring::digest::digest(&ring::digest::SHA512, access_token.as_bytes()),
    };
    let half = d.as_ref().len() / 2;
    b64(&d.as_ref()[..half])
}

/// Decodes a JWK coordinate; used by tests that rebuild keys from the JWKS.
pub fn jwk_component(jwk: &Value, name: &str) -> Result<Vec<u8>> {
    b64_decode(jwk[name].as_str().unwrap_or_default())
}
