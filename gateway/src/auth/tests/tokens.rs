//! Token checks: algorithms, keys, times, claims, malformed input.

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header as JwtHeader, encode};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

#[test]
fn every_algorithm_verifies() {
    let v = verifier(&all_keys());
    assert_eq!(v.key_count(), 4);
    for (alg, key) in [
        (Algorithm::HS256, hs_key()),
        (Algorithm::RS256, rsa_key()),
        (Algorithm::ES256, ec_key()),
        (Algorithm::EdDSA, ed_key()),
    ] {
        let p = v
            .verify_at(&sign(alg, &key, &claims()), NOW)
            .unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        assert_eq!(p.tenant, "acme");
        assert_eq!(p.subject, "alice");
        assert!(p.can_publish("orders") && p.can_consume("x") && p.is_admin());
    }
}

#[test]
fn pkcs1_rsa_public_key_pem_is_accepted() {
    let config = AuthConfig {
        public_key_files: vec![fixture("rsa_public_pkcs1.pem")],
        ..enabled()
    };
    assert!(check(&config, &sign(Algorithm::RS256, &rsa_key(), &claims())).is_ok());
}

#[test]
fn real_clock_accepts_a_fresh_token() {
    let exp = jsonwebtoken::get_current_timestamp() + 60;
    let token = sign(
        Algorithm::HS256,
        &hs_key(),
        &json!({"tenant": "acme", "exp": exp}),
    );
    assert!(verifier(&all_keys()).verify(&token).is_ok());
    let old = sign(
        Algorithm::HS256,
        &hs_key(),
        &json!({"tenant": "acme", "exp": NOW}),
    );
    assert_eq!(
        verifier(&all_keys()).verify(&old).unwrap_err(),
        AuthError::Expired
    );
}

#[test]
fn expiry_honours_the_leeway_exactly() {
    let v = verifier(&all_keys());
    let token = sign(
        Algorithm::HS256,
        &hs_key(),
        &json!({"tenant": "acme", "exp": NOW}),
    );
    assert!(v.verify_at(&token, NOW - 1).is_ok());
    assert!(
        v.verify_at(&token, NOW + 29).is_ok(),
        "inside the 30 s leeway"
    );
    assert_eq!(
        v.verify_at(&token, NOW + 30).unwrap_err(),
        AuthError::Expired
    );
    assert_eq!(
        v.verify_at(&token, NOW + 10_000).unwrap_err(),
        AuthError::Expired
    );

    let strict = verifier(&AuthConfig {
        leeway_secs: 0,
        ..all_keys()
    });
    assert!(strict.verify_at(&token, NOW - 1).is_ok());
    assert_eq!(
        strict.verify_at(&token, NOW).unwrap_err(),
        AuthError::Expired
    );
}

#[test]
fn not_before_honours_the_leeway_exactly() {
    let v = verifier(&all_keys());
    let nbf = |nbf: i64| {
        sign(
            Algorithm::HS256,
            &hs_key(),
            &json!({"tenant": "acme", "exp": NOW + 600, "nbf": nbf}),
        )
    };
    assert!(v.verify_at(&nbf(NOW), NOW).is_ok());
    assert!(
        v.verify_at(&nbf(NOW + 30), NOW).is_ok(),
        "inside the leeway"
    );
    assert_eq!(
        v.verify_at(&nbf(NOW + 31), NOW).unwrap_err(),
        AuthError::NotYetValid
    );
    let strict = verifier(&AuthConfig {
        leeway_secs: 0,
        ..all_keys()
    });
    assert!(strict.verify_at(&nbf(NOW), NOW).is_ok());
    assert_eq!(
        strict.verify_at(&nbf(NOW + 1), NOW).unwrap_err(),
        AuthError::NotYetValid
    );
}

