//! Configuration: a TOML file plus `IDENTITY_`-prefixed environment variables, parsed once
//! into [`Settings`]. A bad value stops the start with a message naming the key.
//!
//! Keys are flat (`password_min_length`, not `[password] min_length`) so that every key has
//! one obvious environment variable: `IDENTITY_` and the key in capitals.

use identity_core::crypto::Kek;
use identity_core::password::HashingConfig;
use identity_core::provider::ProviderConfig;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use url::Url;

/// Validated settings of a running server.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The issuer and the base of every URL the server gives out.
    pub public_url: Url,
    /// Scheduled rotation of signing keys: their age in seconds (0: never), and how long a
    /// new key is published before it signs.
    pub key_rotation: (i64, i64),
    /// Where to listen.
    pub listen: SocketAddr,
    /// Where `/metrics` is served, apart from the public listener; `None` serves no metrics.
    pub metrics_listen: Option<SocketAddr>,
    /// Database URL: a SQLite path or `postgres://`.
    pub database_url: String,
    /// Database pool size.
    pub db_pool_size: u32,
    /// Key-encryption key.
    pub kek: Kek,
    /// TLS certificate chain and key (PEM), both or neither.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Request body limit in bytes.
    pub max_body_bytes: usize,
    /// HTTP workers.
    pub workers: usize,
    /// Seconds between audit checkpoints (while entries arrive).
    pub audit_checkpoint_seconds: u64,
    /// Reverse proxies whose forwarding header is believed (addresses or networks).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Internal networks that requests on a client's behalf (signing callbacks,
    /// back-channel logout, `jwks_uri`) may reach; none by default.
    pub outbound_allow: Vec<ipnet::IpNet>,
    /// Which header those proxies write the client's address in.
    pub forwarded_header: ForwardedHeader,
    /// Provider lifetimes, password policy and hashing.
    pub provider: ProviderConfig,
}

