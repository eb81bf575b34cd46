//! The event catalog: which event types exist, and which of them each webhook subscribed to.
//!
//! Publishing an unknown type is refused rather than silently delivered to nobody, and a webhook
//! cannot subscribe to a type that does not exist: both are typos that would otherwise lose events.
//!
//! A subscription may also name a wildcard `<prefix>.*` (tenants part): `order.*` matches every
//! type whose name starts with `order.` (`order.created`, `order.updated`, and types added under
//! `order.` later). The prefix must be a known one: the leading dotted segments of some type in
//! the catalog (`order` for `order.created`; `a` and `a.b` for `a.b.c`). Anything else with a `*`
//! (`foo.*`, `order.cr*`, `*.created`) is refused like an unknown type.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;

/// One known event type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct EventType {
    /// Dotted name, e.g. `order.created`.
    pub name: String,
    /// What the event means, shown by `GET /v1/event-types`.
    pub description: String,
}

/// The seed's five events.
pub const DEFAULT_EVENT_TYPES: &[(&str, &str)] = &[
    ("order.created", "A new order was placed."),
    ("order.updated", "An order changed: status, items, or amounts."),
    ("order.deleted", "An order was cancelled or removed."),
    ("table.updated", "A table changed status, seating or assignment."),
    ("inventory.low", "An inventory item fell below its reorder threshold."),
];

/// The event type of `POST /v1/webhooks/{id}/test`: reserved, so it cannot be published (nor
/// configured as a catalog type), but a subscription may name it without it counting as unknown.
pub const TEST_EVENT_TYPE: &str = "webhook.test";

/// Why an event type name or catalog entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    /// The type is well-formed but not in the catalog.
    #[error("unknown event type `{0}`")]
    Unknown(String),
    /// The type is reserved for the sender itself ([`TEST_EVENT_TYPE`]).
    #[error("event type `{0}` is reserved: it is sent only by POST /v1/webhooks/{{id}}/test")]
    Reserved(String),
    /// The name does not look like `resource.action`.
    #[error("invalid event type name `{0}`: use lowercase dotted segments like `order.created`")]
    InvalidName(String),
    /// A wildcard that is not `<known prefix>.*` (tenants part).
    #[error(
        "unknown event type pattern `{0}`: a wildcard is `<prefix>.*` where the prefix leads some known \
         event type (e.g. `order.*`); see GET /v1/event-types"
    )]
    UnknownPattern(String),
}

/// Checks the shape of an event type name: 2+ dot-separated segments of `[a-z0-9_-]`, at most 128 bytes.
pub fn validate_name(name: &str) -> Result<(), CatalogError> {
    let ok_segment = |s: &str| {
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    };
    let valid = name.len() <= 128 && name.contains('.') && name.split('.').all(ok_segment);
    if valid { Ok(()) } else { Err(CatalogError::InvalidName(name.to_string())) }
}

/// The known event types; cheap to share (interned names).
#[derive(Debug, Clone)]
pub struct EventCatalog {
    types: Vec<EventType>,
    index: HashMap<String, Arc<str>>,
}

impl Default for EventCatalog {
    fn default() -> Self {
        let mut c = Self { types: Vec::new(), index: HashMap::new() };
        for (name, description) in DEFAULT_EVENT_TYPES {
            c.insert(name, description);
        }
        c
    }
}

impl EventCatalog {
    /// The seed's catalog plus `extra` entries, each `name` or `name:description`
    /// (the form of `WEBHOOKS_EVENT_TYPES`).
    pub fn with_extra<S: AsRef<str>>(extra: &[S]) -> Result<Self, CatalogError> {
        let mut c = Self::default();
        for entry in extra {
            let entry = entry.as_ref().trim();
            if entry.is_empty() {
                continue;
            }
            let (name, description) = match entry.split_once(':') {
                Some((n, d)) => (n.trim(), d.trim()),
                None => (entry, ""),
            };
            validate_name(name)?;
            if name == TEST_EVENT_TYPE {
                return Err(CatalogError::Reserved(name.to_string()));
            }
            c.insert(name, description);
        }
        Ok(c)
    }

