//! The database: one connection type over SQLite and PostgreSQL, a pool, and migrations.
//!
//! SQLite is the embedded default (a file in the data directory, WAL mode, a busy timeout);
//! a `postgres://` URL selects PostgreSQL. Only SQL common to both is used, so the rest of
//! the core never asks which backend it is on. Where a backend needs its own SQL, the match
//! on [`DbConnection`] is in this module.
//!
//! Lookups by a key use `get_result`, not `first`. `first` adds `LIMIT ?` with a bound 1,
//! and SQLite (3.50) notes that bound limit as a value its plan may depend on: every new
//! binding expires the cached statement, so each lookup was compiled again (16 % of a
//! token grant's CPU). A key matches at most one row, so the limit was never needed.

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::r2d2::{CustomizeConnection, ManageConnection, Pool, PooledConnection, R2D2Connection};
use diesel::{Connection, PgConnection, SqliteConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use std::time::Duration;

use crate::error::{Error, Result};

/// Migrations of each backend, compiled into the binary.
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/postgres");

/// A connection to either backend.
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    /// PostgreSQL, for several replicas.
    Postgres(PgConnection),
    /// Embedded SQLite, the single-machine default.
    Sqlite(SqliteConnection),
}

/// The pooled connection handed to storage functions.
pub type Conn = PooledConnection<Manager>;

/// Which backend a URL selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// `postgres://` or `postgresql://`.
    Postgres,
    /// Anything else is a SQLite file path (or `sqlite://path`).
    Sqlite,
}

impl Backend {
    /// The backend a database URL names.
    pub fn of(url: &str) -> Self {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }
}

/// Sets per-connection options that SQLite does not persist.
#[derive(Debug)]
struct SqlitePragmas;

impl CustomizeConnection<DbConnection, diesel::r2d2::Error> for SqlitePragmas {
    fn on_acquire(&self, conn: &mut DbConnection) -> std::result::Result<(), diesel::r2d2::Error> {
        if let DbConnection::Sqlite(c) = conn {
            // WAL lets readers proceed while one writer commits; FULL syncs the WAL at every
            // commit, so what was acknowledged (an audit entry above all) survives a power
            // cut, not only a crash; the busy timeout makes a second writer wait instead of
            // failing at once; foreign keys are off by default.
            c.batch_execute(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                 PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;",
            )
            .map_err(diesel::r2d2::Error::QueryError)?;
        }
        Ok(())
    }
}

/// Opens connections as the backend the URL names. diesel's generic manager would try each
/// backend in turn, and SQLite accepts any string as a file name, so a PostgreSQL URL with
/// the server down could silently become a stray SQLite file.
#[derive(Debug)]
pub struct Manager {
    url: String,
}

impl ManageConnection for Manager {
    type Connection = DbConnection;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> std::result::Result<DbConnection, diesel::r2d2::Error> {
        match Backend::of(&self.url) {
            Backend::Postgres => PgConnection::establish(&self.url).map(DbConnection::Postgres),
            Backend::Sqlite => {
                SqliteConnection::establish(sqlite_path(&self.url)).map(DbConnection::Sqlite)
            }
        }
        .map_err(diesel::r2d2::Error::ConnectionError)
    }

