//! The signed, tamper-evident audit log.
//!
//! Every security event becomes an entry: canonical bytes (see [`Entry::encode`]) that are
//! the leaves of an RFC 9162 Merkle tree. The hash of every complete subtree is stored, so
//! roots and proofs cost O(log n) rows. Checkpoints in the C2SP `tlog-checkpoint` format are
//! signed with an Ed25519 key (sealed under the key-encryption key) as C2SP signed notes.
//!
//! Events observed outside a transaction go through one writer thread per process that
//! groups whatever has queued up into one transaction (group commit); the caller's future
//! completes only after that transaction committed, so an event is durable before the
//! response that caused it. Events of a transaction are staged in it: on SQLite straight
//! into the tree, on PostgreSQL into an outbox that the writer empties. A
//! lock (`storage::lock_audit_log`) gives one order across processes sharing a database.
//! Before signing a checkpoint the log proves to itself that the new tree extends the last
//! signed one, so it never signs two inconsistent checkpoints.

use diesel::dsl::max;
use diesel::prelude::*;
use identity_sdk::audit::{self as merkle, Checkpoint, Hash, VerifierKey};
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{mpsc, Arc};

use crate::clock::Clock;
use crate::crypto::{Kek, KeyedHash, Purpose};
use crate::error::{Error, Result};
use crate::schema::{audit_checkpoints, audit_entries, audit_keys, audit_nodes, audit_outbox};
use crate::storage::{
    audit_appends_in_transaction, lock_audit_log, on_each_backend, Db, DbConnection,
};

tokio::task_local! {
    static REQUEST_ID: String;
}

/// Runs `fut` with a request id that audit entries recorded inside it will carry.
pub async fn with_request_id<F: std::future::Future>(id: String, fut: F) -> F::Output {
    REQUEST_ID.scope(id, fut).await
}

thread_local! {
    /// The request id while blocking work of that request runs on a blocking thread, where
    /// the task-local is out of reach.
    static BLOCKING_REQUEST: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// The id of the request being served, on its task or on a blocking thread working for it.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID
        .try_with(Clone::clone)
        .ok()
        .or_else(|| BLOCKING_REQUEST.with(|r| r.borrow().clone()))
}

/// Runs blocking work `f` on behalf of request `id` (taken from the calling task with
/// [`current_request_id`] before the work moved to a blocking thread).
pub fn in_request<T>(id: Option<String>, f: impl FnOnce() -> T) -> T {
    BLOCKING_REQUEST.with(|r| *r.borrow_mut() = id);
    let out = f();
    BLOCKING_REQUEST.with(|r| *r.borrow_mut() = None);
    out
}

/// Success or failure of the audited action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It happened.
    Success,
    /// It was refused.
    Failure,
}

/// A security event, before it is made into canonical bytes.
#[derive(Clone, Debug)]
pub struct Event {
    /// What happened, e.g. `login`, `token.issued`, `refresh.reuse`.
    pub kind: &'static str,
    /// Whether it succeeded.
    pub outcome: Outcome,
    /// The client concerned.
    pub client: Option<String>,
    /// The citizen concerned, by internal id (stored only as a keyed pseudonym).
    pub citizen: Option<String>,
    /// The source address (stored only keyed).
    pub source: Option<String>,
    /// A short machine-readable detail (a reason code, a key id, a grant type).
    pub detail: Option<String>,
}

impl Event {
    /// An event with only its kind and outcome.
    pub fn new(kind: &'static str, outcome: Outcome) -> Self {
        Event {
            kind,
            outcome,
            client: None,
            citizen: None,
            source: None,
            detail: None,
        }
    }

    /// Sets the client.
    pub fn client(mut self, c: impl Into<String>) -> Self {
        self.client = Some(c.into());
        self
    }

    /// Sets the citizen (internal id).
    pub fn citizen(mut self, c: impl Into<String>) -> Self {
        self.citizen = Some(c.into());
        self
    }

    /// Sets the source address.
    pub fn source(mut self, s: impl Into<String>) -> Self {
        self.source = Some(s.into());
        self
    }

    /// Sets the detail.
    pub fn detail(mut self, d: impl Into<String>) -> Self {
        self.detail = Some(d.into());
        self
    }
}

/// The canonical entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Unix time in milliseconds.
    pub time_ms: i64,
    /// Event kind.
    pub event: String,
    /// `success` or `failure`.
    pub outcome: String,
    /// Client id or `-`.
    pub client: String,
    /// Request id or `-`.
    pub request: String,
    /// Keyed pseudonym of the citizen or `-`.
    pub subject: String,
    /// Keyed hash of the source address or `-`.
    pub source: String,
    /// Detail or `-`.
    pub detail: String,
}

/// Characters kept as they are in a field; every other byte is `%XX`. So a field never
/// holds a newline or `=`, and the encoding is one-to-one for values up to 200 characters;
/// a longer one is cut there and marked (`%*` at its end).
fn escape(value: Option<&str>) -> String {
    let Some(v) = value else { return "-".into() };
    // No field needs more; a cap keeps a caller from writing essays into a permanent log.
    // A cut value ends in `%*`, which no escaped value can hold (`*` is always `%2A`), so a
    // reader knows the value went on.
    let (v, cut) = match v.char_indices().nth(CUT_AT) {
        Some((cut, _)) => (&v[..cut], true),
        None => (v, false),
    };
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"._~:/@+".contains(&b) || (b == b'-' && v != "-") {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    if cut {
        out.push_str(CUT_MARK);
    }
    if out.is_empty() {
        "%".into()
    } else {
        out
    }
}

/// A field's value as it was given (docs/audit-log.md §2.4): `None` when absent (`-`), the
/// empty string for `%`, `%XX` decoded, and a cut value (`%*` at its end) ending in `…`.
/// `None` also for bytes that are not UTF-8 or a broken escape.
pub fn unescape(field: &str) -> Option<String> {
    match field {
        "-" => return None,
        "%" => return Some(String::new()),
        _ => {}
    }
    let (field, cut) = match field.strip_suffix(CUT_MARK) {
        Some(kept) => (kept, true),
        None => (field, false),
    };
    let mut bytes = Vec::with_capacity(field.len());
    let mut rest = field.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'%' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(b);
            rest = tail;
        }
    }
    let mut text = String::from_utf8(bytes).ok()?;
    if cut {
        text.push('…');
    }
    Some(text)
}

