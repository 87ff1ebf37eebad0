//! What a token lets its holder do: the `scope` claim.
//!
//! The claim is a space-separated list of words (RFC 8693 §4.2 style). Tern understands three:
//! `publish:<pattern>`, `consume:<pattern>` and `admin`. A pattern is a topic name as the client
//! writes it (without the tenant prefix the gateway adds), a prefix ending in `*` (`ord*` matches
//! `ord`, `orders`, `ord-eu`) or `*` alone for every topic of the tenant.
//!
//! Words Tern does not understand (an identity provider's `openid`, `profile`, …) are ignored rather
//! than refused, so one token can serve several services. Malformed patterns are ignored too: a
//! pattern that can match nothing grants nothing. Only the first [`MAX_SCOPES`] words are looked
//! at, so a huge claim costs bounded work on every request.

/// At most this many scope words are read from a token; the rest are ignored.
pub const MAX_SCOPES: usize = 64;

/// The longest pattern accepted (a broker-side name is at most 127 characters).
const MAX_PATTERN_LEN: usize = 127;

/// One topic pattern of a `publish:` or `consume:` scope.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    /// `*`: every topic.
    All,
    /// `orders`: exactly this topic.
    Exact(String),
    /// `ord*`: every topic starting with `ord` (stored without the `*`).
    Prefix(String),
}

impl Pattern {
    /// Parses a pattern, or `None` when it is empty, too long or has characters a topic name
    /// cannot have (a `*` anywhere but at the end included).
    fn parse(text: &str) -> Option<Pattern> {
        if text == "*" {
            return Some(Pattern::All);
        }
        if text.is_empty() || text.len() > MAX_PATTERN_LEN {
            return None;
        }
        let (name, prefix) = match text.strip_suffix('*') {
            Some(name) => (name, true),
            None => (text, false),
        };
        if name.is_empty() || !name.bytes().all(is_name_byte) {
            return None;
        }
        Some(if prefix {
            Pattern::Prefix(name.to_string())
        } else {
            Pattern::Exact(name.to_string())
        })
    }

    fn matches(&self, topic: &str) -> bool {
        match self {
            Pattern::All => true,
            Pattern::Exact(name) => topic == name,
            Pattern::Prefix(prefix) => topic.starts_with(prefix.as_str()),
        }
    }
}

/// The characters of a name a client gives (`[A-Za-z0-9_-]`), see the naming rules.
pub(crate) fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// The permissions granted by a token's `scope` claim.
///
/// `admin` does not imply `publish:*` or `consume:*`: each endpoint asks for what it needs, and a
/// token for an operator's tooling need not be able to read every tenant message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes {
    admin: bool,
    publish: Vec<Pattern>,
    consume: Vec<Pattern>,
}

impl Scopes {
    /// Parses a space-separated scope string. Never fails: unknown or malformed words are
    /// ignored, and only the first [`MAX_SCOPES`] words are considered.
    pub fn parse(scope: &str) -> Scopes {
        let mut scopes = Scopes::default();
        for word in scope.split_ascii_whitespace().take(MAX_SCOPES) {
            if word == "admin" {
                scopes.admin = true;
            } else if let Some(pattern) = word.strip_prefix("publish:") {
                push_unique(&mut scopes.publish, Pattern::parse(pattern));
            } else if let Some(pattern) = word.strip_prefix("consume:") {
                push_unique(&mut scopes.consume, Pattern::parse(pattern));
            }
        }
        scopes
    }

    /// Whether a `publish:` pattern matches `topic` (the client's name, without tenant prefix).
    pub fn can_publish(&self, topic: &str) -> bool {
        self.publish.iter().any(|p| p.matches(topic))
    }

    /// Whether a `consume:` pattern matches `topic` (the client's name, without tenant prefix).
    pub fn can_consume(&self, topic: &str) -> bool {
        self.consume.iter().any(|p| p.matches(topic))
    }

    /// Whether the `admin` scope was granted.
    pub fn is_admin(&self) -> bool {
        self.admin
    }

    /// Whether no scope at all was granted.
    pub fn is_empty(&self) -> bool {
        !self.admin && self.publish.is_empty() && self.consume.is_empty()
    }
}

fn push_unique(patterns: &mut Vec<Pattern>, pattern: Option<Pattern>) {
    if let Some(pattern) = pattern
        && !patterns.contains(&pattern)
    {
        patterns.push(pattern);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_pattern_matches_only_that_topic() {
        let s = Scopes::parse("publish:orders");
        assert!(s.can_publish("orders"));
        assert!(!s.can_publish("orders2"));
        assert!(!s.can_publish("order"));
        assert!(!s.can_publish("Orders"));
        assert!(!s.can_consume("orders"));
        assert!(!s.is_admin());
    }

    #[test]
    fn prefix_pattern_matches_names_starting_with_it() {
        let s = Scopes::parse("publish:ord*");
        assert!(s.can_publish("ord"));
        assert!(s.can_publish("orders"));
        assert!(s.can_publish("ord-eu"));
        assert!(!s.can_publish("or"));
        assert!(!s.can_publish("payments"));
    }

    #[test]
    fn star_alone_matches_everything() {
        let s = Scopes::parse("consume:*");
        assert!(s.can_consume("orders"));
        assert!(s.can_consume("x"));
        assert!(!s.can_publish("orders"));
    }

    #[test]
    fn admin_is_its_own_scope() {
        let s = Scopes::parse("admin");
        assert!(s.is_admin());
        assert!(!s.can_publish("orders"));
        assert!(!s.can_consume("orders"));
        assert!(!s.is_empty());
    }

    #[test]
    fn several_words_and_whitespace() {
        let s = Scopes::parse("  openid publish:orders\tconsume:pay*  admin profile ");
        assert!(s.can_publish("orders"));
        assert!(s.can_consume("payments"));
        assert!(!s.can_consume("orders"));
        assert!(s.is_admin());
    }

    #[test]
    fn unknown_and_malformed_words_are_ignored() {
        for scope in [
            "",
            "   ",
            "openid email",
            "publish:",
            "publish:*orders",
            "publish:or*ders",
            "publish:**",
            "publish:ord%ers",
            "publish:a/b",
            "publish:acme%orders",
            "PUBLISH:orders",
            "publish=orders",
            "Admin",
            "administrator",
        ] {
            let s = Scopes::parse(scope);
            assert!(s.is_empty(), "{scope:?} gave {s:?}");
        }
        let long = format!("publish:{}", "a".repeat(MAX_PATTERN_LEN + 1));
        assert!(Scopes::parse(&long).is_empty());
        let longest = format!("publish:{}", "a".repeat(MAX_PATTERN_LEN));
        assert!(Scopes::parse(&longest).can_publish(&"a".repeat(MAX_PATTERN_LEN)));
    }

    #[test]
    fn only_the_first_words_count() {
        let mut words: Vec<String> = (0..MAX_SCOPES).map(|i| format!("publish:t{i}")).collect();
        words.push("admin".to_string());
        let s = Scopes::parse(&words.join(" "));
        assert!(s.can_publish("t0"));
        assert!(s.can_publish(&format!("t{}", MAX_SCOPES - 1)));
        assert!(!s.is_admin(), "the word past the limit must be ignored");

        let repeated = "publish:orders ".repeat(10_000);
        let s = Scopes::parse(&repeated);
        assert_eq!(s.publish.len(), 1);
    }
}
