//! The log-batch body read straight into typed values: the hot path of ingest.
//!
//! Reading 1,000 metrics through a generic JSON tree cost about 0.9 ms of CPU per request;
//! reading them into these structs (strings borrowed from the body) costs about a quarter of
//! that. Anything this path cannot read (a missing field, a wrong type, a legacy JSON-in-a-string
//! body) returns `None`, and the request goes through the general [`crate::wire::Fields`] path,
//! so that errors keep MLflow's messages. Both paths accept the same valid requests.

use std::borrow::Cow;

use quiver_store::{Metric, Param, Tag};
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// A double as MLflow accepts it: a number, a numeric string, `"NaN"`, `"Infinity"`.
struct LenientF64(f64);

impl<'de> Deserialize<'de> for LenientF64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = f64;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a double")
            }
            fn visit_f64<E>(self, v: f64) -> Result<f64, E> {
                Ok(v)
            }
            fn visit_i64<E>(self, v: i64) -> Result<f64, E> {
                Ok(v as f64)
            }
            fn visit_u64<E>(self, v: u64) -> Result<f64, E> {
                Ok(v as f64)
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<f64, E> {
                crate::wire::as_f64(&serde_json::Value::String(s.into()))
                    .ok_or_else(|| E::custom("not a double"))
            }
        }
        d.deserialize_any(V).map(LenientF64)
    }
}

/// An int64 as MLflow accepts it: a number or a numeric string.
struct LenientI64(i64);

impl<'de> Deserialize<'de> for LenientI64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = i64;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an int64")
            }
            fn visit_i64<E>(self, v: i64) -> Result<i64, E> {
                Ok(v)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
                i64::try_from(v).map_err(E::custom)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<i64, E> {
                crate::wire::as_i64(&serde_json::json!(v)).ok_or_else(|| E::custom("not an int64"))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<i64, E> {
                s.trim().parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V).map(LenientI64)
    }
}

/// A struct read only from a JSON object. serde's derived structs also accept a JSON array of
/// their fields in order (`["r1", null]` as a whole log-batch body), which MLflow refuses (found
/// while writing the `wire_request` fuzz target's check that both log-batch readers agree).
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::deserialize(MapOnly(d)).map(Object)
    }
}

/// A deserializer that reads every value as a map (an object), whatever is asked for.
struct MapOnly<D>(D);

impl<'de, D: Deserializer<'de>> Deserializer<'de> for MapOnly<D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_map(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier
        ignored_any
    }
}

// Unknown fields send a body to the general reader: skipped values are not checked the way the
// general reader checks them (an out-of-range number, found by the `wire_request` fuzz target),
// and refusing here is always safe.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricIn<'a> {
    #[serde(borrow)]
    key: Option<Cow<'a, str>>,
    value: Option<LenientF64>,
    timestamp: Option<LenientI64>,
    step: Option<LenientI64>,
    #[serde(borrow, alias = "modelId")]
    model_id: Option<Cow<'a, str>>,
    #[serde(borrow, alias = "datasetName")]
    dataset_name: Option<Cow<'a, str>>,
    #[serde(borrow, alias = "datasetDigest")]
    dataset_digest: Option<Cow<'a, str>>,
    /// Sent by some clients, ignored as the general reader ignores it.
    #[serde(borrow, rename = "run_id", alias = "runId")]
    _run_id: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyValueIn<'a> {
    #[serde(borrow)]
    key: Option<Cow<'a, str>>,
    #[serde(borrow)]
    value: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogBatchIn<'a> {
    #[serde(borrow, alias = "runId")]
    run_id: Option<Cow<'a, str>>,
    #[serde(borrow, alias = "runUuid")]
    run_uuid: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    metrics: Option<Vec<Object<MetricIn<'a>>>>,
    #[serde(borrow, default)]
    params: Option<Vec<Object<KeyValueIn<'a>>>>,
    #[serde(borrow, default)]
    tags: Option<Vec<Object<KeyValueIn<'a>>>>,
}

/// A log-batch request, read.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) run_id: String,
    pub(crate) metrics: Vec<Metric>,
    pub(crate) params: Vec<Param>,
    pub(crate) tags: Vec<Tag>,
}

fn non_empty(c: Option<Cow<'_, str>>) -> Option<String> {
    c.filter(|s| !s.is_empty()).map(Cow::into_owned)
}

