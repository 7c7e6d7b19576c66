//! Starting the real server and driving its pages like a browser.

use identity_core::storage::testing::{fresh_postgres_url, tempfile_guard::Dir};
use identity_core::storage::Backend;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const CLIENT_ID: &str = "demo-eservice";
pub const CLIENT_SECRET: &str = "demo-eservice-secret";
pub const REDIRECT_URI: &str = "http://localhost:8081/callback";
pub const USERNAME: &str = "demo";
pub const PASSWORD: &str = "Lion-Rock-Harbour-2020";

/// A running server; killed when dropped.
pub struct Server {
    child: Child,
    pub base: String,
    /// Where its `/metrics` listener is (`metrics_listen`, apart from the public one).
    pub metrics: String,
    dir: Dir,
    database_url: Option<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `identity-server demo` in `dir` on `port` (metrics on `metrics_port`), appending
/// its output to `server.log`.
fn spawn(
    dir: &Dir,
    (port, metrics_port): (u16, u16),
    database_url: Option<&str>,
    env: &[(&str, &str)],
) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.path().join("server.log"))
        .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_identity-server"));
    cmd.args([
        "demo",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--data-dir",
    ])
    .arg(dir.path())
    .env("IDENTITY_LOG", "warn")
    // The tests' e-services (callbacks, back-channel logout, published keys) listen on
    // loopback, which the server refuses to call unless allowed; a test of that refusal
    // overrides this.
    .env("IDENTITY_OUTBOUND_ALLOW", "127.0.0.0/8 ::1")
    .env(
        "IDENTITY_METRICS_LISTEN",
        format!("127.0.0.1:{metrics_port}"),
    )
    .stdout(Stdio::from(log.try_clone().unwrap()))
    .stderr(Stdio::from(log));
    for (k, v) in env {
        cmd.env(k, v);
    }
    if let Some(url) = database_url {
        cmd.env("IDENTITY_DATABASE_URL", url);
    }
    cmd.spawn().expect("start identity-server")
}

impl Server {
    /// Starts `identity-server demo` on a free port with extra environment.
    pub async fn start(backend: Backend, env: &[(&str, &str)]) -> Server {
        let dir = Dir::new();
        let port = free_port();
        let metrics_port = free_port();
        let database_url = (backend == Backend::Postgres).then(fresh_postgres_url);
        let child = spawn(&dir, (port, metrics_port), database_url.as_deref(), env);
        let mut server = Server {
            child,
            base: format!("http://localhost:{port}"),
            metrics: format!("http://127.0.0.1:{metrics_port}/metrics"),
            dir,
            database_url,
        };
        server.wait_ready().await;
        server
    }

    /// Starts `identity-server demo` on the given PostgreSQL database URL.
    pub async fn start_with_database(database_url: &str, env: &[(&str, &str)]) -> Server {
        let dir = Dir::new();
        let port = free_port();
        let metrics_port = free_port();
        let child = spawn(&dir, (port, metrics_port), Some(database_url), env);
        let mut server = Server {
            child,
            base: format!("http://localhost:{port}"),
            metrics: format!("http://127.0.0.1:{metrics_port}/metrics"),
            dir,
            database_url: Some(database_url.to_owned()),
        };
        server.wait_ready().await;
        server
    }

    /// The server's process id (the same one while it has not been restarted).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGTERM (what an orchestrator sends to stop a replica).
    pub fn signal_term(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }

    /// A second server on the same database as `other` (same key-encryption key and
    /// issuer), as a second replica would be.
    pub async fn start_on(other: &Server, env: &[(&str, &str)]) -> Server {
        let dir = Dir::new();
        std::fs::copy(
            other.dir.path().join("demo-kek.hex"),
            dir.path().join("demo-kek.hex"),
        )
        .unwrap();
        let port = free_port();
        let metrics_port = free_port();
        let mut env = env.to_vec();
        env.push(("IDENTITY_PUBLIC_URL", &other.base));
        let child = spawn(
            &dir,
            (port, metrics_port),
            other.database_url.as_deref(),
            &env,
        );
        let mut server = Server {
            child,
            base: format!("http://localhost:{port}"),
            metrics: format!("http://127.0.0.1:{metrics_port}/metrics"),
            dir,
            database_url: other.database_url.clone(),
        };
        server.wait_ready().await;
        server
    }

