//! The SSRF guard: a rule's `http` action must not reach the machine it runs on, its
//! network, or a cloud metadata service, whatever URL a template rendered.
//!
//! Addresses are checked *after* DNS resolution, by the resolver the HTTP client
//! connects through (`GuardedResolver`), so the connection goes to the very address
//! that was checked (no second lookup that a short-TTL DNS record could answer
//! differently). IP-literal URLs never reach a resolver, so [`check_url`] checks them
//! before sending. Redirects are never followed (see the connector), so an allowed
//! server cannot bounce a request inward.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// A destination the guard will not connect to, and why. Its text names the host and
/// the address class, never the URL's path or query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refused to connect to {host}: {reason}")]
pub struct Refused {
    pub host: String,
    pub reason: String,
}

impl Refused {
    fn new(host: &str, reason: impl Into<String>) -> Self {
        Self {
            host: host.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Hosts the guard lets through unchecked, matched exactly as the URL writes its host
/// (names case-insensitively, IPs by value: `[::1]` and `::1` are the same). An allowed
/// IP does not allow a name that resolves to it.
#[derive(Debug, Clone, Default)]
pub struct AllowedHosts {
    names: BTreeSet<String>,
    ips: BTreeSet<IpAddr>,
}

impl AllowedHosts {
    pub fn new<I, S>(hosts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut allowed = Self::default();
        for host in hosts {
            let host = host.as_ref().trim();
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            match bare.parse::<IpAddr>() {
                Ok(ip) => allowed.ips.insert(ip),
                Err(_) => allowed.names.insert(normal_name(host)),
            };
        }
        allowed
    }

    fn allows_name(&self, name: &str) -> bool {
        self.names.contains(&normal_name(name))
    }

    fn allows_ip(&self, ip: IpAddr) -> bool {
        self.ips.contains(&ip)
    }
}

fn normal_name(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Checks what can be checked before sending: the scheme, and the address when the
/// host is an IP literal. Names are checked when they are resolved.
pub fn check_url(url: &Url, allowed: &AllowedHosts) -> Result<(), Refused> {
    let host_text = url.host_str().unwrap_or_default();
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Refused::new(
            host_text,
            format!(
                "the `{}` scheme is not allowed (only http and https)",
                url.scheme()
            ),
        ));
    }
    let ip = match url.host() {
        None => return Err(Refused::new("", "the URL has no host")),
        Some(Host::Domain(_)) => return Ok(()),
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip),
    };
    if allowed.allows_ip(ip) {
        return Ok(());
    }
    match refusal_reason(ip) {
        Some(reason) => Err(Refused::new(host_text, format!("{ip} is {reason}"))),
        None => Ok(()),
    }
}

/// Why the guard refuses `ip`, or `None` for a public address.
pub fn refusal_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(ip) => v4_reason(ip),
        IpAddr::V6(ip) => v6_reason(ip),
    }
}

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b) {
        _ if ip == Ipv4Addr::new(169, 254, 169, 254) => "the cloud metadata address",
        _ if ip.is_broadcast() => "the broadcast address",
        _ if ip.is_unspecified() || a == 0 => "unspecified (0.0.0.0/8)",
        (127, _) => "a loopback address",
        (10, _) | (192, 168) => "a private address",
        (172, 16..=31) => "a private address",
        (100, 64..=127) => "a shared (CGNAT) address",
        (169, 254) => "a link-local address",
        (224..=239, _) => "a multicast address",
        (240..=255, _) => "a reserved address",
        (192, 0) if c == 0 => "a reserved (IETF protocol) address",
        (198, 18..=19) => "a reserved (benchmarking) address",
        _ => return None,
    })
}

fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.is_unspecified() {
        return Some("unspecified (::)");
    }
    if ip.is_loopback() {
        return Some("a loopback address");
    }
    if let Some(v4) = embedded_v4(ip) {
        // `::ffff:127.0.0.1` and friends reach the IPv4 address they carry.
        return v4_reason(v4);
    }
    let first = ip.segments()[0];
    Some(match first {
        _ if first & 0xffc0 == 0xfe80 => "a link-local address",
        _ if first & 0xffc0 == 0xfec0 => "a site-local address",
        _ if first & 0xfe00 == 0xfc00 => "a unique-local address",
        _ if first & 0xff00 == 0xff00 => "a multicast address",
        _ => return None,
    })
}

