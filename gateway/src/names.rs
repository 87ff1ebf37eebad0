//! Naming and tenancy: the names clients use and the broker-side names they map to.
//!
//! With auth on, the token's tenant namespaces every topic and group: `orders` of tenant `acme`
//! is the broker topic `acme%orders` (RocketMQ's namespace spelling). With auth off names pass
//! through unchanged, so RocketMQ clients and HTTP clients share topics. Clients never see the
//! prefix: every name that goes back out passes through [`Namespace::client_name`].

use crate::error::ApiError;

/// Longest broker-side name (`tenant%name`), the broker's topic limit.
pub const MAX_BROKER_NAME_LEN: usize = 127;
/// Separator between tenant and name on the broker.
pub const TENANT_SEPARATOR: char = '%';

/// Whether `name` is a valid client-given name: `[A-Za-z0-9_-]+`, at most 127 characters.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_BROKER_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The namespace a request works in: its tenant's, or none when auth is off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    tenant: Option<String>,
}

/// What a name names, for error messages.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Topic,
    Group,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Topic => "topic",
            Kind::Group => "group",
        }
    }
}

impl Namespace {
    /// No namespace: auth is off.
    pub fn open() -> Namespace {
        Namespace { tenant: None }
    }

    /// The tenant's namespace. The tenant name was validated with the token.
    pub fn tenant(tenant: impl Into<String>) -> Namespace {
        Namespace {
            tenant: Some(tenant.into()),
        }
    }

    pub fn tenant_name(&self) -> Option<&str> {
        self.tenant.as_deref()
    }

    /// The broker-side name of a client-given topic or group, or 400 when the name is invalid.
    pub fn broker_name(&self, kind: Kind, name: &str) -> Result<String, ApiError> {
        let full = match &self.tenant {
            Some(tenant) => format!("{tenant}{TENANT_SEPARATOR}{name}"),
            None => name.to_string(),
        };
        if !is_valid_name(name) || full.len() > MAX_BROKER_NAME_LEN {
            return Err(ApiError::bad_request(
                match kind {
                    Kind::Topic => "invalid-topic",
                    Kind::Group => "invalid-group",
                },
                format!(
                    "{} name `{}` must be 1..={} characters of [A-Za-z0-9_-] ({} with the tenant prefix)",
                    kind.as_str(),
                    name.chars().take(64).collect::<String>(),
                    MAX_BROKER_NAME_LEN,
                    MAX_BROKER_NAME_LEN
                ),
            ));
        }
        Ok(full)
    }

    pub fn topic(&self, name: &str) -> Result<String, ApiError> {
        self.broker_name(Kind::Topic, name)
    }

    pub fn group(&self, name: &str) -> Result<String, ApiError> {
        self.broker_name(Kind::Group, name)
    }

    /// The client's name for a broker-side name, or `None` when it is outside this namespace
    /// (another tenant's, or a system topic), which callers must then hide.
    pub fn client_name<'a>(&self, broker_name: &'a str) -> Option<&'a str> {
        let name = match &self.tenant {
            Some(tenant) => broker_name
                .strip_prefix(tenant.as_str())?
                .strip_prefix(TENANT_SEPARATOR)?,
            None => broker_name,
        };
        is_valid_name(name).then_some(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_prefix_and_hide() {
        let acme = Namespace::tenant("acme");
        assert_eq!(acme.topic("orders").unwrap(), "acme%orders");
        assert_eq!(acme.group("billing").unwrap(), "acme%billing");
        assert_eq!(acme.client_name("acme%orders"), Some("orders"));
        assert_eq!(acme.client_name("other%orders"), None);
        assert_eq!(acme.client_name("acmeco%orders"), None);
        assert_eq!(acme.client_name("orders"), None);
        assert_eq!(acme.client_name("acme%%RETRY%x"), None);
        let open = Namespace::open();
        assert_eq!(open.topic("orders").unwrap(), "orders");
        assert_eq!(open.client_name("acme%orders"), None);
        assert_eq!(
            open.client_name("SCHEDULE_TOPIC_XXXX"),
            Some("SCHEDULE_TOPIC_XXXX")
        );
    }

    #[test]
    fn refuses_bad_names() {
        let open = Namespace::open();
        for bad in ["", "a b", "a%b", "a|b", "ü", &"x".repeat(128)] {
            assert!(open.topic(bad).is_err(), "{bad}");
        }
        let long_tenant = Namespace::tenant("t".repeat(64));
        assert!(long_tenant.topic(&"x".repeat(63)).is_err());
        assert!(long_tenant.topic(&"x".repeat(62)).is_ok());
    }
}