#[test]
fn exp_is_required_and_must_be_a_number() {
    let v = verifier(&all_keys());
    let with = |c: Value| v.verify_at(&sign(Algorithm::HS256, &hs_key(), &c), NOW);
    assert_eq!(
        with(json!({"tenant": "acme"})).unwrap_err(),
        AuthError::MissingExp
    );
    assert_eq!(
        with(json!({"tenant": "acme", "exp": null})).unwrap_err(),
        AuthError::MissingExp
    );
    assert_eq!(
        with(json!({"tenant": "acme", "exp": "tomorrow"})).unwrap_err(),
        AuthError::Malformed
    );
    assert_eq!(
        with(json!({"tenant": "acme", "exp": NOW + 60, "nbf": "x"})).unwrap_err(),
        AuthError::Malformed
    );
    assert!(with(json!({"tenant": "acme", "exp": (NOW + 60) as f64 + 0.5})).is_ok());
    assert!(with(json!({"tenant": "acme", "exp": u64::MAX})).is_ok());
    assert!(with(json!({"tenant": "acme", "exp": 1e300})).is_ok());
    assert_eq!(
        with(json!({"tenant": "acme", "exp": -1e300})).unwrap_err(),
        AuthError::Expired
    );
    assert_eq!(
        with(json!({"tenant": "acme", "exp": i64::MIN})).unwrap_err(),
        AuthError::Expired
    );
    assert_eq!(
        with(json!({"tenant": "acme", "exp": NOW + 60, "nbf": i64::MAX})).unwrap_err(),
        AuthError::NotYetValid
    );
}

#[test]
fn issuer_is_checked_when_configured() {
    let v = verifier(&AuthConfig {
        issuer: Some("https://idp.example".into()),
        ..all_keys()
    });
    let with = |iss: Value| {
        let mut c = claims();
        c["iss"] = iss;
        v.verify_at(&sign(Algorithm::ES256, &ec_key(), &c), NOW)
    };
    assert!(with(json!("https://idp.example")).is_ok());
    assert_eq!(
        with(json!("https://evil.example")).unwrap_err(),
        AuthError::WrongIssuer
    );
    assert_eq!(
        with(json!(["https://idp.example"])).unwrap_err(),
        AuthError::WrongIssuer
    );
    assert_eq!(with(Value::Null).unwrap_err(), AuthError::WrongIssuer);
    let no_iss = sign(Algorithm::ES256, &ec_key(), &claims());
    assert_eq!(
        v.verify_at(&no_iss, NOW).unwrap_err(),
        AuthError::WrongIssuer
    );

    // Not configured: any issuer passes.
    let mut c = claims();
    c["iss"] = json!("anyone");
    assert!(check(&all_keys(), &sign(Algorithm::ES256, &ec_key(), &c)).is_ok());
}

#[test]
fn audience_is_checked_when_configured_as_string_or_array() {
    let v = verifier(&AuthConfig {
        audience: Some("tern".into()),
        ..all_keys()
    });
    let with = |aud: Value| {
        let mut c = claims();
        c["aud"] = aud;
        v.verify_at(&sign(Algorithm::EdDSA, &ed_key(), &c), NOW)
    };
    assert!(with(json!("tern")).is_ok());
    assert!(with(json!(["other", "tern"])).is_ok());
    assert_eq!(with(json!("other")).unwrap_err(), AuthError::WrongAudience);
    assert_eq!(
        with(json!(["other", 7])).unwrap_err(),
        AuthError::WrongAudience
    );
    assert_eq!(with(json!([])).unwrap_err(), AuthError::WrongAudience);
    assert_eq!(
        with(json!({"aud": "tern"})).unwrap_err(),
        AuthError::WrongAudience
    );
    let no_aud = sign(Algorithm::EdDSA, &ed_key(), &claims());
    assert_eq!(
        v.verify_at(&no_aud, NOW).unwrap_err(),
        AuthError::WrongAudience
    );

    let mut c = claims();
    c["aud"] = json!("whatever");
    assert!(check(&all_keys(), &sign(Algorithm::EdDSA, &ed_key(), &c)).is_ok());
}