    fn is_valid(&self, conn: &mut DbConnection) -> std::result::Result<(), diesel::r2d2::Error> {
        conn.ping().map_err(diesel::r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        conn.is_broken()
    }
}

/// The pool of database connections, cheap to clone.
#[derive(Clone)]
pub struct Db {
    pool: Pool<Manager>,
    backend: Backend,
    outage: std::sync::Arc<Outage>,
}

/// Whether the database is known to be unreachable. While it is, callers get
/// [`Error::Unavailable`] at once instead of each waiting out the pool's timeout (a flood
/// of requests would otherwise pile up for seconds each); one caller at a time probes for
/// its return, so the service recovers by itself as soon as the database answers.
#[derive(Debug, Default)]
struct Outage {
    down: std::sync::atomic::AtomicBool,
    probing: std::sync::atomic::AtomicBool,
    /// Milliseconds since the Unix epoch before which no new probe starts.
    next_probe_ms: std::sync::atomic::AtomicU64,
}

/// How long a probe waits for a connection, and how long between failed probes.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
const PROBE_INTERVAL_MS: u64 = 250;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Outage {
    fn is_down(&self) -> bool {
        self.down.load(std::sync::atomic::Ordering::Acquire)
    }

    fn trip(&self) {
        use std::sync::atomic::Ordering;
        if !self.down.swap(true, Ordering::AcqRel) {
            tracing::warn!("database unreachable: answering 503 until it returns");
        }
        self.next_probe_ms
            .store(now_ms() + PROBE_INTERVAL_MS, Ordering::Release);
    }

    /// Claims the one probe, if none is running and the interval has passed.
    fn claim_probe(&self) -> bool {
        use std::sync::atomic::Ordering;
        now_ms() >= self.next_probe_ms.load(Ordering::Acquire)
            && self
                .probing
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }

    fn probed(&self, ok: bool) {
        use std::sync::atomic::Ordering;
        if ok {
            self.down.store(false, Ordering::Release);
            tracing::warn!("database reachable again");
        } else {
            self.next_probe_ms
                .store(now_ms() + PROBE_INTERVAL_MS, Ordering::Release);
        }
        self.probing.store(false, Ordering::Release);
    }
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("backend", &self.backend)
            .finish()
    }
}

fn sqlite_path(url: &str) -> &str {
    url.strip_prefix("sqlite://").unwrap_or(url)
}

impl Db {
    /// Opens a pool of `size` connections. For SQLite the URL is a file path.
    pub fn open(url: &str, size: u32) -> Result<Self> {
        let backend = Backend::of(url);
        let manager = Manager {
            url: url.to_owned(),
        };
        let pool = Pool::builder()
            .max_size(size)
            // No connection is opened in the background to keep an idle one ready: a
            // command that exits while the pool's thread is inside libpq's connect (its
            // Kerberos setup above all) crashed at exit (12 of 150 `client list` runs).
            // Connections still stay pooled after use until their idle timeout.
            .min_idle(Some(0))
            // Also the time allowed to open a connection: under a load spike PostgreSQL can
            // take seconds to accept one (2 s made a CI run fail). An outage does not wait
            // this long per request: see `Outage`.
            .connection_timeout(Duration::from_secs(5))
            .connection_customizer(Box::new(SqlitePragmas))
            // A PostgreSQL connection can be dead in the pool (the server restarted), so it
            // is pinged before use. A SQLite connection is an open file and cannot be; the
            // ping was a statement on every checkout for nothing.
            .test_on_check_out(backend == Backend::Postgres)
            .build(manager)
            .map_err(|e| Error::Unavailable(e.to_string()))?;
        Ok(Db {
            pool,
            backend,
            outage: Default::default(),
        })
    }

    /// Whether the database is currently known to be unreachable (for `/readyz` and the
    /// metrics).
    pub fn is_down(&self) -> bool {
        self.outage.is_down()
    }

    /// Connections the pool holds, and how many of them are idle.
    pub fn pool_state(&self) -> (u32, u32) {
        let s = self.pool.state();
        (s.connections, s.idle_connections)
    }

    /// Which backend this pool talks to.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A connection from the pool. Blocking: call from a blocking thread.
    ///
    /// When the pool cannot connect and holds no live connection, the database counts as
    /// down (see [`Outage`]); a pool merely busy under load does not trip it.
    pub fn conn(&self) -> Result<Conn> {
        if self.outage.is_down() {
            if !self.outage.claim_probe() {
                return Err(Error::Unavailable("the database is unreachable".into()));
            }
            let got = self.pool.get_timeout(PROBE_TIMEOUT);
            self.outage.probed(got.is_ok());
            return Ok(got?);
        }
        match self.pool.get() {
            Ok(c) => Ok(c),
            Err(e) => {
                if self.pool.state().connections == 0 {
                    self.outage.trip();
                }
                Err(e.into())
            }
        }
    }

    /// Runs `f` on a connection and notes a connection lost mid-statement (the database
    /// restarted or went away) as an outage.
    fn on_conn<T>(&self, f: impl FnOnce(&mut Conn) -> Result<T>) -> Result<T> {
        let mut conn = self.conn()?;
        let r = f(&mut conn);
        // A lost connection is told from a refused statement by asking the database again,
        // and one connection ended (an idle timeout, an administrator) from the database
        // gone by asking for another: only then does the whole service answer 503.
        if matches!(r, Err(Error::Unavailable(_))) && R2D2Connection::ping(&mut *conn).is_err() {
            drop(conn);
            if self.pool.get_timeout(PROBE_TIMEOUT).is_err() {
                self.outage.trip();
            }
        }
        r
    }

