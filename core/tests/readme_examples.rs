//! The README's Rust examples, compiled (not run: they need a running NameServer or write a
//! store under ./data) so that the README cannot drift from the API. The blocks are the README's
//! verbatim (a test checks it), hence `rustfmt::skip`.

#![allow(dead_code, clippy::field_reassign_with_default)]

#[rustfmt::skip]
mod client_example {
use tern_core::client::{ClientConfig, ConsumeFrom, ConsumerConfig, ConsumerGroup, Message, Producer};

async fn demo() -> Result<(), tern_core::client::ClientError> {
    let config = ClientConfig::new(["127.0.0.1:9876"]);
    let producer = Producer::new(config.clone(), "my-producers")?;
    producer.send(&Message::new("orders", "hello").with_tag("created")).await?;
    producer.send_ordered(&Message::new("orders", "step 1"), "customer-42").await?;

    let consumer = ConsumerConfig::new("billing")
        .subscribe("orders", "created || paid")
        .with_consume_from(ConsumeFrom::First);
    let (group, mut stream) = ConsumerGroup::start(config, consumer).await?;
    if let Some(message) = stream.recv().await {
        println!("{}", String::from_utf8_lossy(&message.body));
        group.ack(&message); // the committed offset never passes an unacknowledged message
    }
    group.shutdown().await
}
}

#[rustfmt::skip]
mod store_example {
use tern_core::store::{FlushDiskType, Message, MessageStore, StoreConfig, StoreError};

async fn demo() -> Result<(), StoreError> {
    let mut config = StoreConfig::default(); // data/store, 1 GiB segments, ASYNC_FLUSH
    config.flush_disk_type = FlushDiskType::SyncFlush; // ack after fsync (group commit)
    let store = MessageStore::open(config)?;
    let message = Message::new("orders", 0, "hello").with_property("KEYS", "order-42");
    let put = store.put_message(message).await?;
    let got = store.get_messages("orders", 0, put.record.queue_offset, 32, 1 << 20, None);
    let by_key = store.query_by_key("orders", "order-42", 10, 0, i64::MAX);
    println!("{:?} {} {}", put.status, got.messages.len(), by_key.len());
    store.shutdown()
}
}

#[rustfmt::skip]
mod pop_example {
use std::time::Duration;
use tern_core::client::{ClientConfig, PopConsumer, ReceiveOptions};

async fn demo() -> Result<(), tern_core::client::ClientError> {
    // Any number of consumers, in any processes, share the group; the broker assigns messages.
    let consumer = PopConsumer::new(ClientConfig::new(["127.0.0.1:9876"]), "workers")?;
    let options = ReceiveOptions { invisible: Duration::from_secs(30), ..ReceiveOptions::default() };
    for popped in consumer.receive("orders", &options).await? {
        if popped.message.body.starts_with(b"{") {
            consumer.ack(&popped.receipt).await?; // done: never delivered again
        } else {
            // Again in 10 s as attempt 2, 3, ...; after the group's limit, %DLQ%workers.
            consumer.nack(&popped.receipt, Duration::from_secs(10)).await?;
        }
    }
    Ok(())
}
}

/// The blocks above are the README's, character for character.
#[test]
fn examples_match_the_readme() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let here = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/readme_examples.rs"
    ))
    .unwrap();
    let mut blocks = 0;
    for block in readme.split("```rust\n").skip(1) {
        let code = block.split("```").next().unwrap();
        assert!(
            here.contains(code),
            "README block not compiled here:\n{code}"
        );
        blocks += 1;
    }
    assert_eq!(blocks, 3, "every README Rust block is compiled here");
}
