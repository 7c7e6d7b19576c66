//! What every handler shares: the application state, cookies, CSRF tokens, the client's
//! address behind trusted proxies, presented access tokens, and small response helpers.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use identity_core::crypto::KeyedHash;
use identity_core::dpop::Presented;
use identity_core::provider::SessionToken;
use identity_core::{Error, Provider};

use crate::i18n::Lang;
use crate::params::Params;

/// The CSP of every response: no inline script or style, nothing framed, and forms post
/// only here. A page whose form leads back to an e-service (the browser follows the
/// answer's redirect, which `form-action` governs too) sets its own, with that origin
/// ([`crate::plumbing::allow_forms_to`]).
pub(crate) const CSP: &str =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The provider.
    pub provider: Provider,
    /// Key of CSRF tokens.
    pub csrf: KeyedHash,
    /// Outgoing calls on a client's behalf (signing callbacks, back-channel logout):
    /// rustls, short timeouts, no redirects, internal addresses only as `outbound_allow` says.
    pub outbound: crate::outbound::Outbound,
    /// Prometheus metrics.
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// Reverse proxies whose forwarding header is believed.
    pub trusted_proxies: std::sync::Arc<Vec<ipnet::IpNet>>,
    /// The header they write.
    pub forwarded_header: crate::config::ForwardedHeader,
}

// `__Host-`: the browser accepts these only from this origin, Secure, with `Path=/` and no
// `Domain`, so a sibling subdomain (another department's site) cannot plant one to fix a
// session or a CSRF binding. Browsers keep Secure cookies on http://localhost too.
pub(crate) const SESSION_COOKIE: &str = "__Host-idp_session";

pub(crate) const INTERACTION_COOKIE: &str = "__Host-idp_interaction";

pub(crate) const LOGIN_CSRF_COOKIE: &str = "__Host-idp_csrf";

pub(crate) const LANG_COOKIE: &str = "__Host-idp_lang";

/// Pending sign-ins one browser may have at once (tabs), in the interaction cookie.
pub(crate) const INTERACTIONS_KEPT: usize = 4;

pub(crate) fn session_cookie(req: &HttpRequest) -> Option<SessionToken> {
    req.cookie(SESSION_COOKIE)
        .map(|c| SessionToken::new(c.value()))
        .filter(|t| !t.expose().is_empty() && t.expose().len() <= 64)
}

/// One of our cookies: `__Host-` rules (Secure, `Path=/`, no `Domain`), HttpOnly, Lax.
pub(crate) fn cookie(name: &str, value: String) -> Cookie<'_> {
    Cookie::build(name, value)
        .path("/")
        .http_only(true)
        .secure(true)
        .same_site(SameSite::Lax)
        .finish()
}

pub(crate) fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

pub(crate) fn html_response(status: StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body)
}

/// A page whose forms lead, through the answer's redirect, to `uris` (registered redirect,
/// return or logout URIs): its CSP's `form-action` allows their origins besides `'self'`,
/// since browsers apply `form-action` to the redirects after a form's submission. Origins,
/// not the URIs, because a source expression cannot carry every character a path can.
pub(crate) fn allow_forms_to<'a>(
    mut resp: HttpResponse,
    uris: impl IntoIterator<Item = &'a str>,
) -> HttpResponse {
    let mut csp = CSP.to_owned();
    for uri in uris {
        let Ok(u) = url::Url::parse(uri) else {
            continue;
        };
        // Only a plain host: the URL parser lets `*`, `;` and `,` into a domain, which in
        // a CSP would widen the list (`https://*`) or start another directive.
        let plain = match u.host() {
            Some(url::Host::Domain(d)) => d
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'),
            Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)) => true,
            None => false,
        };
        let origin = u.origin().ascii_serialization();
        if plain && matches!(u.scheme(), "https" | "http") && origin != "null" {
            csp.push(' ');
            csp.push_str(&origin);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&csp) {
        resp.headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, v);
    }
    resp
}

pub(crate) fn csrf_for(state: &AppState, purpose: &str, binding: &str) -> String {
    state.csrf.hash(&[purpose.as_bytes(), binding.as_bytes()])
}

/// A posted form, parsed, whose CSRF token is the one for `purpose` and `binding`.
pub(crate) fn csrf_form(
    state: &AppState,
    purpose: &str,
    binding: &str,
    body: &[u8],
) -> Result<Params, Error> {
    let form = Params::parse(body)?;
    check_csrf(state, purpose, binding, &form)?;
    Ok(form)
}

pub(crate) fn check_csrf(
    state: &AppState,
    purpose: &str,
    binding: &str,
    form: &Params,
) -> Result<(), Error> {
    match form.get("csrf") {
        Some(t)
            if state
                .csrf
                .verify(&[purpose.as_bytes(), binding.as_bytes()], &t) =>
        {
            Ok(())
        }
        _ => Err(Error::InvalidRequest(
            "the form has expired or did not come from this site; go back and try again".into(),
        )),
    }
}

