//! Page tokens of searches: where the previous page ended, not how many rows it skipped.
//!
//! An offset token ("skip 100") goes wrong when runs are created between two pages: the default
//! order puts new runs first, so every row shifts and the next page repeats rows. A token here
//! holds the sort key of the last row returned (which ends with the unique run or experiment id,
//! so keys are totally ordered); the next page is the rows whose key comes after it, whatever was
//! created or deleted meanwhile. The token also carries a fingerprint of the search it belongs to,
//! so that a token replayed with another filter or order is refused rather than misread.
//!
//! Format: URL-safe base64 of JSON `{"v":1,"f":"<fingerprint>","k":[key, ...]}`, where a key is
//! `null` (missing), `{"N":<f64 bits>}` or `{"S":"<string>"}` (bits, so ±Infinity survive JSON).

use std::cmp::Ordering;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One component of a sort key, borrowed from the index while a search runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum SortValue<'a> {
    /// A number (metric value, time, id). NaN sorts after every number in either direction.
    Num(f64),
    /// A string.
    Str(&'a str),
}

/// A sort key component as stored in a token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum OwnedValue {
    /// A number, as its IEEE bits.
    N(u64),
    /// A string.
    S(String),
}

impl OwnedValue {
    /// The borrowed form, for comparisons.
    pub(crate) fn as_sort(&self) -> SortValue<'_> {
        match self {
            OwnedValue::N(bits) => SortValue::Num(f64::from_bits(*bits)),
            OwnedValue::S(s) => SortValue::Str(s),
        }
    }

    /// The owned form of `v`.
    pub(crate) fn from_sort(v: SortValue<'_>) -> OwnedValue {
        match v {
            SortValue::Num(n) => OwnedValue::N(n.to_bits()),
            SortValue::Str(s) => OwnedValue::S(s.to_string()),
        }
    }
}

/// Compares two key components of one field: NaN after every number, then missing values, in
/// either direction (as MLflow orders metrics).
pub(crate) fn compare(
    a: Option<SortValue<'_>>,
    b: Option<SortValue<'_>>,
    ascending: bool,
) -> Ordering {
    let o = match (a, b) {
        (None, None) => return Ordering::Equal,
        (None, Some(_)) => return Ordering::Greater,
        (Some(_), None) => return Ordering::Less,
        (Some(SortValue::Num(x)), Some(SortValue::Num(y))) => match (x.is_nan(), y.is_nan()) {
            (true, true) => return Ordering::Equal,
            (true, false) => return Ordering::Greater,
            (false, true) => return Ordering::Less,
            (false, false) => x.total_cmp(&y),
        },
        (Some(SortValue::Str(x)), Some(SortValue::Str(y))) => x.cmp(y),
        (Some(SortValue::Num(_)), Some(SortValue::Str(_))) => Ordering::Less,
        (Some(SortValue::Str(_)), Some(SortValue::Num(_))) => Ordering::Greater,
    };
    if ascending {
        o
    } else {
        o.reverse()
    }
}

/// Compares two whole keys under the directions `ascending` (one per component).
pub(crate) fn compare_keys<'a, 'b>(
    a: impl IntoIterator<Item = Option<SortValue<'a>>>,
    b: impl IntoIterator<Item = Option<SortValue<'b>>>,
    ascending: &[bool],
) -> Ordering {
    a.into_iter()
        .zip(b)
        .zip(ascending)
        .map(|((x, y), asc)| compare(x, y, *asc))
        .find(|o| o.is_ne())
        .unwrap_or(Ordering::Equal)
}

#[derive(Serialize, Deserialize)]
struct Token {
    v: u32,
    f: String,
    k: Vec<Option<OwnedValue>>,
}

/// A short fingerprint of what defines a search's order and result set.
pub(crate) fn fingerprint(parts: &[&str]) -> String {
    let mut h = blake3::Hasher::new();
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    h.finalize().to_hex()[..16].to_string()
}