#[test]
fn alg_none_is_refused_in_any_spelling() {
    for alg in ["none", "None", "NONE", "nOnE"] {
        let token = hand_token(&json!({"alg": alg, "typ": "JWT"}), &claims(), b"");
        assert_eq!(
            check(&all_keys(), &token).unwrap_err(),
            AuthError::UnsupportedAlgorithm(alg.into())
        );
        let no_sig = token.trim_end_matches('.').to_string() + ".";
        assert!(check(&all_keys(), &no_sig).is_err());
    }
}

#[test]
fn algorithm_outside_the_allowlist_is_refused() {
    let rsa_only = AuthConfig {
        algorithms: vec!["RS256".into()],
        public_key_files: vec![fixture("rsa_public.pem")],
        ..enabled()
    };
    assert!(check(&rsa_only, &sign(Algorithm::RS256, &rsa_key(), &claims())).is_ok());
    let hs = sign(Algorithm::HS256, &hs_key(), &claims());
    assert_eq!(
        check(&rsa_only, &hs).unwrap_err(),
        AuthError::UnsupportedAlgorithm("HS256".into())
    );
    // Algorithms Tern never accepts, even with a key that would fit.
    for (alg, key) in [
        (Algorithm::HS384, hs_key()),
        (Algorithm::HS512, hs_key()),
        (Algorithm::RS512, rsa_key()),
        (Algorithm::PS256, rsa_key()),
    ] {
        let token = sign(alg, &key, &claims());
        assert!(
            matches!(
                check(&all_keys(), &token),
                Err(AuthError::UnsupportedAlgorithm(_))
            ),
            "{alg:?}"
        );
    }
}

#[test]
fn rsa_public_key_is_never_an_hmac_secret() {
    // The classic confusion: sign HS256 with the server's public key bytes as the secret.
    for pem in ["rsa_public.pem", "rsa_public_pkcs1.pem"] {
        let forged = sign(
            Algorithm::HS256,
            &EncodingKey::from_secret(&read(pem)),
            &claims(),
        );
        let rsa_only = AuthConfig {
            public_key_files: vec![fixture(pem)],
            ..enabled()
        };
        assert_eq!(
            check(&rsa_only, &forged).unwrap_err(),
            AuthError::UnknownKey
        );
        let both = AuthConfig {
            public_key_files: vec![fixture(pem)],
            ..all_keys()
        };
        assert_eq!(check(&both, &forged).unwrap_err(), AuthError::BadSignature);
    }
    // And the reverse: an RS256 header never reaches the HMAC secret.
    let hs_only = AuthConfig {
        hs256_secret: Some(SECRET.into()),
        ..enabled()
    };
    let rs = sign(Algorithm::RS256, &rsa_key(), &claims());
    assert_eq!(check(&hs_only, &rs).unwrap_err(), AuthError::UnknownKey);
}

#[test]
fn tampered_tokens_are_refused() {
    let config = all_keys();
    for (alg, key) in [
        (Algorithm::HS256, hs_key()),
        (Algorithm::RS256, rsa_key()),
        (Algorithm::ES256, ec_key()),
        (Algorithm::EdDSA, ed_key()),
    ] {
        let token = sign(alg, &key, &claims());
        let (head, rest) = token.split_once('.').unwrap();
        let (_, sig) = rest.split_once('.').unwrap();
        let mut evil = claims();
        evil["tenant"] = json!("victim");
        let swapped = format!("{head}.{}.{sig}", b64(evil.to_string().as_bytes()));
        assert_eq!(
            check(&config, &swapped).unwrap_err(),
            AuthError::BadSignature,
            "{alg:?}"
        );

        let mut sig_bytes = B64_STRICT.decode(sig).unwrap();
        sig_bytes[0] ^= 1;
        let flipped = format!("{head}.{}", rest.replace(sig, &b64(&sig_bytes)));
        assert_eq!(
            check(&config, &flipped).unwrap_err(),
            AuthError::BadSignature,
            "{alg:?}"
        );

        let short = format!("{head}.{}", rest.replace(sig, &b64(&sig_bytes[..10])));
        assert_eq!(
            check(&config, &short).unwrap_err(),
            AuthError::BadSignature,
            "{alg:?}"
        );
        let empty = format!("{}.", token.rsplit_once('.').unwrap().0);
        assert_eq!(
            check(&config, &empty).unwrap_err(),
            AuthError::BadSignature,
            "{alg:?}"
        );
    }
}