    /// Applies every pending migration of this backend; returns how many ran.
    pub fn migrate(&self) -> Result<usize> {
        let mut conn = self.conn()?;
        let ran = match &mut *conn {
            DbConnection::Postgres(c) => c
                .run_pending_migrations(POSTGRES_MIGRATIONS)
                .map_err(|e| Error::Internal(format!("migration failed: {e}")))?
                .len(),
            DbConnection::Sqlite(c) => c
                .run_pending_migrations(SQLITE_MIGRATIONS)
                .map_err(|e| Error::Internal(format!("migration failed: {e}")))?
                .len(),
        };
        Ok(ran)
    }

    /// Runs `f` in one transaction on a pooled connection.
    ///
    /// On SQLite the transaction begins with `BEGIN IMMEDIATE`: a deferred transaction that
    /// reads and then writes fails with `SQLITE_BUSY_SNAPSHOT` (not covered by the busy
    /// timeout) when another connection committed in between; taking the write lock up
    /// front makes writers wait their turn instead. Nested transactions inside `f` become
    /// savepoints on both backends.
    pub fn tx<T>(&self, f: impl FnOnce(&mut DbConnection) -> Result<T>) -> Result<T> {
        self.on_conn(|conn| Self::tx_on(conn, f))
    }

    fn tx_on<T>(conn: &mut Conn, f: impl FnOnce(&mut DbConnection) -> Result<T>) -> Result<T> {
        if !matches!(&**conn, DbConnection::Sqlite(_)) {
            return Connection::transaction(&mut **conn, f);
        }
        let conn: &mut DbConnection = conn;
        on_sqlite(conn, |c| {
            AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")
        })?;
        match f(conn) {
            Ok(v) => {
                on_sqlite(conn, AnsiTransactionManager::commit_transaction)?;
                Ok(v)
            }
            Err(e) => {
                if let Err(rb) = on_sqlite(conn, AnsiTransactionManager::rollback_transaction) {
                    tracing::error!(error = %rb, "rollback failed");
                }
                Err(e)
            }
        }
    }

    /// Whether the database answers and has no pending migration (for `/readyz`).
    pub fn ready(&self) -> Result<()> {
        let mut conn = self.conn()?;
        let pending = match &mut *conn {
            DbConnection::Postgres(c) => c.has_pending_migration(POSTGRES_MIGRATIONS),
            DbConnection::Sqlite(c) => c.has_pending_migration(SQLITE_MIGRATIONS),
        }
        .map_err(|e| Error::Unavailable(e.to_string()))?;
        if pending {
            return Err(Error::Unavailable("migrations are pending".into()));
        }
        Ok(())
    }

    /// Runs `f` on a pooled connection without a transaction.
    pub fn with<T>(&self, f: impl FnOnce(&mut DbConnection) -> Result<T>) -> Result<T> {
        self.on_conn(|conn| f(conn))
    }
}

/// Serializes audit-log appends across every process sharing the database, for the rest
/// of the current transaction. SQLite needs nothing: `Db::tx` already holds its one write
/// lock. PostgreSQL takes a transaction-scoped advisory lock.
pub fn lock_audit_log(conn: &mut DbConnection) -> Result<()> {
    if let DbConnection::Postgres(c) = conn {
        // An arbitrary constant that names "the audit log" among advisory locks.
        // READ COMMITTED explicitly: the reads after the lock must see what the previous
        // holder committed, whatever the server's default isolation level.
        c.batch_execute(
            "SET TRANSACTION ISOLATION LEVEL READ COMMITTED; SELECT pg_advisory_xact_lock(7262017426)",
        )?;
    }
    Ok(())
}

/// The generation of the client registrations: a stamp that triggers replace with a random
/// value in every transaction that adds, changes or removes a client, whichever process runs
/// it (migration `clients_generation`). Random rather than counted, so that a database
/// restored from a backup cannot bring back a value a process remembers with other clients
/// behind it. A copy of a client read after stamp `g` is exact in any later transaction that
/// still reads `g`. `None` if the row is missing (a damaged database): nothing is then
/// remembered, and every grant reads the database.
pub fn clients_generation(conn: &mut DbConnection) -> Result<Option<i64>> {
    use crate::schema::clients_generation as g;
    use diesel::prelude::*;
    // get_result, not first: a bound LIMIT makes SQLite compile the statement every time.
    Ok(g::table
        .find(1)
        .select(g::generation)
        .get_result(conn)
        .optional()?)
}