/// Characters of a value kept before it is cut.
const CUT_AT: usize = 200;
/// What ends a cut value.
const CUT_MARK: &str = "%*";

impl Entry {
    /// The canonical bytes: a version line, then `key=value` lines in this fixed order,
    /// each ending in a newline, values escaped as described in ARCHITECTURE.md.
    pub fn encode(&self) -> String {
        format!(
            "identity-audit/v1\ntime={}\nevent={}\noutcome={}\nclient={}\nrequest={}\nsubject={}\nsource={}\ndetail={}\n",
            self.time_ms, self.event, self.outcome, self.client, self.request, self.subject, self.source, self.detail
        )
    }

    /// Parses canonical bytes (for the account page and tests); `None` if not canonical.
    pub fn decode(text: &str) -> Option<Entry> {
        let mut lines = text.strip_suffix('\n')?.split('\n');
        if lines.next()? != "identity-audit/v1" {
            return None;
        }
        let mut field = |name: &str| {
            lines
                .next()?
                .strip_prefix(name)?
                .strip_prefix('=')
                .map(str::to_owned)
        };
        let e = Entry {
            time_ms: field("time")?.parse().ok()?,
            event: field("event")?,
            outcome: field("outcome")?,
            client: field("client")?,
            request: field("request")?,
            subject: field("subject")?,
            source: field("source")?,
            detail: field("detail")?,
        };
        (e.encode() == text).then_some(e)
    }
}

const LEVEL_SHIFT: u32 = 48;

fn node_key(level: u32, index: u64) -> i64 {
    ((u64::from(level) << LEVEL_SHIFT) | index) as i64
}

fn hex(h: &Hash) -> String {
    hex::encode(h)
}

fn unhex(s: &str) -> Result<Hash> {
    let mut h = [0u8; 32];
    hex::decode_to_slice(s, &mut h)
        .map_err(|_| Error::internal("a stored audit hash is malformed"))?;
    Ok(h)
}

/// The complete subtrees whose hashes make up the hash of leaves `[start, end)`.
fn perfect_ranges(start: u64, end: u64, out: &mut Vec<(u32, u64)>) {
    let size = end - start;
    if size.is_power_of_two() && start.is_multiple_of(size) {
        out.push((size.trailing_zeros(), start / size));
    } else {
        let k = merkle::split_point(size);
        perfect_ranges(start, start + k, out);
        perfect_ranges(start + k, end, out);
    }
}

fn compose(start: u64, end: u64, nodes: &HashMap<i64, Hash>) -> Result<Hash> {
    let size = end - start;
    if size.is_power_of_two() && start.is_multiple_of(size) {
        return nodes
            .get(&node_key(size.trailing_zeros(), start / size))
            .copied()
            .ok_or_else(|| Error::internal("an audit tree node is missing"));
    }
    let k = merkle::split_point(size);
    Ok(merkle::node_hash(
        &compose(start, start + k, nodes)?,
        &compose(start + k, end, nodes)?,
    ))
}

/// Where [`AuditLog::stage`] put a transaction's events, for [`AuditLog::committed`].
#[derive(Clone, Copy, Debug, Default)]
#[must_use = "pass it to AuditLog::committed once the transaction has committed"]
pub struct Staged {
    in_tree: u64,
    in_outbox: bool,
}

/// Most entries one group commit writes.
const MAX_BATCH: usize = 1024;

/// The longest the writer goes without looking for staged events.
const OUTBOX_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

struct Inner {
    db: Db,
    clock: Clock,
    key: Ed25519KeyPair,
    verifier: VerifierKey,
    pseudonyms: KeyedHash,
    /// A file outside the database holding the last (size, root) this process signed.
    witness: Option<std::path::PathBuf>,
    /// Wakes the writer when events were staged, or hands it events to append at once.
    wake: std::sync::Mutex<mpsc::Sender<Msg>>,
    /// Entries this process's writer has put into the tree (for the metrics).
    appended: Arc<std::sync::atomic::AtomicU64>,
    /// Whether the writer's last commit failed, and why (for readiness and the metrics).
    health: Arc<WriterHealth>,
}

