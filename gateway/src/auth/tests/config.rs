//! Configuration checks: key files, JWKS, the allowlist and the config's own fields.

use std::path::PathBuf;

use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};

use super::*;

fn jwks_only() -> AuthConfig {
    AuthConfig {
        jwks_file: Some(fixture("jwks.json")),
        ..enabled()
    }
}

#[test]
fn jwks_keys_are_selected_by_kid() {
    let v = verifier(&jwks_only());
    // rsa-2, ec-1, ed-2, hs-1; the P-384, `use: enc` and PS256 entries are skipped.
    assert_eq!(v.key_count(), 4);
    let hs = EncodingKey::from_secret(JWKS_SECRET);
    for (alg, key, kid) in [
        (Algorithm::RS256, rsa2_key(), "rsa-2"),
        (Algorithm::ES256, ec_key(), "ec-1"),
        (Algorithm::EdDSA, ed2_key(), "ed-2"),
        (Algorithm::HS256, hs.clone(), "hs-1"),
    ] {
        assert!(
            v.verify_at(&sign_kid(alg, &key, Some(kid), &claims()), NOW)
                .is_ok(),
            "{kid}"
        );
        // Without kid every key of the kind is tried.
        assert!(
            v.verify_at(&sign(alg, &key, &claims()), NOW).is_ok(),
            "{kid} without kid"
        );
    }
    let unknown = sign_kid(Algorithm::RS256, &rsa2_key(), Some("nope"), &claims());
    assert_eq!(
        v.verify_at(&unknown, NOW).unwrap_err(),
        AuthError::UnknownKey
    );
    // The right kid, the wrong signer.
    let wrong = sign_kid(Algorithm::RS256, &rsa_key(), Some("rsa-2"), &claims());
    assert_eq!(
        v.verify_at(&wrong, NOW).unwrap_err(),
        AuthError::BadSignature
    );
    // A kid naming a key of another kind does not select it.
    let cross = sign_kid(Algorithm::HS256, &hs, Some("rsa-2"), &claims());
    assert_eq!(v.verify_at(&cross, NOW).unwrap_err(), AuthError::UnknownKey);
    // The encryption-only key was skipped, so its kid is unknown.
    let enc = sign_kid(Algorithm::RS256, &rsa_key(), Some("enc-1"), &claims());
    assert_eq!(v.verify_at(&enc, NOW).unwrap_err(), AuthError::UnknownKey);
}

#[test]
fn unnamed_keys_serve_tokens_with_unknown_kid() {
    let config = AuthConfig {
        public_key_files: vec![fixture("rsa_public.pem")],
        ..jwks_only()
    };
    let v = verifier(&config);
    assert!(
        v.verify_at(
            &sign_kid(Algorithm::RS256, &rsa_key(), Some("idp-7"), &claims()),
            NOW
        )
        .is_ok()
    );
    assert!(
        v.verify_at(
            &sign_kid(Algorithm::RS256, &rsa2_key(), Some("rsa-2"), &claims()),
            NOW
        )
        .is_ok()
    );
    // A kid that names a JWKS key selects only that key.
    let named = sign_kid(Algorithm::RS256, &rsa_key(), Some("rsa-2"), &claims());
    assert_eq!(
        v.verify_at(&named, NOW).unwrap_err(),
        AuthError::BadSignature
    );
}

#[test]
fn jwks_keys_outside_the_allowlist_are_skipped() {
    let config = AuthConfig {
        algorithms: vec!["ES256".into()],
        ..jwks_only()
    };
    assert_eq!(verifier(&config).key_count(), 1);
    let config = AuthConfig {
        algorithms: vec!["PS256".into()],
        ..jwks_only()
    };
    assert!(matches!(config_error(&config), AuthConfigError::UnknownAlgorithm(a) if a == "PS256"));
}

#[test]
fn configuration_is_checked() {
    assert!(matches!(config_error(&enabled()), AuthConfigError::NoKeys));
    assert!(
        Verifier::from_config(&AuthConfig::default()).is_ok(),
        "disabled needs no key"
    );
    for alg in ["none", "HS512", "hs256", ""] {
        let config = AuthConfig {
            algorithms: vec![alg.into()],
            ..all_keys()
        };
        assert!(
            matches!(config_error(&config), AuthConfigError::UnknownAlgorithm(_)),
            "{alg}"
        );
    }
    let config = AuthConfig {
        algorithms: vec![],
        ..all_keys()
    };
    assert!(matches!(config_error(&config), AuthConfigError::Invalid(_)));
    let config = AuthConfig {
        leeway_secs: MAX_LEEWAY_SECS + 1,
        ..all_keys()
    };
    assert!(matches!(config_error(&config), AuthConfigError::Invalid(_)));
    let config = AuthConfig {
        tenant_claim: String::new(),
        ..all_keys()
    };
    assert!(matches!(config_error(&config), AuthConfigError::Invalid(_)));
    let config = AuthConfig {
        issuer: Some(String::new()),
        ..all_keys()
    };
    assert!(matches!(config_error(&config), AuthConfigError::Invalid(_)));
    let config = AuthConfig {
        hs256_secret_file: Some(fixture("x")),
        ..all_keys()
    };
    assert!(
        matches!(config_error(&config), AuthConfigError::Invalid(_)),
        "secret and secret file"
    );
    let config = AuthConfig {
        algorithms: vec!["HS256".into()],
        ..all_keys()
    };
    assert!(
        matches!(config_error(&config), AuthConfigError::InvalidKey { .. }),
        "RSA key, HS256 only"
    );
}