/// The page language: the citizen's switch, then the e-service's `ui_locales`, then the
/// browser's `Accept-Language`.
pub(crate) fn lang_of(req: &HttpRequest, ui_locales: Option<&str>) -> Lang {
    let chosen = req.cookie(LANG_COOKIE);
    let accept = req
        .headers()
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok());
    Lang::pick(chosen.as_ref().map(|c| c.value()), ui_locales, accept)
}

pub(crate) fn json_no_store(body: &serde_json::Value) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body)
}

/// The client behind a bearer access token that carries `scope` (the auditor's `audit`,
/// the registration office's `registration`): the identity its calls are audited under.
pub async fn api_client(
    req: &HttpRequest,
    state: &AppState,
    scope: &'static str,
) -> Result<String, Error> {
    state
        .provider
        .require_scope(presented(req, state, None)?, scope)
        .await
}

/// The client (and, for a citizen's token, the citizen) behind a protected API call.
pub async fn api_caller(
    req: &HttpRequest,
    state: &AppState,
    scope: &'static str,
) -> Result<(String, Option<String>), Error> {
    state
        .provider
        .api_caller(presented(req, state, None)?, scope)
        .await
}

/// The link an activation or recovery code is handed over as.
pub fn activation_link(state: &AppState, code: &str) -> String {
    format!(
        "{}/activate?code={}",
        state.provider.config().issuer,
        url::form_urlencoded::byte_serialize(code.as_bytes()).collect::<String>()
    )
}

/// The citizen's address, for throttling and (as a keyed hash) the audit log: the TCP peer,
/// or, when the peer is a trusted proxy, what the proxies say in the configured header.
pub(crate) fn source_address(req: &HttpRequest, state: &AppState) -> String {
    use crate::config::ForwardedHeader;
    let Some(peer) = req.peer_addr().map(|a| a.ip()) else {
        return String::new();
    };
    let name = match state.forwarded_header {
        ForwardedHeader::XForwardedFor => "x-forwarded-for",
        ForwardedHeader::Forwarded => "forwarded",
    };
    let values = req.headers().get_all(name).filter_map(|v| v.to_str().ok());
    let hops: Vec<String> = match state.forwarded_header {
        ForwardedHeader::XForwardedFor => values.flat_map(x_forwarded_for).collect(),
        ForwardedHeader::Forwarded => values.flat_map(forwarded_for).collect(),
    };
    client_address(peer, &hops, &state.trusted_proxies).to_string()
}

/// The entries of an `X-Forwarded-For` value, in order.
pub(crate) fn x_forwarded_for(value: &str) -> Vec<String> {
    value.split(',').map(|h| h.trim().to_owned()).collect()
}

/// The `for=` node of each element of an RFC 7239 `Forwarded` value, in order, unquoted
/// (`for="[2001:db8::1]:4711"`). An element without one gives an empty hop, which ends the
/// walk in [`client_address`] like any entry that is not an address.
pub(crate) fn forwarded_for(value: &str) -> Vec<String> {
    // Elements are separated by commas and pairs by semicolons, outside quoted strings.
    let mut elements = vec![Vec::new()];
    let (mut pair, mut quoted, mut escaped) = (String::new(), false, false);
    for c in value.chars() {
        match c {
            _ if escaped => {
                pair.push(c);
                escaped = false;
            }
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ';' | ',' if !quoted => {
                if let Some(e) = elements.last_mut() {
                    e.push(std::mem::take(&mut pair));
                }
                if c == ',' {
                    elements.push(Vec::new());
                }
            }
            _ => pair.push(c),
        }
    }
    if let Some(e) = elements.last_mut() {
        e.push(pair);
    }
    elements
        .into_iter()
        .map(|pairs| {
            pairs
                .iter()
                .find_map(|p| {
                    let (name, node) = p.split_once('=')?;
                    name.trim()
                        .eq_ignore_ascii_case("for")
                        .then(|| node.trim().to_owned())
                })
                .unwrap_or_default()
        })
        .collect()
}