    async fn wait_ready(&mut self) {
        let url = format!("{}/.well-known/openid-configuration", self.base);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("identity-server exited with {status}:\n{}", self.log());
            }
            if let Ok(r) = reqwest::get(&url).await {
                if r.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("identity-server did not become ready:\n{}", self.log());
    }

    /// What the server printed.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Runs an administration command against this server's data (a second process on the
    /// same database, as an operator would).
    pub fn cli(&self, args: &[&str]) -> String {
        let out = self.cli_output(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Like [`Server::cli`], for a command that may fail: its whole output.
    pub fn cli_output(&self, args: &[&str]) -> std::process::Output {
        let cfg = self.dir.path().join("admin.toml");
        std::fs::write(
            &cfg,
            format!(
                "kek_file = \"{}\"\ndata_dir = \"{}\"\n",
                self.dir.path().join("demo-kek.hex").display(),
                self.dir.path().display()
            ),
        )
        .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_identity-server"));
        cmd.arg("--config").arg(&cfg).args(args);
        if let Some(url) = &self.database_url {
            cmd.env("IDENTITY_DATABASE_URL", url);
        }
        cmd.output().unwrap()
    }

    /// The database this server uses (a SQLite file or a PostgreSQL URL).
    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| {
            self.dir
                .path()
                .join("identity.db")
                .to_string_lossy()
                .into_owned()
        })
    }

    /// Kills the server with SIGKILL (no graceful shutdown) and starts it again on the same
    /// port, data and database.
    pub async fn crash_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let port: u16 = self.base.rsplit(':').next().unwrap().parse().unwrap();
        let metrics_port: u16 = self
            .metrics
            .trim_end_matches("/metrics")
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        self.child = spawn(
            &self.dir,
            (port, metrics_port),
            self.database_url.as_deref(),
            &[],
        );
        self.wait_ready().await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// A browser: cookies kept, redirects not followed so each step can be checked.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A plain HTTP client for back-channel calls.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The body of a GET, which must answer.
pub async fn get_text(url: &str) -> String {
    http().get(url).send().await.unwrap().text().await.unwrap()
}

/// The value of `name="..." value="..."` in a page.
pub fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in page:\n{html}"))
        + marker.len();
    let end = html[start..].find('"').unwrap();
    html[start..start + end].to_owned()
}

/// The action of the password form on a login page, else of the first form.
pub fn action(html: &str) -> String {
    let start = match html.find("id=\"password-form\"") {
        Some(at) => html[..at].rfind("action=\"").expect("a form") + 8,
        None => html.find("action=\"").expect("a form") + 8,
    };
    let end = html[start..].find('"').unwrap();
    html[start..start + end].to_owned()
}

pub fn location(r: &reqwest::Response) -> String {
    r.headers()
        .get("location")
        .unwrap_or_else(|| panic!("no Location on {}", r.status()))
        .to_str()
        .unwrap()
        .to_owned()
}

/// Absolute URL of a Location that may be relative.
pub fn absolute(server: &Server, loc: &str) -> String {
    if loc.starts_with('/') {
        server.url(loc)
    } else {
        loc.to_owned()
    }
}

