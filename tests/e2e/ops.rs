//! What operators watch: Prometheus metrics.

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
    let text = http()
        .get(server.url("/metrics"))
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
    assert!(
        value("identity_audit_log_entries") >= 1.0,
        "logins and grants are audited"
    );
    assert!(value("identity_audit_checkpoint_age_seconds") >= -1.0);
}
