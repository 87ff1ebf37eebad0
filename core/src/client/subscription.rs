//! A tag subscription as a client holds it: the expression it sends, the filter it re-checks.
//!
//! The broker filters ConsumeQueue entries by the tag's hash code (reference §3), so two tags with
//! the same Java hash both pass; the client compares the real tag afterwards (reference §8). The
//! same expression also goes into the consumer's heartbeat as `SubscriptionData`, with the tags and
//! their codes spelled out the way RocketMQ's `FilterAPI` does.

use std::collections::BTreeSet;

use crate::protocol::body::SubscriptionData;
use crate::protocol::subscription::{MAX_EXPRESSION_LEN, TagFilter};

use super::error::ClientError;

/// A parsed tag expression: `*` (everything) or `tag1 || tag2 || …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    expression: String,
    filter: TagFilter,
}

impl Subscription {
    /// Every message.
    pub fn all() -> Subscription {
        Subscription {
            expression: "*".into(),
            filter: TagFilter::All,
        }
    }

    /// Parses `*`, an empty string (= `*`) or `a || b`.
    pub fn parse(expression: &str) -> Result<Subscription, ClientError> {
        let filter = TagFilter::parse(expression).ok_or_else(|| {
            ClientError::InvalidConfig(format!(
                "tag expression `{}` is not `*` or `tag || tag …` (at most {MAX_EXPRESSION_LEN} bytes)",
                expression.chars().take(100).collect::<String>()
            ))
        })?;
        let expression = match &filter {
            TagFilter::All => "*".to_string(),
            TagFilter::Tags(tags) => tags.iter().cloned().collect::<Vec<_>>().join(" || "),
        };
        Ok(Subscription { expression, filter })
    }

    /// The normalised expression sent to brokers (`*` or the sorted tags joined by ` || `).
    pub fn expression(&self) -> &str {
        &self.expression
    }

    pub fn filter(&self) -> &TagFilter {
        &self.filter
    }

    /// The exact check on a received message's tag.
    pub fn matches(&self, tag: Option<&str>) -> bool {
        self.filter.matches(tag)
    }

    /// The heartbeat's view of this subscription to `topic`. `version` is RocketMQ's
    /// `subVersion`: the time the subscription was made, so a broker can tell newer from older.
    pub fn to_subscription_data(&self, topic: &str, version: i64) -> SubscriptionData {
        let (tags_set, code_set): (BTreeSet<String>, BTreeSet<i32>) = match &self.filter {
            TagFilter::All => (BTreeSet::new(), BTreeSet::new()),
            TagFilter::Tags(tags) => (
                tags.clone(),
                tags.iter()
                    .map(|t| crate::java_hash::string_hash(t))
                    .collect(),
            ),
        };
        SubscriptionData {
            class_filter_mode: false,
            topic: topic.to_string(),
            sub_string: self.expression.clone(),
            tags_set,
            code_set,
            sub_version: version,
            expression_type: "TAG".into(),
        }
    }
}

impl Default for Subscription {
    fn default() -> Self {
        Subscription::all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_filters_exact_tags() {
        let all = Subscription::parse(" * ").unwrap();
        assert_eq!(all, Subscription::all());
        assert!(all.matches(None) && all.matches(Some("x")));

        let s = Subscription::parse("TagB ||TagA").unwrap();
        assert_eq!(s.expression(), "TagA || TagB");
        assert!(s.matches(Some("TagA")) && s.matches(Some("TagB")));
        assert!(!s.matches(Some("TagC")) && !s.matches(None));
        // "Aa" and "BB" share a Java hash: the broker lets both through, the client must not.
        assert_eq!(
            crate::java_hash::string_hash("Aa"),
            crate::java_hash::string_hash("BB")
        );
        let aa = Subscription::parse("Aa").unwrap();
        assert!(aa.matches(Some("Aa")) && !aa.matches(Some("BB")));

        assert!(Subscription::parse("a ||").is_err());
        assert!(Subscription::parse(&"x".repeat(MAX_EXPRESSION_LEN + 1)).is_err());
    }

    #[test]
    fn heartbeat_data_has_tags_and_codes() {
        let s = Subscription::parse("TagA || hello").unwrap();
        let data = s.to_subscription_data("T", 42);
        assert_eq!(data.topic, "T");
        assert_eq!(data.sub_string, "TagA || hello");
        assert_eq!(data.sub_version, 42);
        assert_eq!(data.expression_type, "TAG");
        assert_eq!(
            data.tags_set,
            ["TagA", "hello"].map(String::from).into_iter().collect()
        );
        assert_eq!(data.code_set, [2598919, 99162322].into_iter().collect());
        let all = Subscription::all().to_subscription_data("T", 1);
        assert_eq!(all.sub_string, "*");
        assert!(all.tags_set.is_empty() && all.code_set.is_empty());
    }
}
