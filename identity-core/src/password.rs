//! Password hashing on a bounded pool, and the password policy.
//!
//! Argon2id runs on at most `workers` blocking threads at once, with at most `queue` more
//! callers waiting. Beyond that the caller gets [`Error::Busy`] at once, so a flood of logins
//! costs a 503, not unbounded memory (each hash holds `m` KiB while it runs).

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, PasswordHash, Version};
use std::fmt;
use std::sync::Arc;
use tokio::sync::Semaphore;

use crate::crypto::random_bytes;
use crate::error::{Error, Result};

/// A password as typed. Its `Debug` never shows it.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    /// Wraps what the citizen typed.
    pub fn new(s: impl Into<String>) -> Self {
        Password(s.into())
    }

    /// The text, for hashing and the policy check only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// Argon2id cost and pool size, validated by the server's configuration.
#[derive(Clone, Debug)]
pub struct HashingConfig {
    /// Memory in KiB (OWASP minimum 19456).
    pub memory_kib: u32,
    /// Iterations.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
    /// Hashes running at once (one per core by default).
    pub workers: usize,
    /// Callers allowed to wait for a worker before the pool answers busy.
    pub queue: usize,
}

impl Default for HashingConfig {
    fn default() -> Self {
        HashingConfig {
            memory_kib: Params::DEFAULT_M_COST,
            iterations: Params::DEFAULT_T_COST,
            parallelism: Params::DEFAULT_P_COST,
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            queue: 0,
        }
    }
}

/// The result of checking a password.
#[derive(Debug)]
pub struct Checked {
    /// Whether the password matched.
    pub ok: bool,
    /// A new PHC string when the stored one used weaker parameters than configured.
    pub rehash: Option<String>,
}

/// The hashing pool.
#[derive(Clone)]
pub struct Hasher {
    params: Params,
    admission: Arc<Semaphore>,
    capacity: usize,
    running: Arc<Semaphore>,
    /// A hash of a random password, verified against when the username is unknown so that
    /// an unknown user costs the same work as a wrong password.
    dummy: Arc<String>,
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hasher")
            .field("params", &self.params)
            .finish()
    }
}

impl Hasher {
    /// Builds the pool; fails if the parameters are not valid Argon2 parameters.
    pub fn new(config: &HashingConfig) -> Result<Self, String> {
        let params = Params::new(
            config.memory_kib,
            config.iterations,
            config.parallelism,
            None,
        )
        .map_err(|e| e.to_string())?;
        let workers = config.workers.max(1);
        let dummy =
            hash_blocking(&params, &crate::crypto::random_token()).map_err(|e| e.to_string())?;
        Ok(Hasher {
            params,
            admission: Arc::new(Semaphore::new(workers + config.queue)),
            capacity: workers + config.queue,
            running: Arc::new(Semaphore::new(workers)),
            dummy: Arc::new(dummy),
        })
    }

    /// How many hashing slots (running and queued) are taken now.
    pub fn in_use(&self) -> usize {
        self.capacity - self.admission.available_permits()
    }

    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&Params) -> T + Send + 'static,
    ) -> Result<T> {
        let _admitted = self
            .admission
            .clone()
            .try_acquire_owned()
            .map_err(|_| Error::Busy { retry_after: 1 })?;
        let _running = self
            .running
            .clone()
            .acquire_owned()
            .await
            .map_err(Error::internal)?;
        let params = self.params.clone();
        tokio::task::spawn_blocking(move || job(&params))
            .await
            .map_err(Error::internal)
    }

    /// Hashes a new password into a PHC string.
    pub async fn hash(&self, password: &Password) -> Result<String> {
        let pw = password.expose().to_owned();
        self.run(move |params| hash_blocking(params, &pw)).await?
    }

    /// Checks a password against a stored PHC string, or against the dummy hash when there
    /// is none (unknown user), so both cost the same.
    pub async fn verify(&self, stored: Option<String>, password: &Password) -> Result<Checked> {
        let pw = password.expose().to_owned();
        let known = stored.is_some();
        let phc = stored.unwrap_or_else(|| (*self.dummy).clone());
        self.run(move |params| {
            let ok = verify_blocking(&phc, &pw) && known;
            let rehash = if ok && weaker_than(&phc, params) {
                hash_blocking(params, &pw).ok()
            } else {
                None
            };
            Checked { ok, rehash }
        })
        .await
    }
}

fn argon(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

fn hash_blocking(params: &Params, password: &str) -> Result<String> {
    let salt = random_bytes::<16>();
    argon(params)
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(Error::internal)
}

fn verify_blocking(phc: &str, password: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    // The stored parameters, not the configured ones, decide how to verify.
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    argon(&params)
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// Whether a stored hash is cheaper than the configured cost, or not Argon2id at all.
fn weaker_than(phc: &str, configured: &Params) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return true;
    };
    if parsed.algorithm.as_str() != "argon2id" {
        return true;
    }
    match Params::try_from(&parsed) {
        Ok(p) => {
            p.m_cost() < configured.m_cost()
                || p.t_cost() < configured.t_cost()
                || p.p_cost() < configured.p_cost()
        }
        Err(_) => true,
    }
}