/// The header trusted proxies put the client's address in. Only one is read: a proxy that
/// writes one passes the other on as the client sent it, forged or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1`, the de facto standard.
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1`.
    Forwarded,
}

/// Every key the configuration accepts.
const KEYS: &[&str] = &[
    "public_url",
    "listen",
    "metrics_listen",
    "data_dir",
    "database_url",
    "db_pool_size",
    "kek",
    "kek_file",
    "tls_cert",
    "tls_key",
    "max_body_bytes",
    "workers",
    "password_min_length",
    "argon2_memory_kib",
    "argon2_iterations",
    "argon2_parallelism",
    "hash_workers",
    "hash_queue",
    "session_idle_seconds",
    "session_absolute_seconds",
    "access_token_seconds",
    "id_token_seconds",
    "refresh_token_seconds",
    "refresh_absolute_seconds",
    "code_seconds",
    "lockout_after",
    "per_address_limit",
    "trusted_proxies",
    "outbound_allow",
    "forwarded_header",
    "audit_checkpoint_seconds",
    "webauthn_rp_id",
    "activation_code_seconds",
    "key_rotation_days",
    "dpop_nonce",
    "par_seconds",
    "key_prepublish_seconds",
    "webauthn_origin",
];

/// Where values come from: the environment first, then the file.
struct Source {
    file: toml::Table,
}

impl Source {
    fn raw(&self, key: &str) -> Option<String> {
        if let Ok(v) = std::env::var(format!("IDENTITY_{}", key.to_ascii_uppercase())) {
            return Some(v);
        }
        self.file.get(key).map(|v| match v {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }

    fn string(&self, key: &str, default: &str) -> String {
        self.raw(key).unwrap_or_else(|| default.to_owned())
    }

    fn number<T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy>(
        &self,
        key: &str,
        default: T,
        min: T,
        max: T,
    ) -> Result<T, String> {
        let Some(raw) = self.raw(key) else {
            return Ok(default);
        };
        let v: T = raw
            .trim()
            .parse()
            .map_err(|_| format!("{key}: expected a number, got {raw:?}"))?;
        if v < min || v > max {
            return Err(format!("{key}: must be between {min} and {max}, got {v}"));
        }
        Ok(v)
    }
}

/// Overrides that the `demo` command applies before validation.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// Listen address.
    pub listen: Option<String>,
    /// Data directory.
    pub data_dir: Option<PathBuf>,
    /// Key-encryption key (the demo's throwaway key).
    pub kek: Option<Kek>,
    /// Public URL.
    pub public_url: Option<String>,
}

fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

impl Settings {
    /// Reads the file (if any) and the environment, and validates every value.
    pub fn load(file: Option<&Path>, overrides: Overrides) -> Result<Settings, String> {
        let table = match file {
            None => toml::Table::new(),
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
                text.parse::<toml::Table>()
                    .map_err(|e| format!("{}: {e}", p.display()))?
            }
        };
        if let Some(k) = table.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(format!("{k}: unknown configuration key"));
        }
        let src = Source { file: table };

        let listen_text = overrides
            .listen
            .clone()
            .unwrap_or_else(|| src.string("listen", "127.0.0.1:8080"));
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            format!("listen: expected an address like 127.0.0.1:8080, got {listen_text:?}")
        })?;

        let metrics_text = src.string("metrics_listen", "127.0.0.1:9464");
        let metrics_listen = match metrics_text.as_str() {
            "off" => None,
            text => Some(text.parse::<SocketAddr>().map_err(|_| {
                format!("metrics_listen: expected an address like 127.0.0.1:9464 or \"off\", got {text:?}")
            })?),
        };
        if metrics_listen == Some(listen) {
            return Err("metrics_listen: must not be the public listen address".into());
        }
        let default_url = format!("http://localhost:{}", listen.port());
        let url_text = overrides
            .public_url
            .clone()
            .unwrap_or_else(|| src.string("public_url", &default_url));
        let public_url =
            Url::parse(&url_text).map_err(|_| format!("public_url: not a URL: {url_text:?}"))?;
        if !matches!(public_url.scheme(), "http" | "https")
            || public_url.query().is_some()
            || public_url.fragment().is_some()
        {
            return Err("public_url: must be an http(s) URL without query or fragment".into());
        }

        let data_dir = overrides
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(src.string("data_dir", "./data")));
        let database_url = src
            .raw("database_url")
            .unwrap_or_else(|| data_dir.join("identity.db").to_string_lossy().into_owned());

        let tls = match (src.raw("tls_cert"), src.raw("tls_key")) {
            (Some(c), Some(k)) => Some((PathBuf::from(c), PathBuf::from(k))),
            (None, None) => None,
            _ => return Err("tls_cert: tls_cert and tls_key must be given together".into()),
        };
        if tls.is_none() && !is_loopback(&listen) {
            return Err(format!(
                "listen: {listen} is not a loopback address; plain HTTP is allowed on loopback only, so set tls_cert and tls_key"
            ));
        }
        if tls.is_some() && public_url.scheme() != "https" {
            return Err("public_url: must be https when TLS is configured".into());
        }
        if public_url.scheme() == "http"
            && !matches!(
                public_url.host_str(),
                Some("localhost" | "127.0.0.1" | "[::1]")
            )
        {
            return Err("public_url: http is allowed only for localhost; use https".into());
        }

        let kek = match overrides.kek.clone() {
            Some(k) => k,
            None => match (src.raw("kek"), src.raw("kek_file")) {
                (Some(k), _) => Kek::parse(&k).map_err(|e| format!("kek: {e}"))?,
                (None, Some(f)) => {
                    let text = std::fs::read_to_string(&f)
                        .map_err(|e| format!("kek_file: cannot read {f}: {e}"))?;
                    Kek::parse(&text).map_err(|e| format!("kek_file: {e}"))?
                }
                (None, None) => return Err(
                    "kek: a 256-bit key-encryption key is required (kek or kek_file; IDENTITY_KEK)"
                        .into(),
                ),
            },
        };

        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let hash_workers = src.number("hash_workers", cores, 1, 256)?;
        let hashing = HashingConfig {
            memory_kib: src.number("argon2_memory_kib", 19_456u32, 19_456, 4 * 1024 * 1024)?,
            iterations: src.number("argon2_iterations", 2u32, 2, 100)?,
            parallelism: src.number("argon2_parallelism", 1u32, 1, 64)?,
            workers: hash_workers,
            queue: src.number("hash_queue", hash_workers * 4, 0, 10_000)?,
        };
        let mut provider = ProviderConfig::new(public_url.as_str().trim_end_matches('/'));
        provider.hashing = hashing;
        provider.audit_witness = Some(data_dir.join("audit-witness"));
        provider.policy.min_length = src.number("password_min_length", 12usize, 8, 64)?;
        provider.session_idle = src.number("session_idle_seconds", 3_600i64, 60, 86_400)?;
        provider.session_absolute =
            src.number("session_absolute_seconds", 12 * 3_600i64, 300, 86_400)?;
        provider.access_token_ttl = src.number("access_token_seconds", 600i64, 30, 86_400)?;
        provider.id_token_ttl = src.number("id_token_seconds", 600i64, 30, 86_400)?;
        provider.refresh_token_ttl =
            src.number("refresh_token_seconds", 30 * 86_400i64, 60, 365 * 86_400)?;
        provider.refresh_absolute_ttl =
            src.number("refresh_absolute_seconds", 30 * 86_400i64, 60, 365 * 86_400)?;
        provider.code_ttl = src.number("code_seconds", 60i64, 1, 60)?;
        provider.dpop_nonce_required = src.number("dpop_nonce", 0u8, 0, 1)? == 1;
        provider.par_ttl = src.number("par_seconds", 60i64, 1, 600)?;
        provider.activation_code_ttl =
            src.number("activation_code_seconds", 86_400i64, 300, 30 * 86_400)?;
        provider.throttle.lockout_after = src.number("lockout_after", 100i64, 6, 100)?;
        if let Some(rp_id) = src.raw("webauthn_rp_id") {
            provider.webauthn.rp_id = rp_id;
        }
        if let Some(origin) = src.raw("webauthn_origin") {
            provider.webauthn.origin = origin;
        }
        provider
            .webauthn
            .check(&provider.issuer)
            .map_err(|e| e.to_string().replace("invalid request: ", ""))?;
        provider.throttle.per_address_limit =
            src.number("per_address_limit", 100i64, 1, 1_000_000)?;

        let trusted_proxies = networks("trusted_proxies", &src.string("trusted_proxies", ""))?;
        let outbound_allow = networks("outbound_allow", &src.string("outbound_allow", ""))?;

        let forwarded_header = match src.string("forwarded_header", "x-forwarded-for").as_str() {
            "x-forwarded-for" => ForwardedHeader::XForwardedFor,
            "forwarded" => ForwardedHeader::Forwarded,
            other => {
                return Err(format!(
                    "forwarded_header: {other:?} is neither \"x-forwarded-for\" nor \"forwarded\""
                ))
            }
        };

        Ok(Settings {
            trusted_proxies,
            outbound_allow,
            forwarded_header,
            public_url,
            listen,
            metrics_listen,
            database_url,
            db_pool_size: src.number("db_pool_size", 8u32, 1, 512)?,
            kek,
            tls,
            max_body_bytes: src.number("max_body_bytes", 64 * 1024usize, 1024, 16 * 1024 * 1024)?,
            workers: src.number("workers", cores, 1, 256)?,
            audit_checkpoint_seconds: src.number("audit_checkpoint_seconds", 2u64, 1, 3600)?,
            key_rotation: (
                src.number("key_rotation_days", 90i64, 0, 3650)? * 86_400,
                src.number("key_prepublish_seconds", 86_400i64, 0, 30 * 86_400)?,
            ),
            provider,
        })
    }
}

/// A list of addresses or networks (CIDR), separated by commas or spaces.
fn networks(key: &str, text: &str) -> Result<Vec<ipnet::IpNet>, String> {
    text.split([',', ' '])
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<ipnet::IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| format!("{key}: {s:?} is not an IP address or network"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_toml(text: &str) -> Result<Settings, String> {
        let dir = std::env::temp_dir().join(format!("cfg-{}", identity_core::crypto::random_id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("c.toml");
        std::fs::write(&p, text).unwrap();
        let r = Settings::load(Some(&p), Overrides::default());
        let _ = std::fs::remove_dir_all(&dir);
        r
    }

    const KEK: &str =
        "kek = \"0000000000000000000000000000000000000000000000000000000000000000\"\n";

    #[test]
    fn trusted_proxies_are_addresses_or_networks() {
        let s = load_toml(&format!(
            "{KEK}trusted_proxies = \"10.0.0.0/8, 192.168.1.5 ::1\"\n"
        ))
        .unwrap();
        assert_eq!(s.trusted_proxies.len(), 3);
        assert!(s.trusted_proxies[0].contains(&"10.1.2.3".parse::<std::net::IpAddr>().unwrap()));
        assert!(load_toml(KEK).unwrap().trusted_proxies.is_empty());
        let err = load_toml(&format!("{KEK}trusted_proxies = \"10.0.0.0/33\"\n")).unwrap_err();
        assert!(err.contains("trusted_proxies"), "{err}");
        assert_eq!(
            load_toml(KEK).unwrap().forwarded_header,
            ForwardedHeader::XForwardedFor
        );
        let s = load_toml(&format!("{KEK}forwarded_header = \"forwarded\"\n")).unwrap();
        assert_eq!(s.forwarded_header, ForwardedHeader::Forwarded);
        let err = load_toml(&format!("{KEK}forwarded_header = \"via\"\n")).unwrap_err();
        assert!(err.contains("forwarded_header"), "{err}");
    }

    #[test]
    fn defaults_load_with_a_kek() {
        let s = load_toml(KEK).unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.provider.issuer, "http://localhost:8080");
        assert_eq!(s.provider.policy.min_length, 12);
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            ("password_min_length = 3\n", "password_min_length"),
            ("argon2_memory_kib = \"lots\"\n", "argon2_memory_kib"),
            ("listen = \"0.0.0.0:8443\"\n", "listen"),
            ("nonsense = 1\n", "nonsense"),
            ("tls_cert = \"c.pem\"\n", "tls_cert"),
            ("public_url = \"http://idp.gov.example\"\n", "public_url"),
            ("lockout_after = 1000\n", "lockout_after"),
            ("webauthn_rp_id = \"evil.example\"\n", "webauthn"),
            ("webauthn_origin = \"http://localhost:9999\"\n", "webauthn"),
            ("public_url = \"http://127.0.0.1:8080\"\n", "webauthn"),
        ];
        for (text, key) in cases {
            let err = load_toml(&format!("{KEK}{text}")).unwrap_err();
            assert!(err.starts_with(key), "{text}: {err}");
        }
        let err = load_toml("").unwrap_err();
        assert!(err.starts_with("kek"), "{err}");
    }
}
