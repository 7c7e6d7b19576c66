//! Building and running the HTTP server: middleware, TLS and limits.

use actix_web::dev::Service;
use actix_web::middleware::DefaultHeaders;
use actix_web::{web, App, HttpServer};
use identity_core::crypto::Purpose;
use identity_core::Provider;
use tracing::Instrument;

use crate::config::Settings;
use crate::plumbing::AppState;
use crate::web::routes;

fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<rustls::ServerConfig, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("tls_cert: {e}"))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls_cert: {e}"))?;
    if certs.is_empty() {
        return Err("tls_cert: no certificate in the file".into());
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("tls_key: {e}"))?;
    // ring, and TLS 1.2 and 1.3 only.
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("tls: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("tls_key: {e}"))
}

/// Runs the server until it is stopped.
pub async fn run(settings: Settings, provider: Provider) -> Result<(), String> {
    let tls = match &settings.tls {
        Some((c, k)) => Some(tls_config(c, k)?),
        None => None,
    };
    let state = AppState {
        trusted_proxies: std::sync::Arc::new(settings.trusted_proxies.clone()),
        forwarded_header: settings.forwarded_header,
        csrf: settings.kek.derive(Purpose::Csrf),
        provider,
        outbound: crate::outbound::Outbound::new(
            crate::outbound::Policy::new(settings.outbound_allow.clone()),
            std::time::Duration::from_secs(5),
        )?,
        metrics: std::sync::Arc::new(crate::metrics::Metrics::new()?),
    };
    let max_body = settings.max_body_bytes;
    // Checkpoints every few seconds while entries arrive. Each replica may try; the audit
    // lock and the size check make that harmless.
    // Expired sessions, requests, codes, refresh tokens and stale counters go once a minute.
    // Signing keys older than key_rotation_days are rotated (pre-published first).
    let housekeeping = state.provider.clone();
    let (max_age, prepublish) = settings.key_rotation;
    std::thread::Builder::new()
        .name("purge-expired".into())
        .spawn(move || loop {
            std::thread::sleep(std::time::Duration::from_secs(60));
            match housekeeping.purge_expired() {
                Ok(n) if n > 0 => tracing::debug!(rows = n, "purged expired rows"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "purging expired rows failed"),
            }
            if max_age > 0 {
                match housekeeping.rotate_due_keys(max_age, prepublish) {
                    Ok(k) if !k.is_empty() => tracing::info!(keys = ?k, "rotated signing keys"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "scheduled key rotation failed"),
                }
            }
        })
        .map_err(|e| e.to_string())?;
    let audit = state.provider.audit().clone();
    let every = std::time::Duration::from_secs(settings.audit_checkpoint_seconds);
    std::thread::Builder::new()
        .name("audit-checkpoints".into())
        .spawn(move || loop {
            std::thread::sleep(every);
            if let Err(e) = audit.checkpoint() {
                tracing::error!(error = %e, "audit checkpoint failed");
            }
        })
        .map_err(|e| e.to_string())?;
    // Metrics on their own listener (loopback by default): they tell who is busy and how
    // logins go, which is for the operator's monitoring, not for the internet.
    if let Some(addr) = settings.metrics_listen {
        let scraped = state.clone();
        let metrics = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(scraped.clone()))
                .route("/metrics", web::get().to(crate::ops::metrics))
        })
        .workers(1)
        // Signals are the public server's to handle (its graceful shutdown); this one ends
        // with the process.
        .disable_signals()
        .bind(addr)
        .map_err(|e| format!("metrics_listen: cannot bind {addr}: {e}"))?
        .run();
        actix_web::rt::spawn(metrics);
        tracing::info!(metrics_listen = %addr, "metrics listening");
    }
    let hsts = settings.public_url.scheme() == "https";
    let server = HttpServer::new(move || {
        let metrics = state.metrics.clone();
        let mut headers = DefaultHeaders::new()
            .add(("Content-Security-Policy", crate::plumbing::CSP))
            .add(("X-Frame-Options", "DENY"))
            .add(("X-Content-Type-Options", "nosniff"))
            .add(("Referrer-Policy", "no-referrer"));
        if hsts {
            headers = headers.add((
                "Strict-Transport-Security",
                "max-age=63072000; includeSubDomains",
            ));
        }
        App::new()
            .app_data(web::Data::new(state.clone()))
            .app_data(web::PayloadConfig::new(max_body))
            .wrap(headers)
            .wrap_fn(move |mut req, srv| {
                // Every request gets an id: the audit entries it causes carry it, and the
                // response header lets an operator find them.
                let id = identity_core::crypto::random_id();
                // Log lines of this request carry its id; the path, never the query, which
                // can hold codes and state.
                let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.path());
                let started = std::time::Instant::now();
                // The route's pattern, never the path: the number of series stays bounded.
                let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
                let method = req.method().to_string();
                let metrics = metrics.clone();
                // RFC 9110 §9.3.2: HEAD is answered wherever GET is, with GET's status and
                // headers. Routing sees a GET; the connection still knows the request was
                // HEAD and sends no body.
                if req.method() == actix_web::http::Method::HEAD {
                    req.head_mut().method = actix_web::http::Method::GET;
                }
                // Error pages speak the citizen's language; ui_locales from the query counts
                // as it does on the interaction pages.
                let ui_locales = url::form_urlencoded::parse(req.query_string().as_bytes())
                    .find(|(k, _)| k == "ui_locales")
                    .map(|(_, v)| v.into_owned());
                let lang = crate::plumbing::lang_of(req.request(), ui_locales.as_deref());
                let fut = crate::errors::with_page_lang(lang, srv.call(req));
                async move {
                    let mut res = identity_core::audit::with_request_id(id.clone(), fut).await?;
                    metrics.request(
                        &route,
                        &method,
                        res.status().as_u16(),
                        started.elapsed().as_secs_f64(),
                    );
                    tracing::debug!(
                        status = res.status().as_u16(),
                        elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                        "request done"
                    );
                    if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&id) {
                        res.headers_mut().insert(
                            actix_web::http::header::HeaderName::from_static("x-request-id"),
                            v,
                        );
                    }
                    Ok(res)
                }
                .instrument(span)
            })
            .configure(routes)
            .configure(crate::api::audit::routes)
            .configure(crate::api::registration::routes)
            .configure(crate::api::signing::routes)
    })
    .workers(settings.workers)
    .shutdown_timeout(10);
    let server = match tls {
        Some(cfg) => server.bind_rustls_0_23(settings.listen, cfg),
        None => server.bind(settings.listen),
    }
    .map_err(|e| format!("listen: cannot bind {}: {e}", settings.listen))?;
    tracing::info!(listen = %settings.listen, issuer = %settings.public_url, "identity-server listening");
    println!(
        "identity-server listening on {} (issuer {})",
        settings.listen, settings.provider.issuer
    );
    server.run().await.map_err(|e| e.to_string())
}
