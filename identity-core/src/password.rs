//! Password hashing on a bounded pool, and the password policy.
//!
//! Argon2id runs on at most `workers` blocking threads at once, with at most `queue` more
//! callers waiting. Beyond that the caller gets [`Error::Busy`] at once, so a flood of logins
//! costs a 503, not unbounded memory (each hash holds `m` KiB while it runs).
//!
//! The `m` KiB of each hash come from a few buffers the pool keeps and reuses (one per
//! worker), not from a fresh allocation per hash: glibc keeps freed blocks of that size in
//! its per-thread arenas, so allocating 19 MiB per login made the resident memory climb
//! with the number of threads that had ever hashed (measured: 70 MiB idle to over 500 MiB
//! under a login flood).

use argon2::password_hash::phc::{Output, ParamsString, Salt};
use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, Version};
use std::fmt;
use std::sync::Arc;
use tokio::sync::Semaphore;
use unicode_normalization::UnicodeNormalization;

use crate::crypto::random_bytes;
use crate::error::{Error, Result};

/// A password, NFKC-normalised (NIST SP 800-63B §5.1.1.2) so that the same characters
/// typed on another keyboard or input method (full-width forms, composed or decomposed
/// accents) are the same password. Its `Debug` never shows it.
#[derive(Clone)]
pub struct Password {
    normalized: String,
    /// What was typed, kept only when it differs from the normal form: hashes stored
    /// before normalisation were made from it, and are migrated on the next login.
    typed: Option<String>,
}

impl Password {
    /// Wraps what the citizen typed.
    pub fn new(s: impl Into<String>) -> Self {
        let typed: String = s.into();
        let normalized: String = typed.nfkc().collect();
        let typed = (typed != normalized).then_some(typed);
        Password { normalized, typed }
    }

    /// The normal form, for hashing and the policy check only.
    pub fn expose(&self) -> &str {
        &self.normalized
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

/// A place in the hashing pool, taken with [`Hasher::admit`] and given back when dropped.
pub struct Admission {
    // Held, never read: dropping it gives the place back.
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl fmt::Debug for Admission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Admission")
    }
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
    /// CPU time the hashing threads spent in jobs, in nanoseconds: with the process's own
    /// CPU time it tells how much of a login is the hash and how much the rest of the server.
    cpu_nanos: Arc<std::sync::atomic::AtomicU64>,
    /// Argon2 memory, reused by the hashes.
    arena: Arc<Arena>,
}

/// Argon2 working memory kept between hashes: at most `keep` buffers of the configured
/// size (one per worker; a hash holds its pool place until it ends, so no more run at
/// once). A stored hash with a bigger cost gets a buffer of its own, not kept. The buffers
/// keep the last hash's working memory, which is no more than the stored hash already gives
/// an attacker who can read the process.
struct Arena {
    held: std::sync::Mutex<Vec<Vec<Block>>>,
    keep: usize,
    blocks: usize,
}

impl Arena {
    fn new(keep: usize, blocks: usize) -> Self {
        Arena {
            held: Default::default(),
            keep,
            blocks,
        }
    }

    /// Runs `f` with `blocks` blocks of working memory.
    fn with<T>(&self, blocks: usize, f: impl FnOnce(&mut [Block]) -> T) -> T {
        let reuse = blocks <= self.blocks;
        let mut buf = if reuse {
            self.held
                .lock()
                .ok()
                .and_then(|mut held| held.pop())
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        if buf.len() < blocks {
            buf.resize(blocks, Block::new());
        }
        let out = f(&mut buf[..blocks]);
        if reuse {
            if let Ok(mut held) = self.held.lock() {
                if held.len() < self.keep {
                    held.push(buf);
                }
            }
        }
        out
    }
}

/// This thread's CPU time in nanoseconds, from the scheduler's accounting (Linux); `None`
/// elsewhere. std has no thread CPU clock, and reading procfs needs no `unsafe`.
///
/// The kernel brings the figure up to date only at a tick or a switch, so read as it stands
/// it lags by up to a tick (4 ms at 250 Hz). Not evenly: a job starts on a thread just woken
/// (up to date) and ends mid-tick (behind), so every hash was counted short, by half a tick
/// on average. Yielding first makes the scheduler account the running slice.
fn thread_cpu_nanos() -> Option<u64> {
    std::thread::yield_now();
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
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
        let arena = Arc::new(Arena::new(workers, params.block_count()));
        let dummy = dummy_phc(&params).map_err(|e| e.to_string())?;
        Ok(Hasher {
            params,
            admission: Arc::new(Semaphore::new(workers + config.queue)),
            capacity: workers + config.queue,
            running: Arc::new(Semaphore::new(workers)),
            dummy: Arc::new(dummy),
            cpu_nanos: Default::default(),
            arena,
        })
    }