    fn insert(&mut self, name: &str, description: &str) {
        if self.index.contains_key(name) {
            return;
        }
        self.index.insert(name.to_string(), Arc::from(name));
        self.types.push(EventType { name: name.to_string(), description: description.to_string() });
    }

    /// All types, in catalog order.
    pub fn types(&self) -> &[EventType] {
        &self.types
    }

    /// The interned name of a known type, or why it is not one.
    pub fn resolve(&self, name: &str) -> Result<Arc<str>, CatalogError> {
        match self.index.get(name) {
            Some(n) => Ok(n.clone()),
            None if name == TEST_EVENT_TYPE => Err(CatalogError::Reserved(name.to_string())),
            None => {
                validate_name(name)?;
                Err(CatalogError::Unknown(name.to_string()))
            }
        }
    }

    /// A type a subscription may name: a known one, or the reserved [`TEST_EVENT_TYPE`].
    pub fn resolve_subscribable(&self, name: &str) -> Result<Arc<str>, CatalogError> {
        if name == TEST_EVENT_TYPE {
            return Ok(Arc::from(TEST_EVENT_TYPE));
        }
        self.resolve(name)
    }

    /// Validates a webhook's subscription list. `None`, an empty list and `["*"]` mean every type.
    /// Entries are known types or wildcards `<known prefix>.*` ([`EventCatalog::resolve_entry`]).
    pub fn subscription(&self, events: Option<&[String]>) -> Result<Subscription, CatalogError> {
        let Some(events) = events else {
            return Ok(Subscription::All);
        };
        if events.is_empty() || events.iter().any(|e| e == "*") {
            return Ok(Subscription::All);
        }
        let mut names = Vec::with_capacity(events.len());
        for e in events {
            let n = self.resolve_entry(e)?;
            if !names.contains(&n) {
                names.push(n);
            }
        }
        Ok(Subscription::Only(names))
    }

    // ----- tenants part: wildcard subscriptions -----

    /// A subscription entry: a known type, or a wildcard `<known prefix>.*` (returned as written).
    pub fn resolve_entry(&self, entry: &str) -> Result<Arc<str>, CatalogError> {
        if !entry.contains('*') {
            return self.resolve_subscribable(entry);
        }
        match entry.strip_suffix(".*") {
            Some(prefix) if !prefix.contains('*') && self.prefixes().iter().any(|p| p == prefix) => {
                Ok(Arc::from(entry))
            }
            _ => Err(CatalogError::UnknownPattern(entry.to_string())),
        }
    }

    /// The known prefixes: every proper leading run of dotted segments of a catalog type, in
    /// catalog order, each once (`order`, `table`, `inventory` for the seed's catalog).
    pub fn prefixes(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for t in &self.types {
            let mut end = 0;
            while let Some(dot) = t.name[end..].find('.') {
                end += dot;
                let p = &t.name[..end];
                if !out.iter().any(|o| o == p) {
                    out.push(p.to_string());
                }
                end += 1;
            }
        }
        out
    }

    /// The wildcards a subscription may name: `<prefix>.*` for each of [`EventCatalog::prefixes`].
    pub fn patterns(&self) -> Vec<String> {
        self.prefixes().into_iter().map(|p| format!("{p}.*")).collect()
    }
}

/// Which events a webhook receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subscription {
    /// Every event type, including ones added to the catalog later.
    All,
    /// Exactly these types, and the types under these wildcards (`order.*`).
    Only(Vec<Arc<str>>),
}

impl Subscription {
    /// Whether an event of this type goes to the webhook.
    pub fn matches(&self, event_type: &str) -> bool {
        match self {
            Subscription::All => true,
            Subscription::Only(names) => names.iter().any(|n| entry_matches(n, event_type)),
        }
    }
}

