//! `conf/namesrv.toml` documents the NameServer's settings; it must parse and equal the defaults.

use tern_namesrv::NamesrvConfig;

#[test]
fn conf_namesrv_toml_is_the_default_configuration() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../conf/namesrv.toml");
    let parsed = NamesrvConfig::load(std::path::Path::new(path)).unwrap();
    parsed.validate().unwrap();
    assert_eq!(parsed, NamesrvConfig::default());
}

#[test]
fn unknown_keys_are_rejected() {
    let err = NamesrvConfig::parse("brokertimeout_ms = 5").unwrap_err();
    assert!(err.to_string().contains("unknown field"), "{err}");
}