    /// CPU seconds spent hashing since start (0 where the platform does not tell).
    pub fn cpu_seconds(&self) -> f64 {
        self.cpu_nanos.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e9
    }

    /// How many hashing slots (running and queued) are taken now.
    pub fn in_use(&self) -> usize {
        self.capacity - self.admission.available_permits()
    }

    /// A place in the pool, or [`Error::Busy`] at once. Taking it before any other work
    /// (the login's throttle write, above all) makes a refusal under a flood cost nothing.
    pub fn admit(&self) -> Result<Admission> {
        self.admission
            .clone()
            .try_acquire_owned()
            .map(|permit| Admission { _permit: permit })
            .map_err(|_| Error::Busy { retry_after: 1 })
    }

    async fn run<T: Send + 'static>(
        &self,
        admitted: Admission,
        job: impl FnOnce(&Arena, &Params) -> T + Send + 'static,
    ) -> Result<T> {
        let running = self
            .running
            .clone()
            .acquire_owned()
            .await
            .map_err(Error::internal)?;
        let params = self.params.clone();
        let cpu = self.cpu_nanos.clone();
        let arena = self.arena.clone();
        tokio::task::spawn_blocking(move || {
            // The places go with the job, not with the request: a client that hangs up
            // mid-hash must not free a place while its hash still runs.
            let _places = (admitted, running);
            let started = thread_cpu_nanos();
            let out = job(&arena, &params);
            if let (Some(a), Some(b)) = (started, thread_cpu_nanos()) {
                cpu.fetch_add(b.saturating_sub(a), std::sync::atomic::Ordering::Relaxed);
            }
            out
        })
        .await
        .map_err(Error::internal)
    }

    /// Hashes a new password into a PHC string.
    pub async fn hash(&self, password: &Password) -> Result<String> {
        let pw = password.expose().to_owned();
        self.run(self.admit()?, move |arena, params| {
            hash_blocking(arena, params, &pw)
        })
        .await?
    }

    /// Checks a password against a stored PHC string, or against the dummy hash when there
    /// is none (unknown user), so both cost the same.
    pub async fn verify(&self, stored: Option<String>, password: &Password) -> Result<Checked> {
        self.verify_admitted(self.admit()?, stored, password).await
    }

    /// [`Hasher::verify`] in a place taken earlier with [`Hasher::admit`].
    pub async fn verify_admitted(
        &self,
        admitted: Admission,
        stored: Option<String>,
        password: &Password,
    ) -> Result<Checked> {
        let pw = password.normalized.clone();
        let typed = password.typed.clone();
        let known = stored.is_some();
        let phc = stored.unwrap_or_else(|| (*self.dummy).clone());
        self.run(admitted, move |arena, params| {
            if verify_blocking(arena, &phc, &pw, params) && known {
                let rehash = weaker_than(&phc, params)
                    .then(|| hash_blocking(arena, params, &pw).ok())
                    .flatten();
                return Checked { ok: true, rehash };
            }
            // A hash made before passwords were normalised matches only what was typed;
            // on a match it is replaced by the normal form's hash. The second run depends
            // on the typed text alone, never on the account, so it tells nothing.
            let legacy = typed.is_some_and(|t| verify_blocking(arena, &phc, &t, params)) && known;
            Checked {
                ok: legacy,
                rehash: legacy
                    .then(|| hash_blocking(arena, params, &pw).ok())
                    .flatten(),
            }
        })
        .await
    }
}

