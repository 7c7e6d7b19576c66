//! Requests the server makes on a client's behalf: signing callbacks, back-channel logout
//! tokens and `jwks_uri` fetches. The client chose the URL, so without a guard any client
//! could make the server reach into the operator's own network (a database's HTTP port, a
//! cloud metadata service at 169.254.169.254) and learn from the timing or the error.
//!
//! Every such request goes through [`Outbound`]: a literal address in the URL is checked
//! before anything is sent, and a name is resolved by our own resolver, which refuses it
//! if any address it has is internal and otherwise hands exactly those addresses to the
//! connection. The connection therefore goes to an address that was checked: a name whose
//! record changes between the check and the connection (DNS rebinding) gains nothing.
//! Redirects are not followed and proxies from the environment are not used, since either
//! would send the request somewhere that was never checked.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

/// Whether `ip` is one of the operator's own addresses rather than the internet's:
/// loopback, private (RFC 1918), shared (RFC 6598), link-local, unique-local (RFC 4193),
/// unspecified, multicast, broadcast or reserved. IPv4 carried in IPv6 (mapped,
/// compatible, NAT64) is judged as the IPv4 address it carries.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_v4(v6) {
                return internal_v4(v4);
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique-local fc00::/7
                || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (first & 0xffc0) == 0xfec0 // site-local fec0::/10 (deprecated, still routed inside)
        }
    }
}

fn internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // shared address space 100.64.0.0/10
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking 198.18.0.0/15
        || a >= 240 // reserved
}

/// The IPv4 address an IPv6 address carries: mapped `::ffff:a.b.c.d`, the old compatible
/// `::a.b.c.d`, the NAT64 prefixes `64:ff9b::/96` and the local-use `64:ff9b:1::/48` (RFC
/// 8215; the address in the last 32 bits, as operators deploy it), 6to4 `2002:a.b.c.d::/48`,
/// and Teredo `2001:0::/32` (the client's address, inverted, in the last 32 bits).
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let v4 = |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    let tail = v4(s[6], s[7]);
    match s {
        [0, 0, 0, 0, 0, 0xffff, ..] => Some(tail),
        [0, 0, 0, 0, 0, 0, hi, _] if hi != 0 => Some(tail),
        [0x64, 0xff9b, 0, 0, 0, 0, ..] => Some(tail),
        [0x64, 0xff9b, 1, ..] => Some(tail),
        [0x2002, hi, lo, ..] => Some(v4(hi, lo)),
        [0x2001, 0, ..] => Some(v4(!s[6], !s[7])),
        _ => None,
    }
}

/// Which addresses requests on a client's behalf may reach: the internet, and the internal
/// networks the operator allows (`outbound_allow`), for tests and e-services inside.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    allow: Arc<[IpNet]>,
}

impl Policy {
    /// A policy that allows these internal networks.
    pub fn new(allow: Vec<IpNet>) -> Self {
        Policy {
            allow: allow.into(),
        }
    }

    /// Whether a request may go to `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        !is_internal(ip) || self.allow.iter().any(|n| n.contains(&ip))
    }

    /// Refuses a URL whose host is a literal address the policy does not permit (names are
    /// checked when they are resolved).
    fn check_url(&self, uri: &str) -> Result<(), String> {
        let url = url::Url::parse(uri).map_err(|_| format!("{uri:?} is not a URL"))?;
        let ip = match url.host() {
            Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
            Some(url::Host::Domain(_)) => return Ok(()),
            None => return Err(format!("{uri:?} has no host")),
        };
        if self.permits(ip) {
            Ok(())
        } else {
            Err(format!(
                "{ip} is an internal address (outbound_allow does not permit it)"
            ))
        }
    }

    /// An HTTP client whose every connection obeys the policy.
    fn http_client(&self, timeout: Duration) -> Result<reqwest::Client, String> {
        reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(Resolver {
                policy: self.clone(),
            }))
            .build()
            .map_err(|e| format!("outgoing HTTP client: {e}"))
    }
}

/// Resolves names with the system resolver and refuses a name any of whose addresses the
/// policy does not permit (not just skipping them: a name that mixes internal and public
/// addresses is a trick, not a mistake).
struct Resolver {
    policy: Policy,
}

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addrs.is_empty() {
                return Err(format!("{host} has no address").into());
            }
            if let Some(bad) = addrs.iter().find(|a| !policy.permits(a.ip())) {
                return Err(format!(
                    "{host} resolves to {}, an internal address (outbound_allow does not permit it)",
                    bad.ip()
                )
                .into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// The HTTP client for requests on a client's behalf.
#[derive(Clone, Debug)]
pub struct Outbound {
    policy: Policy,
    client: reqwest::Client,
}

impl Outbound {
    /// A client with `timeout` per request.
    pub fn new(policy: Policy, timeout: Duration) -> Result<Self, String> {
        let client = policy.http_client(timeout)?;
        Ok(Outbound { policy, client })
    }

    /// A POST to `uri`, or why the policy refuses it.
    pub fn post(&self, uri: &str) -> Result<reqwest::RequestBuilder, String> {
        self.policy.check_url(uri)?;
        Ok(self.client.post(uri))
    }

    /// A GET of `uri`, or why the policy refuses it.
    pub fn get(&self, uri: &str) -> Result<reqwest::RequestBuilder, String> {
        self.policy.check_url(uri)?;
        Ok(self.client.get(uri))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses() {
        for ip in [
            "127.0.0.1",
            "127.8.9.10",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::a00:1",
            "2002:7f00:1::1",
            "2002:a9fe:a9fe::",
            // Teredo for 192.168.0.1: the client address inverted in the last 32 bits.
            "2001:0:4136:e378:8000:63bf:3f57:fffe",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "203.0.113.7",
            "2001:db8::1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "2002:808:808::1",
        ] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn allowed_networks_and_literal_urls() {
        let none = Policy::default();
        let lab = Policy::new(vec!["10.20.0.0/16".parse().unwrap()]);
        assert!(none.check_url("https://10.20.1.2/cb").is_err());
        assert!(lab.check_url("https://10.20.1.2/cb").is_ok());
        assert!(lab.check_url("https://10.21.1.2/cb").is_err());
        assert!(none.check_url("http://[::ffff:7f00:1]:8080/").is_err());
        assert!(none.check_url("https://[fd00::5]/").is_err());
        assert!(none.check_url("https://203.0.113.7/cb").is_ok());
        // Names wait for the resolver.
        assert!(none.check_url("https://eservice.example/cb").is_ok());
    }

    /// A name that resolves to loopback is refused by the resolver itself, so the request
    /// never connects; the same with the network allowed connects (and here finds nothing
    /// listening, a different error).
    #[tokio::test]
    async fn names_are_checked_after_resolution() {
        let refused = Outbound::new(Policy::default(), Duration::from_secs(2)).unwrap();
        let err = refused
            .get("http://localhost:9/")
            .unwrap()
            .send()
            .await
            .unwrap_err();
        let chain = error_chain(&err);
        assert!(chain.contains("internal address"), "{chain}");
        let allowed = Outbound::new(
            Policy::new(vec![
                "127.0.0.0/8".parse().unwrap(),
                "::1/128".parse().unwrap(),
            ]),
            Duration::from_secs(2),
        )
        .unwrap();
        let err = allowed
            .get("http://localhost:9/")
            .unwrap()
            .send()
            .await
            .unwrap_err();
        assert!(!error_chain(&err).contains("internal address"));
    }

    fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
        let mut out = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            out.push_str(": ");
            out.push_str(&s.to_string());
            source = s.source();
        }
        out
    }
}
