//! `POST /api/2.0/quiver/sql`: read-only SQL over the store (Quiver's own API, not MLflow's).
//!
//! Body `{"query": "SELECT ..."}`. Answers JSON, `{"columns": [{"name", "type"}], "rows":
//! [{column: value}]}`, or an Arrow IPC stream when the request says
//! `Accept: application/vnd.apache.arrow.stream`, CSV with a header row when it says
//! `Accept: text/csv`, or a Parquet file when it says `Accept: application/vnd.apache.parquet`
//! (row groups of at most about 64 MiB of buffered data, written out as they close). Anything but a query is a 400.
//!
//! The result is streamed while the query runs ([`quiver_store::SqlStream`]), never gathered
//! whole: the status is decided by the first batch (an error before it is an ordinary MLflow
//! error response), then the body is written batch by batch. An error after the first batch
//! (memory or time limit) cannot change the status any more: it is logged and the response is
//! cut off (the chunked body ends without its last chunk, the JSON without its closing `]}`,
//! the Arrow stream without its end-of-stream marker), so a client never takes a partial
//! result for a complete one.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use quiver_store::arrow::record_batch::RecordBatch;
use quiver_store::sql_output::{
    ArrowIpcEncoder, JsonRowsEncoder, ParquetEncoder, ARROW_STREAM, PARQUET,
};
use quiver_store::SqlStream;
use serde_json::{json, Value};

use crate::wire::Fields;

/// The media type that asks for CSV.
const CSV: &str = "text/csv";

/// How much data a Parquet row group may buffer before it is written out.
const ROW_GROUP_BYTES: usize = 64 << 20;
use crate::{blocking, ApiError, ApiResult, AppState};

/// Registers the SQL route under `/api/2.0/quiver/sql` and `/ajax-api/2.0/quiver/sql`.
pub(crate) fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .route("/api/2.0/quiver/sql", post(sql))
        .route("/ajax-api/2.0/quiver/sql", post(sql))
}

async fn sql(State(s): State<AppState>, headers: HeaderMap, f: Fields) -> ApiResult<Response> {
    let query = f.req_str("query")?;
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let wants_arrow = accept.contains(ARROW_STREAM);
    let wants_csv = !wants_arrow && accept.contains(CSV);
    let wants_parquet = !wants_arrow && !wants_csv && accept.contains(PARQUET);
    let mut stream = blocking(move || Ok(s.store.sql_stream(&query)?)).await?;
    let first = stream.next_batch().await.transpose()?;
    let (encoder, content_type) = if wants_arrow {
        (Encoder::arrow(&stream)?, ARROW_STREAM)
    } else if wants_parquet {
        (Encoder::parquet(&stream)?, PARQUET)
    } else if wants_csv {
        (Encoder::csv(), "text/csv; charset=utf-8")
    } else {
        (Encoder::json(&stream), "application/json")
    };
    let body = futures_util::stream::unfold(
        Some(ResultBody {
            stream,
            encoder,
            first,
            started: false,
        }),
        |state| async move {
            let mut state = state?;
            match state.next_chunk().await {
                Ok(Some(chunk)) => Some((Ok(chunk), Some(state))),
                Ok(None) => None,
                Err(e) => {
                    tracing::error!(error = %e, "SQL result cut off: the query failed after its first rows were sent");
                    Some((Err(std::io::Error::other(e)), None))
                }
            }
        },
    );
    Ok((
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(body),
    )
        .into_response())
}

/// The state of a streamed answer.
struct ResultBody {
    stream: SqlStream,
    encoder: Encoder,
    /// The first batch, read before the status was decided (None: the result is empty).
    first: Option<RecordBatch>,
    /// The head (columns, schema) is out.
    started: bool,
}

impl ResultBody {
    /// The next piece of the body, `None` after the last.
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, String> {
        let mut out = Vec::new();
        if !self.started {
            self.started = true;
            out.extend(self.encoder.head());
            if let Some(first) = self.first.take() {
                out.extend(self.encoder.batch(&first)?);
            }
            return Ok(Some(out.into()));
        }
        match self.stream.next_batch().await {
            Some(Ok(batch)) => Ok(Some(self.encoder.batch(&batch)?.into())),
            Some(Err(e)) => Err(e.to_string()),
            None => match self.encoder.tail()? {
                Some(tail) => Ok(Some(tail.into())),
                None => Ok(None),
            },
        }
    }
}