#[test]
fn a_token_from_another_key_is_refused() {
    let config = all_keys();
    let other_hs = EncodingKey::from_secret(b"another-secret-also-32-bytes-long!!");
    for token in [
        sign(Algorithm::HS256, &other_hs, &claims()),
        sign(Algorithm::RS256, &rsa2_key(), &claims()),
        sign(Algorithm::EdDSA, &ed2_key(), &claims()),
    ] {
        assert_eq!(check(&config, &token).unwrap_err(), AuthError::BadSignature);
    }
}

#[test]
fn tenant_is_required_and_must_be_a_name() {
    let v = verifier(&all_keys());
    let with = |tenant: Value| {
        let mut c = claims();
        c["tenant"] = tenant;
        v.verify_at(&sign(Algorithm::HS256, &hs_key(), &c), NOW)
    };
    assert_eq!(with(Value::Null).unwrap_err(), AuthError::MissingTenant);
    let mut c = claims();
    c.as_object_mut().unwrap().remove("tenant");
    assert_eq!(
        v.verify_at(&sign(Algorithm::HS256, &hs_key(), &c), NOW)
            .unwrap_err(),
        AuthError::MissingTenant
    );
    for bad in [
        json!(""),
        json!("ac me"),
        json!("acme%x"),
        json!("ä"),
        json!("a.b"),
        json!(42),
        json!(["acme"]),
    ] {
        assert_eq!(
            with(bad.clone()).unwrap_err(),
            AuthError::InvalidTenant,
            "{bad}"
        );
    }
    assert_eq!(
        with(json!("a".repeat(MAX_TENANT_LEN + 1))).unwrap_err(),
        AuthError::InvalidTenant
    );
    assert_eq!(
        with(json!("a".repeat(MAX_TENANT_LEN)))
            .unwrap()
            .tenant
            .len(),
        MAX_TENANT_LEN
    );
    assert_eq!(with(json!("Acme_eu-1")).unwrap().tenant, "Acme_eu-1");
}

#[test]
fn tenant_claim_name_is_configurable() {
    let config = AuthConfig {
        tenant_claim: "org".into(),
        ..all_keys()
    };
    let token = sign(
        Algorithm::HS256,
        &hs_key(),
        &json!({"org": "umbrella", "exp": NOW + 60}),
    );
    assert_eq!(check(&config, &token).unwrap().tenant, "umbrella");
    assert_eq!(
        check(&config, &sign(Algorithm::HS256, &hs_key(), &claims())).unwrap_err(),
        AuthError::MissingTenant
    );
}

#[test]
fn subject_and_scope_claims() {
    let v = verifier(&all_keys());
    let with = |c: Value| v.verify_at(&sign(Algorithm::HS256, &hs_key(), &c), NOW);
    let p = with(json!({"tenant": "acme", "exp": NOW + 60})).unwrap();
    assert_eq!(p.subject, "");
    assert!(p.scopes.is_empty() && !p.is_admin() && !p.can_publish("orders"));

    let p = with(json!({"tenant": "acme", "exp": NOW + 60, "scope": "publish:orders"})).unwrap();
    assert!(p.can_publish("orders") && !p.can_publish("orders-eu") && !p.can_consume("orders"));
    let p = with(json!({"tenant": "acme", "exp": NOW + 60, "scope": "publish:ord*"})).unwrap();
    assert!(p.can_publish("orders") && p.can_publish("ord") && !p.can_publish("payments"));
    let p = with(json!({"tenant": "acme", "exp": NOW + 60, "scope": "consume:*"})).unwrap();
    assert!(p.can_consume("anything") && !p.can_publish("anything") && !p.is_admin());
    let p = with(json!({"tenant": "acme", "exp": NOW + 60, "scope": "admin"})).unwrap();
    assert!(p.is_admin() && !p.can_publish("orders"));

    assert_eq!(
        with(json!({"tenant": "acme", "exp": NOW + 60, "sub": 7})).unwrap_err(),
        AuthError::Malformed
    );
    assert_eq!(
        with(json!({"tenant": "acme", "exp": NOW + 60, "scope": ["admin"]})).unwrap_err(),
        AuthError::Malformed
    );
}

