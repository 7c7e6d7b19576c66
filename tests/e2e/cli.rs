//! The command line and `serve` with a configuration file, TLS and PostgreSQL.

use identity_core::storage::testing::{fresh_postgres_url, tempfile_guard::Dir};
use identity_core::storage::Backend;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_identity-server");
const KEK: &str = "4242424242424242424242424242424242424242424242424242424242424242";

fn run(config: &std::path::Path, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn config(dir: &Dir, backend: Backend, extra: &str) -> std::path::PathBuf {
    let path = dir.path().join("identity.toml");
    let db = match backend {
        Backend::Sqlite => String::new(),
        Backend::Postgres => format!("database_url = \"{}\"\n", fresh_postgres_url()),
    };
    std::fs::write(
        &path,
        format!(
            "kek = \"{KEK}\"\ndata_dir = \"{}\"\nmetrics_listen = \"127.0.0.1:{}\"\n{db}{extra}",
            dir.path().join("data").display(),
            crate::util::free_port()
        ),
    )
    .unwrap();
    path
}

async fn admin_commands(backend: Backend) {
    let dir = Dir::new();
    let cfg = config(&dir, backend, "");
    let (ok, out, err) = run(&cfg, &["migrate"], None);
    assert!(ok, "{err}");
    assert!(out.contains("migration"), "{out}");
    let (ok, out, err) = run(
        &cfg,
        &[
            "client",
            "add",
            "--name",
            "Licensing",
            "--department",
            "Transport",
            "--redirect-uri",
            "https://td.example/cb",
            "--scopes",
            "openid signing",
        ],
        None,
    );
    assert!(ok, "{err}");
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("client_id: "))
        .unwrap()
        .to_owned();
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("client_secret: "))
        .unwrap()
        .to_owned();
    let (ok, out, err) = run(&cfg, &["client", "list"], None);
    assert!(ok, "{err}");
    assert!(out.contains(&id) && !out.contains(&secret), "{out}");
    // A weak password is refused with the reason; a good one is accepted.
    let (ok, _, err) = run(
        &cfg,
        &[
            "user",
            "add",
            "--username",
            "wong",
            "--name-en",
            "WONG",
            "--name-zh",
            "黃",
        ],
        Some("password\n"),
    );
    assert!(!ok && err.contains("at least 12"), "{err}");
    let (ok, _, err) = run(
        &cfg,
        &[
            "user",
            "add",
            "--username",
            "wong",
            "--name-en",
            "WONG",
            "--name-zh",
            "黃",
        ],
        Some("Tram-Ferry-Peak-1888\n"),
    );
    assert!(ok, "{err}");
    let (ok, out, _) = run(&cfg, &["keys", "rotate", "--alg", "EdDSA"], None);
    assert!(ok && out.contains("EdDSA"), "{out}");
    let (ok, out, _) = run(&cfg, &["keys", "list"], None);
    assert!(
        ok && out.contains("retired") && out.contains("active"),
        "{out}"
    );
    let (ok, out, _) = run(&cfg, &["seed"], None);
    assert!(ok && out.contains("demo-eservice"), "{out}");

    // serve with this file; the printed secret works for client_credentials. A free port
    // can be taken by a parallel test between the probe and the bind: a server that exits
    // at once is started again on other ports.
    let mut attempt = 0;
    let (mut child, base, metrics_port, response) = loop {
        attempt += 1;
        let port = crate::util::free_port();
        let metrics_port = crate::util::free_port();
        let mut child = Command::new(BIN)
            .arg("--config")
            .arg(&cfg)
            .arg("serve")
            .env("IDENTITY_LISTEN", format!("127.0.0.1:{port}"))
            .env(
                "IDENTITY_METRICS_LISTEN",
                format!("127.0.0.1:{metrics_port}"),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://localhost:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut response = None;
        while Instant::now() < deadline {
            if let Ok(r) = http
                .post(format!("{base}/token"))
                .basic_auth(&id, Some(&secret))
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await
            {
                response = Some(r);
                break;
            }
            if child.try_wait().unwrap().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if response.is_some() || attempt == 3 {
            break (child, base, metrics_port, response);
        }
        let _ = child.kill();
        let _ = child.wait();
    };
    let http = reqwest::Client::new();
    let r = response.expect("server answered");
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["scope"], "signing");
    // The second grant is answered from the server's memory of the client; the removal by
    // another process must still take effect at once.
    let grant = || {
        http.post(format!("{base}/token"))
            .basic_auth(&id, Some(&secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
    };
    assert_eq!(grant().await.unwrap().status(), 200);
    let metrics = crate::util::get_text(&format!("http://127.0.0.1:{metrics_port}/metrics")).await;
    assert!(
        metrics.contains("identity_token_grants_from_memory_total 1\n"),
        "{metrics}"
    );
    let (ok, out, err) = run(&cfg, &["client", "remove", "--", &id], None);
    assert!(ok, "client remove failed: {out}{err}");
    let r = http
        .post(format!("{base}/token"))
        .basic_auth(&id, Some(&secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_commands_sqlite() {
    admin_commands(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PostgreSQL at 127.0.0.1:5432; .ci/run runs it with --include-ignored"]
async fn admin_commands_postgres() {
    admin_commands(Backend::Postgres).await
}

#[test]
fn bad_configuration_stops_the_start_naming_the_key() {
    let dir = Dir::new();
    let cfg = config(&dir, Backend::Sqlite, "");
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&cfg)
        .arg("serve")
        .env("IDENTITY_ARGON2_MEMORY_KIB", "lots")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("argon2_memory_kib"));
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&cfg)
        .arg("serve")
        .env("IDENTITY_LISTEN", "0.0.0.0:0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("loopback"),
        "plain HTTP only on loopback"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn serves_tls_with_hsts_and_refuses_old_protocols() {
    let dir = Dir::new();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = config(
        &dir,
        Backend::Sqlite,
        &format!(
            "listen = \"127.0.0.1:{port}\"\npublic_url = \"https://localhost:{port}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
            cert.display(),
            key.display()
        ),
    );
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&cfg)
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The self-signed test certificate is its own CA, which webpki refuses as a server
    // certificate; this test is about the server's TLS, so the client skips that check.
    let http = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let url = format!("https://localhost:{port}/.well-known/openid-configuration");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut resp = None;
    while Instant::now() < deadline {
        if let Ok(r) = http.get(&url).send().await {
            resp = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = resp.expect("TLS server answered");
    assert_eq!(r.status(), 200);
    assert!(r.headers()["strict-transport-security"]
        .to_str()
        .unwrap()
        .contains("max-age"));
    let d: serde_json::Value = r.json().await.unwrap();
    assert_eq!(d["issuer"], format!("https://localhost:{port}"));
    // TLS 1.1 is refused by the server (openssl's client may also refuse it; either way no session).
    let old = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-tls1_1",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(!old.status.success());
    let _ = child.kill();
    let _ = child.wait();
}