/// How the writer fares: a failing writer means every audited action is refused, which
/// readiness must say (so a load balancer stops sending citizens here), and the log must
/// say once a minute rather than once per refused request.
#[derive(Default)]
struct WriterHealth {
    /// The reason, and when the failure was last logged.
    failing: std::sync::Mutex<Option<(&'static str, std::time::Instant)>>,
    /// Whether `failing` is set: every audited commit reports success, and reads only this.
    any: std::sync::atomic::AtomicBool,
    failures: std::sync::atomic::AtomicU64,
}

/// How often a lasting writer failure is logged again.
const FAILURE_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

impl WriterHealth {
    fn failed(&self, e: &Error) {
        self.failures
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let reason = match e {
            Error::Internal(m) if m.contains("audit") => {
                "the audit tree is damaged (a node it needs is missing or malformed)"
            }
            Error::Unavailable(_) | Error::Busy { .. } => "the database is unavailable",
            _ => "the audit log cannot be appended",
        };
        let Ok(mut failing) = self.failing.lock() else {
            return;
        };
        let due = failing
            .as_ref()
            .is_none_or(|(_, logged)| logged.elapsed() >= FAILURE_LOG_EVERY);
        if due {
            tracing::error!(
                error = %e,
                reason,
                failures = self.failures.load(std::sync::atomic::Ordering::Relaxed),
                "audit append failing: audited actions are refused until it is repaired (logged once a minute)"
            );
            *failing = Some((reason, std::time::Instant::now()));
        } else if let Some((r, _)) = failing.as_mut() {
            *r = reason;
        }
        self.any.store(true, std::sync::atomic::Ordering::Release);
    }

    fn succeeded(&self) {
        if !self.any.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        // Both fields change under the lock, so a failure and a success racing leave them
        // agreeing.
        if let Ok(mut failing) = self.failing.lock() {
            self.any.store(false, std::sync::atomic::Ordering::Release);
            if failing.take().is_some() {
                tracing::info!("audit appends succeed again");
            }
        }
    }

    fn reason(&self) -> Option<&'static str> {
        self.failing.lock().ok()?.as_ref().map(|(r, _)| *r)
    }
}

/// The audit log of this process; cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("origin", &self.inner.verifier.name())
            .finish()
    }
}

/// A page of entries for auditors.
#[derive(Clone, Debug)]
pub struct EntryRow {
    /// Leaf index.
    pub index: u64,
    /// Canonical bytes.
    pub entry: String,
}

impl AuditLog {
    /// Opens the log named `origin`, creating its signing key on first use, and starts the
    /// writer thread.
    pub fn open(db: Db, kek: &Kek, clock: Clock, origin: &str) -> Result<Self> {
        Self::open_with_witness(db, kek, clock, origin, None)
    }

