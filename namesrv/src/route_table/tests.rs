//! Route table logic, without sockets: every step is followed by an invariant check.

use std::time::{Duration, Instant};

use tern_core::protocol::body::{DataVersion, TopicConfig, TopicConfigSerializeWrapper};
use tern_core::protocol::codes::perm;

use super::*;

const TIMEOUT: Duration = Duration::from_secs(120);

fn wrapper(version: i64, topics: &[(&str, i32)]) -> TopicConfigSerializeWrapper {
    TopicConfigSerializeWrapper {
        topic_config_table: topics
            .iter()
            .map(|(name, queues)| {
                (
                    name.to_string(),
                    TopicConfig::new(*name, *queues, perm::READ | perm::WRITE),
                )
            })
            .collect(),
        data_version: DataVersion {
            timestamp: 1,
            counter: version,
        },
    }
}

fn reg(
    cluster: &str,
    name: &str,
    addr: &str,
    id: i64,
    topics: Option<TopicConfigSerializeWrapper>,
) -> BrokerRegistration {
    BrokerRegistration {
        cluster_name: cluster.into(),
        broker_name: name.into(),
        broker_addr: addr.into(),
        broker_id: id,
        ha_server_addr: format!("{addr}-ha"),
        topics,
        connection_id: Some(7),
        timeout: TIMEOUT,
    }
}

fn register(table: &RouteTable, r: BrokerRegistration, now: Instant) -> RegisterResult {
    let result = table.register(r, now).unwrap();
    table.check_invariants();
    result
}

fn route_brokers(table: &RouteTable, topic: &str) -> Vec<String> {
    table
        .topic_route(topic)
        .map(|r| r.queue_datas.into_iter().map(|q| q.broker_name).collect())
        .unwrap_or_default()
}

#[test]
fn two_groups_share_a_topic() {
    let table = RouteTable::new();
    let now = Instant::now();
    register(
        &table,
        reg(
            "c1",
            "b",
            "10.0.0.2:10911",
            0,
            Some(wrapper(1, &[("orders", 4)])),
        ),
        now,
    );
    register(
        &table,
        reg(
            "c1",
            "a",
            "10.0.0.1:10911",
            0,
            Some(wrapper(1, &[("orders", 8), ("audit", 1)])),
        ),
        now,
    );
    let route = table.topic_route("orders").unwrap();
    assert_eq!(route_brokers(&table, "orders"), ["a", "b"]);
    assert_eq!(route.queue_datas[0].write_queue_nums, 8);
    assert_eq!(route.broker_datas[1].master_addr(), Some("10.0.0.2:10911"));
    assert_eq!(route_brokers(&table, "audit"), ["a"]);
    assert!(table.topic_route("missing").is_none());
    let info = table.cluster_info();
    assert_eq!(info.cluster_addr_table["c1"].len(), 2);
    assert_eq!(
        table.topic_list().into_iter().collect::<Vec<_>>(),
        ["audit", "orders"]
    );
}

#[test]
fn a_new_version_with_fewer_topics_removes_the_stale_ones() {
    let table = RouteTable::new();
    let now = Instant::now();
    register(
        &table,
        reg("c", "a", "h:1", 0, Some(wrapper(1, &[("x", 1), ("y", 1)]))),
        now,
    );
    register(
        &table,
        reg("c", "b", "h:2", 0, Some(wrapper(1, &[("y", 1)]))),
        now,
    );
    register(
        &table,
        reg("c", "a", "h:1", 0, Some(wrapper(2, &[("y", 2)]))),
        now,
    );
    assert!(table.topic_route("x").is_none(), "x had only broker a");
    assert_eq!(route_brokers(&table, "y"), ["a", "b"]);
    // An empty table (not an empty body) means "no topics".
    register(&table, reg("c", "a", "h:1", 0, Some(wrapper(3, &[]))), now);
    assert_eq!(route_brokers(&table, "y"), ["b"]);
}

#[test]
fn an_unchanged_data_version_is_only_a_refresh() {
    let table = RouteTable::new();
    let t0 = Instant::now();
    register(
        &table,
        reg("c", "a", "h:1", 0, Some(wrapper(1, &[("x", 1)]))),
        t0,
    );
    // Same version, different contents: RocketMQ's rule is that the version tells.
    register(
        &table,
        reg("c", "a", "h:1", 0, Some(wrapper(1, &[]))),
        t0 + TIMEOUT,
    );
    assert_eq!(route_brokers(&table, "x"), ["a"]);
    // ... but the registration counted as a heartbeat.
    assert_eq!(table.expire(t0 + TIMEOUT + Duration::from_secs(1)), 0);
}

