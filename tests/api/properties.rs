//! Property tests for the parsers the fuzz targets cover (fuzz/README.md):
//! the same invariants, checked on a few hundred generated inputs each time
//! `cargo test` runs. Crashes the fuzzers found are kept here as exact cases.

use std::path::Path;

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use bytes::Bytes;
use proptest::prelude::*;
use secrecy::SecretString;
use serde_json::{Value, json};
use webhookd::Delivery;
use webhookd::config::{Env, Settings};
use webhookd::delivery::Routing;
use webhookd::rules::plan::{self, Call};
use webhookd::rules::{Action, RuleSet};
use webhookd::webhook::body::{BodyError, ContentKind, json_bytes};
use webhookd::webhook::headers::{DeliveryId, EventName, GitHubHeaders};
use webhookd::webhook::signature::{SignatureError, SignatureVerifier, sign};

/// Enough cases to exercise each parser, few enough that the whole module
/// runs in a few seconds in a debug build.
fn config() -> ProptestConfig {
    ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() }
}

fn verifier(secrets: &[String]) -> SignatureVerifier {
    let keys: Vec<SecretString> = secrets.iter().map(|s| SecretString::from(s.as_str())).collect();
    SignatureVerifier::new(&keys)
}

fn headers(event: &str, id: &str) -> GitHubHeaders {
    GitHubHeaders {
        event: EventName::parse(event).expect("valid event"),
        delivery_id: DeliveryId::parse(id).expect("valid id"),
        hook_id: None,
        target_type: None,
        target_id: None,
    }
}

fn form(pairs: &[(&str, &str)]) -> Bytes {
    Bytes::from(form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish())
}

