//! Tern compat probe: produce N messages with rocketmq-client-rust 1.0.0, then
//! consume them with a clustering push consumer from the first offset.
//!
//! usage: compat-probe <namesrv_addr> <topic> <group> <count>
//! env:   PROBE_LOG=<filter>  enable client tracing logs (e.g. "debug", "info")

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rocketmq_client_rust::{
    ClientResult, ClientRuntime, ClientRuntimeConfig, ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus,
    DefaultMQProducer, DefaultMQPushConsumer, MQPushConsumer, TelemetryHandle,
};
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_single::Message;
use rocketmq_runtime::{RuntimeConfig, RuntimeOwner};

const TAG: &str = "TagA";
const TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: {} <namesrv_addr> <topic> <group> <count>", args[0]);
        std::process::exit(2);
    }
    let (namesrv, topic, group) = (args[1].clone(), args[2].clone(), args[3].clone());
    let count: usize = args[4].parse().expect("count must be a number");
    let code = match run(&namesrv, &topic, &group, count).await {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            eprintln!("FATAL: {}", describe(&e));
            1
        }
    };
    // Skip orderly runtime teardown: exit code is all that matters here.
    std::process::exit(code);
}

/// Client errors redact most context in Display; add broker code and the source chain.
fn describe(e: &rocketmq_client_rust::ClientError) -> String {
    let mut out = format!("{e}");
    if let Some(code) = e.broker_response_code() {
        out.push_str(&format!(" [broker response code {code}]"));
    }
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(src) = cur {
        out.push_str(&format!("\n    caused by: {src}"));
        cur = src.source();
    }
    out.push_str(&format!("\n    debug: {e:?}"));
    out
}

async fn run(namesrv: &str, topic: &str, group: &str, count: usize) -> ClientResult<bool> {
    let mut telemetry = TelemetryHandle::noop();
    let _log_guard = match std::env::var("PROBE_LOG") {
        Ok(filter) => {
            let mut cfg = rocketmq_observability::TelemetryBootstrapConfig::default();
            cfg.logging.filter = filter;
            let guard = rocketmq_observability::install_global(&cfg).expect("install logging");
            telemetry = guard.handle();
            Some(guard)
        }
        Err(_) => None,
    };
    let owner = RuntimeOwner::plan(RuntimeConfig { thread_name: "compat-probe".into(), ..Default::default() })
        .expect("runtime config")
        .build()
        .expect("runtime owner");
    let rt: Arc<ClientRuntime> =
        ClientRuntime::try_new(owner.root_context().component("client"), ClientRuntimeConfig::default(), telemetry)?;

    // ---- produce ----
    let mut producer = DefaultMQProducer::builder(rt.clone())
        .producer_group(format!("{group}_producer"))
        .name_server_addr(namesrv.to_string())
        .build();
    producer.start().await?;
    let mut sent = 0usize;
    for i in 0..count {
        let body = format!("msg-{i}");
        let msg = Message::builder().topic(topic).tags(TAG).body_slice(body.as_bytes()).build_unchecked();
        match producer.send_with_timeout(msg, 3000).await {
            Ok(Some(r)) => {
                sent += 1;
                println!("sent {body}: {:?} msgId={} queue={:?} offset={}", r.send_status, r.msg_id.as_deref().unwrap_or(""), r.message_queue, r.queue_offset);
            }
            Ok(None) => eprintln!("SEND {body}: no SendResult (None)"),
            Err(e) => eprintln!("SEND ERROR {body}: {}", describe(&e)),
        }
    }
    println!("sent {sent}/{count}");
    producer.shutdown().await;

    // ---- consume ----
    let received: Arc<Mutex<BTreeSet<String>>> = Arc::new(Mutex::new(BTreeSet::new()));
    let sink = received.clone();
    let mut consumer = DefaultMQPushConsumer::builder(rt.clone())
        .consumer_group(group.to_string())
        .name_server_addr(namesrv.to_string())
        .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
        .build(); // default message model = Clustering
    consumer.subscribe(topic, "*").await?;
    consumer.register_message_listener_concurrently(
        move |msgs: &[&MessageExt], _ctx: &ConsumeConcurrentlyContext| -> ClientResult<ConsumeConcurrentlyStatus> {
            let mut set = sink.lock().unwrap();
            for m in msgs {
                let body = m.body().map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
                println!("recv {body} tags={:?} queue={} offset={}", m.get_tags(), m.queue_id(), m.queue_offset());
                set.insert(body);
            }
            Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
        },
    );
    consumer.start().await?;

    let expected: BTreeSet<String> = (0..count).map(|i| format!("msg-{i}")).collect();
    let start = Instant::now();
    loop {
        let missing: Vec<String> = {
            let got = received.lock().unwrap();
            expected.iter().filter(|b| !got.contains(*b)).cloned().collect()
        };
        if missing.is_empty() {
            println!("OK received {count}");
            consumer.shutdown().await;
            return Ok(true);
        }
        if start.elapsed() >= TIMEOUT {
            println!("TIMEOUT: missing {}/{}: {:?}", missing.len(), count, missing);
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
