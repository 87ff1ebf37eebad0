//! `tern-gateway --local` end to end: the README's produce, receive and ack.

use serde_json::json;
use tern_tests::http::Http;
use tern_tests::process::start_local_gateway;

#[tokio::test]
async fn produce_receive_ack_through_local_mode() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = start_local_gateway(dir.path(), &[], |_| {});
    let http = Http::new(gateway.addr());
    let produced = http
        .post(
            "/v1/topics/orders/messages",
            &[("tern-tag", "created")],
            "hello",
        )
        .await;
    assert_eq!(produced.status, 200, "{:?}", produced.body);
    let produced = produced.json();
    assert_eq!(produced["topic"], "orders");

    let received = http
        .post_json(
            "/v1/groups/billing/topics/orders/messages:receive",
            &json!({"max": 10, "waitSeconds": 5}),
        )
        .await
        .json();
    let messages = received["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["body"], "hello");
    assert_eq!(messages[0]["tag"], "created");
    assert_eq!(messages[0]["messageId"], produced["messageId"]);
    let receipt = messages[0]["receipt"].as_str().unwrap();
    let acked = http
        .post_json(
            "/v1/groups/billing/topics/orders/messages:ack",
            &json!({"receipts": [receipt]}),
        )
        .await
        .json();
    assert_eq!(acked["results"][0]["status"], 200);
    let status = gateway.terminate();
    assert!(status.success(), "{status:?}");
}