/// Whether one subscription entry (a type, or a wildcard `prefix.*`) takes `event_type`.
fn entry_matches(entry: &str, event_type: &str) -> bool {
    match entry.strip_suffix('*') {
        // `order.*` → `order.`: the dot keeps `orders.created` out.
        Some(prefix) => event_type.len() > prefix.len() && event_type.starts_with(prefix),
        None => entry == event_type,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_catalog_is_the_seeds_five() {
        let c = EventCatalog::default();
        let names: Vec<_> = c.types().iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["order.created", "order.updated", "order.deleted", "table.updated", "inventory.low"]);
        assert!(c.resolve("order.created").is_ok());
        assert_eq!(c.resolve("order.shipped"), Err(CatalogError::Unknown("order.shipped".into())));
        assert_eq!(c.resolve("Order Created"), Err(CatalogError::InvalidName("Order Created".into())));
    }

    #[test]
    fn catalog_extends_from_config() {
        let c = EventCatalog::with_extra(&["reservation.created: A table was booked", "menu.updated", " "]).unwrap();
        assert_eq!(c.types().len(), 7);
        assert_eq!(c.types()[5].description, "A table was booked");
        assert!(c.resolve("menu.updated").is_ok());
        assert!(EventCatalog::with_extra(&["nodot"]).is_err());
        assert!(EventCatalog::with_extra(&["a..b"]).is_err());
        // Re-adding a default keeps one entry.
        assert_eq!(EventCatalog::with_extra(&["order.created"]).unwrap().types().len(), 5);
    }

    #[test]
    fn subscriptions_default_to_all_and_reject_unknown_types() {
        let c = EventCatalog::default();
        assert_eq!(c.subscription(None).unwrap(), Subscription::All);
        assert_eq!(c.subscription(Some(&[])).unwrap(), Subscription::All);
        assert_eq!(c.subscription(Some(&["*".into()])).unwrap(), Subscription::All);
        let s = c.subscription(Some(&["order.created".into(), "order.created".into()])).unwrap();
        assert!(s.matches("order.created"));
        assert!(!s.matches("order.updated"));
        assert_eq!(s, Subscription::Only(vec![Arc::from("order.created")]));
        assert!(c.subscription(Some(&["order.shiped".into()])).is_err());
    }

    #[test]
    fn wildcards_name_known_prefixes_and_match_what_is_under_them() {
        let c = EventCatalog::with_extra(&["orders.created", "a.b.c"]).unwrap();
        assert_eq!(c.prefixes(), ["order", "table", "inventory", "orders", "a", "a.b"]);
        let s = c.subscription(Some(&["order.*".into(), "table.updated".into()])).unwrap();
        for yes in ["order.created", "order.updated", "order.deleted", "table.updated"] {
            assert!(s.matches(yes), "{yes}");
        }
        for no in ["orders.created", "inventory.low", "order", "table.created"] {
            assert!(!s.matches(no), "{no}");
        }
        assert!(c.subscription(Some(&["a.b.*".into()])).unwrap().matches("a.b.c"));
        assert!(c.subscription(Some(&["a.*".into()])).unwrap().matches("a.b.c"));
        for bad in ["foo.*", "order.cr*", "*.created", "order.*.*", "order*", ".*", "order.created.*", "**"] {
            assert_eq!(c.subscription(Some(&[bad.into()])), Err(CatalogError::UnknownPattern(bad.into())), "{bad}");
        }
        assert_eq!(c.patterns()[0], "order.*");
    }

    #[test]
    fn the_test_event_type_is_reserved_but_subscribable() {
        let c = EventCatalog::default();
        assert_eq!(c.resolve(TEST_EVENT_TYPE), Err(CatalogError::Reserved(TEST_EVENT_TYPE.into())));
        assert!(c.types().iter().all(|t| t.name != TEST_EVENT_TYPE));
        let s = c.subscription(Some(&[TEST_EVENT_TYPE.into(), "order.created".into()])).unwrap();
        assert!(s.matches(TEST_EVENT_TYPE) && s.matches("order.created"));
        assert_eq!(
            EventCatalog::with_extra(&["webhook.test"]).unwrap_err(),
            CatalogError::Reserved(TEST_EVENT_TYPE.into())
        );
    }
}
