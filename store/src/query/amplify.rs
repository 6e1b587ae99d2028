//! Scalar functions whose result can be far larger than their arguments (`repeat('a', 2e9)`,
//! `lpad(x, 2e9)`, `range(0, 2e9)` ...), guarded so that one call cannot allocate more than a
//! share of the query's memory limit.
//!
//! DataFusion's operators reserve their state in the query's memory pool, but the value a
//! scalar function returns is allocated outside it. Each guarded function computes an upper
//! bound of its output from its arguments *before* it runs and refuses the call beyond
//! [`call_limit`] ("exceeds its memory limit", a 400 over HTTP); the output is checked again
//! after the call. Functions that only reorder or concatenate their arguments (`concat`,
//! `encode` ...) are bounded too, since nesting them doubles a value at every level.

use std::hash::{Hash, Hasher};

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Int64Type};
use datafusion::common::{DataFusionError, Result as DfResult, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
};
use datafusion::prelude::SessionContext;

/// The most bytes one call of a guarded function may produce (for a whole batch of rows) under
/// a query memory limit of `memory_limit`: a sixteenth of it, at least 1 MiB.
pub(crate) fn call_limit(memory_limit: usize) -> usize {
    (memory_limit / 16).max(1 << 20)
}

/// How a guarded function's output is bounded from its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Bound {
    /// `repeat(s, n)`: len(s) × n.
    Repeat,
    /// `lpad/rpad(s, n [, fill])`: n characters of up to 4 bytes.
    Pad,
    /// `replace(s, from, to)`: every occurrence of `from` becomes `to`.
    Replace,
    /// `regexp_replace(s, pattern, replacement [, flags])`: every match (possibly empty)
    /// becomes the replacement, whose `$n` references expand to at most `s`.
    RegexpReplace,
    /// `concat(...)`, `concat_ws(sep, ...)`: the sum of the arguments (separators included).
    Concat,
    /// `encode(s, format)`: at most twice the input (hex).
    Encode,
    /// `array_repeat(e, n)`: n × size of e.
    ArrayRepeat,
    /// `array_resize(a, n [, v])`: n elements.
    ArrayResize,
    /// `range/generate_series([start,] stop [, step])` over integers: the element count × 8.
    Range,
}

/// The guarded functions.
const GUARDED: &[(&str, Bound)] = &[
    ("repeat", Bound::Repeat),
    ("lpad", Bound::Pad),
    ("rpad", Bound::Pad),
    ("replace", Bound::Replace),
    ("regexp_replace", Bound::RegexpReplace),
    ("concat", Bound::Concat),
    ("concat_ws", Bound::Concat),
    ("encode", Bound::Encode),
    ("array_repeat", Bound::ArrayRepeat),
    ("array_resize", Bound::ArrayResize),
    ("range", Bound::Range),
    ("generate_series", Bound::Range),
];

/// Replaces the session's amplifying functions by guarded ones that refuse a call producing more
/// than `limit` bytes.
pub(crate) fn register(ctx: &SessionContext, limit: usize) {
    let state = ctx.state();
    let functions = state.scalar_functions();
    for (name, bound) in GUARDED {
        if let Some(inner) = functions.get(*name) {
            ctx.register_udf(ScalarUDF::new_from_impl(Guarded {
                inner: inner.as_ref().clone(),
                bound: *bound,
                limit,
            }));
        }
    }
}

/// A function that refuses calls whose output would exceed `limit` bytes.
#[derive(Debug, PartialEq, Eq)]
struct Guarded {
    inner: ScalarUDF,
    bound: Bound,
    limit: usize,
}

impl Hash for Guarded {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.inner.hash(state);
        self.bound.hash(state);
        self.limit.hash(state);
    }
}

impl ScalarUDFImpl for Guarded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(
        &self,
        args: ReturnFieldArgs,
    ) -> DfResult<arrow::datatypes::FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn short_circuits(&self) -> bool {
        self.inner.short_circuits()
    }

    fn documentation(&self) -> Option<&datafusion::logical_expr::Documentation> {
        self.inner.documentation()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        if let Some(bytes) = output_bound(self.bound, &args.args, rows)? {
            self.refuse_over(bytes, "would produce")?;
        }
        let out = self.inner.invoke_with_args(args)?;
        let bytes = match &out {
            ColumnarValue::Array(a) => a.to_data().get_slice_memory_size()? as u128,
            ColumnarValue::Scalar(s) => s.size() as u128,
        };
        self.refuse_over(bytes, "produced")?;
        Ok(out)
    }
}

impl Guarded {
    fn refuse_over(&self, bytes: u128, verb: &str) -> DfResult<()> {
        if bytes > self.limit as u128 {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "{}() {verb} {bytes} bytes in one call, more than the {} bytes a function may \
                 produce at once (1/16 of the query's memory limit)",
                self.inner.name(),
                self.limit
            )));
        }
        Ok(())
    }
}

