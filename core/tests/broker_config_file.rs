//! `conf/broker.toml` documents the broker's settings; it must parse and equal the defaults.

use tern_core::broker::BrokerConfig;
use tern_core::store::StoreConfig;

#[test]
fn conf_broker_toml_is_the_default_configuration() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../conf/broker.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let parsed: BrokerConfig = toml::from_str(&text).unwrap();
    parsed.validate().unwrap();
    // The configs hold f64s and have no PartialEq; compare the serialized forms.
    assert_eq!(
        toml::to_string(&parsed).unwrap(),
        toml::to_string(&BrokerConfig::default()).unwrap()
    );
}

#[test]
fn unknown_keys_are_rejected() {
    let err = toml::from_str::<StoreConfig>("segment_size = 5").unwrap_err();
    assert!(err.to_string().contains("unknown field"), "{err}");
    let err = toml::from_str::<BrokerConfig>("brokername = \"x\"").unwrap_err();
    assert!(err.to_string().contains("unknown field"), "{err}");
}