/// [`clients_generation`] for a transaction whose commit must not come after a change to the
/// clients that it did not see. On PostgreSQL the row is locked `FOR SHARE` until the
/// transaction ends: a change begun before waits for it, and one already written but not yet
/// committed is waited for and then read. SQLite's transactions hold its one write lock,
/// so no change can come in between anyway.
pub fn clients_generation_held(conn: &mut DbConnection) -> Result<Option<i64>> {
    use crate::schema::clients_generation as g;
    use diesel::prelude::*;
    match conn {
        DbConnection::Postgres(c) => Ok(g::table
            .find(1)
            .select(g::generation)
            .for_share()
            .get_result(c)
            .optional()?),
        DbConnection::Sqlite(_) => clients_generation(conn),
    }
}

/// Whether audit events staged in a transaction go into the tree inside that transaction.
/// On SQLite it already holds the database's one write lock, which is also the audit lock,
/// so appending there serializes nothing more and spares the writer a transaction and a
/// flush to disk per event. On PostgreSQL that lock would serialize every audited
/// transaction of every replica, so the events wait in the outbox for the writer's group
/// commit instead.
pub fn audit_appends_in_transaction(conn: &DbConnection) -> bool {
    matches!(conn, DbConnection::Sqlite(_))
}

/// Runs the same diesel expression on whichever connection `conn` holds, for the few
/// statements diesel cannot build for `MultiConnection` (multi-row inserts).
macro_rules! on_each_backend {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::storage::DbConnection::Postgres($c) => $body,
            $crate::storage::DbConnection::Sqlite($c) => $body,
        }
    };
}
pub(crate) use on_each_backend;

/// Runs a step on the SQLite connection inside `conn`; nothing on PostgreSQL.
fn on_sqlite(
    conn: &mut DbConnection,
    step: impl FnOnce(&mut SqliteConnection) -> diesel::QueryResult<()>,
) -> diesel::QueryResult<()> {
    match conn {
        DbConnection::Sqlite(c) => step(c),
        DbConnection::Postgres(_) => Ok(()),
    }
}

/// Helpers for tests on both backends.
pub mod testing {
    use super::*;

    /// The PostgreSQL server the tests use.
    pub const POSTGRES_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