/// Reads a log-batch body, or `None` when the general path must (and will) answer it.
pub(crate) fn parse(bytes: &[u8]) -> Option<Batch> {
    // From a checked `str`: `from_slice` skips unknown fields without checking that their
    // strings are UTF-8, which the general reader refuses (found by the `wire_request` fuzz
    // target). The check costs one pass at memory speed.
    let text = std::str::from_utf8(bytes).ok()?;
    let Object(req): Object<LogBatchIn<'_>> = serde_json::from_str(text).ok()?;
    let run_id = non_empty(req.run_id).or_else(|| non_empty(req.run_uuid))?;
    let metrics = req
        .metrics
        .unwrap_or_default()
        .into_iter()
        .map(|Object(m)| {
            Some(Metric {
                key: non_empty(m.key)?,
                value: m.value?.0,
                timestamp: m.timestamp?.0,
                step: m.step.map_or(0, |s| s.0),
                model_id: non_empty(m.model_id),
                dataset_name: non_empty(m.dataset_name),
                dataset_digest: non_empty(m.dataset_digest),
            })
        })
        .collect::<Option<Vec<_>>>()?;
    let pairs = |list: Option<Vec<Object<KeyValueIn<'_>>>>| {
        list.unwrap_or_default()
            .into_iter()
            .map(|Object(kv)| {
                Some((
                    non_empty(kv.key)?,
                    kv.value.unwrap_or_default().into_owned(),
                ))
            })
            .collect::<Option<Vec<_>>>()
    };
    let params = pairs(req.params)?
        .into_iter()
        .map(|(k, v)| Param::new(k, v))
        .collect();
    let tags = pairs(req.tags)?
        .into_iter()
        .map(|(k, v)| Tag::new(k, v))
        .collect();
    Some(Batch {
        run_id,
        metrics,
        params,
        tags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_the_client_sends_and_declines_the_rest() {
        let body = br#"{"run_id":"r1","metrics":[{"key":"loss","value":"NaN","timestamp":"5","step":2,"run_id":"r1"},
            {"key":"acc","value":1,"timestamp":6,"modelId":"m-1"}],"params":[{"key":"lr","value":"0.1"}],
            "tags":[{"key":"t","value":"v"}]}"#;
        let b = parse(body).unwrap();
        assert_eq!(b.run_id, "r1");
        assert!(b.metrics[0].value.is_nan());
        assert_eq!((b.metrics[0].timestamp, b.metrics[0].step), (5, 2));
        assert_eq!((b.metrics[1].value, b.metrics[1].step), (1.0, 0));
        assert_eq!(b.metrics[1].model_id.as_deref(), Some("m-1"));
        assert_eq!(b.params, vec![Param::new("lr", "0.1")]);
        assert_eq!(b.tags, vec![Tag::new("t", "v")]);
        let b = parse(br#"{"run_uuid":"r2"}"#).unwrap();
        assert_eq!((b.run_id.as_str(), b.metrics.len()), ("r2", 0));
        // Left to the general path, which words the error as MLflow does.
        for declined in [
            &br#"{"run_id":"r","metrics":[{"key":"k","value":1}]}"#[..],
            br#"{"run_id":"r","metrics":[{"key":"k","value":{},"timestamp":1}]}"#,
            br#"{"metrics":[]}"#,
            br#""{\"run_id\":\"r\"}""#,
            br#"{"run_id":"r","params":[{"value":"v"}]}"#,
            br#"{"run_id":"r","unknown":{"x":[1]}}"#,
            b"not json",
        ] {
            assert!(
                parse(declined).is_none(),
                "{}",
                String::from_utf8_lossy(declined)
            );
        }
    }
}

#[cfg(test)]
mod arrays {
    use super::parse;

    #[test]
    fn arrays_in_place_of_objects_are_left_to_the_general_path() {
        // serde's derived structs read `["r1", null]` as `{run_id: "r1", run_uuid: null}`: the
        // fast path logged such a batch where MLflow (and the general path) answers 400.
        for body in [
            &br#"["r1", null]"#[..],
            br#"{"run_id":"r","params":[["k","v"]]}"#,
            br#"{"run_id":"r","tags":[["k","v"]]}"#,
            br#"{"run_id":"r","metrics":[["k",1,2,0,null,null,null]]}"#,
        ] {
            assert!(parse(body).is_none(), "{}", String::from_utf8_lossy(body));
            let general = crate::wire::Fields::from_json(body)
                .and_then(|f| crate::routes::runs::batch_from_fields(&f));
            assert!(general.is_err(), "{}", String::from_utf8_lossy(body));
        }
        assert!(parse(br#"{"run_id":"r","params":[{"key":"k","value":"v"}]}"#).is_some());
    }

    #[test]
    fn unknown_fields_are_left_to_the_general_reader() {
        // Found by the `wire_request` fuzz target: a number out of f64's range inside an
        // unknown field was skipped here and refused by the general reader.
        assert!(parse(br#"{"run_id":"r","other":6e99999}"#).is_none());
        assert!(
            parse(br#"{"run_id":"r","metrics":[{"key":"k","value":1,"timestamp":1,"x":1}]}"#)
                .is_none()
        );
        assert!(parse(
            br#"{"run_id":"r","metrics":[{"key":"k","value":1,"timestamp":1,"run_id":"r"}]}"#
        )
        .is_some());
    }

    #[test]
    fn invalid_utf8_in_an_unknown_field_is_refused_by_both_readers() {
        // Found by the `wire_request` fuzz target: the fast reader skipped the unknown field
        // without looking at its bytes, the general one refused the body.
        let body = b"{\"run_id\":\"r\",\"metrqcs\":[{\"timestamp\":\"\xc6\"}]}";
        assert!(parse(body).is_none());
        assert!(crate::wire::Fields::from_json(body).is_err());
    }
}