/// An argument's values per row, without expanding a scalar to the batch.
enum Column<'a> {
    Scalar(&'a ScalarValue),
    Array(&'a ArrayRef),
}

impl<'a> Column<'a> {
    fn of(v: &'a ColumnarValue) -> Self {
        match v {
            ColumnarValue::Scalar(s) => Column::Scalar(s),
            ColumnarValue::Array(a) => Column::Array(a),
        }
    }

    /// The string at `row` (None for null or a non-string type).
    fn str(&self, row: usize) -> Option<&'a str> {
        match self {
            Column::Scalar(s) => s.try_as_str().flatten(),
            Column::Array(a) => {
                if a.is_null(row) {
                    return None;
                }
                match a.data_type() {
                    DataType::Utf8 => Some(a.as_string::<i32>().value(row)),
                    DataType::LargeUtf8 => Some(a.as_string::<i64>().value(row)),
                    DataType::Utf8View => Some(a.as_string_view().value(row)),
                    _ => None,
                }
            }
        }
    }

    /// The byte size of the value at `row` (a string's length, else the memory it refers to).
    fn size(&self, row: usize) -> u128 {
        if let Some(s) = self.str(row) {
            return s.len() as u128;
        }
        match self {
            Column::Scalar(s) => s.size() as u128,
            Column::Array(a) => a
                .slice(row, 1)
                .to_data()
                .get_slice_memory_size()
                .unwrap_or(16)
                .max(8) as u128,
        }
    }
}

/// An integer argument per row (None for null or a non-integer type).
enum Ints {
    Scalar(Option<i64>),
    Array(Option<ArrayRef>),
}

impl Ints {
    fn of(v: &ColumnarValue) -> Self {
        match v {
            ColumnarValue::Scalar(s) => Ints::Scalar(match s.cast_to(&DataType::Int64) {
                Ok(ScalarValue::Int64(v)) if s.data_type().is_integer() => v,
                _ => None,
            }),
            ColumnarValue::Array(a) if a.data_type().is_integer() => {
                Ints::Array(arrow::compute::cast(a, &DataType::Int64).ok())
            }
            ColumnarValue::Array(_) => Ints::Array(None),
        }
    }

    fn get(&self, row: usize) -> Option<i64> {
        match self {
            Ints::Scalar(v) => *v,
            Ints::Array(Some(a)) => {
                let a = a.as_primitive::<Int64Type>();
                (!a.is_null(row)).then(|| a.value(row))
            }
            Ints::Array(None) => None,
        }
    }

    fn known(&self) -> bool {
        !matches!(self, Ints::Scalar(None) | Ints::Array(None))
    }
}

/// An upper bound of the bytes `bound`'s function produces for `rows` rows of `args`, when it
/// can be told from the arguments.
fn output_bound(bound: Bound, args: &[ColumnarValue], rows: usize) -> DfResult<Option<u128>> {
    let rows = rows.max(1);
    let col = |i: usize| args.get(i).map(Column::of);
    let int = |i: usize| args.get(i).map(Ints::of);
    let mut total: u128 = 0;
    match bound {
        Bound::Repeat | Bound::Pad | Bound::ArrayRepeat | Bound::ArrayResize => {
            let (Some(value), Some(n)) = (col(0), int(1)) else {
                return Ok(None);
            };
            for row in 0..rows {
                let n = n.get(row).unwrap_or(0).max(0) as u128;
                total += match bound {
                    Bound::Repeat => value.size(row) * n,
                    Bound::Pad => value.size(row).max(n * 4),
                    Bound::ArrayRepeat => value.size(row).max(8) * n,
                    _ => n * 16,
                };
            }
        }
        Bound::Replace | Bound::RegexpReplace => {
            let (Some(s), Some(from), Some(to)) = (col(0), col(1), col(2)) else {
                return Ok(None);
            };
            for row in 0..rows {
                let len = s.size(row);
                let to = to.str(row).unwrap_or("");
                total += if bound == Bound::Replace {
                    let from = from.str(row).map_or(1, |f| f.len().max(1)) as u128;
                    len + (len / from + 1) * to.len() as u128
                } else {
                    let refs = to.matches('$').count() as u128;
                    len + (len + 1) * (to.len() as u128 + refs * len)
                };
            }
        }
        Bound::Concat | Bound::Encode => {
            // The whole input, a scalar once per row.
            for arg in args {
                total += match arg {
                    ColumnarValue::Scalar(s) => s.size() as u128 * rows as u128,
                    ColumnarValue::Array(a) => a.to_data().get_slice_memory_size()? as u128,
                };
            }
            if bound == Bound::Encode {
                total = 2 * total + 4 * rows as u128;
            }
        }
        Bound::Range => {
            let ints: Vec<Ints> = args.iter().map(Ints::of).collect();
            if ints.is_empty() || !ints.iter().all(Ints::known) {
                return Ok(None);
            }
            for row in 0..rows {
                let v: Vec<i128> = ints
                    .iter()
                    .map(|i| i.get(row).unwrap_or(0) as i128)
                    .collect();
                let (start, stop, step) = match v.as_slice() {
                    [stop] => (0, *stop, 1),
                    [start, stop] => (*start, *stop, 1),
                    [start, stop, step, ..] => (*start, *stop, *step),
                    [] => unreachable!("checked"),
                };
                let step = step.unsigned_abs().max(1);
                total += ((stop - start).unsigned_abs() / step + 1) * 8;
            }
        }
    }
    Ok(Some(total))
}
