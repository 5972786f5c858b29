//! Form decoding (`body::json_bytes` with `ContentKind::Form`) and the
//! `Content-Type` classifier.
//!
//! Invariants: arbitrary bytes never panic and decode to UTF-8; a form built
//! by a real encoder with exactly one `payload` field (among arbitrary other
//! fields, before and after) decodes to that field's exact value; two
//! `payload` fields are refused; a classified content type's MIME classifies
//! to the same kind.
#![no_main]

use arbitrary::Arbitrary;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use webhookd::webhook::body::{BodyError, ContentKind, json_bytes};

#[derive(Debug, Arbitrary)]
struct Input {
    raw: Vec<u8>,
    payload: String,
    before: Vec<(String, String)>,
    after: Vec<(String, String)>,
    second_payload: Option<String>,
    content_type: String,
}

fuzz_target!(|input: Input| {
    // Arbitrary bytes.
    let raw = Bytes::from(input.raw);
    if let Ok(json) = json_bytes(ContentKind::Form, &raw) {
        assert!(std::str::from_utf8(&json).is_ok(), "decoded payload is not UTF-8");
    }
    assert_eq!(json_bytes(ContentKind::Json, &raw).ok(), Some(raw), "a JSON body is its own document");

    // An encoded form round-trips the payload exactly.
    let mut form = form_urlencoded::Serializer::new(String::new());
    let others =
        |pairs: &[(String, String)]| pairs.iter().filter(|(k, _)| k != "payload").take(8).cloned().collect::<Vec<_>>();
    form.extend_pairs(others(&input.before));
    form.append_pair("payload", &input.payload);
    form.extend_pairs(others(&input.after));
    if let Some(second) = &input.second_payload {
        form.append_pair("payload", second);
    }
    let encoded = Bytes::from(form.finish());
    match (json_bytes(ContentKind::Form, &encoded), &input.second_payload) {
        (Ok(json), None) => assert_eq!(json.as_ref(), input.payload.as_bytes()),
        (Err(BodyError::RepeatedPayload), Some(_)) => {}
        (other, second) => panic!("form {encoded:?} (second payload {second:?}) gave {other:?}"),
    }

    // Content-Type classification.
    if let Some(kind) = ContentKind::from_header(Some(&input.content_type)) {
        let mime = input.content_type.split(';').next().unwrap_or_default().trim();
        assert!(mime.eq_ignore_ascii_case(kind.mime()), "{:?} classified as {kind:?}", input.content_type);
        assert_eq!(ContentKind::from_header(Some(kind.mime())), Some(kind));
        let with_params = format!("{}; charset=utf-8", input.content_type);
        assert_eq!(ContentKind::from_header(Some(&with_params)), Some(kind));
    }
});