#[test]
fn deleting_a_topic_and_a_broker_that_still_has_it_puts_it_back() {
    let table = RouteTable::new();
    let now = Instant::now();
    register(
        &table,
        reg("c1", "a", "h:1", 0, Some(wrapper(1, &[("x", 1), ("y", 1)]))),
        now,
    );
    register(
        &table,
        reg("c2", "b", "h:2", 0, Some(wrapper(1, &[("x", 2)]))),
        now,
    );
    // Only cluster c2's groups.
    assert_eq!(table.delete_topic("x", Some("c2")), 1);
    table.check_invariants();
    assert_eq!(route_brokers(&table, "x"), ["a"]);
    assert_eq!(table.delete_topic("x", Some("nope")), 0);
    // Every group; the topic is gone, other topics stay.
    assert_eq!(table.delete_topic("x", None), 1);
    table.check_invariants();
    assert!(table.topic_route("x").is_none());
    assert!(!table.topic_list().contains("x"));
    assert_eq!(route_brokers(&table, "y"), ["a"]);
    assert_eq!(table.delete_topic("x", None), 0);
    // Broker a re-registers the same version: it still serves x, so the route comes back.
    register(
        &table,
        reg("c1", "a", "h:1", 0, Some(wrapper(1, &[("x", 1), ("y", 1)]))),
        now,
    );
    assert_eq!(route_brokers(&table, "x"), ["a"]);
    // Broker b deleted it too: its next version leaves it out.
    register(&table, reg("c2", "b", "h:2", 0, Some(wrapper(2, &[]))), now);
    assert_eq!(route_brokers(&table, "x"), ["a"]);
}

#[test]
fn a_registration_without_body_keeps_the_routes() {
    let table = RouteTable::new();
    let now = Instant::now();
    register(
        &table,
        reg("c", "a", "h:1", 0, Some(wrapper(1, &[("x", 1)]))),
        now,
    );
    register(&table, reg("c", "a", "h:1", 0, None), now);
    assert_eq!(route_brokers(&table, "x"), ["a"]);
    assert_eq!(table.live_brokers()[0].data_version.counter, 1);
}

#[test]
fn slaves_learn_their_master_and_never_change_queue_data() {
    let table = RouteTable::new();
    let now = Instant::now();
    // A slave before its master: nothing to tell it yet.
    let early = register(
        &table,
        reg("c", "a", "h:2", 1, Some(wrapper(1, &[("s", 1)]))),
        now,
    );
    assert_eq!(early, RegisterResult::default());
    assert!(table.topic_route("s").is_none());
    let master = register(
        &table,
        reg("c", "a", "h:1", 0, Some(wrapper(1, &[("x", 1)]))),
        now,
    );
    assert_eq!(master, RegisterResult::default());
    let slave = register(&table, reg("c", "a", "h:2", 1, Some(wrapper(2, &[]))), now);
    assert_eq!(slave.master_addr.as_deref(), Some("h:1"));
    assert_eq!(slave.ha_server_addr.as_deref(), Some("h:1-ha"));
    let route = table.topic_route("x").unwrap();
    assert_eq!(route.broker_datas[0].broker_addrs.len(), 2);
    // The master leaves: the slave still serves reads, so the route stays.
    assert!(table.unregister("a", "h:1"));
    table.check_invariants();
    let route = table.topic_route("x").unwrap();
    assert_eq!(route.broker_datas[0].master_addr(), None);
    assert!(table.unregister("a", "h:2"));
    table.check_invariants();
    assert!(table.topic_route("x").is_none());
    assert!(table.cluster_info().cluster_addr_table.is_empty());
}

#[test]
fn expiry_drops_silent_brokers_and_empty_groups() {
    let table = RouteTable::new();
    let t0 = Instant::now();
    register(
        &table,
        reg("c1", "a", "h:1", 0, Some(wrapper(1, &[("x", 1)]))),
        t0,
    );
    register(
        &table,
        reg("c2", "b", "h:2", 0, Some(wrapper(1, &[("x", 1)]))),
        t0,
    );
    let mut short = reg("c2", "b", "h:3", 1, None);
    short.timeout = Duration::from_secs(1);
    register(&table, short, t0);
    assert_eq!(
        table.expire(t0 + Duration::from_secs(1)),
        0,
        "exactly at the timeout"
    );
    assert_eq!(
        table.expire(t0 + Duration::from_secs(2)),
        1,
        "the short-timeout slave"
    );
    table.check_invariants();
    register(
        &table,
        reg("c1", "a", "h:1", 0, None),
        t0 + Duration::from_secs(100),
    );
    assert_eq!(table.expire(t0 + TIMEOUT + Duration::from_secs(1)), 1);
    table.check_invariants();
    assert_eq!(route_brokers(&table, "x"), ["a"]);
    let info = table.cluster_info();
    assert_eq!(info.cluster_addr_table.keys().collect::<Vec<_>>(), ["c1"]);
    assert!(!info.broker_addr_table.contains_key("b"));
}

#[test]
fn a_closed_connection_drops_only_its_brokers() {
    let table = RouteTable::new();
    let now = Instant::now();
    let mut a = reg("c", "a", "h:1", 0, Some(wrapper(1, &[("x", 1)])));
    a.connection_id = Some(1);
    let mut b = reg("c", "b", "h:2", 0, Some(wrapper(1, &[("x", 1)])));
    b.connection_id = Some(2);
    register(&table, a.clone(), now);
    register(&table, b, now);
    // `a` re-registers over a new connection before the old one's close is noticed.
    a.connection_id = Some(3);
    register(&table, a, now);
    assert_eq!(table.connection_closed(1), 0);
    assert_eq!(table.connection_closed(2), 1);
    table.check_invariants();
    assert_eq!(route_brokers(&table, "x"), ["a"]);
}

