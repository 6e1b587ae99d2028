//! Encodings of SQL results (Arrow record batches) for people and programs: a text table, CSV,
//! JSON rows, an Arrow IPC stream and Parquet. Shared by the CLI and the server so that both
//! print a query's result the same way.

use std::io::Write;

use arrow::error::ArrowError;

/// The media type of an Arrow IPC stream, as `POST /api/2.0/quiver/sql` answers it on request.
pub const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";
use arrow::record_batch::RecordBatch;

/// A text table with a header row (for a terminal).
pub fn table(batches: &[RecordBatch]) -> Result<String, ArrowError> {
    Ok(arrow::util::pretty::pretty_format_batches(batches)?.to_string())
}

/// CSV with a header row.
pub fn csv(batches: &[RecordBatch], out: impl Write) -> Result<(), ArrowError> {
    let mut w = arrow::csv::WriterBuilder::new()
        .with_header(true)
        .build(out);
    for b in batches {
        w.write(b)?;
    }
    Ok(())
}

/// The rows as JSON objects (`[{column: value}, ...]`; nulls omitted).
pub fn json_rows(batches: &[RecordBatch]) -> Result<serde_json::Value, ArrowError> {
    let mut encoder = JsonRowsEncoder::new();
    let mut bytes = b"[".to_vec();
    for b in batches {
        bytes.extend(encoder.rows(b)?);
    }
    bytes.push(b']');
    serde_json::from_slice(&bytes).map_err(|e| ArrowError::JsonError(e.to_string()))
}

/// An Arrow IPC stream (what `Accept: application/vnd.apache.arrow.stream` asks for).
pub fn arrow_ipc(batches: &[RecordBatch]) -> Result<Vec<u8>, ArrowError> {
    let Some(first) = batches.first() else {
        return Ok(Vec::new());
    };
    let (mut encoder, mut bytes) = ArrowIpcEncoder::new(&first.schema())?;
    for b in batches {
        bytes.extend(encoder.batch(b)?);
    }
    bytes.extend(encoder.finish()?);
    Ok(bytes)
}

/// JSON rows written batch by batch: the same objects as [`json_rows`], separated by commas,
/// for a caller that writes the enclosing brackets (a result streamed while it is produced).
#[derive(Debug)]
pub struct JsonRowsEncoder {
    writer: arrow::json::LineDelimitedWriter<Vec<u8>>,
    first: bool,
}

impl Default for JsonRowsEncoder {
    fn default() -> Self {
        JsonRowsEncoder::new()
    }
}

impl JsonRowsEncoder {
    /// An encoder before the first row.
    pub fn new() -> JsonRowsEncoder {
        JsonRowsEncoder {
            writer: arrow::json::LineDelimitedWriter::new(Vec::new()),
            first: true,
        }
    }

    /// The rows of `batch` as JSON objects, each preceded by a comma but the very first row.
    pub fn rows(&mut self, batch: &RecordBatch) -> Result<Vec<u8>, ArrowError> {
        self.writer.write(batch)?;
        let lines = std::mem::take(self.writer.get_mut());
        let mut out = Vec::with_capacity(lines.len() + 1);
        // JSON strings escape newlines: every line is one row object.
        for line in lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            if !std::mem::take(&mut self.first) {
                out.push(b',');
            }
            out.extend_from_slice(line);
        }
        Ok(out)
    }
}

/// An Arrow IPC stream written batch by batch: [`ArrowIpcEncoder::new`] gives the schema
/// message, [`ArrowIpcEncoder::batch`] each batch's, [`ArrowIpcEncoder::finish`] the
/// end-of-stream marker (a stream cut before it is incomplete).
pub struct ArrowIpcEncoder {
    writer: arrow::ipc::writer::StreamWriter<Vec<u8>>,
}

impl std::fmt::Debug for ArrowIpcEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArrowIpcEncoder").finish_non_exhaustive()
    }
}

impl ArrowIpcEncoder {
    /// The encoder and the bytes of the schema message.
    pub fn new(
        schema: &arrow::datatypes::Schema,
    ) -> Result<(ArrowIpcEncoder, Vec<u8>), ArrowError> {
        let mut writer = arrow::ipc::writer::StreamWriter::try_new(Vec::new(), schema)?;
        let head = std::mem::take(writer.get_mut());
        Ok((ArrowIpcEncoder { writer }, head))
    }

    /// The bytes of one batch.
    pub fn batch(&mut self, batch: &RecordBatch) -> Result<Vec<u8>, ArrowError> {
        self.writer.write(batch)?;
        Ok(std::mem::take(self.writer.get_mut()))
    }

    /// The end-of-stream marker.
    pub fn finish(&mut self) -> Result<Vec<u8>, ArrowError> {
        self.writer.finish()?;
        Ok(std::mem::take(self.writer.get_mut()))
    }
}

