//! Tag subscription expressions (`*`, `a`, `a || b`) and the tags codes the broker filters on.

use std::collections::BTreeSet;

use crate::java_hash::string_hash;

/// Longest subscription expression accepted.
pub const MAX_EXPRESSION_LEN: usize = 4096;

/// A parsed tag expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagFilter {
    /// `*` or empty: everything.
    All,
    /// Any of these tags.
    Tags(BTreeSet<String>),
}

impl TagFilter {
    /// Parses `*`, `""` or `tag1 || tag2 …`. `None` when the expression is too long or has an
    /// empty alternative.
    pub fn parse(expression: &str) -> Option<TagFilter> {
        let expression = expression.trim();
        if expression.len() > MAX_EXPRESSION_LEN {
            return None;
        }
        if expression.is_empty() || expression == "*" {
            return Some(TagFilter::All);
        }
        let mut tags = BTreeSet::new();
        for tag in expression.split("||") {
            let tag = tag.trim();
            if tag.is_empty() {
                return None;
            }
            tags.insert(tag.to_string());
        }
        Some(TagFilter::Tags(tags))
    }

    /// The tags codes (Java hashes) the broker compares ConsumeQueue entries with.
    pub fn codes(&self) -> Option<BTreeSet<i64>> {
        match self {
            TagFilter::All => None,
            TagFilter::Tags(tags) => Some(tags.iter().map(|t| i64::from(string_hash(t))).collect()),
        }
    }

    /// The exact check a client makes after the broker's hash filter (hashes can collide).
    pub fn matches(&self, tag: Option<&str>) -> bool {
        match self {
            TagFilter::All => true,
            TagFilter::Tags(tags) => tag.is_some_and(|t| tags.contains(t)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_expressions() {
        assert_eq!(TagFilter::parse("*"), Some(TagFilter::All));
        assert_eq!(TagFilter::parse(" "), Some(TagFilter::All));
        let f = TagFilter::parse("a || b").unwrap();
        assert!(f.matches(Some("a")) && f.matches(Some("b")) && !f.matches(Some("c")));
        assert!(!f.matches(None));
        assert_eq!(f.codes().unwrap().len(), 2);
        assert_eq!(TagFilter::parse("a || "), None);
    }
}
