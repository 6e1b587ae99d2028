//! The checks a segment passes before it is read: every index the readers use (the series
//! directory, row-group row counts, the page index) is validated against the file once, at open,
//! so that a damaged or foreign file is a [`Error::Corruption`](crate::error::Error) and never a
//! panic or a read out of bounds later.

use parquet::arrow::arrow_reader::ArrowReaderMetadata;
use parquet::file::metadata::ColumnChunkMetaData;
use parquet::file::page_index::column_index::ColumnIndexMetaData;
use parquet::file::page_index::offset_index::PageLocation;

use super::{schema, SeriesExtent, FENCE};

/// What makes a segment unreadable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Defect {
    /// The columns are not those of [`schema`].
    #[error("schema is not the segment schema: {0}")]
    Schema(String),
    /// A row group claims no rows or a negative count, or the counts overflow (the writer
    /// never writes an empty row group).
    #[error("row group {0} has an invalid row count")]
    RowCount(usize),
    /// The page index lacks a row group or a column, or its pages do not cover the row group.
    #[error("page index of row group {rg}, column {column}: {detail}")]
    PageIndex {
        /// The row group.
        rg: usize,
        /// The column.
        column: usize,
        /// What is wrong.
        detail: &'static str,
    },
    /// A column chunk, or a page the offset index locates, lies outside the file or outside
    /// its column chunk (the Parquet reader computes with these offsets unchecked).
    #[error("row group {rg}, column {column}: {detail}")]
    ByteRange {
        /// The row group.
        rg: usize,
        /// The column.
        column: usize,
        /// What is wrong.
        detail: &'static str,
    },
    /// The series directory is not sorted by series id, or two extents overlap.
    #[error("series directory out of order at series {0}")]
    Order(u64),
    /// A series has no rows, rows beyond the file's, or the wrong number of step fences.
    #[error("series {series} in the directory: {detail}")]
    Extent {
        /// The series.
        series: u64,
        /// What is wrong.
        detail: &'static str,
    },
}

/// Checks that `meta` (the footer of a file of `file_len` bytes) has the segment schema and a
/// page index covering every row group, whose pages lie in order inside their column chunks and
/// the chunks inside the file; returns the first row of each row group followed by the total.
pub(crate) fn row_groups(meta: &ArrowReaderMetadata, file_len: u64) -> Result<Vec<u64>, Defect> {
    let expected = schema();
    let fields = meta.schema().fields();
    if fields.len() != expected.fields().len()
        || fields.iter().zip(expected.fields()).any(|(a, b)| {
            a.name() != b.name()
                || a.data_type() != b.data_type()
                || a.is_nullable() != b.is_nullable()
        })
    {
        return Err(Defect::Schema(format!("{:?}", meta.schema().fields())));
    }
    let metadata = meta.metadata();
    let columns = expected.fields().len();
    if metadata.file_metadata().schema_descr().num_columns() != columns {
        return Err(Defect::Schema("wrong number of leaf columns".into()));
    }
    let mut starts = vec![0u64];
    for (rg, group) in metadata.row_groups().iter().enumerate() {
        let rows = u64::try_from(group.num_rows())
            .ok()
            .filter(|&n| n > 0)
            .ok_or(Defect::RowCount(rg))?;
        let next = starts[rg].checked_add(rows).ok_or(Defect::RowCount(rg))?;
        starts.push(next);
    }
    let groups = metadata.row_groups().len();
    let (Some(offsets), Some(stats)) = (metadata.offset_index(), metadata.column_index()) else {
        if groups == 0 {
            return Ok(starts);
        }
        let defect = |detail| Defect::PageIndex {
            rg: 0,
            column: 0,
            detail,
        };
        return Err(defect("missing"));
    };
    for rg in 0..groups {
        let rows = starts[rg + 1] - starts[rg];
        for column in 0..columns {
            let defect = |detail| Defect::PageIndex { rg, column, detail };
            let locations = offsets
                .get(rg)
                .and_then(|c| c.get(column))
                .ok_or(defect("missing"))?
                .page_locations();
            let firsts: Vec<i64> = locations.iter().map(|l| l.first_row_index).collect();
            if firsts.first() != Some(&0) {
                return Err(defect("first page does not start at row 0"));
            }
            if firsts.windows(2).any(|w| w[0] >= w[1]) {
                return Err(defect("pages out of order"));
            }
            if firsts
                .last()
                .is_some_and(|&last| last < 0 || last as u64 >= rows)
            {
                return Err(defect("page starts beyond the row group"));
            }
            let chunk = &metadata.row_group(rg).columns()[column];
            byte_ranges(chunk, locations, file_len).map_err(|detail| Defect::ByteRange {
                rg,
                column,
                detail,
            })?;
            let pages = locations.len();
            let stats = stats
                .get(rg)
                .and_then(|c| c.get(column))
                .ok_or(defect("missing statistics"))?;
            if !stats_cover(stats, pages) {
                return Err(defect("statistics for another number of pages"));
            }
        }
    }
    Ok(starts)
}

