//! Consumer groups as clients announce them in heartbeats: members (with the connection each one
//! heartbeats over), message model and subscriptions.
//!
//! Membership is what clustering rebalance runs on, so every change (a client joins, leaves, its
//! connection closes or it goes silent for `client_expiry_ms`) is reported to the caller, which
//! tells the remaining members with NOTIFY_CONSUMER_IDS_CHANGED.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::protocol::Connection;
use crate::protocol::body::{ConsumerData, SubscriptionData};

/// Most groups, and most members per group.
pub const MAX_GROUPS: usize = 100_000;
pub const MAX_MEMBERS_PER_GROUP: usize = 10_000;

struct Member {
    conn: Connection,
    last_seen: Instant,
}

struct Group {
    data: ConsumerData,
    members: BTreeMap<String, Member>,
}

/// A group whose membership changed, with the connections of its remaining members.
pub struct MembershipChange {
    pub group: String,
    pub members: Vec<Connection>,
}

#[derive(Default)]
pub struct ConsumerGroups {
    groups: Mutex<HashMap<String, Group>>,
}

impl ConsumerGroups {
    /// Records a heartbeat from `client_id` for `data.group_name`. Returns the change when the
    /// client is new to the group (or reconnected on another connection).
    pub fn heartbeat(
        &self,
        client_id: &str,
        conn: &Connection,
        data: &ConsumerData,
    ) -> Result<Option<MembershipChange>, &'static str> {
        let mut groups = self.groups.lock().expect("groups lock");
        if !groups.contains_key(&data.group_name) && groups.len() >= MAX_GROUPS {
            return Err("too many consumer groups on this broker");
        }
        let group = groups
            .entry(data.group_name.clone())
            .or_insert_with(|| Group {
                data: data.clone(),
                members: BTreeMap::new(),
            });
        group.data = data.clone();
        let changed = match group.members.get_mut(client_id) {
            Some(member) => {
                member.last_seen = Instant::now();
                if member.conn.id() != conn.id() {
                    member.conn = conn.clone();
                    true
                } else {
                    false
                }
            }
            None => {
                if group.members.len() >= MAX_MEMBERS_PER_GROUP {
                    return Err("too many members in this consumer group");
                }
                group.members.insert(
                    client_id.to_string(),
                    Member {
                        conn: conn.clone(),
                        last_seen: Instant::now(),
                    },
                );
                true
            }
        };
        Ok(changed.then(|| change(&data.group_name, group)))
    }

    /// Removes `client_id` from `group`.
    pub fn unregister(&self, client_id: &str, group: &str) -> Option<MembershipChange> {
        let mut groups = self.groups.lock().expect("groups lock");
        let entry = groups.get_mut(group)?;
        entry.members.remove(client_id)?;
        let result = change(group, entry);
        if entry.members.is_empty() {
            groups.remove(group);
        }
        Some(result)
    }

    /// Removes every member that used `conn`.
    pub fn connection_closed(&self, conn: &Connection) -> Vec<MembershipChange> {
        self.remove_where(|m| m.conn.id() == conn.id())
    }

    /// Removes members silent for longer than `expiry`.
    pub fn expire(&self, expiry: Duration) -> Vec<MembershipChange> {
        let now = Instant::now();
        self.remove_where(|m| now.duration_since(m.last_seen) > expiry)
    }

    fn remove_where(&self, gone: impl Fn(&Member) -> bool) -> Vec<MembershipChange> {
        let mut groups = self.groups.lock().expect("groups lock");
        let mut changes = Vec::new();
        groups.retain(|name, group| {
            let before = group.members.len();
            group.members.retain(|_, m| !gone(m));
            if group.members.len() != before {
                changes.push(change(name, group));
            }
            !group.members.is_empty()
        });
        changes
    }

    /// Client ids of a group's members, sorted (`None` when the group has none).
    pub fn members(&self, group: &str) -> Option<Vec<String>> {
        let groups = self.groups.lock().expect("groups lock");
        groups
            .get(group)
            .map(|g| g.members.keys().cloned().collect())
    }

    /// The group's subscription to `topic`, as its last heartbeat described it.
    pub fn subscription(&self, group: &str, topic: &str) -> Option<SubscriptionData> {
        let groups = self.groups.lock().expect("groups lock");
        groups
            .get(group)?
            .data
            .subscription_data_set
            .iter()
            .find(|s| s.topic == topic)
            .cloned()
    }

    /// Whether the group consumes in BROADCASTING mode.
    pub fn is_broadcasting(&self, group: &str) -> bool {
        let groups = self.groups.lock().expect("groups lock");
        groups
            .get(group)
            .is_some_and(|g| g.data.message_model == "BROADCASTING")
    }
}

fn change(name: &str, group: &Group) -> MembershipChange {
    MembershipChange {
        group: name.to_string(),
        members: group.members.values().map(|m| m.conn.clone()).collect(),
    }
}
