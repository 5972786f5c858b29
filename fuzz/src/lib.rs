//! Helpers shared by the fuzz targets: structured inputs built with
//! `arbitrary`, so the fuzzer spends its time on the parsers rather than on
//! producing well-formed JSON or header maps.

use arbitrary::{Arbitrary, Unstructured};
use serde_json::{Map, Value};

/// How deep generated JSON nests (webhook payloads are shallow; serde_json's
/// own recursion limit is covered by the byte-level targets).
const MAX_DEPTH: u32 = 6;

/// A JSON value of bounded depth.
#[derive(Debug, Clone)]
pub struct ArbJson(pub Value);

impl<'a> Arbitrary<'a> for ArbJson {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(Self(json_value(u, 0)?))
    }
}

fn json_value(u: &mut Unstructured<'_>, depth: u32) -> arbitrary::Result<Value> {
    let choice = if depth >= MAX_DEPTH { u.int_in_range(0..=4)? } else { u.int_in_range(0..=6)? };
    Ok(match choice {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => Value::from(u.arbitrary::<i64>()?),
        3 => serde_json::Number::from_f64(u.arbitrary()?).map_or(Value::Null, Value::Number),
        4 => Value::String(u.arbitrary()?),
        5 => {
            let len = u.int_in_range(0..=4)?;
            Value::Array((0..len).map(|_| json_value(u, depth + 1)).collect::<Result<_, _>>()?)
        }
        _ => Value::Object(json_object(u, depth + 1)?),
    })
}

fn json_object(u: &mut Unstructured<'_>, depth: u32) -> arbitrary::Result<Map<String, Value>> {
    let len = u.int_in_range(0..=5)?;
    let mut map = Map::new();
    for _ in 0..len {
        // Keys GitHub payloads use, so routing fields and templates find them.
        let key = match u.int_in_range(0..=8)? {
            0 => "action".to_owned(),
            1 => "repository".to_owned(),
            2 => "full_name".to_owned(),
            3 => "installation".to_owned(),
            4 => "id".to_owned(),
            5 => "sender".to_owned(),
            6 => "login".to_owned(),
            7 => "number".to_owned(),
            _ => u.arbitrary()?,
        };
        map.insert(key, json_value(u, depth)?);
    }
    Ok(map)
}

/// A JSON object (what GitHub sends as a payload).
#[derive(Debug, Clone)]
pub struct ArbObject(pub Map<String, Value>);

impl<'a> Arbitrary<'a> for ArbObject {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(Self(json_object(u, 1)?))
    }
}