    /// Like [`AuditLog::open`], keeping the last signed checkpoint also in `witness`, a file
    /// outside the database: a log cut back or restored in the database cannot then make
    /// this process sign a history that contradicts what it signed before.
    pub fn open_with_witness(
        db: Db,
        kek: &Kek,
        clock: Clock,
        origin: &str,
        witness: Option<std::path::PathBuf>,
    ) -> Result<Self> {
        let key = Self::load_or_create_key(&db, kek, &clock, origin)?;
        let public: [u8; 32] = key
            .public_key()
            .as_ref()
            .try_into()
            .map_err(Error::internal)?;
        let verifier = VerifierKey::new(origin, public);
        let (tx, rx) = mpsc::channel::<Msg>();
        let appended = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let health = Arc::new(WriterHealth::default());
        let log = AuditLog {
            inner: Arc::new(Inner {
                db,
                clock,
                key,
                verifier,
                pseudonyms: kek.derive(Purpose::AuditPseudonym),
                witness,
                wake: std::sync::Mutex::new(tx),
                appended: appended.clone(),
                health: health.clone(),
            }),
        };
        // The writer holds the pool and clock, not the log, so that it stops when the last
        // handle to the log (and so the last sender) is dropped.
        let (db, clock) = (log.inner.db.clone(), log.inner.clock.clone());
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer_loop(&db, &clock, rx, &appended, &health))
            .map_err(Error::internal)?;
        Ok(log)
    }

    fn load_or_create_key(
        db: &Db,
        kek: &Kek,
        clock: &Clock,
        origin: &str,
    ) -> Result<Ed25519KeyPair> {
        let context = format!("audit-key:{origin}");
        let existing: Option<String> = db.with(|c| {
            Ok(audit_keys::table
                .find(origin)
                .select(audit_keys::private_key)
                .get_result(c)
                .optional()?)
        })?;
        let sealed = match existing {
            Some(s) => s,
            None => {
                let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
                    .map_err(Error::internal)?;
                let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(Error::internal)?;
                let sealed = kek.seal(&context, pkcs8.as_ref());
                let inserted = db.with(|c| {
                    Ok(diesel::insert_into(audit_keys::table)
                        .values((
                            audit_keys::name.eq(origin),
                            audit_keys::private_key.eq(&sealed),
                            audit_keys::public_key
                                .eq(crate::crypto::b64(pair.public_key().as_ref())),
                            audit_keys::created_at.eq(clock.now()),
                        ))
                        .execute(c)?)
                });
                match inserted {
                    // Another replica created it first: use theirs.
                    Err(Error::Conflict(_)) => db.with(|c| {
                        Ok(audit_keys::table
                            .find(origin)
                            .select(audit_keys::private_key)
                            .get_result(c)?)
                    })?,
                    Err(e) => return Err(e),
                    Ok(_) => sealed,
                }
            }
        };
        let der = kek.open(&context, &sealed)?;
        Ed25519KeyPair::from_pkcs8(&der).map_err(Error::internal)
    }

    /// The C2SP verifier key that auditors pin.
    pub fn verifier_key(&self) -> &VerifierKey {
        &self.inner.verifier
    }

    /// The keyed pseudonym of a citizen in the log (also what the account page looks up).
    pub fn pseudonym(&self, citizen_id: &str) -> String {
        self.inner
            .pseudonyms
            .hash(&[b"citizen", citizen_id.as_bytes()])
    }

    fn source_hash(&self, address: &str) -> String {
        // Keyed and truncated: enough to link events from one address, not to recover it.
        self.inner.pseudonyms.hash(&[b"source", address.as_bytes()])[..16].to_owned()
    }

    /// The canonical entry of an event, stamped now and with the current request id.
    pub fn entry(&self, event: &Event) -> Entry {
        let now_ms = self.inner.clock.now_ms();
        Entry {
            time_ms: now_ms,
            event: escape(Some(event.kind)),
            outcome: match event.outcome {
                Outcome::Success => "success".into(),
                Outcome::Failure => "failure".into(),
            },
            client: escape(event.client.as_deref()),
            request: escape(current_request_id().as_deref()),
            subject: escape(
                event
                    .citizen
                    .as_deref()
                    .map(|c| self.pseudonym(c))
                    .as_deref(),
            ),
            source: escape(
                event
                    .source
                    .as_deref()
                    .map(|s| self.source_hash(s))
                    .as_deref(),
            ),
            detail: escape(event.detail.as_deref()),
        }
    }

    /// Stages events in the caller's transaction: they commit with it or not at all. On
    /// SQLite they go into the tree at once (see
    /// [`storage::audit_appends_in_transaction`](crate::storage::audit_appends_in_transaction));
    /// on PostgreSQL into the outbox, which the writer empties into the tree soon after.
    /// Pass the answer to [`AuditLog::committed`] once the transaction has committed.
    pub fn stage(&self, conn: &mut DbConnection, events: &[Event]) -> Result<Staged> {
        if events.is_empty() {
            return Ok(Staged::default());
        }
        let entries: Vec<Entry> = events.iter().map(|e| self.entry(e)).collect();
        if audit_appends_in_transaction(conn) {
            let texts: Vec<String> = entries.iter().map(Entry::encode).collect();
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            // A failure here refuses the action (its transaction rolls back) with a 503,
            // and is logged once a minute by the writer's health, not once per request.
            if let Err(e) = append_in(conn, self.inner.clock.now(), &refs) {
                self.inner.health.failed(&e);
                return Err(Error::Unavailable(
                    "the audit log could not be written".into(),
                ));
            }
            self.inner.health.succeeded();
            return Ok(Staged {
                in_tree: refs.len() as u64,
                in_outbox: false,
            });
        }
        let rows: Vec<_> = entries
            .iter()
            .map(|entry| {
                (
                    audit_outbox::id.eq(crate::crypto::random_id()),
                    audit_outbox::created_ms.eq(entry.time_ms),
                    audit_outbox::entry.eq(entry.encode()),
                )
            })
            .collect();
        for chunk in rows.chunks(300) {
            on_each_backend!(&mut *conn, |c| diesel::insert_into(audit_outbox::table)
                .values(chunk)
                .execute(c))?;
        }
        Ok(Staged {
            in_tree: 0,
            in_outbox: true,
        })
    }

    /// After the transaction that staged events committed: wakes the writer for what waits
    /// in the outbox, and counts what went into the tree directly.
    pub fn committed(&self, staged: Staged) {
        if staged.in_tree > 0 {
            self.inner
                .appended
                .fetch_add(staged.in_tree, std::sync::atomic::Ordering::Relaxed);
        }
        if staged.in_outbox {
            if let Ok(w) = self.inner.wake.lock() {
                let _ = w.send(Msg::Wake);
            }
        }
    }

    /// Records one event in a transaction of its own; durable when this returns.
    pub async fn record(&self, event: Event) -> Result<()> {
        self.record_all(vec![event]).await
    }

    /// Records events outside any transaction of the caller: the writer appends them with
    /// whatever else is waiting, in one transaction (group commit). Durable when this
    /// returns.
    pub async fn record_all(&self, events: Vec<Event>) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let (done, wait) = tokio::sync::oneshot::channel();
        self.submit(&events, move |written| {
            let _ = done.send(written);
        });
        wait.await
            .map_err(|_| Error::internal("the audit writer dropped an event"))?
    }

    /// Hands events to the writer and returns at once; `then` runs on the writer's thread
    /// with the outcome once they are durable (or could not be written), and must be quick.
    /// Entries are stamped here, so on a blocking thread this runs inside
    /// [`in_request`] to carry the request id.
    ///
    /// This lets blocking work pass its result to the waiting request through the writer:
    /// the request is woken once, when its events are durable, instead of once by the
    /// blocking thread and once more by the writer.
    pub fn submit(&self, events: &[Event], then: impl FnOnce(Result<()>) + Send + 'static) {
        self.send(
            events,
            None,
            Box::new(move |r: Result<bool>| then(r.map(drop))),
        );
    }

    /// Like [`AuditLog::submit`], for an action decided on a copy of the client registrations
    /// read at `generation`: the events are appended only if, in the transaction that makes
    /// them durable, the registrations are still at that generation
    /// ([`storage::clients_generation`](crate::storage::clients_generation)). `then` gets
    /// `Ok(true)` once they are durable, `Ok(false)` if a client changed in between and
    /// nothing was written (the action must be decided again), or the error.
    pub fn submit_if_clients_at(
        &self,
        generation: i64,
        events: &[Event],
        then: impl FnOnce(Result<bool>) + Send + 'static,
    ) {
        self.send(events, Some(generation), Box::new(then));
    }

    fn send(&self, events: &[Event], clients_at: Option<i64>, then: Then) {
        let entries = events.iter().map(|e| self.entry(e).encode()).collect();
        let sent = match self.inner.wake.lock() {
            Ok(queue) => queue
                .send(Msg::Append(Append {
                    entries,
                    clients_at,
                    then,
                }))
                .map_err(|mpsc::SendError(msg)| msg),
            Err(_) => {
                then(Err(Error::internal("audit queue poisoned")));
                return;
            }
        };
        if let Err(Msg::Append(a)) = sent {
            (a.then)(Err(Error::internal("the audit writer has stopped")));
        }
    }

    /// Moves every staged event into the tree now; returns how many moved.
    pub fn flush(&self) -> Result<u64> {
        let mut moved = 0;
        loop {
            let n = move_batch(&self.inner.db, &self.inner.clock)?;
            self.inner
                .appended
                .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            moved += n;
            if n < MAX_BATCH as u64 {
                return Ok(moved);
            }
        }
    }

    /// Appends entries in one transaction; returns the index of the first.
    pub fn append_batch(&self, entries: &[&str]) -> Result<u64> {
        let first = append_batch(&self.inner.db, &self.inner.clock, entries)?;
        self.inner
            .appended
            .fetch_add(entries.len() as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(first)
    }

    fn node(
        conn: &mut DbConnection,
        cache: &mut HashMap<i64, Hash>,
        level: u32,
        idx: u64,
    ) -> Result<Hash> {
        let key = node_key(level, idx);
        if let Some(h) = cache.get(&key) {
            return Ok(*h);
        }
        let text: String = audit_nodes::table
            .find(key)
            .select(audit_nodes::hash)
            .get_result(conn)
            .optional()?
            .ok_or_else(|| Error::internal("an audit tree node is missing"))?;
        let h = unhex(&text)?;
        cache.insert(key, h);
        Ok(h)
    }

    fn size_in(conn: &mut DbConnection) -> Result<u64> {
        let m: Option<i64> = audit_entries::table
            .select(max(audit_entries::idx))
            .get_result(conn)?;
        Ok(m.map_or(0, |m| m as u64 + 1))
    }

    /// Why the log cannot be appended to now, if it cannot: the writer's last commit
    /// failed, or one of the tree's peaks (the roots of its perfect subtrees, which every
    /// later append reads) is missing. A damaged tree fails appends, so readiness checks it
    /// directly rather than waiting for a request to fail.
    pub fn unappendable(&self) -> Option<&'static str> {
        if let Some(reason) = self.inner.health.reason() {
            return Some(reason);
        }
        let checked = self.inner.db.with(|conn| {
            let mut cache = HashMap::new();
            let size = Self::size_in(conn)?;
            let mut start = 0u64;
            for level in (0..64u32).rev() {
                if size & (1 << level) != 0 {
                    Self::node(conn, &mut cache, level, start >> level)?;
                    start += 1 << level;
                }
            }
            Ok(())
        });
        match checked {
            Ok(()) => None,
            Err(Error::Unavailable(_) | Error::Busy { .. }) => Some("the database is unavailable"),
            Err(_) => Some("the audit tree is damaged (a node it needs is missing or malformed)"),
        }
    }

    /// Failed commits of this process's writer since start (for the metrics).
    pub fn append_failures(&self) -> u64 {
        self.inner
            .health
            .failures
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Entries this process's writer has appended since start (whatever other replicas
    /// add to the same tree is theirs).
    pub fn appended(&self) -> u64 {
        self.inner
            .appended
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many entries the log holds.
    pub fn size(&self) -> Result<u64> {
        self.inner.db.with(Self::size_in)
    }

    /// Loads the stored hashes that `ranges` name.
    fn load_nodes(conn: &mut DbConnection, ranges: &[(u32, u64)]) -> Result<HashMap<i64, Hash>> {
        let keys: Vec<i64> = ranges.iter().map(|(l, i)| node_key(*l, *i)).collect();
        let mut map = HashMap::new();
        for chunk in keys.chunks(500) {
            let rows: Vec<(i64, String)> = audit_nodes::table
                .filter(audit_nodes::node_key.eq_any(chunk))
                .select((audit_nodes::node_key, audit_nodes::hash))
                .load(conn)?;
            for (k, h) in rows {
                map.insert(k, unhex(&h)?);
            }
        }
        Ok(map)
    }

    /// Runs a proof algorithm twice: once to learn which subtree hashes it needs, then,
    /// after loading them in one query, for real.
    fn with_nodes<T>(
        &self,
        conn: &mut DbConnection,
        run: impl Fn(&mut dyn FnMut(u64, u64) -> Result<Hash>) -> Result<T>,
    ) -> Result<T> {
        let mut needed = Vec::new();
        run(&mut |a, b| {
            perfect_ranges(a, b, &mut needed);
            Ok([0u8; 32])
        })?;
        let nodes = Self::load_nodes(conn, &needed)?;
        run(&mut |a, b| compose(a, b, &nodes))
    }

    fn root_in(&self, conn: &mut DbConnection, size: u64) -> Result<Hash> {
        if size == 0 {
            return Ok(merkle::empty_root());
        }
        self.with_nodes(conn, |mth| mth(0, size))
    }

    /// The root hash of the first `size` entries.
    pub fn root(&self, size: u64) -> Result<Hash> {
        self.inner.db.with(|c| self.root_in(c, size))
    }

    /// The inclusion proof of entry `index` in the tree of `size`.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>> {
        self.inner.db.with(|conn| {
            if index >= size || size > Self::size_in(conn)? {
                return Err(Error::InvalidRequest(
                    "index and size must satisfy index < size <= tree size".into(),
                ));
            }
            self.with_nodes(conn, |mth| {
                merkle::inclusion_proof(index, size, &mut |a, b| mth(a, b))
            })
        })
    }

    /// The consistency proof between tree sizes `from` and `to`.
    pub fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<Hash>> {
        self.inner
            .db
            .with(|conn| self.consistency_in(conn, from, to))
    }

    fn consistency_in(&self, conn: &mut DbConnection, from: u64, to: u64) -> Result<Vec<Hash>> {
        if from > to || to > Self::size_in(conn)? {
            return Err(Error::InvalidRequest(
                "sizes must satisfy from <= to <= tree size".into(),
            ));
        }
        self.with_nodes(conn, |mth| {
            merkle::consistency_proof(from, to, &mut |a, b| mth(a, b))
        })
    }

    /// Entries `[start, end)`, at most `limit`.
    pub fn entries(&self, start: u64, end: u64, limit: u64) -> Result<Vec<EntryRow>> {
        let end = end.min(start.saturating_add(limit));
        self.inner.db.with(|conn| {
            let rows: Vec<(i64, String)> = audit_entries::table
                .filter(audit_entries::idx.ge(start as i64))
                .filter(audit_entries::idx.lt(end as i64))
                .order(audit_entries::idx)
                .select((audit_entries::idx, audit_entries::entry))
                .load(conn)?;
            Ok(rows
                .into_iter()
                .map(|(i, e)| EntryRow {
                    index: i as u64,
                    entry: e,
                })
                .collect())
        })
    }

    /// When the newest checkpoint was signed (Unix seconds), if any.
    pub fn latest_checkpoint_time(&self) -> Result<Option<i64>> {
        self.inner.db.with(|conn| {
            Ok(audit_checkpoints::table
                .order(audit_checkpoints::size.desc())
                .select(audit_checkpoints::created_at)
                .first(conn)
                .optional()?)
        })
    }

    /// The newest signed checkpoint, if any.
    pub fn latest_checkpoint(&self) -> Result<Option<String>> {
        self.inner.db.with(|conn| {
            Ok(audit_checkpoints::table
                .order(audit_checkpoints::size.desc())
                .select(audit_checkpoints::note)
                .first(conn)
                .optional()?)
        })
    }

    fn read_witness(&self) -> Result<Option<(u64, Hash)>> {
        let Some(path) = &self.inner.witness else {
            return Ok(None);
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Error::internal(format!(
                    "audit witness {}: {e}",
                    path.display()
                )))
            }
        };
        let (size, root) = text
            .trim()
            .split_once(' ')
            .ok_or_else(|| Error::internal("the audit witness file is malformed"))?;
        let size = size
            .parse()
            .map_err(|_| Error::internal("the audit witness file is malformed"))?;
        Ok(Some((size, unhex(root)?)))
    }

    fn write_witness(&self, size: u64, root: &Hash) -> Result<()> {
        let Some(path) = &self.inner.witness else {
            return Ok(());
        };
        // Write aside, sync, then rename: the file is always one whole witness.
        let tmp = path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(format!("{size} {}\n", hex(root)).as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| Error::internal(format!("audit witness {}: {e}", path.display())))
    }

    /// Signs a checkpoint of the current tree if it grew since the last one. Refuses to
    /// sign a tree that does not extend the last signed checkpoint in the database, or the
    /// last one this process signed (its witness file). Returns the new size.
    pub fn checkpoint(&self) -> Result<Option<u64>> {
        let now = self.inner.clock.now();
        let witness = self.read_witness()?;
        let signed = self.inner.db.tx(|conn| {
            // The same lock as appends: one checkpoint at a time, and a stable size.
            lock_audit_log(conn)?;
            let size = Self::size_in(conn)?;
            let last: Option<(i64, String)> = audit_checkpoints::table
                .order(audit_checkpoints::size.desc())
                .select((audit_checkpoints::size, audit_checkpoints::root))
                .first(conn)
                .optional()?;
            if last.as_ref().is_some_and(|(s, _)| *s as u64 >= size) || size == 0 {
                return Ok(None);
            }
            let root = self.root_in(conn, size)?;
            let mut earlier: Vec<(u64, Hash, &str)> = Vec::new();
            if let Some((s, r)) = &last {
                earlier.push((*s as u64, unhex(r)?, "the last checkpoint in the database"));
            }
            if let Some((s, r)) = witness {
                earlier.push((s, r, "the last checkpoint this server signed"));
            }
            for (old_size, old_root, what) in earlier {
                if old_size > size {
                    return Err(Error::internal(format!(
                        "refusing to sign: the tree has {size} entries, fewer than {what} ({old_size})"
                    )));
                }
                let proof = self.consistency_in(conn, old_size, size)?;
                merkle::verify_consistency(old_size, size, &proof, &old_root, &root).map_err(|e| {
                    Error::internal(format!("refusing to sign: the tree does not extend {what} (size {old_size}): {e}"))
                })?;
            }
            let body = Checkpoint { origin: self.inner.verifier.name().to_owned(), size, root }.body();
            let sig = self.inner.key.sign(body.as_bytes());
            let note = format!("{body}\n{}", merkle::signature_line(&self.inner.verifier, sig.as_ref()));
            diesel::insert_into(audit_checkpoints::table)
                .values((
                    audit_checkpoints::size.eq(size as i64),
                    audit_checkpoints::root.eq(hex(&root)),
                    audit_checkpoints::note.eq(&note),
                    audit_checkpoints::created_at.eq(now),
                ))
                .execute(conn)?;
            Ok(Some((size, root)))
        })?;
        match signed {
            Some((size, root)) => {
                self.write_witness(size, &root)?;
                Ok(Some(size))
            }
            None => Ok(None),
        }
    }

    /// Entries about one citizen, newest first (for the account page): an index lookup by
    /// the entry's `subject` column (the pseudonym), however long the log.
    pub fn for_citizen(&self, citizen_id: &str, limit: i64) -> Result<Vec<Entry>> {
        let subject = escape(Some(&self.pseudonym(citizen_id)));
        self.inner.db.with(|conn| {
            let rows: Vec<String> = audit_entries::table
                .filter(audit_entries::subject.eq(&subject))
                .order(audit_entries::idx.desc())
                .limit(limit)
                .select(audit_entries::entry)
                .load(conn)?;
            // The column is derived from the entry; the entry itself is what counts.
            Ok(rows
                .iter()
                .filter_map(|r| Entry::decode(r))
                .filter(|e| e.subject == subject)
                .collect())
        })
    }
}

