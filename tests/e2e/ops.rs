//! What operators rely on: Prometheus metrics, readiness through a database outage and
//! the recovery after it, and a graceful shutdown.

use identity_core::storage::Backend;

use crate::util::*;

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_requests_logins_and_read_the_pools_and_the_log() {
    let server = Server::start(Backend::Sqlite, &[]).await;
    let (verifier, challenge) = pkce();
    let back = login_and_consent(
        &server,
        &browser(),
        &auth_url(&server, &challenge, &[]),
        USERNAME,
        PASSWORD,
    )
    .await;
    exchange(&server, &query(&back, "code").unwrap(), &verifier).await;
    let (_, challenge) = pkce();
    let b = browser();
    let (html, act) = open_login(&server, &b, &auth_url(&server, &challenge, &[])).await;
    post_login(&server, &b, &html, &act, USERNAME, "wrong-password").await;
    // Two different unknown paths must not make two series.
    for p in ["/no-such-page-1", "/no-such-page-2"] {
        http().get(server.url(p)).send().await.unwrap();
    }
    // Not on the public listener: on metrics_listen only.
    let public = http().get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(public.status(), 404, "metrics must not be public");
    let text = http()
        .get(&server.metrics)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |needle: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(needle))
            .unwrap_or_else(|| panic!("{needle} missing in:\n{text}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(
        value("identity_logins_total{method=\"password\",outcome=\"success\"}"),
        1.0
    );
    assert_eq!(
        value("identity_logins_total{method=\"password\",outcome=\"failure\"}"),
        1.0
    );
    assert!(
        value("identity_http_requests_total{method=\"POST\",route=\"/token\",status=\"200\"}")
            >= 1.0
    );
    assert!(
        text.contains("route=\"/interaction/{id}\""),
        "routes by pattern"
    );
    assert!(
        !text.contains("no-such-page"),
        "unknown paths are one series"
    );
    assert!(text.contains("identity_http_request_duration_seconds_bucket"));
    assert!(value("identity_db_pool_connections{state=\"open\"}") >= 1.0);
    assert!(value("identity_hashing_pool_in_use") >= 0.0);
    // Two password checks ran (about 30 ms of CPU each): the hashing threads' CPU shows.
    assert!(
        value("identity_hashing_cpu_seconds_total") > 0.01,
        "hashing CPU is accounted"
    );
    assert!(
        value("identity_audit_log_entries") >= 1.0,
        "logins and grants are audited"
    );
    assert!(value("identity_audit_checkpoint_age_seconds") >= -1.0);
    assert!(
        value("identity_audit_appends_total") >= 1.0,
        "this process appended the grants' and logins' entries"
    );
}