/// Writes the result as JSON rows, CSV or an Arrow IPC stream.
enum Encoder {
    /// Parquet, `None` once finished.
    Parquet(Option<ParquetEncoder<Vec<u8>>>),
    /// CSV; the header row goes with the first batch (`header_done` false until then).
    Csv { header_done: bool, done: bool },
    Json {
        head: Option<Vec<u8>>,
        rows: JsonRowsEncoder,
        done: bool,
    },
    Arrow {
        head: Option<Vec<u8>>,
        ipc: ArrowIpcEncoder,
        done: bool,
    },
}

impl Encoder {
    fn json(stream: &SqlStream) -> Encoder {
        let columns: Vec<Value> = stream
            .schema()
            .fields()
            .iter()
            .map(|f| json!({"name": f.name(), "type": f.data_type().to_string()}))
            .collect();
        let head = format!("{{\"columns\":{},\"rows\":[", Value::Array(columns));
        Encoder::Json {
            head: Some(head.into_bytes()),
            rows: JsonRowsEncoder::new(),
            done: false,
        }
    }

    fn parquet(stream: &SqlStream) -> ApiResult<Encoder> {
        let enc = ParquetEncoder::new(Vec::new(), stream.schema())
            .map_err(|e| ApiError::internal(format!("encoding the result: {e}")))?;
        Ok(Encoder::Parquet(Some(enc)))
    }

    fn csv() -> Encoder {
        Encoder::Csv {
            header_done: false,
            done: false,
        }
    }

    fn arrow(stream: &SqlStream) -> ApiResult<Encoder> {
        let (ipc, head) = ArrowIpcEncoder::new(&stream.schema())
            .map_err(|e| ApiError::internal(format!("encoding the result: {e}")))?;
        Ok(Encoder::Arrow {
            head: Some(head),
            ipc,
            done: false,
        })
    }

    fn head(&mut self) -> Vec<u8> {
        match self {
            Encoder::Json { head, .. } | Encoder::Arrow { head, .. } => {
                head.take().unwrap_or_default()
            }
            Encoder::Csv { .. } | Encoder::Parquet(_) => Vec::new(),
        }
    }

    fn batch(&mut self, batch: &RecordBatch) -> Result<Vec<u8>, String> {
        match self {
            Encoder::Json { rows, .. } => rows.rows(batch),
            Encoder::Arrow { ipc, .. } => ipc.batch(batch),
            Encoder::Parquet(Some(enc)) => enc.write_chunk(batch, ROW_GROUP_BYTES),
            Encoder::Parquet(None) => Ok(Vec::new()),
            Encoder::Csv { header_done, .. } => {
                let mut w = quiver_store::arrow::csv::WriterBuilder::new()
                    .with_header(!*header_done)
                    .build(Vec::new());
                *header_done = true;
                w.write(batch).map(|()| w.into_inner())
            }
        }
        .map_err(|e| format!("encoding the result: {e}"))
    }

    /// What closes the answer, once (`]}`, the end-of-stream marker).
    fn tail(&mut self) -> Result<Option<Vec<u8>>, String> {
        match self {
            Encoder::Json { done, .. }
            | Encoder::Arrow { done, .. }
            | Encoder::Csv { done, .. }
                if *done =>
            {
                Ok(None)
            }
            Encoder::Csv { done, .. } => {
                *done = true;
                Ok(None)
            }
            Encoder::Parquet(enc) => match enc.take() {
                Some(mut enc) => enc
                    .finish_chunk()
                    .map(Some)
                    .map_err(|e| format!("encoding the result: {e}")),
                None => Ok(None),
            },
            Encoder::Json { done, .. } => {
                *done = true;
                Ok(Some(b"]}".to_vec()))
            }
            Encoder::Arrow { ipc, done, .. } => {
                *done = true;
                ipc.finish()
                    .map(Some)
                    .map_err(|e| format!("encoding the result: {e}"))
            }
        }
    }
}