/// What the submitter of an append is told: `Ok(true)` once it is durable, `Ok(false)` if its
/// condition on the clients failed and nothing was written, or why it could not be written.
type Then = Box<dyn FnOnce(Result<bool>) + Send>;

/// What the writer thread is asked to do.
enum Msg {
    /// Events were staged in the outbox: move them.
    Wake,
    /// Append these entries, then report whether they are durable.
    Append(Append),
}

struct Append {
    entries: Vec<String>,
    /// Appended only if the client registrations are at this generation when they commit.
    clients_at: Option<i64>,
    then: Then,
}

fn writer_loop(
    db: &Db,
    clock: &Clock,
    rx: mpsc::Receiver<Msg>,
    appended: &std::sync::atomic::AtomicU64,
    health: &WriterHealth,
) {
    // Whether the outbox may hold events: at start (a previous process may have left some),
    // after a wake (a transaction staged some), and at least every 250 ms, busy or not
    // (another replica's writer may have died with events staged). Direct appends alone
    // leave it unread: the query cost every grant's commit a statement for an empty outbox.
    let mut outbox_due = true;
    let mut outbox_read = std::time::Instant::now();
    loop {
        let mut waiting: Vec<Append> = Vec::new();
        let mut queued = 0;
        let first = match rx.recv_timeout(OUTBOX_EVERY) {
            Ok(m) => Some(m),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                outbox_due = true;
                None
            }
            // Every handle to the log is gone.
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        // Group commit: whatever else has queued up goes in the same transaction.
        for msg in first
            .into_iter()
            .chain(std::iter::from_fn(|| rx.try_recv().ok()))
        {
            match msg {
                Msg::Wake => outbox_due = true,
                Msg::Append(a) => {
                    queued += a.entries.len();
                    waiting.push(a);
                    if queued >= MAX_BATCH {
                        break;
                    }
                }
            }
        }
        if outbox_read.elapsed() >= OUTBOX_EVERY {
            outbox_due = true;
        }
        if waiting.is_empty() && !outbox_due {
            continue;
        }
        if outbox_due {
            outbox_read = std::time::Instant::now();
        }
        let result = write_batch(db, clock, &waiting, outbox_due);
        // A failed commit leaves whatever was staged for the next one.
        outbox_due &= result.is_err();
        if let Ok(w) = &result {
            appended.fetch_add(w.moved + w.appended, std::sync::atomic::Ordering::Relaxed);
        }
        match &result {
            Ok(w) => {
                for (a, accepted) in waiting.into_iter().zip(&w.accepted) {
                    (a.then)(Ok(*accepted));
                }
            }
            Err(_) => {
                for a in waiting {
                    (a.then)(Err(Error::Unavailable(
                        "the audit log could not be written".into(),
                    )));
                }
            }
        }
        match result {
            // A full batch from the outbox: there may be more.
            Ok(w) if w.moved == MAX_BATCH as u64 => match move_batch(db, clock) {
                Ok(more) => {
                    health.succeeded();
                    appended.fetch_add(more, std::sync::atomic::Ordering::Relaxed);
                }
                Err(e) => health.failed(&e),
            },
            // Any commit that went through ends a failure of the writer (a database that
            // came back); a damaged tree is still seen by `unappendable`'s own check of its
            // peaks. Waiting for an append instead would keep a replica unready for good:
            // unready, it gets no traffic, so nothing would ever be appended.
            Ok(_) => health.succeeded(),
            // Staged events wait in the outbox for the next try.
            Err(e) => health.failed(&e),
        }
    }
}