    /// Creates a fresh, empty PostgreSQL database and returns its URL.
    pub fn fresh_postgres_url() -> String {
        let base = std::env::var("IDENTITY_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| POSTGRES_ADMIN_URL.to_owned());
        let mut admin = PgConnection::establish(&base)
            .expect("PostgreSQL must be reachable at 127.0.0.1:5432 for this test");
        let name = format!(
            "identity_test_{}",
            crate::crypto::random_id()
                .to_ascii_lowercase()
                .replace(['-', '_'], "x")
        );
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create test database");
        let (prefix, _) = base.rsplit_once('/').expect("database URL has a path");
        format!("{prefix}/{name}")
    }

    /// A migrated pool on a fresh database of the given backend; keep the guard alive.
    pub fn fresh_db(backend: Backend) -> (Db, Option<tempfile_guard::Dir>) {
        match backend {
            Backend::Postgres => {
                let db = Db::open(&fresh_postgres_url(), 4).expect("open postgres");
                db.migrate().expect("migrate");
                (db, None)
            }
            Backend::Sqlite => {
                let dir = tempfile_guard::Dir::new();
                let db = Db::open(&dir.path().join("test.db").to_string_lossy(), 4)
                    .expect("open sqlite");
                db.migrate().expect("migrate");
                (db, Some(dir))
            }
        }
    }

    /// A temporary directory removed on drop, without a dependency for it.
    pub mod tempfile_guard {
        use std::path::{Path, PathBuf};

        /// The directory; removed when dropped.
        #[derive(Debug)]
        pub struct Dir(PathBuf);

        impl Dir {
            /// A new empty directory under the system's temporary directory.
            #[allow(clippy::new_without_default)]
            pub fn new() -> Self {
                let p = std::env::temp_dir().join(format!(
                    "identity-test-{}",
                    crate::crypto::random_id().replace(['-', '_'], "x")
                ));
                std::fs::create_dir_all(&p).expect("create temp dir");
                Dir(p)
            }

            /// Its path.
            pub fn path(&self) -> &Path {
                &self.0
            }
        }

        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditLog;
    use crate::crypto::Kek;
    use crate::Clock;
    use diesel::prelude::*;
    use diesel::sql_types::BigInt;

    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }

    /// Indexes SQLite keeps beside the two audit tree tables.
    fn tree_indexes(db: &Db) -> i64 {
        db.with(|c| {
            Ok(diesel::sql_query(
                // The key indexes only (automatic ones), not the subject lookup's index.
                "SELECT count(*) AS n FROM sqlite_master WHERE type = 'index' \
                 AND name LIKE 'sqlite_autoindex%' \
                 AND tbl_name IN ('audit_entries', 'audit_nodes')",
            )
            .get_result::<Count>(c)?
            .n)
        })
        .unwrap()
    }

    /// The migration that rekeys the SQLite audit tables by row id keeps every entry and
    /// node, and the tree grows on from where it was; reverting it keeps them too.
    #[test]
    fn sqlite_audit_tables_keep_their_rows_across_the_row_id_migration() {
        let (db, _dir) = testing::fresh_db(Backend::Sqlite);
        assert_eq!(tree_indexes(&db), 0, "keyed by row id after all migrations");
        let sqlite = |f: &mut dyn FnMut(&mut SqliteConnection)| {
            let mut conn = db.conn().unwrap();
            match &mut *conn {
                DbConnection::Sqlite(c) => f(c),
                DbConnection::Postgres(_) => unreachable!("a SQLite test database"),
            }
        };
        // Back to just before it, reverting the later ones first.
        let revert_to_before_rowid = |c: &mut SqliteConnection| {
            let mut reverted = 0;
            while !c
                .revert_last_migration(SQLITE_MIGRATIONS)
                .unwrap()
                .to_string()
                .ends_with("000012")
            {
                reverted += 1;
            }
            reverted + 1
        };
        let mut reverted = 0;
        sqlite(&mut |c| reverted = revert_to_before_rowid(c));
        assert_eq!(tree_indexes(&db), 2, "a key index per table before it");
        // Today's writer fills the later `subject` column; the old table gets it for this
        // test's appends (the row-id migration copies the first three columns, and the
        // subject migration derives the fourth again from the entries).
        sqlite(&mut |c| {
            c.batch_execute("ALTER TABLE audit_entries ADD COLUMN subject TEXT")
                .unwrap()
        });

        let kek = Kek::generate();
        let log = AuditLog::open(db.clone(), &kek, Clock::system(), "test/audit").unwrap();
        let entries: Vec<String> = (0..37).map(|i| format!("entry {i}\n")).collect();
        let refs: Vec<&str> = entries.iter().map(String::as_str).collect();
        log.append_batch(&refs[..20]).unwrap();
        log.append_batch(&refs[20..]).unwrap();
        let root = log.root(37).unwrap();
        // (index or node key, text) of every entry and every node.
        type Rows = Vec<(i64, String)>;
        let snapshot = |db: &Db| -> (Rows, Rows) {
            db.with(|c| {
                Ok((
                    crate::schema::audit_entries::table
                        .select((
                            crate::schema::audit_entries::idx,
                            crate::schema::audit_entries::entry,
                        ))
                        .order(crate::schema::audit_entries::idx)
                        .load(c)?,
                    crate::schema::audit_nodes::table
                        .order(crate::schema::audit_nodes::node_key)
                        .load(c)?,
                ))
            })
            .unwrap()
        };
        let before = snapshot(&db);
        assert_eq!(before.0.len(), 37);

        assert_eq!(db.migrate().unwrap(), reverted);
        assert_eq!(tree_indexes(&db), 0);
        assert_eq!(snapshot(&db), before);
        assert_eq!(log.root(37).unwrap(), root);
        assert_eq!(log.append_batch(&["entry 37\n"]).unwrap(), 37);
        assert_eq!(log.size().unwrap(), 38);

        let grown = snapshot(&db);
        sqlite(&mut |c| {
            revert_to_before_rowid(c);
        });
        assert_eq!(snapshot(&db), grown);
    }
}
