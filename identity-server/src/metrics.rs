//! Prometheus metrics at `/metrics`: requests and latency by route and status, logins by
//! method and outcome, and, read at each scrape, the hashing pool, the database pool and
//! the audit log (its size and the age of its newest signed checkpoint).
//!
//! Routes are labelled by their pattern (`/interaction/{id}`), never by the path, so a
//! caller cannot grow the number of series.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use identity_core::Provider;

/// The last value of a running total kept elsewhere (in the core), so that a Prometheus
/// counter can be moved on by the difference at each scrape, however many scrapes overlap.
#[derive(Default)]
struct Seen(std::sync::atomic::AtomicU64);

impl Seen {
    /// How far `total` has moved since the last call, remembering `total`.
    fn since(&self, total: u64) -> u64 {
        total.saturating_sub(self.0.swap(total, std::sync::atomic::Ordering::Relaxed))
    }
}

/// Every metric, registered once.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    logins: IntCounterVec,
    hashing: IntGauge,
    hashing_cpu: prometheus::Counter,
    /// What `hashing_cpu` last counted up to, in nanoseconds.
    hashing_cpu_seen: Seen,
    db_pool: IntGaugeVec,
    audit_size: IntGauge,
    audit_appends: prometheus::IntCounter,
    /// What `audit_appends` last counted up to.
    audit_appends_seen: Seen,
    audit_failures: prometheus::IntCounter,
    /// What `audit_failures` last counted up to.
    audit_failures_seen: Seen,
    audit_unappendable: IntGauge,
    checkpoint_age: IntGauge,
    grants_from_memory: prometheus::IntCounter,
    /// What `grants_from_memory` last counted up to.
    grants_from_memory_seen: Seen,
}

impl Metrics {
    /// Registers the metrics.
    pub fn new() -> Result<Self, String> {
        let e = |e: prometheus::Error| e.to_string();
        let registry = Registry::new_custom(Some("identity".into()), None).map_err(e)?;
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by route, method and status",
            ),
            &["route", "method", "status"],
        )
        .map_err(e)?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by route",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["route"],
        )
        .map_err(e)?;
        let logins = IntCounterVec::new(
            Opts::new("logins_total", "Logins by method and outcome"),
            &["method", "outcome"],
        )
        .map_err(e)?;
        let hashing = IntGauge::new(
            "hashing_pool_in_use",
            "Password hashing slots taken (running and queued)",
        )
        .map_err(e)?;
        let hashing_cpu = prometheus::Counter::new(
            "hashing_cpu_seconds_total",
            "CPU seconds the password hashing threads spent hashing",
        )
        .map_err(e)?;
        let db_pool = IntGaugeVec::new(
            Opts::new("db_pool_connections", "Database pool connections by state"),
            &["state"],
        )
        .map_err(e)?;
        let audit_size =
            IntGauge::new("audit_log_entries", "Entries in the audit log's tree").map_err(e)?;
        let audit_appends = prometheus::IntCounter::new(
            "audit_appends_total",
            "Entries this process appended to the audit log",
        )
        .map_err(e)?;
        let audit_failures = prometheus::IntCounter::new(
            "audit_append_failures_total",
            "Commits of this process's audit writer that failed",
        )
        .map_err(e)?;
        let audit_unappendable = IntGauge::new(
            "audit_unappendable",
            "1 while the audit log cannot be appended to (every audited action is refused)",
        )
        .map_err(e)?;
        let checkpoint_age = IntGauge::new(
            "audit_checkpoint_age_seconds",
            "Seconds since the newest signed audit checkpoint (-1: none yet)",
        )
        .map_err(e)?;
        let grants_from_memory = prometheus::IntCounter::new(
            "token_grants_from_memory_total",
            "client_credentials grants answered from this process's copy of the client",
        )
        .map_err(e)?;
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(logins.clone()),
            Box::new(hashing.clone()),
            Box::new(hashing_cpu.clone()),
            Box::new(db_pool.clone()),
            Box::new(audit_size.clone()),
            Box::new(audit_appends.clone()),
            Box::new(audit_failures.clone()),
            Box::new(audit_unappendable.clone()),
            Box::new(checkpoint_age.clone()),
            Box::new(grants_from_memory.clone()),
        ] {
            registry.register(c).map_err(e)?;
        }
        Ok(Metrics {
            registry,
            requests,
            latency,
            logins,
            hashing,
            hashing_cpu,
            hashing_cpu_seen: Default::default(),
            db_pool,
            audit_size,
            audit_appends,
            audit_appends_seen: Default::default(),
            audit_failures,
            audit_failures_seen: Default::default(),
            audit_unappendable,
            checkpoint_age,
            grants_from_memory,
            grants_from_memory_seen: Default::default(),
        })
    }

    /// Counts a finished request.
    pub fn request(&self, route: &str, method: &str, status: u16, seconds: f64) {
        self.requests
            .with_label_values(&[route, method, &status.to_string()])
            .inc();
        self.latency.with_label_values(&[route]).observe(seconds);
    }

    /// Counts a login attempt: `password` or `passkey`, `success` or `failure`.
    pub fn login(&self, method: &str, ok: bool) {
        self.logins
            .with_label_values(&[method, if ok { "success" } else { "failure" }])
            .inc();
    }
}

impl Metrics {
    /// The metrics in Prometheus' text format, the gauges read from `provider` now. It
    /// reads the database and the log: call it on a blocking thread.
    pub fn render(&self, provider: &Provider) -> Result<Vec<u8>, identity_core::Error> {
        let m = self;
        m.hashing.set(provider.hasher().in_use() as i64);
        let spent = (provider.hasher().cpu_seconds() * 1e9) as u64;
        m.hashing_cpu
            .inc_by(m.hashing_cpu_seen.since(spent) as f64 / 1e9);
        let (connections, idle) = provider.db_pool_state();
        m.db_pool
            .with_label_values(&["open"])
            .set(i64::from(connections));
        m.db_pool.with_label_values(&["idle"]).set(i64::from(idle));
        m.audit_size.set(provider.audit().size()? as i64);
        m.audit_appends
            .inc_by(m.audit_appends_seen.since(provider.audit().appended()));
        m.audit_failures.inc_by(
            m.audit_failures_seen
                .since(provider.audit().append_failures()),
        );
        m.audit_unappendable
            .set(i64::from(provider.unready_reason().is_some()));
        let age = provider
            .audit()
            .latest_checkpoint_time()?
            .map_or(-1, |t| provider.clock().now() - t);
        m.checkpoint_age.set(age);
        m.grants_from_memory.inc_by(
            m.grants_from_memory_seen
                .since(provider.grants_from_memory()),
        );
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&m.registry.gather(), &mut out)
            .map_err(identity_core::Error::internal)?;
        Ok(out)
    }
}
