//! Containment of panics in the Parquet decoder. The segment checks ([`super::check`]) validate
//! every index the readers use at open, but page *contents* are only seen while decoding, and
//! the decoder (parquet 59) has arithmetic that a damaged page can make overflow (found by the
//! `segment` fuzz target: a DELTA_BINARY_PACKED page claiming no values). Decoding therefore
//! runs under [`contain`], which turns such a panic into [`Error::Corruption`] of the segment,
//! so a damaged file fails the read that touches it instead of the thread that made it.

use std::any::Any;
use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReader;

use crate::error::{Error, Result};

thread_local! {
    static CONTAINED: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread is decoding under [`contain`]: a panic hook may stay silent for such
/// panics, which end as errors (the `segment` fuzz target's hook does, so that only panics
/// that would escape count as crashes).
#[cfg_attr(not(feature = "fuzzing"), allow(dead_code))]
pub(crate) fn decoding_contained() -> bool {
    CONTAINED.with(Cell::get)
}

/// Runs `decode` (Parquet decoding of the segment at `path`); a panic inside it is
/// [`Error::Corruption`].
pub(crate) fn contain<T>(path: &Path, decode: impl FnOnce() -> Result<T>) -> Result<T> {
    let outer = CONTAINED.with(|c| c.replace(true));
    let result = catch_unwind(AssertUnwindSafe(decode));
    CONTAINED.with(|c| c.set(outer));
    result.unwrap_or_else(|payload| {
        Err(Error::corruption(
            path,
            format!(
                "the Parquet decoder failed on a damaged page: {}",
                message(&*payload)
            ),
        ))
    })
}

fn message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}

/// The record batches of a segment read ([`super::Segment::read_columns`]), each decoded under
/// [`contain`]; after an error the iterator ends.
pub(crate) struct Batches {
    inner: Option<ParquetRecordBatchReader>,
    path: PathBuf,
}

impl Batches {
    pub(crate) fn new(inner: ParquetRecordBatchReader, path: &Path) -> Batches {
        Batches {
            inner: Some(inner),
            path: path.to_path_buf(),
        }
    }
}

impl Iterator for Batches {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Result<RecordBatch>> {
        let reader = self.inner.as_mut()?;
        let path = &self.path;
        let next = contain(path, || {
            reader
                .next()
                .transpose()
                .map_err(|e| super::parquet_err(path, e))
        })
        .transpose();
        if !matches!(next, Some(Ok(_))) {
            self.inner = None;
        }
        next
    }
}