/// What one group commit did.
struct Written {
    /// Entries moved from the outbox.
    moved: u64,
    /// Entries appended directly.
    appended: u64,
    /// For each direct append, whether it went in (its condition on the clients held).
    accepted: Vec<bool>,
}

/// One group commit: under the audit lock, moves up to a batch of staged events from the
/// outbox into the tree (if `move_staged`), then appends the direct entries whose condition
/// holds, all in one transaction.
fn write_batch(db: &Db, clock: &Clock, direct: &[Append], move_staged: bool) -> Result<Written> {
    let now = clock.now();
    db.tx(|conn| {
        lock_audit_log(conn)?;
        let moved = if move_staged { move_in(conn, now)? } else { 0 };
        // Read once per batch, and only if some append depends on it.
        let clients = match direct.iter().any(|a| a.clients_at.is_some()) {
            true => crate::storage::clients_generation_held(conn)?,
            false => None,
        };
        let accepted: Vec<bool> = direct
            .iter()
            .map(|a| a.clients_at.is_none() || a.clients_at == clients)
            .collect();
        let entries: Vec<&str> = direct
            .iter()
            .zip(&accepted)
            .filter(|(_, ok)| **ok)
            .flat_map(|(a, _)| a.entries.iter().map(String::as_str))
            .collect();
        if !entries.is_empty() {
            append_in(conn, now, &entries)?;
        }
        Ok(Written {
            moved,
            appended: entries.len() as u64,
            accepted,
        })
    })
}

