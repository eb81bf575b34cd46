//! The SSRF guard as reqwest's DNS resolver: a name is resolved (or looked up in the static
//! table), and only the addresses [`TargetPolicy`] allows are handed back to the connector, which
//! dials those and nothing else. There is no second lookup between the check and the connect, so
//! a name re-pointed between the two (DNS rebinding) cannot slip through.
//!
//! Literal IP targets never reach a resolver (hyper's connector dials them directly): they are
//! screened before the request is made (`super::exchange`).

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::model::TargetPolicy;

/// Why the guard refused a name: found in a failed request's error chain and reported as
/// [`crate::retry::AttemptOutcome::Refused`] (not retried).
#[derive(Debug, Clone)]
pub(crate) struct GuardRefusal(pub(crate) String);

impl fmt::Display for GuardRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GuardRefusal {}

/// Resolves with the system resolver (or the static table) and screens with the policy.
#[derive(Debug, Clone)]
pub(crate) struct GuardedResolver {
    policy: TargetPolicy,
    /// Lower-case names answered from this table instead of DNS (still screened).
    table: Arc<HashMap<String, Vec<IpAddr>>>,
    /// The configured proxy's host name: the operator chose it, so it is not screened (with a
    /// proxy, no target name is ever resolved here).
    proxy_host: Option<String>,
}

impl GuardedResolver {
    pub(crate) fn new(policy: TargetPolicy, table: &[(String, Vec<IpAddr>)], proxy_host: Option<String>) -> Self {
        let table = table.iter().map(|(name, ips)| (name.trim().to_ascii_lowercase(), ips.clone())).collect();
        Self { policy, table: Arc::new(table), proxy_host: proxy_host.map(|h| h.to_ascii_lowercase()) }
    }

    /// The addresses `host` may be dialed at (port 0: the connector sets the URL's port).
    pub(crate) async fn addresses(&self, host: &str) -> Result<Vec<SocketAddr>, ResolveError> {
        let name = host.to_ascii_lowercase();
        let addrs: Vec<SocketAddr> = match self.table.get(&name) {
            Some(ips) => ips.iter().map(|ip| SocketAddr::new(*ip, 0)).collect(),
            None => tokio::net::lookup_host((host, 0)).await.map_err(ResolveError::Lookup)?.collect(),
        };
        if self.proxy_host.as_deref() == Some(name.as_str()) {
            return Ok(addrs);
        }
        self.policy.screen(host, addrs).map_err(|why| ResolveError::Refused(GuardRefusal(why)))
    }
}

/// A failed resolution: the lookup failed, or the guard refused every address.
#[derive(Debug)]
pub(crate) enum ResolveError {
    Lookup(std::io::Error),
    Refused(GuardRefusal),
}

impl ResolveError {
    fn boxed(self) -> Box<dyn std::error::Error + Send + Sync> {
        match self {
            ResolveError::Lookup(e) => Box::new(e),
            ResolveError::Refused(r) => Box::new(r),
        }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let this = self.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs = this.addresses(&host).await.map_err(ResolveError::boxed)?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn table_names_are_screened_and_filtered_in_order() {
        let table = vec![
            ("Rebind.Test".to_string(), vec![ip("169.254.169.254")]),
            ("mixed.test".to_string(), vec![ip("127.0.0.3"), ip("127.0.0.1"), ip("10.1.1.1")]),
            ("proxy.test".to_string(), vec![ip("10.0.0.5")]),
        ];
        let policy = TargetPolicy { allow_private: false, allowed: vec!["127.0.0.1/32".parse().unwrap()] };
        let r = GuardedResolver::new(policy, &table, Some("PROXY.test".into()));
        match r.addresses("rebind.test").await {
            Err(ResolveError::Refused(why)) => {
                assert!(why.0.contains("non-public") && why.0.contains("169.254.169.254"), "{why}")
            }
            other => panic!("{other:?}"),
        }
        // Only the allowed address is handed to the connector: the one dialed.
        assert_eq!(r.addresses("MIXED.test").await.unwrap(), vec!["127.0.0.1:0".parse().unwrap()]);
        // The proxy's own name is the operator's choice and passes unscreened.
        assert_eq!(r.addresses("proxy.test").await.unwrap(), vec!["10.0.0.5:0".parse().unwrap()]);
        let open = GuardedResolver::new(TargetPolicy::from(true), &table, None);
        assert_eq!(open.addresses("rebind.test").await.unwrap(), vec!["169.254.169.254:0".parse().unwrap()]);
    }

    /// `localhost` resolves on the machine itself (no query leaves it) and is refused unless
    /// loopback is allowed.
    #[tokio::test]
    async fn localhost_resolves_locally_and_is_refused() {
        let strict = GuardedResolver::new(TargetPolicy::default(), &[], None);
        assert!(matches!(strict.addresses("localhost").await, Err(ResolveError::Refused(_))));
        let open = GuardedResolver::new(TargetPolicy::from(true), &[], None);
        let addrs = open.addresses("localhost").await.unwrap();
        assert!(!addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
    }
}
