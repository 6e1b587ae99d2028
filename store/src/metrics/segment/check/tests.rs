use std::path::Path;

use bytes::Bytes;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::arrow::ArrowWriter;
use parquet::file::metadata::PageIndexPolicy;
use parquet::file::page_index::offset_index::PageLocation;

use super::super::{to_batch, writer_properties, Segment, SeriesExtent, FENCE};
use super::{directory, row_groups, Defect};
use crate::error::Error;
use crate::metrics::Points;

fn curve(n: i64) -> Points {
    let mut p = Points::default();
    for i in 0..n {
        p.push(i, 100 + i, i as f64, None);
    }
    p
}

/// A segment file of `series` whose footer carries `dir` instead of the true directory.
fn file_with_directory(series: &[(u64, Points)], dir: &[SeriesExtent]) -> Bytes {
    let encoded = hex::encode(postcard::to_allocvec(dir).unwrap());
    let mut out = Vec::new();
    let mut w =
        ArrowWriter::try_new(&mut out, super::schema(), Some(writer_properties(encoded))).unwrap();
    let refs: Vec<(u64, &Points)> = series.iter().map(|(id, p)| (*id, p)).collect();
    w.write(&to_batch(&refs)).unwrap();
    w.close().unwrap();
    Bytes::from(out)
}

fn extent(series: u64, start: u64, rows: u64) -> SeriesExtent {
    SeriesExtent {
        series,
        start,
        rows,
        first: (0, 0, 0.0),
        last: (0, 0, 0.0),
        ts_sorted: true,
        has_extras: false,
        fences: vec![0; rows.div_ceil(FENCE) as usize],
    }
}

fn open(bytes: Bytes) -> crate::Result<Segment> {
    Segment::from_bytes(1, Path::new("seg.parquet"), bytes)
}

#[test]
fn a_written_segment_passes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seg.parquet");
    super::super::write(&path, &[(1, curve(3)), (5, curve(2_000))]).unwrap();
    let seg = Segment::open(1, &path).unwrap();
    assert_eq!(seg.rows(), 2_003);
    assert_eq!(seg.read_series(&seg.directory()[1]).unwrap().len(), 2_000);
}

#[test]
fn directory_must_be_sorted_disjoint_and_within_the_file() {
    assert_eq!(directory(&[extent(1, 0, 5), extent(2, 5, 5)], 10), Ok(()));
    assert_eq!(
        directory(&[extent(2, 0, 5), extent(1, 5, 5)], 10),
        Err(Defect::Order(1))
    );
    assert_eq!(
        directory(&[extent(1, 0, 5), extent(2, 4, 5)], 10),
        Err(Defect::Order(2))
    );
    for bad in [extent(1, 6, 5), extent(1, u64::MAX, 2), extent(1, 0, 0)] {
        assert!(
            matches!(directory(&[bad], 10), Err(Defect::Extent { series: 1, .. })),
            "accepted an extent outside the file or empty"
        );
    }
    let mut fences = extent(1, 0, FENCE + 1);
    fences.fences.pop();
    assert!(directory(&[fences], 2 * FENCE).is_err());
}

#[test]
fn a_directory_claiming_rows_the_file_lacks_is_corruption() {
    // Without the check, a read of series 2 would select rows past the end of the file.
    let series = [(1, curve(4))];
    let bytes = file_with_directory(&series, &[extent(1, 0, 4), extent(2, 4, 10)]);
    assert!(matches!(open(bytes), Err(Error::Corruption { .. })));
    let bytes = file_with_directory(&series, &[extent(1, 0, 4)]);
    assert_eq!(open(bytes).unwrap().directory().len(), 1);
}

#[test]
fn fences_longer_than_the_series_are_corruption() {
    // `rows_below_step` turns a fence index into a row window; surplus fences would point it
    // past the series.
    let series = [(1, curve(4))];
    let mut ext = extent(1, 0, 4);
    ext.fences = vec![0, 1, 2];
    let bytes = file_with_directory(&series, &[ext]);
    assert!(matches!(open(bytes), Err(Error::Corruption { .. })));
}