/// Argon2id v1.3, what new hashes use.
fn argon(params: &Params) -> Argon2<'static> {
    argon_of(Algorithm::Argon2id, Version::V0x13, params)
}

/// Any Argon2 variant and version, as a stored hash names them.
fn argon_of(algorithm: Algorithm, version: Version, params: &Params) -> Argon2<'static> {
    Argon2::new(algorithm, version, params.clone())
}

/// The raw Argon2id output for a password and salt, in the arena's memory.
fn raw_hash(
    arena: &Arena,
    argon2: &Argon2<'_>,
    params: &Params,
    password: &str,
    salt: &[u8],
    out: &mut [u8],
) -> Result<()> {
    arena
        .with(params.block_count(), |memory| {
            argon2.hash_password_into_with_memory(password.as_bytes(), salt, out, memory)
        })
        .map_err(Error::internal)
}

/// A new PHC string (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`).
fn hash_blocking(arena: &Arena, params: &Params, password: &str) -> Result<String> {
    let salt = random_bytes::<16>();
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    raw_hash(arena, &argon(params), params, password, &salt, &mut out)?;
    phc_string(params, &salt, &out)
}

/// `$argon2id$v=19$m=...,t=...,p=...$salt$hash`.
fn phc_string(params: &Params, salt: &[u8], out: &[u8]) -> Result<String> {
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(Error::internal)?,
        salt: Some(Salt::new(salt).map_err(Error::internal)?),
        hash: Some(Output::new(out).map_err(Error::internal)?),
    };
    Ok(phc.to_string())
}

/// The stand-in for an unknown user's hash: the configured parameters, a random salt and a
/// random output. Verifying against it costs a full Argon2 run, like a real hash, and can
/// never match. It needs no hashing to make, so a replica starts without spending a hash's
/// time and memory before anyone logs in.
fn dummy_phc(params: &Params) -> Result<String> {
    phc_string(
        params,
        &random_bytes::<16>(),
        &random_bytes::<{ Params::DEFAULT_OUTPUT_LEN }>(),
    )
}