#[test]
fn an_address_taking_over_an_id_replaces_the_old_one() {
    let table = RouteTable::new();
    let now = Instant::now();
    register(
        &table,
        reg("c", "a", "h:1", 0, Some(wrapper(1, &[("x", 1)]))),
        now,
    );
    register(
        &table,
        reg("c", "a", "h:9", 0, Some(wrapper(1, &[("x", 1)]))),
        now,
    );
    let live = table.live_brokers();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].broker_addr, "h:9");
    // The old address's late unregistration must not touch the new master.
    assert!(!table.unregister("a", "h:1"));
    assert_eq!(route_brokers(&table, "x"), ["a"]);
}

#[test]
fn an_address_changing_role_or_group_moves() {
    let table = RouteTable::new();
    let now = Instant::now();
    register(
        &table,
        reg("c", "a", "h:1", 0, Some(wrapper(1, &[("x", 1)]))),
        now,
    );
    register(&table, reg("c", "a", "h:2", 1, None), now);
    // Master demoted, slave promoted.
    register(&table, reg("c", "a", "h:1", 1, None), now);
    register(
        &table,
        reg("c", "a", "h:2", 0, Some(wrapper(5, &[("x", 1)]))),
        now,
    );
    let info = table.cluster_info();
    let addrs = &info.broker_addr_table["a"].broker_addrs;
    assert_eq!(addrs.get(&0).map(String::as_str), Some("h:2"));
    assert_eq!(addrs.get(&1).map(String::as_str), Some("h:1"));
    // h:1 restarts as group `b` in another cluster.
    register(
        &table,
        reg("d", "b", "h:1", 0, Some(wrapper(1, &[("y", 1)]))),
        now,
    );
    assert_eq!(route_brokers(&table, "x"), ["a"]);
    assert_eq!(route_brokers(&table, "y"), ["b"]);
    // The whole group `a` moves to cluster d.
    register(&table, reg("d", "a", "h:2", 0, None), now);
    let info = table.cluster_info();
    assert_eq!(info.cluster_addr_table.len(), 1);
    assert_eq!(info.cluster_addr_table["d"].len(), 2);
}

#[test]
fn an_unregistration_from_another_group_is_ignored() {
    let table = RouteTable::new();
    let now = Instant::now();
    register(
        &table,
        reg("c", "a", "h:1", 0, Some(wrapper(1, &[("x", 1)]))),
        now,
    );
    assert!(!table.unregister("b", "h:1"));
    assert!(!table.unregister("a", "h:404"));
    assert_eq!(route_brokers(&table, "x"), ["a"]);
}

#[test]
fn limits_and_bad_fields_are_refused_without_changes() {
    let table = RouteTable::new();
    let now = Instant::now();
    for i in 0..MAX_BROKERS {
        register(
            &table,
            reg("c", "a", &format!("h:{i}"), i as i64, None),
            now,
        );
    }
    let err = table
        .register(reg("c", "b", "h:new", 0, None), now)
        .unwrap_err();
    assert_eq!(err, RouteError::TooManyBrokers { limit: MAX_BROKERS });
    // A known address may still re-register.
    register(&table, reg("c", "a", "h:0", 0, None), now);

    let table = RouteTable::new();
    let bad = [
        reg("", "a", "h:1", 0, None),
        reg("c", "", "h:1", 0, None),
        reg("c", "a", "", 0, None),
        reg("c", "a\n", "h:1", 0, None),
        reg("c", &"n".repeat(MAX_NAME_LEN + 1), "h:1", 0, None),
        reg("c", "a", "h:1", -1, None),
        reg("c", "a", "h:1", 0, Some(wrapper(1, &[("", 1)]))),
        reg(
            "c",
            "a",
            "h:1",
            0,
            Some(wrapper(1, &[(&"t".repeat(MAX_TOPIC_LEN + 1), 1)])),
        ),
    ];
    for r in bad {
        let err = table.register(r.clone(), now).unwrap_err();
        assert!(
            matches!(err, RouteError::InvalidField { .. }),
            "{r:?}: {err}"
        );
    }
    let mut many = wrapper(1, &[]);
    for i in 0..=MAX_TOPICS_PER_REGISTRATION {
        many.topic_config_table.insert(
            format!("t{i}"),
            TopicConfig::new(format!("t{i}"), 1, perm::READ),
        );
    }
    let err = table
        .register(reg("c", "a", "h:1", 0, Some(many)), now)
        .unwrap_err();
    assert!(matches!(err, RouteError::TooManyTopics { .. }), "{err}");
    assert!(table.live_brokers().is_empty());
    assert!(table.topic_list().is_empty());
}