/// Reads an Arrow IPC stream back into batches.
pub fn from_arrow_ipc(bytes: &[u8]) -> Result<Vec<RecordBatch>, ArrowError> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)?.collect()
}

/// A Parquet file.
pub fn parquet(batches: &[RecordBatch], out: impl Write + Send) -> Result<(), ArrowError> {
    let Some(first) = batches.first() else {
        return Ok(());
    };
    let mut encoder = ParquetEncoder::new(out, first.schema())?;
    for b in batches {
        encoder.write(b)?;
    }
    encoder.finish()
}

/// A Parquet file written batch by batch.
pub struct ParquetEncoder<W: Write + Send> {
    writer: parquet::arrow::ArrowWriter<W>,
}

impl<W: Write + Send> std::fmt::Debug for ParquetEncoder<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetEncoder").finish_non_exhaustive()
    }
}

impl<W: Write + Send> ParquetEncoder<W> {
    /// A Parquet writer of batches of `schema` to `out`.
    pub fn new(out: W, schema: arrow::datatypes::SchemaRef) -> Result<Self, ArrowError> {
        let writer = parquet::arrow::ArrowWriter::try_new(out, schema, None)
            .map_err(|e| ArrowError::ExternalError(Box::new(e)))?;
        Ok(ParquetEncoder { writer })
    }

    /// Writes one batch (buffered into row groups).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), ArrowError> {
        self.writer
            .write(batch)
            .map_err(|e| ArrowError::ExternalError(Box::new(e)))
    }

    /// Writes what is buffered and the footer.
    pub fn finish(self) -> Result<(), ArrowError> {
        self.writer
            .close()
            .map_err(|e| ArrowError::ExternalError(Box::new(e)))?;
        Ok(())
    }
}

/// The media type of a Parquet file, as `POST /api/2.0/quiver/sql` answers it on request.
pub const PARQUET: &str = "application/vnd.apache.parquet";

impl ParquetEncoder<Vec<u8>> {
    /// Writes one batch and returns the bytes of the file written since the last call (often
    /// none: rows are buffered into a row group). A row group is closed once its buffered data
    /// passes `row_group_bytes`, so the memory held stays bounded whatever the result's size.
    pub fn write_chunk(
        &mut self,
        batch: &RecordBatch,
        row_group_bytes: usize,
    ) -> Result<Vec<u8>, ArrowError> {
        self.write(batch)?;
        if self.writer.in_progress_size() >= row_group_bytes {
            self.writer
                .flush()
                .map_err(|e| ArrowError::ExternalError(Box::new(e)))?;
        }
        Ok(std::mem::take(self.writer.inner_mut()))
    }

    /// Writes what is buffered and the footer, and returns the rest of the file.
    pub fn finish_chunk(&mut self) -> Result<Vec<u8>, ArrowError> {
        self.writer
            .finish()
            .map_err(|e| ArrowError::ExternalError(Box::new(e)))?;
        Ok(std::mem::take(self.writer.inner_mut()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    #[test]
    fn every_encoding_of_a_small_result() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("v", DataType::Float64, true),
        ]));
        let b = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["a", "b"])),
                Arc::new(Float64Array::from(vec![Some(1.5), None])),
            ],
        )
        .unwrap();
        let batches = vec![b];
        assert!(table(&batches).unwrap().contains("| a | 1.5 |"));
        let mut out = Vec::new();
        csv(&batches, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "k,v\na,1.5\nb,\n");
        assert_eq!(
            json_rows(&batches).unwrap(),
            serde_json::json!([{"k": "a", "v": 1.5}, {"k": "b"}])
        );
        let back = from_arrow_ipc(&arrow_ipc(&batches).unwrap()).unwrap();
        assert_eq!(back, batches);
        let mut pq = Vec::new();
        parquet(&batches, &mut pq).unwrap();
        assert_eq!(&pq[..4], b"PAR1");
        assert_eq!(json_rows(&[]).unwrap(), serde_json::json!([]));

        // Batch by batch, the same bytes.
        let mut enc = JsonRowsEncoder::new();
        let mut streamed = b"[".to_vec();
        streamed.extend(enc.rows(&batches[0]).unwrap());
        streamed.extend(enc.rows(&batches[0]).unwrap());
        streamed.push(b']');
        let twice = [batches[0].clone(), batches[0].clone()];
        let parsed: serde_json::Value = serde_json::from_slice(&streamed).unwrap();
        assert_eq!(parsed, json_rows(&twice).unwrap());
        let (mut enc, mut ipc) = ArrowIpcEncoder::new(&batches[0].schema()).unwrap();
        ipc.extend(enc.batch(&batches[0]).unwrap());
        ipc.extend(enc.finish().unwrap());
        assert_eq!(from_arrow_ipc(&ipc).unwrap(), batches);
    }
}