#[test]
fn reads_beyond_the_last_row_are_errors() {
    let series = [(1, curve(4))];
    let seg = open(file_with_directory(&series, &[extent(1, 0, 4)])).unwrap();
    assert!(seg.read_rows(std::slice::from_ref(&(2..6)), false).is_err());
    assert!(seg
        .read_columns(std::slice::from_ref(&(3..5)), &[1], 16)
        .is_err());
    assert_eq!(
        seg.read_rows(std::slice::from_ref(&(1..3)), false)
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn a_damaged_embedded_arrow_schema_is_not_read() {
    // Found by the `segment` fuzz target: a seed segment with one byte of its `ARROW:schema`
    // footer entry changed (an integer type of bit width 0) made arrow-ipc panic while loading
    // the metadata. The Arrow schema is now derived from the Parquet schema instead.
    let bytes = include_bytes!("testdata/bad-arrow-schema.parquet");
    let _ = open(Bytes::from_static(bytes));
}

/// The footer of a written two-series segment (page index loaded) and the file's length.
fn written_footer() -> (ArrowReaderMetadata, u64) {
    let series = [(1, curve(3)), (5, curve(3_000))];
    let bytes = file_with_directory(&series, &[extent(1, 0, 3), extent(5, 3, 3_000)]);
    let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required);
    let meta = ArrowReaderMetadata::load(&bytes, options.clone()).unwrap();
    (meta, bytes.len() as u64)
}

/// `meta` with the page locations of `column` in row group 0 changed by `edit`.
fn with_pages(
    meta: &ArrowReaderMetadata,
    column: usize,
    edit: impl FnOnce(&mut Vec<PageLocation>),
) -> ArrowReaderMetadata {
    let mut offsets = meta.metadata().offset_index().unwrap().clone();
    edit(&mut offsets[0][column].page_locations);
    let edited = meta
        .metadata()
        .as_ref()
        .clone()
        .into_builder()
        .set_offset_index(Some(offsets))
        .build();
    ArrowReaderMetadata::try_new(edited.into(), ArrowReaderOptions::new()).unwrap()
}

#[test]
fn pages_must_lie_in_order_inside_their_column_chunk() {
    // Found by the `segment` fuzz target: an offset index whose first page starts before its
    // column chunk made the Parquet reader overflow a subtraction (parquet 59.3.2,
    // `SerializedPageReader::new_with_properties`) when a read skipped records of that column.
    let (meta, len) = written_footer();
    assert!(row_groups(&meta, len).is_ok());
    let columns = meta.metadata().file_metadata().schema_descr().num_columns();
    let pages = |c: usize| {
        meta.metadata().offset_index().unwrap()[0][c]
            .page_locations
            .len()
    };
    let column = (0..columns)
        .find(|&c| pages(c) > 1)
        .expect("a column of several pages");
    type Edit = fn(&mut Vec<PageLocation>);
    let edits: [(&str, Edit); 5] = [
        ("first page before the chunk", |p| p[0].offset -= 1),
        ("negative offset", |p| p[0].offset = -4),
        ("overlapping pages", |p| p[1].offset = p[0].offset + 1),
        ("empty page", |p| p[0].compressed_page_size = 0),
        ("last page past the chunk", |p| {
            p.last_mut().unwrap().compressed_page_size += 1_000_000
        }),
    ];
    for (what, edit) in edits {
        let bad = with_pages(&meta, column, edit);
        assert!(
            matches!(row_groups(&bad, len), Err(Defect::ByteRange { rg: 0, .. })),
            "{what} passed the check"
        );
    }
    // A file cut short: its column chunks run past the end.
    assert!(matches!(
        row_groups(&meta, 100),
        Err(Defect::ByteRange { .. })
    ));
}

#[test]
fn a_page_that_breaks_the_decoder_is_corruption_not_a_panic() {
    // Found by the `segment` fuzz target: a seed segment with bytes shuffled inside a
    // DELTA_BINARY_PACKED page that then claims no values; parquet 59.3.2 subtracts past zero
    // decoding it (`encodings/decoding.rs:755`). Reads contain the panic (`guard`).
    let bytes = include_bytes!("testdata/delta-page-without-values.parquet");
    let seg = open(Bytes::from_static(bytes)).unwrap();
    let mut contained = 0;
    for ext in seg.directory().to_vec() {
        let rows = std::slice::from_ref(&(ext.start..ext.start + ext.rows)).to_vec();
        let whole = seg.read_series(&ext);
        let columns: crate::Result<Vec<_>> = seg
            .read_columns(&rows, &[1, 2, 3, 4, 5, 6], 512)
            .and_then(|batches| batches.collect());
        for result in [whole.map(drop), columns.map(drop)] {
            match result {
                Ok(()) => {}
                Err(e @ Error::Corruption { .. }) => {
                    contained += e.to_string().contains("Parquet decoder failed") as usize
                }
                Err(e) => panic!("not a corruption error: {e}"),
            }
        }
    }
    assert!(contained > 0, "no read met the decoder's panic");
}
