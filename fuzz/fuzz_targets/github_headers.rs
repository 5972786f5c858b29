//! `GitHubHeaders::parse` over arbitrary header maps (repeated names, odd
//! bytes), plus `DeliveryId::parse` and `EventName::parse` on arbitrary text.
//!
//! Invariants: a parsed value is exactly the header's text and only holds the
//! allowed characters; parsed headers written back into a map parse to the
//! same value (round trip); a `Missing` error names a header that is absent.
#![no_main]

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use webhookd::webhook::headers::{DeliveryId, EventName, GitHubHeaders, HeaderError};

const NAMES: [&str; 6] = [
    "x-github-event",
    "x-github-delivery",
    "x-github-hook-id",
    "x-github-hook-installation-target-type",
    "x-github-hook-installation-target-id",
    "content-type",
];

#[derive(Debug, Arbitrary)]
enum Name {
    Known(u8),
    Other(String),
}

#[derive(Debug, Arbitrary)]
struct Input {
    headers: Vec<(Name, Vec<u8>)>,
    text: String,
}

fuzz_target!(|input: Input| {
    let mut map = HeaderMap::new();
    for (name, value) in input.headers.into_iter().take(32) {
        let name = match name {
            Name::Known(i) => HeaderName::from_static(NAMES[usize::from(i) % NAMES.len()]),
            Name::Other(s) => match HeaderName::from_bytes(s.as_bytes()) {
                Ok(n) => n,
                Err(_) => continue,
            },
        };
        if let Ok(value) = HeaderValue::from_bytes(&value) {
            map.append(name, value);
        }
    }

    match GitHubHeaders::parse(&map) {
        Ok(parsed) => {
            let text = |name: &str| map.get(name).and_then(|v| v.to_str().ok());
            assert_eq!(Some(parsed.event.as_str()), text("x-github-event"));
            assert_eq!(Some(parsed.delivery_id.as_str()), text("x-github-delivery"));
            check_event(parsed.event.as_str());
            check_delivery_id(parsed.delivery_id.as_str());
            for (name, value) in [
                ("x-github-hook-id", &parsed.hook_id),
                ("x-github-hook-installation-target-type", &parsed.target_type),
                ("x-github-hook-installation-target-id", &parsed.target_id),
            ] {
                if let Some(v) = value {
                    assert!(!v.is_empty() && v.len() <= 128, "{name} kept a value of {} bytes", v.len());
                    assert_eq!(Some(v.as_str()), text(name));
                }
            }
            // Round trip through a fresh map.
            let mut again = HeaderMap::new();
            let mut put = |name: &'static str, value: &str| {
                again.insert(
                    HeaderName::from_static(name),
                    HeaderValue::from_str(value).expect("parsed values are header-safe"),
                );
            };
            put("x-github-event", parsed.event.as_str());
            put("x-github-delivery", parsed.delivery_id.as_str());
            if let Some(v) = &parsed.hook_id {
                put("x-github-hook-id", v);
            }
            if let Some(v) = &parsed.target_type {
                put("x-github-hook-installation-target-type", v);
            }
            if let Some(v) = &parsed.target_id {
                put("x-github-hook-installation-target-id", v);
            }
            assert_eq!(GitHubHeaders::parse(&again).as_ref(), Ok(&parsed));
        }
        Err(HeaderError::Missing(name)) => assert!(map.get(name).is_none(), "{name} reported missing but present"),
        Err(HeaderError::Invalid(name, _)) => assert!(map.get(name).is_some(), "{name} reported invalid but absent"),
    }

    if let Ok(id) = DeliveryId::parse(&input.text) {
        assert_eq!(id.as_str(), input.text);
        check_delivery_id(id.as_str());
    }
    if let Ok(event) = EventName::parse(&input.text) {
        assert_eq!(event.as_str(), input.text);
        check_event(event.as_str());
    }
});

fn check_event(s: &str) {
    assert!((1..=64).contains(&s.len()), "event of {} bytes", s.len());
    assert!(s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'), "event {s:?}");
}

fn check_delivery_id(s: &str) {
    assert!((1..=128).contains(&s.len()), "delivery id of {} bytes", s.len());
    assert!(
        s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':')),
        "delivery id {s:?}"
    );
}
