//! `Delivery::from_verified`: body decoding (JSON or form) and routing-field
//! extraction over arbitrary bytes. The first input byte picks the content
//! kind (even: JSON, odd: form); the rest is the body.
//!
//! Invariants: a JSON body's document is the body itself; a form body's
//! document is its one `payload` field; an accepted document is UTF-8 and a
//! JSON object; when the full parse succeeds, the routing fields agree with it.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use webhookd::Delivery;
use webhookd::webhook::body::{BodyError, ContentKind};
use webhookd::webhook::headers::{DeliveryId, EventName, GitHubHeaders};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let kind = if selector % 2 == 0 { ContentKind::Json } else { ContentKind::Form };
    let raw = Bytes::copy_from_slice(body);
    let headers = GitHubHeaders {
        event: EventName::parse("push").expect("valid event"),
        delivery_id: DeliveryId::parse("fuzz").expect("valid id"),
        hook_id: None,
        target_type: None,
        target_id: None,
    };
    let delivery = match Delivery::from_verified(headers, kind, raw.clone()) {
        Ok(d) => d,
        Err(BodyError::MissingPayload | BodyError::RepeatedPayload) => {
            assert_eq!(kind, ContentKind::Form);
            let count = form_urlencoded::parse(body).filter(|(k, _)| k == "payload").count();
            assert_ne!(count, 1, "one payload field, yet refused as missing/repeated");
            return;
        }
        Err(_) => return,
    };
    assert_eq!(delivery.raw, raw, "the raw body is kept exactly");
    let json = delivery.json();
    match kind {
        ContentKind::Json => assert_eq!(json, &raw),
        ContentKind::Form => {
            let mut payloads = form_urlencoded::parse(body).filter(|(k, _)| k == "payload");
            let (_, payload) = payloads.next().expect("accepted form has a payload");
            assert!(payloads.next().is_none(), "accepted form has one payload");
            assert_eq!(json.as_ref(), payload.as_bytes());
        }
    }
    let text = std::str::from_utf8(json).expect("accepted documents are UTF-8");
    assert!(text.trim_start().starts_with('{'), "accepted document is not an object: {text:?}");

    // The full parse may still fail (a lone surrogate escape the routing parse
    // skipped); when it succeeds, it must agree with the routing fields.
    let Ok(payload) = delivery.payload() else { return };
    let object = payload.as_object().expect("an accepted document parses to an object");
    let routing = &delivery.routing;
    assert_eq!(routing.action.as_deref(), object.get("action").and_then(Value::as_str));
    assert_eq!(routing.repository.as_deref(), payload.pointer("/repository/full_name").and_then(Value::as_str));
    assert_eq!(routing.installation_id, payload.pointer("/installation/id").and_then(Value::as_u64));
    assert_eq!(routing.sender.as_deref(), payload.pointer("/sender/login").and_then(Value::as_str));
    let expected_kind = match &routing.action {
        Some(action) => format!("push.{action}"),
        None => "push".to_owned(),
    };
    assert_eq!(delivery.kind(), expected_kind);
});