/// Moves up to a batch of staged events into the tree, in one transaction under the audit
/// lock: the tree grows and the outbox shrinks together.
fn move_batch(db: &Db, clock: &Clock) -> Result<u64> {
    write_batch(db, clock, &[], true).map(|w| w.moved)
}

fn move_in(conn: &mut DbConnection, now: i64) -> Result<u64> {
    let rows: Vec<(String, String)> = audit_outbox::table
        .order((audit_outbox::created_ms, audit_outbox::id))
        .limit(MAX_BATCH as i64)
        .select((audit_outbox::id, audit_outbox::entry))
        .load(conn)?;
    if rows.is_empty() {
        return Ok(0);
    }
    let entries: Vec<&str> = rows.iter().map(|(_, e)| e.as_str()).collect();
    append_in(conn, now, &entries)?;
    let ids: Vec<&str> = rows.iter().map(|(id, _)| id.as_str()).collect();
    for chunk in ids.chunks(500) {
        diesel::delete(audit_outbox::table.filter(audit_outbox::id.eq_any(chunk))).execute(conn)?;
    }
    Ok(rows.len() as u64)
}

/// Appends entries in one transaction, under the audit lock; returns the first index.
fn append_batch(db: &Db, clock: &Clock, entries: &[&str]) -> Result<u64> {
    let now = clock.now();
    db.tx(|conn| {
        lock_audit_log(conn)?;
        append_in(conn, now, entries)
    })
}