#[test]
fn malformed_tokens_are_refused() {
    let config = all_keys();
    let good = sign(Algorithm::HS256, &hs_key(), &claims());
    let (head, rest) = good.split_once('.').unwrap();
    let (payload, sig) = rest.split_once('.').unwrap();
    let cases = [
        "abc".to_string(),
        "a.b".to_string(),
        "..".to_string(),
        format!("{good}.{sig}"),
        format!("{head}.{payload}"),
        format!("{head}=.{payload}.{sig}"),
        format!("{head}.{payload}=.{sig}"),
        format!("{head}.{payload}.{sig}="),
        format!("{head}.{payload}.{sig}!"),
        format!("{}.{payload}.{sig}", b64(b"not json")),
        format!("{}.{payload}.{sig}", b64(b"[\"HS256\"]")),
        format!("{}.{payload}.{sig}", b64(b"{\"typ\":\"JWT\"}")),
        format!("{}.{payload}.{sig}", b64(b"{\"alg\":7}")),
        format!("{head}.{}.{sig}", payload.replace(|_| true, "\u{e9}")),
    ];
    for token in &cases {
        assert_eq!(
            check(&config, token).unwrap_err(),
            AuthError::Malformed,
            "{token}"
        );
    }
    assert_eq!(check(&config, "").unwrap_err(), AuthError::Missing);
    assert_eq!(
        check(&config, &"a".repeat(MAX_TOKEN_LEN + 1)).unwrap_err(),
        AuthError::TooLong
    );

    // A payload that is valid JSON but not an object, correctly signed.
    let mut header = JwtHeader::new(Algorithm::HS256);
    header.typ = None;
    let array = encode(&header, &json!([1, 2]), &hs_key()).unwrap();
    assert_eq!(check(&config, &array).unwrap_err(), AuthError::Malformed);

    // `crit` names extensions Tern does not implement: refuse rather than ignore.
    let h = json!({"alg": "HS256", "crit": ["exp"]});
    let signing_input = format!(
        "{}.{}",
        b64(h.to_string().as_bytes()),
        b64(claims().to_string().as_bytes())
    );
    let sig =
        jsonwebtoken::crypto::sign(signing_input.as_bytes(), &hs_key(), Algorithm::HS256).unwrap();
    assert_eq!(
        check(&config, &format!("{signing_input}.{sig}")).unwrap_err(),
        AuthError::Malformed
    );
}

#[test]
fn embedded_keys_in_the_header_are_ignored() {
    // A token carrying its own `jwk` must still be checked against the configured keys only.
    let jwks: Value = serde_json::from_slice(&read("jwks.json")).unwrap();
    let h = json!({"alg": "RS256", "jwk": jwks["keys"][0], "jku": "https://evil.example/jwks"});
    let signing_input = format!(
        "{}.{}",
        b64(h.to_string().as_bytes()),
        b64(claims().to_string().as_bytes())
    );
    let sig = jsonwebtoken::crypto::sign(signing_input.as_bytes(), &rsa2_key(), Algorithm::RS256)
        .unwrap();
    let token = format!("{signing_input}.{sig}");
    assert_eq!(
        check(&all_keys(), &token).unwrap_err(),
        AuthError::BadSignature
    );
}