/// A payload with the routing fields, any of them absent, plus noise.
fn routing_payload() -> impl Strategy<Value = (Routing, Value)> {
    (
        proptest::option::of(".{0,12}"),
        proptest::option::of(".{0,12}"),
        proptest::option::of(any::<u64>()),
        proptest::option::of(".{0,12}"),
        ".{0,12}",
    )
        .prop_map(|(action, repository, installation_id, sender, noise)| {
            let mut doc = json!({ "noise": { "text": noise, "list": [1, 2.5, null, true] } });
            if let Some(a) = &action {
                doc["action"] = json!(a);
            }
            if let Some(r) = &repository {
                doc["repository"] = json!({ "full_name": r, "id": 1 });
            }
            if let Some(i) = installation_id {
                doc["installation"] = json!({ "id": i });
            }
            if let Some(s) = &sender {
                doc["sender"] = json!({ "login": s, "type": "User" });
            }
            (Routing { action, repository, installation_id, sender }, doc)
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn a_signature_verifies_and_any_changed_byte_does_not(
        secrets in proptest::collection::vec(".{0,24}", 1..4),
        which in any::<prop::sample::Index>(),
        body in proptest::collection::vec(any::<u8>(), 0..256),
        flip in any::<prop::sample::Index>(),
        xor in 1..=255u8,
    ) {
        let v = verifier(&secrets);
        let key = SecretString::from(which.get(&secrets).as_str());
        let signature = sign(&key, &body);
        prop_assert_eq!(v.verify(Some(signature.as_bytes()), false, &body), Ok(()));

        let mut digest = hex::decode(&signature["sha256=".len()..]).expect("hex");
        let at = flip.index(digest.len());
        digest[at] ^= xor;
        let flipped = format!("sha256={}", hex::encode(&digest));
        prop_assert_eq!(v.verify(Some(flipped.as_bytes()), false, &body), Err(SignatureError::Mismatch));

        let mut tampered = body.clone();
        if tampered.is_empty() {
            tampered.push(xor);
        } else {
            let at = flip.index(tampered.len());
            tampered[at] ^= xor;
        }
        prop_assert_eq!(v.verify(Some(signature.as_bytes()), false, &tampered), Err(SignatureError::Mismatch));
    }

    #[test]
    fn only_a_genuine_signature_header_is_accepted(
        secrets in proptest::collection::vec(".{0,8}", 0..3),
        header in proptest::option::of(prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..80),
            "sha256=[0-9a-fA-F]{0,66}".prop_map(String::into_bytes),
        ]),
        legacy in any::<bool>(),
        body in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let result = verifier(&secrets).verify(header.as_deref(), legacy, &body);
        match &header {
            None if legacy => prop_assert_eq!(result, Err(SignatureError::LegacyOnly)),
            None => prop_assert_eq!(result, Err(SignatureError::Missing)),
            Some(h) if !h.starts_with(b"sha256=") => prop_assert_eq!(result, Err(SignatureError::Malformed)),
            Some(h) => {
                let genuine = secrets.iter().any(|s| sign(&SecretString::from(s.as_str()), &body).as_bytes() == h.to_ascii_lowercase());
                prop_assert_eq!(result.is_ok(), genuine);
            }
        }
    }

    #[test]
    fn github_headers_round_trip(
        event in "[a-z0-9_]{1,64}",
        id in "[A-Za-z0-9._:-]{1,128}",
        hook_id in proptest::option::of("[ -~]{0,140}"),
        target_type in proptest::option::of("[ -~]{0,140}"),
    ) {
        let mut map = HeaderMap::new();
        let mut put = |name: &'static str, value: &str| {
            map.insert(HeaderName::from_static(name), HeaderValue::from_str(value).expect("visible ASCII"));
        };
        put("x-github-event", &event);
        put("x-github-delivery", &id);
        if let Some(v) = &hook_id {
            put("x-github-hook-id", v);
        }
        if let Some(v) = &target_type {
            put("x-github-hook-installation-target-type", v);
        }
        let parsed = GitHubHeaders::parse(&map).expect("valid headers parse");
        prop_assert_eq!(parsed.event.as_str(), event.as_str());
        prop_assert_eq!(parsed.delivery_id.as_str(), id.as_str());
        // Optional values are kept only when short and non-empty.
        let kept = |v: &Option<String>| v.clone().filter(|v| !v.is_empty() && v.len() <= 128);
        prop_assert_eq!(&parsed.hook_id, &kept(&hook_id));
        prop_assert_eq!(&parsed.target_type, &kept(&target_type));
    }

    #[test]
    fn odd_delivery_ids_and_event_names_are_refused(text in ".{0,150}") {
        let id_ok = !text.is_empty()
            && text.len() <= 128
            && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
        prop_assert_eq!(DeliveryId::parse(&text).is_ok(), id_ok);
        let event_ok = !text.is_empty()
            && text.len() <= 64
            && text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        prop_assert_eq!(EventName::parse(&text).is_ok(), event_ok);
    }

    #[test]
    fn a_form_payload_is_decoded_exactly(
        payload in ".{0,64}",
        before in proptest::collection::vec(("[a-z]{1,8}", ".{0,16}"), 0..3),
        after in proptest::collection::vec(("[a-z]{1,8}", ".{0,16}"), 0..3),
    ) {
        let mut pairs: Vec<(&str, &str)> = before.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        pairs.retain(|(k, _)| *k != "payload");
        pairs.push(("payload", &payload));
        pairs.extend(after.iter().map(|(k, v)| (k.as_str(), v.as_str())).filter(|(k, _)| *k != "payload"));
        let json = json_bytes(ContentKind::Form, &form(&pairs)).expect("one payload field");
        prop_assert_eq!(json.as_ref(), payload.as_bytes());

        pairs.push(("payload", "again"));
        prop_assert_eq!(json_bytes(ContentKind::Form, &form(&pairs)), Err(BodyError::RepeatedPayload));
    }

    #[test]
    fn form_decoding_never_panics_and_yields_text(raw in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(json) = json_bytes(ContentKind::Form, &Bytes::from(raw)) {
            prop_assert!(std::str::from_utf8(&json).is_ok());
        }
    }

    #[test]
    fn content_types_classify_by_their_mime_alone(
        mime in prop_oneof![
            Just("application/json".to_owned()),
            Just("APPLICATION/X-WWW-FORM-URLENCODED".to_owned()),
            "[a-z/+-]{0,24}",
        ],
        params in "(; [a-z]{1,8}=[a-z0-9-]{0,8}){0,2}",
    ) {
        let header = format!(" {mime} {params}");
        let expected = [ContentKind::Json, ContentKind::Form].into_iter().find(|k| mime.eq_ignore_ascii_case(k.mime()));
        prop_assert_eq!(ContentKind::from_header(Some(&header)), expected);
    }

    #[test]
    fn routing_fields_match_the_payload_in_both_encodings((routing, doc) in routing_payload()) {
        let json = serde_json::to_string(&doc).expect("serialises");
        for (kind, raw) in [
            (ContentKind::Json, Bytes::from(json.clone())),
            (ContentKind::Form, form(&[("payload", &json)])),
        ] {
            let delivery = Delivery::from_verified(headers("issues", "d-1"), kind, raw).expect("a valid payload");
            prop_assert_eq!(&delivery.routing, &routing);
            prop_assert_eq!(delivery.payload().expect("parses"), &doc);
        }
    }

    #[test]
    fn routing_fields_agree_with_the_payload_whatever_their_shape(
        fields in proptest::collection::vec((prop_oneof![
            Just("action"), Just("repository"), Just("installation"), Just("sender"),
        ], json_value()), 0..4),
    ) {
        let doc = Value::Object(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect());
        let Ok(delivery) = Delivery::from_verified(headers("push", "d-4"), ContentKind::Json, Bytes::from(doc.to_string())) else {
            return Ok(());
        };
        let payload = delivery.payload().expect("parses");
        let routing = &delivery.routing;
        prop_assert_eq!(routing.action.as_deref(), payload.get("action").and_then(Value::as_str));
        prop_assert_eq!(routing.repository.as_deref(), payload.pointer("/repository/full_name").and_then(Value::as_str));
        prop_assert_eq!(routing.installation_id, payload.pointer("/installation/id").and_then(Value::as_u64));
        prop_assert_eq!(routing.sender.as_deref(), payload.pointer("/sender/login").and_then(Value::as_str));
    }

    #[test]
    fn bodies_that_are_not_json_objects_are_refused(
        raw in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..128),
            "\\s*(\\[.*\\]|\"[a-z]*\"|[0-9]{1,5}|null|true)\\s*".prop_map(String::into_bytes),
        ],
    ) {
        let Ok(delivery) = Delivery::from_verified(headers("push", "d-2"), ContentKind::Json, Bytes::from(raw.clone())) else {
            return Ok(());
        };
        // Whatever passed is a UTF-8 JSON object.
        let text = std::str::from_utf8(&raw).expect("accepted bodies are UTF-8");
        prop_assert!(text.trim_start().starts_with('{'), "not an object: {:?}", text);
        prop_assert!(delivery.payload().map_or(true, Value::is_object));
    }

    #[test]
    fn rules_errors_point_inside_the_file(source in prop_oneof![
        ".{0,200}",
        (0..=EXAMPLE_RULES.len()).prop_map(|cut| EXAMPLE_RULES[..floor_char_boundary(EXAMPLE_RULES, cut)].to_owned()),
        (0..EXAMPLE_RULES.len(), "[\\[\\]{}\"=#\n a-z]{1,4}").prop_map(|(at, junk)| {
            let at = floor_char_boundary(EXAMPLE_RULES, at);
            format!("{}{junk}{}", &EXAMPLE_RULES[..at], &EXAMPLE_RULES[at..])
        }),
    ]) {
        let env = Env::from_pairs([("HOOK_SECRET", "rules-forward-secret-9x")]);
        match RuleSet::parse(Path::new("p.toml"), &source, &env) {
            Ok(set) => prop_assert!(set.rules.iter().all(|r| !r.name.is_empty() && !r.on.is_empty() && !r.actions.is_empty())),
            Err(errors) => {
                let lines = source.matches('\n').count() + 1;
                prop_assert!(!errors.is_empty());
                for e in errors {
                    prop_assert!((1..=lines).contains(&e.line) && e.column >= 1, "{}", e);
                    prop_assert!(e.to_string().starts_with("p.toml:"));
                }
            }
        }
    }

    #[test]
    fn payload_text_is_rendered_verbatim_never_as_a_template(value in ".{0,40}|\\{\\{.{0,20}\\}\\}|\\{%.{0,20}%\\}") {
        let source = "[[rule]]\nname = \"n\"\non = \"issues\"\n[[rule.actions]]\nadd_labels = [\"{{ title }}\"]\n";
        let set = RuleSet::parse(Path::new("p.toml"), source, &Env::default()).expect("compiles");
        let doc = json!({ "title": value, "repository": { "full_name": "o/r" }, "number": 7 });
        let delivery = Delivery::from_verified(headers("issues", "d-3"), ContentKind::Json, Bytes::from(doc.to_string()))
            .expect("valid");
        let payload = delivery.payload().expect("parses");
        let ctx = plan::context(&delivery, payload);
        let rule = &set.rules[0];
        let Action::AddLabels(templates) = &rule.actions[0] else { panic!("add_labels") };
        prop_assert_eq!(set.render(&templates[0], &ctx).expect("renders"), value.clone());
        let calls = plan::plan(&set, rule, 0, &rule.actions[0], &delivery, payload, &ctx).expect("plans");
        let Call::GitHub { body: Some(body), .. } = &calls[0] else { panic!("a GitHub call") };
        prop_assert_eq!(&body["labels"][0], &json!(value));
    }

    #[test]
    fn configuration_errors_name_their_variable_and_never_a_secret(
        values in proptest::collection::vec((0..CONFIG_VARS.len(), ".{0,24}|[0-9]{1,25}[a-z]{0,3}"), 0..10),
        secret in "[A-Za-z0-9]{12,20}",
        token in "[ -~]{12,20}",
    ) {
        let mut pairs: Vec<(&str, String)> = values.into_iter().map(|(i, v)| (CONFIG_VARS[i], v)).collect();
        // Both are refused: an empty item in the list, a space in the token.
        pairs.push(("WEBHOOKD_SECRET", format!("{secret},")));
        pairs.push(("WEBHOOKD_GITHUB_TOKEN", format!("{token} x")));
        let err = Settings::from_env(&Env::from_pairs(pairs)).expect_err("an empty secret and a spaced token are refused");
        let text = err.to_string();
        for line in text.lines() {
            let var = line.split(':').next().unwrap_or_default();
            prop_assert!(var == "RUST_LOG" || var.starts_with("WEBHOOKD_"), "{}", line);
        }
        prop_assert!(text.contains("WEBHOOKD_SECRET:") && text.contains("WEBHOOKD_GITHUB_TOKEN:"), "{}", text);
        prop_assert!(!text.contains(&secret) && !text.contains(&token), "{}", text);
    }
}