/// A TCP proxy in front of PostgreSQL that the test can cut (every connection closed, new
/// ones refused) and restore on the same port: the database "going away" without touching
/// the machine's PostgreSQL, which other tests share.
struct Proxy {
    port: u16,
    upstream: std::net::SocketAddr,
    live: Option<(
        std::sync::Arc<std::sync::atomic::AtomicBool>,
        std::thread::JoinHandle<()>,
    )>,
    streams: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl Proxy {
    fn start(upstream: std::net::SocketAddr) -> Proxy {
        let mut p = Proxy {
            port: free_port(),
            upstream,
            live: None,
            streams: Default::default(),
        };
        p.restore();
        p
    }

    fn restore(&mut self) {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = std::net::TcpListener::bind(("127.0.0.1", self.port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let (halt, upstream, streams) = (stop.clone(), self.upstream, self.streams.clone());
        let handle = std::thread::spawn(move || {
            while !halt.load(Ordering::Relaxed) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    continue;
                };
                let Ok(server) = std::net::TcpStream::connect(upstream) else {
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let pipe = |mut from: std::net::TcpStream, mut to: std::net::TcpStream| {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                };
                let mut held = streams.lock().unwrap();
                held.push(client.try_clone().unwrap());
                held.push(server.try_clone().unwrap());
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                pipe(server, client);
            }
        });
        self.live = Some((stop, handle));
    }

    fn cut(&mut self) {
        if let Some((stop, handle)) = self.live.take() {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            handle.join().unwrap();
        }
        for s in self.streams.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
    }
}

/// The database goes away under a running server: requests get 503 with `Retry-After`
/// (JSON, never a 500), quickly once the outage is known rather than each waiting out the
/// pool's timeout; liveness stays up and readiness goes down; when the database returns,
/// the same process serves again by itself.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PostgreSQL at 127.0.0.1:5432; .ci/run runs it with --include-ignored"]
async fn database_outage_gives_503s_and_the_server_recovers_by_itself() {
    use std::time::{Duration, Instant};
    let direct = url::Url::parse(&identity_core::storage::testing::fresh_postgres_url()).unwrap();
    let upstream = (direct.host_str().unwrap(), direct.port().unwrap_or(5432));
    let upstream = std::net::ToSocketAddrs::to_socket_addrs(&upstream)
        .unwrap()
        .next()
        .unwrap();
    let mut proxy = Proxy::start(upstream);
    let mut via = direct.clone();
    via.set_host(Some("127.0.0.1")).unwrap();
    via.set_port(Some(proxy.port)).unwrap();
    let mut server = Server::start_with_database(via.as_str(), &[]).await;
    let pid = server.pid();
    let grant = || {
        http()
            .post(server.url("/token"))
            .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
            .form(&[("grant_type", "client_credentials")])
            .send()
    };
    assert_eq!(grant().await.unwrap().status(), 200);

    proxy.cut();
    let mut took = Vec::new();
    for _ in 0..21 {
        let started = Instant::now();
        let r = grant().await.unwrap();
        took.push(started.elapsed());
        assert_eq!(r.status(), 503);
        assert!(r.headers().contains_key("retry-after"));
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"], "temporarily_unavailable");
    }
    let r = http().get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503, "not ready without its database");
    let r = http().get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(
        r.status(),
        200,
        "alive: an orchestrator must not restart it"
    );
    // Not a timing benchmark: the pool's timeout is 5 s, so a median far below it shows
    // the requests were refused at once instead of each waiting for a connection.
    took.sort();
    assert!(took[10] < Duration::from_secs(1), "{took:?}");

    proxy.restore();
    let back = Instant::now();
    let mut recovered = false;
    while back.elapsed() < Duration::from_secs(30) {
        if grant().await.unwrap().status() == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "serves again once the database is back");
    assert!(server.running() && server.pid() == pid, "without a restart");
    let r = http().get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    println!("recovered {:?} after the database returned", back.elapsed());
}

/// SIGTERM while a request is being received: the server stops accepting new connections
/// but finishes the request in flight, then exits cleanly.
#[tokio::test(flavor = "multi_thread")]
async fn graceful_shutdown_finishes_requests_in_flight() {
    use std::io::{Read, Write};
    let mut server = Server::start(Backend::Sqlite, &[]).await;
    let addr = server.base.trim_start_matches("http://").to_owned();
    let body = "grant_type=client_credentials";
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    // The headers and half the body, then the signal, then the rest.
    write!(
        stream,
        "POST /token HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Basic ZGVtby1lc2VydmljZTpkZW1vLWVzZXJ2aWNlLXNlY3JldA==\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        body.len(),
        &body[..10]
    )
    .unwrap();
    stream.flush().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    server.signal_term();
    std::thread::sleep(std::time::Duration::from_millis(500));
    // Stopped accepting: a new connection is refused (or closed without an answer).
    let refused = match std::net::TcpStream::connect(&addr) {
        Err(_) => true,
        Ok(mut s) => {
            let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
            let mut buf = Vec::new();
            let _ = s.read_to_end(&mut buf);
            buf.is_empty()
        }
    };
    assert!(refused, "no new requests after SIGTERM");
    stream.write_all(&body.as_bytes()[10..]).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("access_token"));
    let status = server.wait_exit();
    assert!(status.success(), "clean exit: {status}");
}