#[test]
fn bearer_header_parsing() {
    assert_eq!(bearer_token("Bearer abc.def.ghi"), Ok("abc.def.ghi"));
    assert_eq!(bearer_token("bearer abc"), Ok("abc"));
    assert_eq!(bearer_token("BEARER   abc  "), Ok("abc"));
    assert_eq!(bearer_token(" \tBearer\tabc"), Ok("abc"));
    assert_eq!(bearer_token(""), Err(AuthError::Missing));
    assert_eq!(bearer_token("   "), Err(AuthError::Missing));
    assert_eq!(bearer_token("Bearer"), Err(AuthError::Missing));
    assert_eq!(bearer_token("Bearer "), Err(AuthError::Missing));
    assert_eq!(
        bearer_token("Basic dXNlcjpwdw=="),
        Err(AuthError::Malformed)
    );
    assert_eq!(bearer_token("Bearerabc"), Err(AuthError::Malformed));
    assert_eq!(bearer_token("abc.def.ghi"), Err(AuthError::Malformed));
    assert_eq!(bearer_token("Bearer a b"), Err(AuthError::Malformed));
    assert_eq!(bearer_token("Bearer a\u{7f}b"), Err(AuthError::Malformed));
    let long = format!("Bearer {}", "a".repeat(MAX_TOKEN_LEN + 1));
    assert_eq!(bearer_token(&long), Err(AuthError::TooLong));
}

#[test]
fn error_details_are_safe_for_clients() {
    let token = hand_token(
        &json!({"alg": format!("x\u{0}\n{}", "y".repeat(100))}),
        &claims(),
        b"s",
    );
    let err = check(&all_keys(), &token).unwrap_err();
    let AuthError::UnsupportedAlgorithm(alg) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(alg.chars().count(), 32);
    assert!(alg.chars().all(|c| c.is_ascii_graphic() || c == ' '));
    assert!(!err.detail().contains('\n'));
    assert_eq!(err.bearer_error_code(), Some("invalid_token"));
    assert_eq!(AuthError::Missing.bearer_error_code(), None);
    assert_eq!(
        AuthError::Malformed.bearer_error_code(),
        Some("invalid_request")
    );
    assert!(AuthError::Expired.detail().contains("expired"));
}

#[test]
fn verifier_is_shareable() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Verifier>();
    assert_send_sync::<Principal>();
    let debug = format!("{:?}", verifier(&all_keys()));
    assert!(!debug.contains(SECRET), "{debug}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_input_never_panics(token in ".{0,300}") {
        let v = verifier(&all_keys());
        prop_assert!(v.verify_at(&token, NOW).is_err());
        let _ = bearer_token(&token);
    }

    #[test]
    fn arbitrary_segments_never_panic(
        header in proptest::collection::vec(any::<u8>(), 0..64),
        payload in proptest::collection::vec(any::<u8>(), 0..64),
        signature in proptest::collection::vec(any::<u8>(), 0..80),
        alg in prop_oneof![Just("HS256"), Just("RS256"), Just("ES256"), Just("EdDSA")],
        now in any::<i64>(),
    ) {
        let v = verifier(&all_keys());
        let raw = format!("{}.{}.{}", b64(&header), b64(&payload), b64(&signature));
        prop_assert!(v.verify_at(&raw, now).is_err());
        let crafted = format!(
            "{}.{}.{}",
            b64(json!({"alg": alg}).to_string().as_bytes()),
            b64(&payload),
            b64(&signature)
        );
        prop_assert!(v.verify_at(&crafted, now).is_err());
    }

    #[test]
    fn any_time_never_panics(now in any::<i64>(), exp in any::<i64>(), nbf in any::<i64>()) {
        let v = verifier(&all_keys());
        let token = sign(Algorithm::HS256, &hs_key(), &json!({"tenant": "acme", "exp": exp, "nbf": nbf}));
        let _ = v.verify_at(&token, now);
    }
}