/// Variables whose values go through the number, duration, URL, store, log
/// and credential parsers. (`WEBHOOKD_LISTEN` is left out: a host name in it
/// is resolved; `*_FILE` ones read files.)
const CONFIG_VARS: [&str; 16] = [
    "WEBHOOKD_GITHUB_APP_ID",
    "WEBHOOKD_GITHUB_API_URL",
    "WEBHOOKD_GITHUB_CONCURRENCY",
    "WEBHOOKD_GITHUB_WRITE_INTERVAL",
    "WEBHOOKD_GITHUB_TIMEOUT",
    "WEBHOOKD_WORKERS",
    "WEBHOOKD_STORE",
    "WEBHOOKD_QUEUE_CAPACITY",
    "WEBHOOKD_RETENTION",
    "WEBHOOKD_MAX_ATTEMPTS",
    "WEBHOOKD_RETRY_BACKOFF",
    "WEBHOOKD_MAX_BODY",
    "WEBHOOKD_SHUTDOWN_TIMEOUT",
    "WEBHOOKD_STALL_TIMEOUT",
    "WEBHOOKD_LOG_FORMAT",
    "RUST_LOG",
];

/// Any JSON value, a few levels deep, using the routing fields' inner keys.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "[a-z/]{0,6}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![Just("full_name"), Just("id"), Just("login"), Just("x")],
                inner,
                0..3
            )
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    })
}

const EXAMPLE_RULES: &str = include_str!("../../examples/rules.toml");

fn floor_char_boundary(s: &str, mut at: usize) -> usize {
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    at
}

// Crashes the fuzzers found, as exact cases.

/// rules_compile / template_render: `}}` inside an `if` expression makes
/// minijinja 2.24's lexer panic ("empty lexer stack", compiler/lexer.rs:363)
/// from `Environment::compile_expression`, so such a rules file crashes
/// `webhookd check`, start and reload instead of being refused.
#[test]
fn an_if_expression_holding_a_variable_end_is_refused_not_a_panic() {
    let source = "[[rule]]\nname = \"n\"\non = \"issues\"\nif = \"a }} b\"\n[[rule.actions]]\nclose = true\n";
    let errors = RuleSet::parse(Path::new("p.toml"), source, &Env::default()).err().expect("refused");
    assert!(errors.iter().any(|e| e.line == 4 && e.message.contains("`if` does not compile")), "{errors:?}");
}