/// The IPv4 address inside an IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible
/// (`::a.b.c.d`), NAT64 (`64:ff9b::a.b.c.d`) or 6to4 (`2002:AABB:CCDD::`) address.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = ip.segments();
    let low = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    match s {
        [0, 0, 0, 0, 0, 0, hi, lo] => Some(low(hi, lo)),
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(low(hi, lo)),
        [0x2002, hi, lo, ..] => Some(low(hi, lo)),
        _ => None,
    }
}

/// A DNS resolver that drops every refused address (and fails when none is left), for
/// the HTTP client to connect through.
#[derive(Debug, Clone)]
pub(crate) struct GuardedResolver {
    allowed: Arc<AllowedHosts>,
}

impl GuardedResolver {
    pub(crate) fn new(allowed: Arc<AllowedHosts>) -> Self {
        Self { allowed }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allowed = self.allowed.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if allowed.allows_name(&host) {
                let addrs: Addrs = Box::new(found.into_iter());
                return Ok(addrs);
            }
            let mut first_refusal = None;
            let mut kept = Vec::new();
            for addr in found {
                match refusal_reason(addr.ip()) {
                    None => kept.push(addr),
                    Some(reason) => {
                        first_refusal.get_or_insert_with(|| {
                            Refused::new(&host, format!("it resolves to {}, {reason}", addr.ip()))
                        });
                    }
                }
            }
            if kept.is_empty() {
                let refused = first_refusal
                    .unwrap_or_else(|| Refused::new(&host, "it resolves to no address"));
                return Err(Box::new(refused) as Box<dyn std::error::Error + Send + Sync>);
            }
            let addrs: Addrs = Box::new(kept.into_iter());
            Ok(addrs)
        })
    }
}

impl fmt::Display for AllowedHosts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = self.names.iter().map(String::as_str);
        let ips = self.ips.iter().map(ToString::to_string);
        let all: Vec<String> = names.map(str::to_owned).chain(ips).collect();
        f.write_str(&all.join(", "))
    }
}

/// The guard's refusal inside a transport error's chain of causes, if it is there.
pub(crate) fn find_refusal(error: &(dyn std::error::Error + 'static)) -> Option<Refused> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(inner) = cause {
        if let Some(refused) = inner.downcast_ref::<Refused>() {
            return Some(refused.clone());
        }
        cause = inner.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(text: &str) -> bool {
        refusal_reason(text.parse().unwrap()).is_some()
    }

    #[test]
    fn refuses_internal_addresses() {
        for ip in [
            "127.0.0.1",
            "127.255.0.9",
            "0.0.0.0",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "169.254.169.254",
            "169.254.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "fe80::1",
            "fc00::1",
            "fd00:ec2::254",
            "ff02::1",
        ] {
            assert!(refused(ip), "{ip} should be refused");
        }
    }

    #[test]
    fn lets_public_addresses_through() {
        for ip in [
            "93.184.215.14",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(!refused(ip), "{ip} should be allowed");
        }
    }

    #[test]
    fn checks_ip_literal_urls_and_schemes() {
        let none = AllowedHosts::default();
        let check =
            |url: &str, allowed: &AllowedHosts| check_url(&Url::parse(url).unwrap(), allowed);
        assert!(check("http://[::1]:8080/x", &none).is_err());
        assert!(check("http://[::ffff:127.0.0.1]/", &none).is_err());
        // WHATWG URL parsing turns these spellings into 127.0.0.1.
        assert!(check("http://2130706433/", &none).is_err());
        assert!(check("http://0x7f.1/", &none).is_err());
        assert!(check("file:///etc/passwd", &none).is_err());
        assert!(check("https://example.com/hook", &none).is_ok());
        let local = AllowedHosts::new(["127.0.0.1", "[::1]"]);
        assert!(check("http://127.0.0.1:9/", &local).is_ok());
        assert!(check("http://[::1]:9/", &local).is_ok());
        let error = check("http://10.0.0.7/secret?token=abc", &local).unwrap_err();
        assert_eq!(
            error.to_string(),
            "refused to connect to 10.0.0.7: 10.0.0.7 is a private address"
        );
    }
}
