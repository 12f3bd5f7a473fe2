//! The second pass: the document as a tree of keys with their places, walked against the
//! keys the structs know, to list the ones they do not.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use super::file::at;

/// A key of a YAML mapping, with its place, and its value.
pub(super) type Entry = (String, Option<(usize, usize)>, Node);

/// A YAML document as a tree of keys with their places (for the unknown-key pass).
#[derive(Debug)]
pub(super) enum Node {
    Map(Vec<Entry>),
    Seq(Vec<Node>),
    Leaf,
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NodeVisitor;
        impl<'de> Visitor<'de> for NodeVisitor {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_i128<E: de::Error>(self, _: i128) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_u128<E: de::Error>(self, _: u128) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_none<E: de::Error>(self) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
                Node::deserialize(d)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Node>()? {
                    items.push(item);
                }
                Ok(Node::Seq(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<Spanned<KeyText>>()? {
                    let place = at(&key);
                    let value = map.next_value::<Node>()?;
                    entries.push((key.value.0, place, value));
                }
                Ok(Node::Map(entries))
            }
        }
        deserializer.deserialize_any(NodeVisitor)
    }
}

/// A mapping key of any scalar type, as text.
#[derive(Debug)]
struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = KeyText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<KeyText, E> {
                Ok(KeyText(v.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<KeyText, E> {
                Ok(KeyText("~".into()))
            }
        }
        deserializer.deserialize_any(KeyVisitor)
    }
}

/// The keys the structs know, as a shape to walk the document against.
pub(super) enum Shape {
    Map(&'static [(&'static str, Shape)]),
    /// A map whose keys are names (providers).
    Names(&'static Shape),
    Seq(&'static Shape),
    Leaf,
}

const PROVIDER: Shape = Shape::Map(&[
    ("base_url", Shape::Leaf),
    ("api_key_env", Shape::Leaf),
    ("weight", Shape::Leaf),
    ("role", Shape::Leaf),
    ("model", Shape::Leaf),
    ("protocol", Shape::Leaf),
    ("requests_per_minute", Shape::Leaf),
    ("max_connections", Shape::Leaf),
    ("simulate", Shape::Leaf),
]);
const TRIGGER: Shape = Shape::Map(&[
    ("error_rate_above", Shape::Leaf),
    ("p99_latency_above_ms", Shape::Leaf),
    ("p99_latency_above_factor", Shape::Leaf),
    ("consecutive_failures", Shape::Leaf),
]);
const STAGE: Shape = Shape::Map(&[
    ("percentage", Shape::Leaf),
    ("duration_minutes", Shape::Leaf),
    ("evaluation_metrics", Shape::Leaf),
    ("manual_gate", Shape::Leaf),
]);
pub(super) const FILE: Shape = Shape::Map(&[
    (
        "deployment",
        Shape::Map(&[
            ("strategy", Shape::Leaf),
            ("canary_percentage", Shape::Leaf),
            ("providers", Shape::Names(&PROVIDER)),
            (
                "health_check",
                Shape::Map(&[
                    ("enabled", Shape::Leaf),
                    ("interval_seconds", Shape::Leaf),
                    ("max_error_rate", Shape::Leaf),
                    ("latency_p99_threshold_ms", Shape::Leaf),
                    ("latency", Shape::Leaf),
                    ("relative_to", Shape::Leaf),
                    ("latency_factor", Shape::Leaf),
                    ("min_samples", Shape::Leaf),
                    ("min_samples_p99", Shape::Leaf),
                    ("failed_checks_threshold", Shape::Leaf),
                    ("on_inconclusive", Shape::Leaf),
                ]),
            ),
            (
                "rollback",
                Shape::Map(&[
                    ("enabled", Shape::Leaf),
                    ("trigger_conditions", Shape::Seq(&TRIGGER)),
                ]),
            ),
            (
                "progressive_rollout",
                Shape::Map(&[("stages", Shape::Seq(&STAGE))]),
            ),
            (
                "notification",
                Shape::Map(&[
                    ("slack_webhook_url_env", Shape::Leaf),
                    ("on_canary_failure", Shape::Leaf),
                    ("on_canary_success", Shape::Leaf),
                ]),
            ),
            (
                "probe",
                Shape::Map(&[
                    ("requests_per_minute", Shape::Leaf),
                    ("prompt", Shape::Leaf),
                    ("max_tokens", Shape::Leaf),
                ]),
            ),
        ]),
    ),
    (
        "holysheep_optimization",
        Shape::Map(&[
            ("connection_pool_size", Shape::Leaf),
            ("max_concurrent_streams", Shape::Leaf),
            ("enable_geo_routing", Shape::Leaf),
            ("preferred_region", Shape::Leaf),
        ]),
    ),
]);

/// Every key of `node` that `shape` does not know: `(dotted path, place)`.
pub(super) fn unknown_keys(
    node: &Node,
    shape: &Shape,
    path: &str,
    out: &mut Vec<(String, Option<(usize, usize)>)>,
) {
    let join = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    match (node, shape) {
        (Node::Map(entries), Shape::Map(known)) => {
            for (key, place, value) in entries {
                match known.iter().find(|(name, _)| name == key) {
                    Some((_, inner)) => unknown_keys(value, inner, &join(key), out),
                    None => out.push((join(key), *place)),
                }
            }
        }
        (Node::Map(entries), Shape::Names(inner)) => {
            for (key, _, value) in entries {
                unknown_keys(value, inner, &join(key), out);
            }
        }
        (Node::Seq(items), Shape::Seq(inner)) => {
            for (i, item) in items.iter().enumerate() {
                unknown_keys(item, inner, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}