/// The `subject=` line of an entry's canonical text, `None` for `-` or none.
fn subject_of(entry: &str) -> Option<&str> {
    entry
        .split('\n')
        .find_map(|l| l.strip_prefix("subject="))
        .filter(|s| *s != "-")
}

/// Appends entries inside the caller's locked transaction; returns the first index.
fn append_in(conn: &mut DbConnection, now: i64, entries: &[&str]) -> Result<u64> {
    let size = AuditLog::size_in(conn)?;
    let mut cache: HashMap<i64, Hash> = HashMap::new();
    let mut new_nodes: Vec<(i64, String)> = Vec::new();
    for (j, entry) in entries.iter().enumerate() {
        let index = size + j as u64;
        let mut hash = merkle::leaf_hash(entry.as_bytes());
        let (mut level, mut idx) = (0u32, index);
        cache.insert(node_key(0, idx), hash);
        new_nodes.push((node_key(0, idx), hex(&hash)));
        // A right child completes its parent: hash upwards while we are a right child.
        while idx & 1 == 1 {
            let left = AuditLog::node(conn, &mut cache, level, idx - 1)?;
            hash = merkle::node_hash(&left, &hash);
            level += 1;
            idx >>= 1;
            cache.insert(node_key(level, idx), hash);
            new_nodes.push((node_key(level, idx), hex(&hash)));
        }
    }
    let rows: Vec<_> = entries
        .iter()
        .enumerate()
        .map(|(j, e)| {
            (
                audit_entries::idx.eq((size + j as u64) as i64),
                audit_entries::entry.eq(*e),
                audit_entries::created_at.eq(now),
                audit_entries::subject.eq(subject_of(e)),
            )
        })
        .collect();
    for chunk in rows.chunks(200) {
        on_each_backend!(&mut *conn, |c| diesel::insert_into(audit_entries::table)
            .values(chunk)
            .execute(c))?;
    }
    let nodes: Vec<_> = new_nodes
        .iter()
        .map(|(k, h)| (audit_nodes::node_key.eq(*k), audit_nodes::hash.eq(h)))
        .collect();
    for chunk in nodes.chunks(400) {
        on_each_backend!(&mut *conn, |c| diesel::insert_into(audit_nodes::table)
            .values(chunk)
            .execute(c))?;
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_is_one_to_one_and_safe() {
        assert_eq!(escape(None), "-");
        assert_eq!(escape(Some("-")), "%2D");
        assert_eq!(escape(Some("a-b")), "a-b");
        assert_eq!(escape(Some("a=b\nc")), "a%3Db%0Ac");
        assert_eq!(escape(Some("")), "%");
        let e = Entry {
            time_ms: 1,
            event: "login".into(),
            outcome: "success".into(),
            client: "-".into(),
            request: "r1".into(),
            subject: "abc".into(),
            source: "-".into(),
            detail: "pwd".into(),
        };
        assert_eq!(Entry::decode(&e.encode()), Some(e));
        assert_eq!(Entry::decode("identity-audit/v1\ntime=x\n"), None);
    }

    #[test]
    fn fields_read_back_as_given() {
        for v in ["", "-", "%", "a-b", "name#zh-Hant", "日本", "a b=c\n", "x*"] {
            assert_eq!(unescape(&escape(Some(v))).as_deref(), Some(v), "{v}");
        }
        assert_eq!(unescape(&escape(None)), None);
        let long = "y".repeat(201);
        assert_eq!(
            unescape(&escape(Some(&long))),
            Some(format!("{}…", "y".repeat(200)))
        );
        assert_eq!(unescape("%G1"), None);
        assert_eq!(unescape("%4"), None);
    }

    /// A value longer than the cap is cut and says so: it never reads as a value of exactly
    /// the kept length (docs/audit-log.md §9.1), and no escaped value ends in the mark.
    #[test]
    fn a_cut_value_is_marked() {
        let exact = "x".repeat(200);
        let longer = format!("{exact}y");
        assert_eq!(escape(Some(&exact)), exact);
        assert_ne!(escape(Some(&longer)), escape(Some(&exact)));
        assert!(escape(Some(&longer)).ends_with("%*"));
        for v in ["*", "%*", "a%*", "%", "%%*"] {
            assert!(!escape(Some(v)).ends_with("%*"), "{v}");
        }
    }

    #[test]
    fn perfect_ranges_cover_exactly() {
        let mut out = Vec::new();
        perfect_ranges(0, 7, &mut out);
        assert_eq!(out, vec![(2, 0), (1, 2), (0, 6)]);
    }
}