/// Each proxy appends the address it received from, so only the entries its trusted
/// proxies appended can be believed: the nearest entry, from the right, that is not itself
/// a trusted proxy is the client. Anything left of it may be forged by the client, and a
/// malformed entry ends the walk at the proxy that passed it on.
pub(crate) fn client_address(
    peer: std::net::IpAddr,
    hops: &[String],
    trusted: &[ipnet::IpNet],
) -> std::net::IpAddr {
    let is_trusted = |ip: &std::net::IpAddr| trusted.iter().any(|n| n.contains(ip));
    // A dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d: compare them as IPv4.
    let peer = peer.to_canonical();
    if !is_trusted(&peer) {
        return peer;
    }
    let mut nearest = peer;
    for hop in hops.iter().rev() {
        let parsed = hop
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .or_else(|_| hop.parse::<std::net::SocketAddr>().map(|s| s.ip()))
            .map(|ip| ip.to_canonical());
        match parsed {
            Ok(ip) if is_trusted(&ip) => nearest = ip,
            Ok(ip) => return ip,
            Err(_) => return nearest,
        }
    }
    nearest
}

/// How the access token of a protected request was presented: `Authorization: Bearer`,
/// `Authorization: DPoP` with its `DPoP` proof header (RFC 9449), or (UserInfo only, RFC
/// 6750 §2.2) a form body's `access_token`.
pub(crate) fn presented(
    req: &HttpRequest,
    state: &AppState,
    body: Option<&[u8]>,
) -> Result<Presented, Error> {
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let (scheme_dpop, header_token) = match auth {
        Some(v) if v.starts_with("Bearer ") => (false, Some(v[7..].trim().to_owned())),
        Some(v) if v.starts_with("DPoP ") => (true, Some(v[5..].trim().to_owned())),
        _ => (false, None),
    };
    let token = match body {
        Some(body) => bearer(req, body, header_token)?,
        None => header_token.ok_or(Error::InvalidToken)?,
    };
    Ok(Presented {
        token,
        dpop_scheme: scheme_dpop,
        proof: dpop_header(req),
        method: req.method().as_str().to_owned(),
        url: format!("{}{}", state.provider.config().issuer, req.path()),
    })
}

/// The `DPoP` header: one proof, at most.
pub(crate) fn dpop_header(req: &HttpRequest) -> Option<String> {
    let mut values = req.headers().get_all("DPoP");
    let first = values.next()?.to_str().ok()?.to_owned();
    values.next().is_none().then_some(first)
}

pub(crate) fn bearer(
    req: &HttpRequest,
    body: &[u8],
    header_token: Option<String>,
) -> Result<String, Error> {
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let body_token = if req.method() == actix_web::http::Method::POST && is_form {
        Params::parse(body)?.get("access_token")
    } else {
        None
    };
    match (header_token, body_token) {
        (Some(_), Some(_)) => Err(Error::InvalidRequest("send the access token once".into())),
        (Some(t), None) | (None, Some(t)) => Ok(t),
        (None, None) => Err(Error::InvalidToken),
    }
}

