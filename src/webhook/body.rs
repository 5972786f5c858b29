//! The two body encodings GitHub sends: `application/json`, and
//! `application/x-www-form-urlencoded` with the JSON in a `payload` field.
//! The signature is always checked over the raw body; decoding comes after.

use bytes::Bytes;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContentKind {
    Json,
    Form,
}

impl ContentKind {
    /// The name a store keeps: `json` or `form`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Form => "form",
        }
    }

    /// Back from [`name`](Self::name); anything else was stored as JSON.
    pub fn from_name(name: &str) -> Self {
        if name == "form" { Self::Form } else { Self::Json }
    }

    /// Classifies a `Content-Type` value; parameters (`; charset=utf-8`) are ignored.
    /// `None` means the type is not one GitHub sends.
    pub fn from_header(value: Option<&str>) -> Option<Self> {
        let mime = value?.split(';').next()?.trim();
        if mime.eq_ignore_ascii_case("application/json") {
            Some(Self::Json)
        } else if mime.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            Some(Self::Form)
        } else {
            None
        }
    }

    pub fn mime(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::Form => "application/x-www-form-urlencoded",
        }
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("form-encoded body has no payload field")]
    MissingPayload,
    #[error("form-encoded body has more than one payload field")]
    RepeatedPayload,
    #[error("body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("body is not a JSON object")]
    NotAnObject,
}

/// The JSON document inside `raw`. For JSON bodies this is `raw` itself
/// (a reference-counted view, no copy).
pub fn json_bytes(kind: ContentKind, raw: &Bytes) -> Result<Bytes, BodyError> {
    match kind {
        ContentKind::Json => Ok(raw.clone()),
        ContentKind::Form => {
            let mut payloads = form_urlencoded::parse(raw).filter(|(k, _)| k == "payload").map(|(_, v)| v);
            let payload = payloads.next().ok_or(BodyError::MissingPayload)?;
            if payloads.next().is_some() {
                return Err(BodyError::RepeatedPayload);
            }
            Ok(Bytes::from(payload.into_owned()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_with_parameters_are_recognised() {
        assert_eq!(ContentKind::from_header(Some("application/json")), Some(ContentKind::Json));
        assert_eq!(ContentKind::from_header(Some("Application/JSON; charset=utf-8")), Some(ContentKind::Json));
        assert_eq!(ContentKind::from_header(Some("application/x-www-form-urlencoded")), Some(ContentKind::Form));
        assert_eq!(ContentKind::from_header(Some("text/plain")), None);
        assert_eq!(ContentKind::from_header(None), None);
    }

    #[test]
    fn form_payload_is_decoded() {
        let raw = Bytes::from_static(b"payload=%7B%22zen%22%3A%22a+b%22%7D");
        assert_eq!(json_bytes(ContentKind::Form, &raw).expect("ok"), Bytes::from_static(br#"{"zen":"a b"}"#));
        assert_eq!(json_bytes(ContentKind::Form, &Bytes::from_static(b"x=1")), Err(BodyError::MissingPayload));
        assert_eq!(
            json_bytes(ContentKind::Form, &Bytes::from_static(b"payload=1&payload=2")),
            Err(BodyError::RepeatedPayload)
        );
    }
}
