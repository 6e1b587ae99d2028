//! MLflow's validation rules (`mlflow/utils/validation.py`), applied by the store itself so that an
//! embedded user gets the same answers as a REST client.

use crate::error::{Error, Result};

/// Longest metric, param or tag key.
pub const MAX_ENTITY_KEY_LENGTH: usize = 250;
/// Longest param value; longer values are truncated (MLflow's `MLFLOW_TRUNCATE_LONG_VALUES` default).
pub const MAX_PARAM_VAL_LENGTH: usize = 6000;
/// Longest run tag value; longer values are truncated.
pub const MAX_TAG_VAL_LENGTH: usize = 8000;
/// Longest experiment tag value (not truncated: longer is an error).
pub const MAX_EXPERIMENT_TAG_VAL_LENGTH: usize = 20000;
/// Longest experiment name.
pub const MAX_EXPERIMENT_NAME_LENGTH: usize = 500;
/// Most metrics in one batch.
pub const MAX_METRICS_PER_BATCH: usize = 1000;
/// Most params in one batch.
pub const MAX_PARAMS_PER_BATCH: usize = 100;
/// Most tags in one batch.
pub const MAX_TAGS_PER_BATCH: usize = 100;
/// Most entities (metrics + params + tags) in one batch.
pub const MAX_ENTITIES_PER_BATCH: usize = 1000;

/// Checks a metric, param or tag key: MLflow's charset `^[/\w.\- :]*$`, no path tricks
/// (it must equal its own `posixpath.normpath`), at most 250 characters.
pub fn entity_key(kind: &str, key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::InvalidParameter(format!(
            "Missing value for required parameter '{}'. Invalid {kind} name: ''.",
            "key"
        )));
    }
    let charset_ok = key
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '_' | '/' | '.' | '-' | ' ' | ':'));
    if !charset_ok {
        return Err(Error::InvalidParameter(format!(
            "Invalid {kind} name: '{key}'. Names may only contain alphanumerics, underscores (_), \
             dashes (-), periods (.), spaces ( ), colon(:) and slashes (/)."
        )));
    }
    if !is_posix_normalized(key) {
        return Err(Error::InvalidParameter(format!(
            "Invalid {kind} name: '{key}'. Names cannot contain path components like '.', '..', \
             repeated or trailing slashes, and cannot start with '/'."
        )));
    }
    if key.chars().count() > MAX_ENTITY_KEY_LENGTH {
        return Err(Error::InvalidParameter(format!(
            "'{kind}' exceeds the maximum length of {MAX_ENTITY_KEY_LENGTH} characters"
        )));
    }
    Ok(())
}

/// True when `key` equals `posixpath.normpath(key)` and is relative.
fn is_posix_normalized(key: &str) -> bool {
    if key.starts_with('/') {
        return false;
    }
    key.split('/')
        .all(|part| !part.is_empty() && part != "." && part != "..")
}

/// Cuts `value` to at most `max` characters (MLflow truncates long param and tag values).
pub fn truncate(value: &str, max: usize) -> String {
    match value.char_indices().nth(max) {
        Some((byte, _)) => value[..byte].to_string(),
        None => value.to_string(),
    }
}

/// Checks an experiment name: non-blank, at most 500 characters.
pub fn experiment_name(name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(Error::InvalidParameter(
            "Invalid experiment name: ''. Experiment name must be a non-empty string.".into(),
        ));
    }
    if name.chars().count() > MAX_EXPERIMENT_NAME_LENGTH {
        return Err(Error::InvalidParameter(format!(
            "Experiment name exceeds the maximum length of {MAX_EXPERIMENT_NAME_LENGTH} characters"
        )));
    }
    Ok(())
}

/// Checks a metric timestamp (non-negative ms).
pub fn metric_timestamp(key: &str, timestamp: i64) -> Result<()> {
    if timestamp < 0 {
        return Err(Error::InvalidParameter(format!(
            "Got invalid timestamp {timestamp} for metric '{key}'. Timestamp must be a non-negative integer."
        )));
    }
    Ok(())
}

/// Checks the sizes of a log-batch request.
pub fn batch_limits(metrics: usize, params: usize, tags: usize) -> Result<()> {
    let too_many = |what: &str, max: usize, got: usize| {
        Error::InvalidParameter(format!(
            "A batch logging request can contain at most {max} {what}. Got {got} {what}. \
             Please split up {what} across multiple requests and try again."
        ))
    };
    if metrics > MAX_METRICS_PER_BATCH {
        return Err(too_many("metrics", MAX_METRICS_PER_BATCH, metrics));
    }
    if params > MAX_PARAMS_PER_BATCH {
        return Err(too_many("params", MAX_PARAMS_PER_BATCH, params));
    }
    if tags > MAX_TAGS_PER_BATCH {
        return Err(too_many("tags", MAX_TAGS_PER_BATCH, tags));
    }
    let total = metrics + params + tags;
    if total > MAX_ENTITIES_PER_BATCH {
        return Err(too_many(
            "metrics, params, and tags in total",
            MAX_ENTITIES_PER_BATCH,
            total,
        ));
    }
    Ok(())
}

/// Checks a run id's shape (`^[a-zA-Z0-9][\w\-]{0,255}$`) before it is looked up.
pub fn run_id(run_id: &str) -> Result<()> {
    let mut chars = run_id.chars();
    let ok = matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && run_id.len() <= 256
        && chars.all(|c| c.is_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidParameter(format!(
            "Invalid value \"{run_id}\" for parameter 'run_id' supplied"
        )))
    }
}

/// Parses an experiment id (a non-negative decimal integer).
pub fn experiment_id(id: &str) -> Result<u64> {
    id.parse::<u64>().map_err(|_| {
        Error::InvalidParameter(format!(
            "Invalid value '{id}' for parameter 'experiment_id': must be an integer"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_mlflow_rules() {
        for ok in ["loss", "val/acc", "a.b-c d:e", "über_λ", "x/y/z"] {
            entity_key("metric", ok).unwrap();
        }
        for bad in [
            "", "a//b", "/a", "a/", "./a", "a/../b", "..", ".", "a\\b", "a@b", "a\0",
        ] {
            assert!(entity_key("metric", bad).is_err(), "{bad:?} accepted");
        }
        assert!(entity_key("param", &"k".repeat(250)).is_ok());
        assert!(entity_key("param", &"k".repeat(251)).is_err());
    }

    #[test]
    fn truncation_counts_characters() {
        assert_eq!(truncate("héllo", 2), "hé");
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate(&"é".repeat(7000), 6000).chars().count(), 6000);
    }

    #[test]
    fn batch_limits_name_the_excess() {
        assert!(batch_limits(1000, 0, 0).is_ok());
        let e = batch_limits(1001, 0, 0).unwrap_err().to_string();
        assert!(e.contains("at most 1000 metrics. Got 1001"), "{e}");
        assert!(batch_limits(900, 100, 1).is_err());
    }

    #[test]
    fn run_ids_and_experiment_ids() {
        run_id("0123456789abcdef0123456789abcdef").unwrap();
        assert!(run_id("../etc").is_err());
        assert!(run_id("").is_err());
        assert_eq!(experiment_id("12").unwrap(), 12);
        assert!(experiment_id("x").is_err());
    }
}