/// The token of the page after the row with sort key `key`.
pub(crate) fn encode(fingerprint: &str, key: &[Option<SortValue<'_>>]) -> String {
    let token = Token {
        v: 1,
        f: fingerprint.to_string(),
        k: key.iter().map(|v| v.map(OwnedValue::from_sort)).collect(),
    };
    BASE64.encode(serde_json::to_vec(&token).expect("serialize a page token"))
}

/// The sort key a token resumes after; `None` without a token (first page).
pub(crate) fn decode(
    token: Option<&str>,
    fingerprint: &str,
    key_len: usize,
) -> Result<Option<Vec<Option<OwnedValue>>>> {
    let Some(text) = token.filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let invalid =
        |why: &str| Error::InvalidParameter(format!("Invalid page token '{text}': {why}"));
    let bytes = BASE64
        .decode(text.trim_end_matches('='))
        .map_err(|_| invalid("not a token of this server"))?;
    let token: Token =
        serde_json::from_slice(&bytes).map_err(|_| invalid("not a token of this server"))?;
    if token.v != 1 || token.k.len() != key_len {
        return Err(invalid("not a token of this server"));
    }
    if token.f != fingerprint {
        return Err(invalid(
            "it belongs to a search with other experiments, filter, order or view",
        ));
    }
    Ok(Some(token.k))
}

/// Gives a sort-key closure the signature [`keyset_page`] needs (its result borrows from its
/// argument, which closures cannot say on their own).
pub(crate) fn sort_key<T, F>(f: F) -> F
where
    F: for<'a> Fn(&'a T) -> Vec<Option<SortValue<'a>>>,
{
    f
}

/// One page of `items` in the order of `key` under `ascending`, after the key `after` resumes
/// from: the page and the token of the next one (`None` on the last page). For the searches over
/// small collections (experiments, registry, logged models), whose items are all in hand.
pub(crate) fn keyset_page<T>(
    items: Vec<T>,
    key: impl for<'a> Fn(&'a T) -> Vec<Option<SortValue<'a>>>,
    ascending: &[bool],
    fingerprint: &str,
    after: Option<&[Option<OwnedValue>]>,
    max_results: usize,
) -> (Vec<T>, Option<String>) {
    let mut found: Vec<T> = items
        .into_iter()
        .filter(|item| {
            after.is_none_or(|a| {
                compare_keys(
                    key(item),
                    a.iter().map(|v| v.as_ref().map(OwnedValue::as_sort)),
                    ascending,
                )
                .is_gt()
            })
        })
        .collect();
    found.sort_by(|a, b| compare_keys(key(a), key(b), ascending));
    let more = found.len() > max_results;
    found.truncate(max_results);
    let next = match found.last() {
        Some(last) if more => Some(encode(fingerprint, &key(last))),
        _ => None,
    };
    (found, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_every_value() {
        let f = fingerprint(&["1", "metrics.a > 0"]);
        let key = [
            Some(SortValue::Num(f64::INFINITY)),
            None,
            Some(SortValue::Str("run \"x\"")),
            Some(SortValue::Num(-0.5)),
        ];
        let t = encode(&f, &key);
        let back = decode(Some(&t), &f, 4).unwrap().unwrap();
        let back: Vec<_> = back
            .iter()
            .map(|v| v.as_ref().map(OwnedValue::as_sort))
            .collect();
        assert_eq!(back, key);
        assert_eq!(decode(None, &f, 4).unwrap(), None);
        assert_eq!(decode(Some(""), &f, 4).unwrap(), None);
        for bad in ["!!", "e30", "eyJvZmZzZXQiOiAyfQ=="] {
            assert!(decode(Some(bad), &f, 4).is_err(), "{bad}");
        }
        let other = fingerprint(&["1", "metrics.a > 1"]);
        let e = decode(Some(&t), &other, 4).unwrap_err().to_string();
        assert!(e.contains("belongs to a search with other"), "{e}");
        assert!(decode(Some(&t), &f, 3).is_err());
    }

    #[test]
    fn missing_values_sort_last_both_ways() {
        let one = Some(SortValue::Num(1.0));
        let two = Some(SortValue::Num(2.0));
        assert!(compare(one, two, true).is_lt());
        assert!(compare(one, two, false).is_gt());
        assert!(compare(None, one, true).is_gt());
        assert!(compare(None, one, false).is_gt());
        assert!(compare(one, None, false).is_lt());
        assert!(compare_keys([one, None], [one, two], &[true, true]).is_gt());
        let nan = Some(SortValue::Num(f64::NAN));
        for asc in [true, false] {
            assert!(compare(nan, two, asc).is_gt() && compare(nan, None, asc).is_lt());
        }
        assert!(fingerprint(&["ab", "c"]) != fingerprint(&["a", "bc"]));
    }
}
