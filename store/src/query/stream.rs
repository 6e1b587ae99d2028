//! [`SqlStream`]: the result of a query as it is produced, batch by batch.

use std::fmt;
use std::sync::mpsc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::execution::memory_pool::MemoryReservation;

use crate::error::{Error, Result};

/// A batch on its way to the reader, with the part of the query's memory pool it holds.
#[derive(Debug)]
pub(crate) struct Produced {
    pub(crate) batch: RecordBatch,
    pub(crate) reservation: MemoryReservation,
}

/// The result of one SQL query, read batch by batch while the query runs
/// ([`Store::sql_stream`](crate::Store::sql_stream)).
///
/// The query runs on the store's query threads and stays a step ahead of the reader (at most
/// two batches wait); a slow reader slows the query down instead of letting the result pile up
/// in memory. A batch stays reserved in the query's memory pool from the moment it is produced
/// until the reader asks for the next one, so what waits for the reader counts against the
/// query's memory limit like the rest of its state. The query's time limit covers the reading.
///
/// Read it as an [`Iterator`] (blocking; fine anywhere, including inside an async runtime's
/// `spawn_blocking`) or with [`SqlStream::next_batch`] from async code. An error ends the
/// stream: the batches read before it are an incomplete result. Dropping the stream cancels the
/// query and frees its memory.
pub struct SqlStream {
    schema: SchemaRef,
    rx: tokio::sync::mpsc::Receiver<Result<Produced>>,
    /// The reservation of the batch handed out last.
    held: Option<MemoryReservation>,
    /// The query failed before this stream was handed out; nothing follows.
    done: bool,
}

impl fmt::Debug for SqlStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlStream")
            .field("schema", &self.schema)
            .field("held_bytes", &self.held.as_ref().map(|r| r.size()))
            .finish_non_exhaustive()
    }
}

impl SqlStream {
    pub(crate) fn new(
        schema: SchemaRef,
        rx: tokio::sync::mpsc::Receiver<Result<Produced>>,
    ) -> SqlStream {
        SqlStream {
            schema,
            rx,
            held: None,
            done: false,
        }
    }

    /// The schema of every batch of the result (known before the first batch).
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// The next batch, `None` at the end of the result. Releases the memory reservation of the
    /// batch returned before (the caller is done with it, or holds it on its own account).
    pub async fn next_batch(&mut self) -> Option<Result<RecordBatch>> {
        self.held = None;
        if self.done {
            return None;
        }
        match self.rx.recv().await {
            Some(Ok(p)) => {
                self.held = Some(p.reservation);
                Some(Ok(p.batch))
            }
            Some(Err(e)) => {
                self.done = true;
                Some(Err(e))
            }
            None => {
                self.done = true;
                None
            }
        }
    }

    /// The whole result, every batch staying reserved in the query's pool until the last one
    /// is in: a result larger than the memory limit fails instead of growing without bound.
    pub(crate) fn collect_all(mut self) -> Result<Vec<RecordBatch>> {
        let mut batches = Vec::new();
        let mut reservations = Vec::new();
        while let Some(next) = futures_executor::block_on(self.rx.recv()) {
            let p = next?;
            batches.push(p.batch);
            reservations.push(p.reservation);
        }
        Ok(batches)
    }
}

impl Iterator for SqlStream {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        futures_executor::block_on(self.next_batch())
    }
}

impl Drop for SqlStream {
    fn drop(&mut self) {
        self.held = None;
        // Close the channel first, so that the query stops, then give memory back.
        self.rx.close();
        crate::memory::release_free_memory();
    }
}

/// Waits for a query's schema, sent once it is planned (or its planning error).
pub(crate) fn wait_schema(rx: mpsc::Receiver<Result<SchemaRef>>) -> Result<SchemaRef> {
    rx.recv()
        .map_err(|_| Error::Internal("the SQL query task ended without a result".into()))?
}