/// The password policy, after NIST SP 800-63B: length in code points, no composition
/// rules, and a check against common passwords and context words.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Minimum length in Unicode code points.
    pub min_length: usize,
    /// Maximum length in code points (at least 64).
    pub max_length: usize,
    /// Words that must not carry the password (the service's name).
    pub service_words: Vec<String>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            min_length: 12,
            max_length: 256,
            service_words: vec!["identity".into(), "government".into()],
        }
    }
}

impl Policy {
    /// Checks a new password; the error text tells the citizen why it was refused.
    pub fn check(&self, password: &Password, context: &[&str]) -> Result<()> {
        let pw = password.expose();
        let len = pw.chars().count();
        if len < self.min_length {
            return Err(Error::WeakPassword(format!(
                "Use at least {} characters (this one has {len}).",
                self.min_length
            )));
        }
        if len > self.max_length {
            return Err(Error::WeakPassword(format!(
                "Use at most {} characters.",
                self.max_length
            )));
        }
        let mut inputs: Vec<&str> = context.iter().copied().filter(|s| !s.is_empty()).collect();
        inputs.extend(self.service_words.iter().map(String::as_str));
        let lower = pw.to_lowercase();
        if let Some(word) = inputs
            .iter()
            .find(|w| w.chars().count() >= 4 && lower.contains(&w.to_lowercase()))
        {
            let _ = word;
            return Err(Error::WeakPassword(
                "Do not use your username, e-mail address or the service's name in the password."
                    .into(),
            ));
        }
        let entropy = zxcvbn::zxcvbn(pw, &inputs);
        if u8::from(entropy.score()) < 3 {
            let reason = entropy
                .feedback()
                .and_then(|f| f.warning().map(|w| w.to_string()))
                .unwrap_or_else(|| "This password is too easy to guess.".into());
            return Err(Error::WeakPassword(format!(
                "{reason} Try a longer phrase of unrelated words."
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> HashingConfig {
        HashingConfig {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
            workers: 1,
            queue: 0,
        }
    }

    #[tokio::test]
    async fn hash_verify_and_unknown_user() {
        let h = Hasher::new(&cheap()).unwrap();
        let pw = Password::new("correct horse battery staple");
        let phc = h.hash(&pw).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
        assert!(h.verify(Some(phc.clone()), &pw).await.unwrap().ok);
        assert!(
            !h.verify(Some(phc), &Password::new("wrong"))
                .await
                .unwrap()
                .ok
        );
        assert!(!h.verify(None, &pw).await.unwrap().ok);
    }

    #[tokio::test]
    async fn weaker_hash_is_rehashed_on_success_only() {
        let weak = Hasher::new(&cheap()).unwrap();
        let pw = Password::new("correct horse battery staple");
        let old = weak.hash(&pw).await.unwrap();
        let strong = Hasher::new(&HashingConfig {
            memory_kib: 128,
            iterations: 2,
            ..cheap()
        })
        .unwrap();
        let checked = strong.verify(Some(old.clone()), &pw).await.unwrap();
        assert!(checked.ok);
        let new = checked.rehash.expect("rehash");
        assert!(new.contains("m=128,t=2,p=1"));
        let wrong = strong
            .verify(Some(old), &Password::new("nope"))
            .await
            .unwrap();
        assert!(wrong.rehash.is_none());
        assert!(strong
            .verify(Some(new), &pw)
            .await
            .unwrap()
            .rehash
            .is_none());
    }

    #[tokio::test]
    async fn full_pool_answers_busy() {
        let h = Hasher::new(&cheap()).unwrap();
        // Take the only admission slot by hand, as a running hash would.
        assert_eq!(h.in_use(), 0);
        let _held = h.admission.clone().try_acquire_owned().unwrap();
        assert_eq!(h.in_use(), 1);
        let err = h.hash(&Password::new("whatever")).await.unwrap_err();
        assert!(matches!(err, Error::Busy { .. }));
    }

    #[test]
    fn policy_counts_code_points_and_refuses_weak_and_context() {
        let p = Policy::default();
        let check = |s: &str, ctx: &[&str]| p.check(&Password::new(s), ctx);
        assert!(check("short", &[]).is_err());
        // 12 code points, 36 bytes: long enough by code points.
        assert!(check("獅子山下同舟共濟香港精神永", &[]).is_ok());
        assert!(check("password1234", &[]).is_err());
        assert!(check("aaaaaaaaaaaaaaaa", &[]).is_err());
        assert!(check("Lion-Rock-Harbour-2020", &[]).is_ok());
        assert!(check("chantaiman-secure-words", &["chantaiman"]).is_err());
        assert!(check(&"x".repeat(300), &[]).is_err());
        let long_ok = "tram ferry peak harbour ".repeat(3);
        assert!(check(&long_ok, &[]).is_ok());
        let msg = check("password1234", &[]).unwrap_err().to_string();
        assert!(msg.contains("password refused"), "{msg}");
    }
}