/// Opens the authorization URL and returns the login page's HTML and its form action.
pub async fn open_login(server: &Server, b: &reqwest::Client, auth_url: &str) -> (String, String) {
    let r = b.get(auth_url).send().await.unwrap();
    assert_eq!(
        r.status(),
        303,
        "authorize should redirect to the login page"
    );
    let page_url = absolute(server, &location(&r));
    let page = b.get(&page_url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let act = action(&html);
    (html, act)
}

/// Posts the login form; returns the response.
pub async fn post_login(
    server: &Server,
    b: &reqwest::Client,
    html: &str,
    act: &str,
    user: &str,
    pw: &str,
) -> reqwest::Response {
    b.post(server.url(act))
        .form(&[
            ("csrf", hidden(html, "csrf").as_str()),
            ("username", user),
            ("password", pw),
        ])
        .send()
        .await
        .unwrap()
}

/// Logs in through the hosted pages, consents, and returns the redirect back to the client.
pub async fn login_and_consent(
    server: &Server,
    b: &reqwest::Client,
    auth_url: &str,
    user: &str,
    pw: &str,
) -> url::Url {
    let (html, act) = open_login(server, b, auth_url).await;
    let r = post_login(server, b, &html, &act, user, pw).await;
    assert_eq!(r.status(), 303, "login should succeed");
    consent_until_redirect(server, b, &location(&r)).await
}

/// From a redirect after the login, follows the hosted pages on `server`, allowing the
/// consent when asked, until the redirect back to the client.
pub async fn consent_until_redirect(
    server: &Server,
    b: &reqwest::Client,
    after_login: &str,
) -> url::Url {
    let mut next = absolute(server, after_login);
    loop {
        if next.starts_with(REDIRECT_URI) {
            return url::Url::parse(&next).unwrap();
        }
        let page = b.get(&next).send().await.unwrap();
        if page.status() == 303 {
            next = absolute(server, &location(&page));
            continue;
        }
        let html = page.text().await.unwrap();
        assert!(
            html.contains("Share your information"),
            "expected the consent page:\n{html}"
        );
        let r = b
            .post(server.url(&action(&html)))
            .form(&[
                ("csrf", hidden(&html, "csrf").as_str()),
                ("decision", "allow"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        next = absolute(server, &location(&r));
    }
}

pub fn query(url: &url::Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// PKCE verifier and S256 challenge.
pub fn pkce() -> (String, String) {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let verifier = URL_SAFE_NO_PAD.encode(identity_core::crypto::random_bytes::<32>());
    let challenge = URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        verifier.as_bytes(),
    ));
    (verifier, challenge)
}

/// A hand-built authorization URL with PKCE.
pub fn auth_url(server: &Server, challenge: &str, extra: &[(&str, &str)]) -> String {
    let mut u = url::Url::parse(&server.url("/authorize")).unwrap();
    {
        let mut q = u.query_pairs_mut();
        q.append_pair("client_id", CLIENT_ID)
            .append_pair("redirect_uri", REDIRECT_URI)
            .append_pair("response_type", "code")
            // offline_access, for the tests that refresh; those that check its absence ask
            // without it.
            .append_pair("scope", "openid profile email offline_access")
            .append_pair("state", "state-123")
            .append_pair("nonce", "nonce-123")
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", "S256");
        for (k, v) in extra {
            q.append_pair(k, v);
        }
    }
    u.to_string()
}

/// Every `Set-Cookie` header of a response, as sent.
pub fn set_cookies(r: &reqwest::Response) -> Vec<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// Exchanges a code with the demo client's secret; returns status and JSON.
pub async fn exchange(server: &Server, code: &str, verifier: &str) -> (u16, serde_json::Value) {
    let r = http()
        .post(server.url("/token"))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// Runs a whole login and returns a fresh code with its verifier.
pub async fn fresh_code(server: &Server) -> (String, String) {
    let (verifier, challenge) = pkce();
    let b = browser();
    let back = login_and_consent(
        server,
        &b,
        &auth_url(server, &challenge, &[]),
        USERNAME,
        PASSWORD,
    )
    .await;
    (query(&back, "code").expect("code"), verifier)
}
