//! Column types a silver table can declare.

use arrow::datatypes::{DataType, TimeUnit};

/// A declared silver column type: its name as written and the Arrow type it casts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnType {
    /// The type as written in the project file.
    pub name: String,
    /// The Arrow type values are cast to.
    pub data_type: DataType,
}

/// Parses a type name (`string`, `bigint`, `int`, `double`, `boolean`, `date`, `timestamp`,
/// `decimal(p,s)`, …).
///
/// # Errors
/// An unknown type name, with the list of known ones.
pub fn parse_column_type(s: &str) -> Result<ColumnType, String> {
    let lower = s.trim().to_ascii_lowercase();
    let data_type = match lower.as_str() {
        "string" | "text" | "varchar" | "utf8" => DataType::Utf8,
        "bigint" | "long" | "int64" => DataType::Int64,
        "int" | "integer" | "int32" => DataType::Int32,
        "smallint" | "short" | "int16" => DataType::Int16,
        "double" | "float64" => DataType::Float64,
        "float" | "real" | "float32" => DataType::Float32,
        "boolean" | "bool" => DataType::Boolean,
        "date" => DataType::Date32,
        "timestamp" => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        other => parse_decimal(other).ok_or_else(|| {
            format!(
                "unknown column type `{s}` (known: string, bigint, int, smallint, double, float, \
                 boolean, date, timestamp, decimal(p,s))"
            )
        })?,
    };
    Ok(ColumnType {
        name: lower,
        data_type,
    })
}

fn parse_decimal(s: &str) -> Option<DataType> {
    let inner = s.strip_prefix("decimal(")?.strip_suffix(')')?;
    let (p, sc) = inner.split_once(',')?;
    let p: u8 = p.trim().parse().ok()?;
    let sc: i8 = sc.trim().parse().ok()?;
    (1..=38).contains(&p).then_some(())?;
    (0..=p as i8)
        .contains(&sc)
        .then_some(DataType::Decimal128(p, sc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_types() {
        assert_eq!(
            parse_column_type("BIGINT").unwrap().data_type,
            DataType::Int64
        );
        assert_eq!(
            parse_column_type("decimal(12, 2)").unwrap().data_type,
            DataType::Decimal128(12, 2)
        );
        assert!(parse_column_type("decimal(50,2)").is_err());
        let err = parse_column_type("money").unwrap_err();
        assert!(err.contains("unknown column type `money`"), "{err}");
    }
}
