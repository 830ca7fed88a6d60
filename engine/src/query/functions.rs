//! Functions whose output can dwarf their input (`repeat('x', 400000000)`) are charged to
//! the query's memory pool before they allocate, so one call cannot take the process.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::{Array, Int64Array};
use datafusion::arrow::compute::{cast, kernels::length::length};
use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature,
};
use datafusion::prelude::SessionContext;

use super::budget::QueryPool;

/// How a function's output size follows from its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Growth {
    /// `repeat(text, n)`: each row's text `n` times.
    Repeat,
    /// `lpad/rpad(text, n, ...)`: `n` characters of up to 4 bytes.
    Pad,
    /// `array_repeat(value, n)`: `n` elements of at least 8 bytes.
    Elements,
    /// `range/generate_series(start, stop[, step])` over integers: 8 bytes a step.
    Range,
}

const BOUNDED: [(&str, Growth); 6] = [
    ("repeat", Growth::Repeat),
    ("lpad", Growth::Pad),
    ("rpad", Growth::Pad),
    ("array_repeat", Growth::Elements),
    ("range", Growth::Range),
    ("generate_series", Growth::Range),
];

/// Replaces the session's growing functions by versions charged to `pool`.
pub(crate) fn register(ctx: &SessionContext, pool: &Arc<QueryPool>) {
    for (name, growth) in BOUNDED {
        if let Some(inner) = ctx.state().scalar_functions().get(name).cloned() {
            ctx.register_udf(ScalarUDF::new_from_impl(Charged {
                inner,
                growth,
                pool: Arc::clone(pool),
            }));
        }
    }
}

/// A function that reserves its output size in the pool before it runs.
#[derive(Debug)]
struct Charged {
    inner: Arc<ScalarUDF>,
    growth: Growth,
    pool: Arc<QueryPool>,
}

impl PartialEq for Charged {
    fn eq(&self, other: &Self) -> bool {
        self.inner == other.inner && Arc::ptr_eq(&self.pool, &other.pool)
    }
}

impl Eq for Charged {}

impl Hash for Charged {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.inner.name().hash(state);
        self.growth.hash(state);
    }
}

/// An argument as `rows` values of Int64 (`None` when it is not numeric).
fn ints(arg: &ColumnarValue, rows: usize) -> Option<Int64Array> {
    let array = arg.to_array(rows).ok()?;
    let as_int = cast(&array, &DataType::Int64).ok()?;
    as_int.as_any().downcast_ref::<Int64Array>().cloned()
}

/// Each row's byte length of a text argument (`None` when it is not text).
fn lengths(arg: &ColumnarValue, rows: usize) -> Option<Int64Array> {
    let array = arg.to_array(rows).ok()?;
    ints(&ColumnarValue::Array(length(&array).ok()?), rows)
}

/// The bytes the call will produce, at least.
fn output_bytes(growth: Growth, args: &[ColumnarValue], rows: usize) -> u128 {
    let at = |i: usize| args.get(i).and_then(|a| ints(a, rows));
    let clamp = |v: Option<i64>| v.unwrap_or(0).max(0) as u128;
    match growth {
        Growth::Repeat => {
            let (Some(text), Some(n)) = (args.first().and_then(|a| lengths(a, rows)), at(1)) else {
                return 0;
            };
            (0..rows)
                .map(|i| {
                    clamp(text.is_valid(i).then(|| text.value(i)))
                        * clamp(n.is_valid(i).then(|| n.value(i)))
                })
                .sum()
        }
        Growth::Pad | Growth::Elements => {
            let Some(n) = at(1) else { return 0 };
            let unit = if growth == Growth::Pad { 4 } else { 8 };
            n.iter().map(|v| clamp(v) * unit).sum()
        }
        Growth::Range => {
            let (start, stop) = match args.len() {
                1 => (None, at(0)),
                _ => (at(0), at(1)),
            };
            let Some(stop) = stop else { return 0 };
            let step = at(2);
            (0..rows)
                .map(|i| {
                    let a = start.as_ref().map_or(0, |s| s.value(i)) as i128;
                    let b = stop.value(i) as i128;
                    let s = step.as_ref().map_or(1, |s| s.value(i)).max(1) as i128;
                    ((b - a).unsigned_abs() / s.unsigned_abs() + 1) * 8
                })
                .sum()
        }
    }
}

impl ScalarUDFImpl for Charged {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let bytes = output_bytes(self.growth, &args.args, args.number_rows.max(1));
        let bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
        self.pool.try_take(bytes, &format!("{}()", self.name()))?;
        let out = self.inner.invoke_with_args(args);
        self.pool.give_back(bytes);
        out
    }
}