/// Checks that `chunk` lies inside a file of `file_len` bytes and that `pages`, its offset index,
/// locates non-empty, non-overlapping pages in file order inside it. The Parquet reader trusts
/// these numbers: a negative chunk offset fails an assertion in `ColumnChunkMetaData::byte_range`,
/// and a first page before the chunk start overflows a subtraction when it sizes the dictionary
/// page in front of it (both found by the `segment` fuzz target).
fn byte_ranges(
    chunk: &ColumnChunkMetaData,
    pages: &[PageLocation],
    file_len: u64,
) -> Result<(), &'static str> {
    let start = chunk
        .dictionary_page_offset()
        .unwrap_or_else(|| chunk.data_page_offset());
    let (Ok(start), Ok(len)) = (u64::try_from(start), u64::try_from(chunk.compressed_size()))
    else {
        return Err("negative column chunk offset or size");
    };
    let end = start
        .checked_add(len)
        .filter(|&end| end <= file_len)
        .ok_or("column chunk beyond the end of the file")?;
    if u64::try_from(chunk.data_page_offset()).map_or(true, |data| data < start || data >= end) {
        return Err("data page offset outside the column chunk");
    }
    let mut next = start;
    for (i, page) in pages.iter().enumerate() {
        let (Ok(offset), Ok(size)) = (
            u64::try_from(page.offset),
            u64::try_from(page.compressed_page_size),
        ) else {
            return Err("negative page offset or size");
        };
        if offset < next {
            return Err("page before the column chunk or overlapping the page before it");
        }
        // The reader sizes a dictionary page in front of the first page as an i32.
        if i == 0 && offset - start > i32::MAX as u64 {
            return Err("first page too far into the column chunk");
        }
        next = offset
            .checked_add(size)
            .filter(|&page_end| size > 0 && page_end <= end)
            .ok_or("page empty or beyond the column chunk")?;
    }
    Ok(())
}

/// Whether the Int64 page statistics `stats` (the only ones the readers use) describe exactly
/// `pages` pages.
fn stats_cover(stats: &ColumnIndexMetaData, pages: usize) -> bool {
    match stats {
        ColumnIndexMetaData::INT64(index) => {
            index.num_pages() == pages as u64
                && index.min_values().len() == pages
                && index.max_values().len() == pages
        }
        _ => true,
    }
}

/// Checks the series directory against a file of `total` rows: sorted by series id, extents
/// non-empty, in order, without overlap, within the file, with one step fence per [`FENCE`] rows.
pub(crate) fn directory(directory: &[SeriesExtent], total: u64) -> Result<(), Defect> {
    let mut end = 0u64;
    for (i, ext) in directory.iter().enumerate() {
        let defect = |detail| Defect::Extent {
            series: ext.series,
            detail,
        };
        if i > 0 && directory[i - 1].series >= ext.series {
            return Err(Defect::Order(ext.series));
        }
        if ext.rows == 0 {
            return Err(defect("no rows"));
        }
        if ext.start < end {
            return Err(Defect::Order(ext.series));
        }
        end = ext
            .start
            .checked_add(ext.rows)
            .filter(|&e| e <= total)
            .ok_or(defect("rows beyond the end of the file"))?;
        if ext.fences.len() as u64 != ext.rows.div_ceil(FENCE) {
            return Err(defect("wrong number of step fences"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
