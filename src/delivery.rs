//! A verified delivery: its GitHub headers, the raw bytes exactly as received
//! (kept for handlers, forwarding and, later, the durable store), and the few
//! payload fields routing and logging need. Receiving reads only those fields
//! (a typed parse that validates the whole document but builds nothing else);
//! the full JSON tree is built at most once, when a handler first asks for it.

use std::sync::OnceLock;
use std::time::SystemTime;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;

use crate::webhook::body::{self, BodyError, ContentKind};
use crate::webhook::headers::GitHubHeaders;
pub use crate::webhook::headers::{DeliveryId, EventName};

/// The fields of a payload that routing, logging and metrics use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routing {
    pub action: Option<String>,
    /// `owner/name`.
    pub repository: Option<String>,
    pub installation_id: Option<u64>,
    pub sender: Option<String>,
}

#[derive(Deserialize)]
struct RoutingFields {
    action: Option<String>,
    repository: Option<Object<Named>>,
    installation: Option<Object<Installation>>,
    sender: Option<Object<Login>>,
}

/// `T` read from a JSON object only. A derived struct also accepts an array
/// (`"repository": ["o/r"]` would route as `o/r` while rules, reading the
/// payload, see no repository); like any other wrong type, it is refused.
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(std::marker::PhantomData<T>);

        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for ObjectVisitor<T> {
            type Value = T;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }

        deserializer.deserialize_map(ObjectVisitor(std::marker::PhantomData)).map(Object)
    }
}

#[derive(Deserialize)]
struct Named {
    full_name: Option<String>,
}

#[derive(Deserialize)]
struct Installation {
    id: Option<u64>,
}

#[derive(Deserialize)]
struct Login {
    login: Option<String>,
}

impl Routing {
    /// Validates `json` as one JSON object and extracts the routing fields.
    pub fn parse(json: &[u8]) -> Result<Self, BodyError> {
        // Ignored string contents are not UTF-8-checked by the skipping parser;
        // checking up front keeps the later full parse from failing.
        std::str::from_utf8(json).map_err(|e| BodyError::InvalidJson(e.to_string()))?;
        // A struct also deserialises from a JSON array; GitHub sends objects only.
        if json.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(BodyError::NotAnObject);
        }
        let fields: RoutingFields = serde_json::from_slice(json).map_err(|e| BodyError::InvalidJson(e.to_string()))?;
        Ok(Self {
            action: fields.action,
            repository: fields.repository.and_then(|r| r.0.full_name),
            installation_id: fields.installation.and_then(|i| i.0.id),
            sender: fields.sender.and_then(|s| s.0.login),
        })
    }
}

/// A delivery that passed the signature check and parses as JSON.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub headers: GitHubHeaders,
    /// Which processing attempt this is: 1 for the first, set by the queue
    /// when it hands the delivery out (0 until then).
    pub attempt: u32,
    /// Whether no attempt ran before this one, replays included: only then
    /// can a handler be sure it has not written anything yet.
    pub first_run: bool,
    pub routing: Routing,
    pub received_at: SystemTime,
    pub content_kind: ContentKind,
    /// The body exactly as received and signed.
    pub raw: Bytes,
    /// The claim a shared store handed it out under: an outcome is recorded
    /// only with it (another claim of the same delivery has another).
    pub(crate) claim: Option<i64>,
    /// The JSON document (`raw` itself for JSON bodies, the decoded `payload=` field for forms).
    json: Bytes,
    payload: OnceLock<Result<Value, String>>,
}

impl Delivery {
    /// Decodes and checks a verified body.
    pub fn from_verified(headers: GitHubHeaders, content_kind: ContentKind, raw: Bytes) -> Result<Self, BodyError> {
        let json = body::json_bytes(content_kind, &raw)?;
        let routing = Routing::parse(&json)?;
        Ok(Self {
            headers,
            attempt: 0,
            first_run: true,
            routing,
            received_at: SystemTime::now(),
            content_kind,
            raw,
            claim: None,
            json,
            payload: OnceLock::new(),
        })
    }

    pub fn id(&self) -> &DeliveryId {
        &self.headers.delivery_id
    }

    pub fn event(&self) -> &EventName {
        &self.headers.event
    }

    pub fn action(&self) -> Option<&str> {
        self.routing.action.as_deref()
    }

    /// `event` or `event.action`, the name rules and logs use.
    pub fn kind(&self) -> String {
        match self.action() {
            Some(action) => format!("{}.{action}", self.event()),
            None => self.event().to_string(),
        }
    }

    /// The JSON document as bytes.
    pub fn json(&self) -> &Bytes {
        &self.json
    }

    /// The whole payload, parsed on first use and kept.
    pub fn payload(&self) -> Result<&Value, PayloadError> {
        self.payload
            .get_or_init(|| serde_json::from_slice(&self.json).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| PayloadError(e.clone()))
    }
}

/// The payload passed the receive-time check but not the full parse (for
/// example an escaped lone surrogate in a string the check skipped).
#[derive(Debug, thiserror::Error)]
#[error("payload does not parse as JSON: {0}")]
pub struct PayloadError(String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_fields_are_extracted() {
        let json = br#"{"action":"opened","issue":{"number":1},"repository":{"full_name":"o/r","id":3},
            "installation":{"id":42},"sender":{"login":"octocat"}}"#;
        let r = Routing::parse(json).expect("valid");
        assert_eq!(
            r,
            Routing {
                action: Some("opened".into()),
                repository: Some("o/r".into()),
                installation_id: Some(42),
                sender: Some("octocat".into())
            }
        );
    }

    #[test]
    fn invalid_documents_are_refused() {
        assert!(matches!(Routing::parse(b"{\"a\":"), Err(BodyError::InvalidJson(_))));
        assert!(matches!(Routing::parse(b"[\"opened\"]"), Err(BodyError::NotAnObject)));
        assert!(matches!(Routing::parse(b"{} trailing"), Err(BodyError::InvalidJson(_))));
        assert!(matches!(Routing::parse(b"{\"a\":\"\xff\"}"), Err(BodyError::InvalidJson(_))));
        assert!(matches!(Routing::parse(b"{\"action\":5}"), Err(BodyError::InvalidJson(_))));
        // A derived struct would read these arrays as objects (found by the
        // routing/payload agreement property, tests/api/properties.rs).
        for array in [&br#"{"repository":["o/r"]}"#[..], br#"{"installation":[42]}"#, br#"{"sender":["octocat"]}"#] {
            assert!(matches!(Routing::parse(array), Err(BodyError::InvalidJson(_))), "{array:?}");
        }
    }
}
