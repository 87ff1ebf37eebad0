//! `conf/store.toml` documents the store's settings; it must parse and equal the defaults.

use tern_core::store::StoreConfig;

#[test]
fn conf_store_toml_is_the_default_configuration() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../conf/store.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let parsed: StoreConfig = toml::from_str(&text).unwrap();
    parsed.validate().unwrap();
    let defaults = StoreConfig::default();
    // StoreConfig has no PartialEq (it holds f64s); compare the serialized forms.
    assert_eq!(
        toml::to_string(&parsed).unwrap(),
        toml::to_string(&defaults).unwrap()
    );
}

#[test]
fn unknown_keys_are_rejected() {
    let err = toml::from_str::<StoreConfig>("segment_size = 5").unwrap_err();
    assert!(err.to_string().contains("unknown field"), "{err}");
}