/// Behind a load balancer every citizen arrives from its address: the per-address throttle
/// counts the address the trusted proxy reports, and a client cannot choose it by sending
/// its own `X-Forwarded-For`. Without a trusted proxy the header changes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn per_address_throttle_behind_a_trusted_proxy() {
    let behind = Server::start(
        Backend::Sqlite,
        &[
            ("IDENTITY_TRUSTED_PROXIES", "127.0.0.1"),
            ("IDENTITY_PER_ADDRESS_LIMIT", "3"),
        ],
    )
    .await;
    let direct = Server::start(Backend::Sqlite, &[("IDENTITY_PER_ADDRESS_LIMIT", "3")]).await;
    // One failed login by an unknown user (so no account is throttled), as the proxy
    // forwards it with this X-Forwarded-For.
    async fn attempt(server: &Server, user: &str, forwarded: &str) -> u16 {
        attempt_with(server, user, ("X-Forwarded-For", forwarded)).await
    }
    async fn attempt_with(server: &Server, user: &str, header: (&str, &str)) -> u16 {
        let (_, challenge) = pkce();
        let b = browser();
        let (html, act) = open_login(server, &b, &auth_url(server, &challenge, &[])).await;
        b.post(server.url(&act))
            .header(header.0, header.1)
            .form(&[
                ("csrf", hidden(&html, "csrf").as_str()),
                ("username", user),
                ("password", "not-the-password"),
            ])
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
    // The limit's three failures from one address, each by another unknown user.
    async fn spend(server: &Server, users: &str, header: (&str, &str)) {
        for i in 0..3 {
            let status = attempt_with(server, &format!("{users}{i}"), header).await;
            assert_eq!(status, 401);
        }
    }
    spend(&behind, "nobody", ("X-Forwarded-For", "198.51.100.7")).await;
    assert_eq!(
        attempt(&behind, "nobody3", "198.51.100.7").await,
        429,
        "that citizen's address is spent"
    );
    assert_eq!(
        attempt(&behind, "nobody4", "198.51.100.8").await,
        401,
        "another citizen behind the same proxy is not"
    );
    assert_eq!(
        attempt(&behind, "nobody5", "198.51.100.8, 198.51.100.7").await,
        429,
        "a forged entry to the left does not change the address the proxy appended"
    );

    // IPv6 counts per /64, the block one subscriber is given.
    spend(&behind, "v6-nobody", ("X-Forwarded-For", "2001:db8::1")).await;
    assert_eq!(
        attempt(&behind, "v6-nobody3", "2001:db8::2").await,
        429,
        "another address of the same /64"
    );
    assert_eq!(
        attempt(&behind, "v6-nobody4", "2001:db8:0:1::1").await,
        401,
        "the next /64 is someone else"
    );

    spend(&direct, "nobody", ("X-Forwarded-For", "198.51.100.7")).await;
    assert_eq!(
        attempt(&direct, "nobody3", "198.51.100.8").await,
        429,
        "without a trusted proxy the header is ignored: the peer is counted"
    );

    // A proxy that writes RFC 7239 Forwarded instead: that header, and only that one.
    let rfc7239 = Server::start(
        Backend::Sqlite,
        &[
            ("IDENTITY_TRUSTED_PROXIES", "127.0.0.1"),
            ("IDENTITY_FORWARDED_HEADER", "forwarded"),
            ("IDENTITY_PER_ADDRESS_LIMIT", "3"),
        ],
    )
    .await;
    let header = ("Forwarded", r#"for="198.51.100.9:4711";proto=https"#);
    spend(&rfc7239, "nobody", header).await;
    assert_eq!(attempt_with(&rfc7239, "nobody3", header).await, 429);
    assert_eq!(
        attempt_with(&rfc7239, "nobody4", ("Forwarded", "for=198.51.100.10")).await,
        401,
        "another citizen"
    );
    assert_eq!(
        attempt(&rfc7239, "nobody5", "198.51.100.9").await,
        401,
        "X-Forwarded-For is not read there: the proxy's own address is counted, not the spent one"
    );
}