/// Whether the password matches a stored PHC string, with the stored variant, version and
/// parameters (not the configured ones), compared in constant time. A string that is not a
/// usable Argon2 hash never matches, and still costs a hash at the configured parameters
/// (`configured`), so a damaged row does not answer faster than a real one.
fn verify_blocking(arena: &Arena, phc: &str, password: &str, configured: &Params) -> bool {
    let usable = PasswordHash::new(phc).ok().and_then(|parsed| {
        let algorithm = Algorithm::new(parsed.algorithm.as_str()).ok()?;
        let version = match parsed.version {
            Some(v) => Version::try_from(v).ok()?,
            None => Version::V0x10,
        };
        let params = Params::try_from(&parsed).ok()?;
        let salt = parsed.salt?;
        let expected = parsed.hash?;
        Some((
            argon_of(algorithm, version, &params),
            params,
            salt,
            expected,
        ))
    });
    let Some((argon2, params, salt, expected)) = usable else {
        let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
        let _ = raw_hash(
            arena,
            &argon(configured),
            configured,
            password,
            &random_bytes::<16>(),
            &mut out,
        );
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    if raw_hash(arena, &argon2, &params, password, &salt, &mut out).is_err() {
        return false;
    }
    // `Output`'s equality is constant-time.
    Output::new(&out).is_ok_and(|computed| computed == expected)
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

    /// Our PHC strings and the argon2 crate's own are the same format both ways, so hashes
    /// stored before the pool reused its memory still verify, and ours verify elsewhere.
    #[test]
    fn phc_strings_match_the_argon2_crate() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let params = Params::new(64, 1, 1, None).unwrap();
        let arena = Arena::new(1, params.block_count());
        let verify = |phc: &str, pw: &str| verify_blocking(&arena, phc, pw, &params);
        let theirs = argon(&params)
            .hash_password_with_salt(b"correct horse", &random_bytes::<16>())
            .unwrap()
            .to_string();
        assert!(verify(&theirs, "correct horse"));
        assert!(!verify(&theirs, "correct horsf"));
        let ours = hash_blocking(&arena, &params, "correct horse").unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(argon(&params)
            .verify_password(b"correct horse", &parsed)
            .is_ok());
        // Older variants still verify with their own algorithm (and are rehashed on
        // success, see weaker_hash_is_rehashed_on_success_only); relabelling one is no match.
        let argon2i = argon_of(Algorithm::Argon2i, Version::V0x13, &params)
            .hash_password_with_salt(b"correct horse", &random_bytes::<16>())
            .unwrap()
            .to_string();
        assert!(verify(&argon2i, "correct horse"));
        assert!(!verify(
            &ours.replace("argon2id", "argon2i"),
            "correct horse"
        ));
        // A damaged string never matches.
        assert!(!verify(&ours[..ours.len() - 4], "correct horse"));
        assert!(!verify("not a hash", "correct horse"));
        // A bigger stored cost than the configured one gets a buffer of its own, not kept.
        let bigger = Params::new(128, 1, 1, None).unwrap();
        let phc = hash_blocking(&arena, &bigger, "pw").unwrap();
        assert!(verify(&phc, "pw"));
        assert!(arena
            .held
            .lock()
            .unwrap()
            .iter()
            .all(|b| b.len() == params.block_count()));
        assert!(
            arena.held.lock().unwrap().len() <= 1,
            "keeps at most `keep`"
        );
    }

    /// A request dropped mid-hash (the client hung up) does not free its place while the
    /// hash still runs: otherwise hanging up would let a flood past the pool's limit.
    #[tokio::test]
    async fn a_dropped_request_keeps_its_place_until_the_hash_ends() {
        let h = Hasher::new(&HashingConfig {
            memory_kib: 16 * 1024,
            iterations: 4,
            parallelism: 1,
            workers: 1,
            queue: 0,
        })
        .unwrap();
        let pw = Password::new("correct horse battery staple");
        let dropped =
            tokio::time::timeout(std::time::Duration::from_millis(1), h.verify(None, &pw)).await;
        assert!(dropped.is_err(), "cancelled before the hash ended");
        assert_eq!(h.in_use(), 1, "the hash still runs and holds its place");
        assert!(matches!(h.verify(None, &pw).await, Err(Error::Busy { .. })));
        for _ in 0..500 {
            if h.in_use() == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(h.in_use(), 0, "given back when the hash ended");
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
    fn passwords_are_nfkc_normalised() {
        // Full-width Latin (a CJK input method's default) and a decomposed accent.
        let wide = Password::new("Ｌｉｏｎ－Ｒｏｃｋ－２０２０");
        assert_eq!(wide.expose(), "Lion-Rock-2020");
        assert_eq!(Password::new("cafe\u{301}").expose(), "caf\u{e9}");
        assert_eq!(Password::new("plain").expose(), "plain");
        assert!(Password::new("plain").typed.is_none());
        assert_eq!(format!("{wide:?}"), "Password(<redacted>)");
    }

    #[tokio::test]
    async fn normalised_passwords_verify_and_old_hashes_are_migrated() {
        let h = Hasher::new(&cheap()).unwrap();
        let wide = Password::new("ｔｒａｍ ｆｅｒｒｙ ｐｅａｋ");
        let ascii = Password::new("tram ferry peak");
        let phc = h.hash(&wide).await.unwrap();
        let checked = h.verify(Some(phc.clone()), &ascii).await.unwrap();
        assert!(checked.ok, "typed on another keyboard, the same password");
        assert!(checked.rehash.is_none());
        // A hash stored before normalisation, of the full-width text itself.
        let params = Params::new(64, 1, 1, None).unwrap();
        let arena = Arena::new(1, params.block_count());
        let old = hash_blocking(&arena, &params, "ｔｒａｍ ｆｅｒｒｙ ｐｅａｋ").unwrap();
        let checked = h.verify(Some(old.clone()), &wide).await.unwrap();
        assert!(checked.ok, "the old hash still verifies");
        let new = checked.rehash.expect("migrated to the normal form");
        assert!(h.verify(Some(new), &ascii).await.unwrap().ok);
        assert!(!h.verify(Some(old), &ascii).await.unwrap().ok);
        assert!(!h.verify(None, &wide).await.unwrap().ok, "unknown user");
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