/// POSTs to an e-service in the background, retried with backoff (after 1, 4 and 9 s), so
/// the citizen's page never waits for the e-service. `body` sets the request's body.
pub(crate) fn post_in_background(
    state: &AppState,
    uri: String,
    what: &'static str,
    body: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder + Send + 'static,
) {
    let client = state.outbound.clone();
    tokio::spawn(async move {
        for attempt in 0..4u32 {
            if attempt > 0 {
                tokio::time::sleep(std::time::Duration::from_secs(u64::from(attempt * attempt)))
                    .await;
            }
            let request = match client.post(&uri) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, what, "notification refused by outbound_allow");
                    return;
                }
            };
            match body(request).send().await {
                Ok(r) if r.status().is_success() => return,
                Ok(r) => {
                    tracing::warn!(status = %r.status(), attempt, what, "notification refused")
                }
                Err(e) => tracing::warn!(error = %e, attempt, what, "notification failed"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::{allow_forms_to, client_address, forwarded_for, x_forwarded_for, CSP};

    /// Only plain origins join `form-action`: what the URL parser lets into a host (`*`,
    /// `;`, `,`) would widen the list or start another directive.
    #[test]
    fn form_targets_are_plain_origins() {
        let resp = allow_forms_to(
            actix_web::HttpResponse::Ok().finish(),
            [
                "https://*",
                "https://x;sandbox",
                "https://a,b.example/",
                "javascript:alert(1)",
                "https://eservice.example:8443/cb?x=1",
                "http://127.0.0.1:8081/",
            ],
        );
        let csp = resp
            .headers()
            .get("content-security-policy")
            .unwrap()
            .to_str()
            .unwrap();
        let form_action = csp
            .split(';')
            .map(str::trim)
            .find_map(|d| d.strip_prefix("form-action "))
            .unwrap();
        assert_eq!(
            form_action,
            "'self' https://eservice.example:8443 http://127.0.0.1:8081"
        );
        assert_eq!(csp.matches(';').count(), CSP.matches(';').count());
    }

    fn nets(list: &[&str]) -> Vec<ipnet::IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    /// The client address for X-Forwarded-For header values.
    fn client(peer: &str, header: &[&str], trusted: &[&str]) -> String {
        let hops: Vec<String> = header.iter().flat_map(|v| x_forwarded_for(v)).collect();
        client_address(peer.parse().unwrap(), &hops, &nets(trusted)).to_string()
    }

    /// The same for RFC 7239 `Forwarded` values.
    fn client_7239(peer: &str, header: &[&str], trusted: &[&str]) -> String {
        let hops: Vec<String> = header.iter().flat_map(|v| forwarded_for(v)).collect();
        client_address(peer.parse().unwrap(), &hops, &nets(trusted)).to_string()
    }

    #[test]
    fn rfc_7239_forwarded_is_read_the_same_way() {
        let lb = ["10.0.0.0/8"];
        assert_eq!(
            forwarded_for(
                r#"for=192.0.2.60;proto=http;by=203.0.113.43, For="[2001:db8:cafe::17]:4711""#
            ),
            ["192.0.2.60", "[2001:db8:cafe::17]:4711"]
        );
        // Quoted commas and semicolons stay inside their value; an element without `for`
        // is an empty hop.
        assert_eq!(
            forwarded_for(r#"by="a,b;c";for=198.51.100.7, proto=https"#),
            ["198.51.100.7", ""]
        );
        assert_eq!(
            client_7239("203.0.113.9", &["for=198.51.100.7"], &lb),
            "203.0.113.9"
        );
        assert_eq!(
            client_7239("10.0.0.5", &["for=198.51.100.7"], &lb),
            "198.51.100.7"
        );
        // A client's own element on the left cannot choose its address.
        assert_eq!(
            client_7239(
                "10.0.0.5",
                &["for=1.2.3.4", "for=198.51.100.7;proto=https"],
                &lb
            ),
            "198.51.100.7"
        );
        assert_eq!(
            client_7239(
                "10.0.0.5",
                &[r#"for="[2001:db8::7]:443", for=10.0.0.9"#],
                &lb
            ),
            "2001:db8::7"
        );
        // Obfuscated or unknown nodes, or no `for` at all: the nearest proxy stands in.
        assert_eq!(client_7239("10.0.0.5", &["for=_hidden"], &lb), "10.0.0.5");
        assert_eq!(
            client_7239("10.0.0.5", &["for=unknown, for=10.0.0.9"], &lb),
            "10.0.0.9"
        );
        assert_eq!(client_7239("10.0.0.5", &["proto=https"], &lb), "10.0.0.5");
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let lb = ["10.0.0.0/8"];
        // No trusted proxy, or a peer that is not one: the header is ignored.
        assert_eq!(client("203.0.113.9", &["198.51.100.7"], &[]), "203.0.113.9");
        assert_eq!(client("203.0.113.9", &["198.51.100.7"], &lb), "203.0.113.9");
        // Behind the load balancer: the address it appended.
        assert_eq!(client("10.0.0.5", &["198.51.100.7"], &lb), "198.51.100.7");
        // A client that sends its own header cannot choose its address: the nearest
        // untrusted entry from the right is the one the proxy appended.
        assert_eq!(
            client("10.0.0.5", &["1.2.3.4, 198.51.100.7"], &lb),
            "198.51.100.7"
        );
        // Two proxies of ours, as two headers or one list.
        assert_eq!(
            client("10.0.0.5", &["198.51.100.7", "10.0.0.9"], &lb),
            "198.51.100.7"
        );
        assert_eq!(
            client("10.0.0.5", &["198.51.100.7, 10.0.0.9"], &lb),
            "198.51.100.7"
        );
        // A port, IPv6.
        assert_eq!(
            client("10.0.0.5", &["198.51.100.7:4711"], &lb),
            "198.51.100.7"
        );
        assert_eq!(client("::1", &["2001:db8::7"], &["::1/128"]), "2001:db8::7");
        // A dual-stack listener's view of an IPv4 proxy; bracketed IPv6 with and without
        // a port.
        assert_eq!(
            client("::ffff:10.0.0.5", &["198.51.100.7"], &lb),
            "198.51.100.7"
        );
        assert_eq!(
            client("10.0.0.5", &["[2001:db8::7]:443, [2001:db8::8]"], &lb),
            "2001:db8::8"
        );
        assert_eq!(
            client("10.0.0.5", &["[2001:db8::7]:443"], &lb),
            "2001:db8::7"
        );
        // Garbage, or nothing: the nearest proxy stands for the client.
        assert_eq!(client("10.0.0.5", &["unknown"], &lb), "10.0.0.5");
        assert_eq!(
            client("10.0.0.5", &["198.51.100.7, junk, 10.0.0.9"], &lb),
            "10.0.0.9"
        );
        assert_eq!(client("10.0.0.5", &[], &lb), "10.0.0.5");
    }
}