#[test]
fn short_secrets_are_refused_without_echoing_them() {
    let config = AuthConfig {
        hs256_secret: Some("hunter2-short".into()),
        ..enabled()
    };
    let message = config_error(&config).to_string();
    assert!(message.contains("at least 32"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
}

#[test]
fn secret_file_loses_its_trailing_newline() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secret");
    std::fs::write(&path, format!("{SECRET}\r\n")).unwrap();
    let config = AuthConfig {
        hs256_secret_file: Some(path),
        ..enabled()
    };
    assert!(check(&config, &sign(Algorithm::HS256, &hs_key(), &claims())).is_ok());
}

#[test]
fn bad_key_files_are_refused() {
    let missing = AuthConfig {
        public_key_files: vec![fixture("does-not-exist.pem")],
        ..enabled()
    };
    assert!(matches!(
        config_error(&missing),
        AuthConfigError::Read { .. }
    ));
    for name in [
        "rsa_private.pem",
        "ec_private.pem",
        "ed_private.pem",
        "rsa1024_public.pem",
        "ec384_public.pem",
        "jwks.json",
        "generate.sh",
    ] {
        let config = AuthConfig {
            public_key_files: vec![fixture(name)],
            ..enabled()
        };
        assert!(
            matches!(config_error(&config), AuthConfigError::InvalidKey { .. }),
            "{name}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, content: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path
    };
    let garbage = write(
        "garbage.pem",
        b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    );
    let binary = write("binary.pem", &[0xff, 0xfe, 0]);
    let two = write(
        "two.pem",
        &[read("rsa_public.pem"), read("ec_public.pem")].concat(),
    );
    let huge = write("huge.pem", &vec![b'A'; 65 * 1024]);
    for path in [garbage, binary, two, huge] {
        let config = AuthConfig {
            public_key_files: vec![path.clone()],
            ..enabled()
        };
        assert!(
            matches!(config_error(&config), AuthConfigError::InvalidKey { .. }),
            "{path:?}"
        );
    }
}

#[test]
fn bad_jwks_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let n = || {
        let jwks: Value = serde_json::from_slice(&read("jwks.json")).unwrap();
        jwks["keys"][0].clone()
    };
    let many: Vec<Value> = (0..=MAX_KEYS).map(|_| n()).collect();
    let mut no_n = n();
    no_n.as_object_mut().unwrap().remove("n");
    let mut bad_n = n();
    bad_n["n"] = json!("***");
    let mut small = n();
    small["n"] = json!(b64(&[0xc5; 128]));
    let cases = [
        json!({"keys": many}),
        json!({"keys": [no_n]}),
        json!({"keys": [bad_n]}),
        json!({"keys": [small]}),
        json!({"keys": [{"kty": "oct", "k": b64(b"short")}]}),
        json!({"keys": [{"kty": "EC", "crv": "P-256", "x": b64(&[1; 32]), "y": b64(&[2; 31])}]}),
        json!({"keys": [{"kty": "EC", "crv": "P-256", "x": b64(&[1; 32]), "y": b64(&[2; 32])}]}),
        json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": b64(&[1; 31])}]}),
        json!({"keys": [{"kty": "RSA"}]}),
        json!({"keys": "none"}),
        json!([]),
    ];
    for (i, jwks) in cases.iter().enumerate() {
        let path = dir.path().join(format!("jwks{i}.json"));
        std::fs::write(&path, jwks.to_string()).unwrap();
        let config = AuthConfig {
            jwks_file: Some(path),
            ..enabled()
        };
        assert!(
            matches!(config_error(&config), AuthConfigError::InvalidKey { .. }),
            "case {i}"
        );
    }
    // Only keys Tern does not use: loads, but leaves no key, so enabled auth refuses to start.
    let path = dir.path().join("unused.json");
    std::fs::write(
        &path,
        json!({"keys": [{"kty": "EC", "crv": "P-521"}]}).to_string(),
    )
    .unwrap();
    let config = AuthConfig {
        jwks_file: Some(path),
        ..enabled()
    };
    assert!(matches!(config_error(&config), AuthConfigError::NoKeys));
}

#[test]
fn config_defaults_and_strict_fields() {
    let config: AuthConfig = toml::from_str("").unwrap();
    assert_eq!(config, AuthConfig::default());
    assert!(!config.enabled);
    assert_eq!(config.algorithms, ["HS256", "RS256", "ES256", "EdDSA"]);
    assert_eq!(config.tenant_claim, "tenant");
    assert_eq!(config.leeway_secs, 30);
    let config: AuthConfig =
        toml::from_str("enabled = true\nhs256_secret = \"s\"\npublic_key_files = [\"a.pem\"]")
            .unwrap();
    assert!(config.enabled && config.public_key_files == [PathBuf::from("a.pem")]);
    assert!(toml::from_str::<AuthConfig>("enable = true").is_err());
}
