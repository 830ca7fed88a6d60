//! Delta column types as the Unity Catalog API spells them: `type_name` (the `ColumnTypeName`
//! enum), `type_text` (Spark's catalog string, what DuckDB and Spark parse) and `type_json`
//! (the Delta/Spark `StructField` JSON).

use deltalake::kernel::{DataType, PrimitiveType, StructField};

use super::Column;

/// The `ColumnTypeName` of a type.
fn type_name(t: &DataType) -> &'static str {
    match t {
        DataType::Primitive(p) => match p {
            PrimitiveType::String => "STRING",
            PrimitiveType::Long => "LONG",
            PrimitiveType::Integer => "INT",
            PrimitiveType::Short => "SHORT",
            PrimitiveType::Byte => "BYTE",
            PrimitiveType::Float => "FLOAT",
            PrimitiveType::Double => "DOUBLE",
            PrimitiveType::Boolean => "BOOLEAN",
            PrimitiveType::Binary => "BINARY",
            PrimitiveType::Date => "DATE",
            PrimitiveType::Timestamp => "TIMESTAMP",
            PrimitiveType::TimestampNtz => "TIMESTAMP_NTZ",
            PrimitiveType::Decimal(_) => "DECIMAL",
            PrimitiveType::Void => "NULL",
            _ => "INTERVAL",
        },
        DataType::Array(_) => "ARRAY",
        DataType::Struct(_) => "STRUCT",
        DataType::Map(_) => "MAP",
        DataType::Variant(_) => "VARIANT",
    }
}

/// Spark's catalog string of a type (`bigint`, `decimal(12,2)`, `array<string>`,
/// `struct<a:int,b:string>`).
pub(super) fn type_text(t: &DataType) -> String {
    match t {
        DataType::Primitive(p) => match p {
            PrimitiveType::Long => "bigint".into(),
            PrimitiveType::Integer => "int".into(),
            PrimitiveType::Short => "smallint".into(),
            PrimitiveType::Byte => "tinyint".into(),
            // string, float, double, boolean, binary, date, timestamp, timestamp_ntz,
            // decimal(p,s), void and intervals are spelled as Delta spells them.
            other => other.to_string(),
        },
        DataType::Array(a) => format!("array<{}>", type_text(a.element_type())),
        DataType::Struct(s) => format!(
            "struct<{}>",
            s.fields()
                .map(|f| format!("{}:{}", f.name(), type_text(f.data_type())))
                .collect::<Vec<_>>()
                .join(",")
        ),
        DataType::Map(m) => format!(
            "map<{},{}>",
            type_text(m.key_type()),
            type_text(m.value_type())
        ),
        DataType::Variant(_) => "variant".into(),
    }
}

/// The column at `position` of a table partitioned by `partitions`.
pub(super) fn column(position: usize, field: &StructField, partitions: &[String]) -> Column {
    let t = field.data_type();
    let (precision, scale) = match t {
        DataType::Primitive(PrimitiveType::Decimal(d)) => {
            (i32::from(d.precision()), i32::from(d.scale()))
        }
        _ => (0, 0),
    };
    Column {
        name: field.name().clone(),
        type_text: type_text(t),
        type_json: serde_json::to_string(field).unwrap_or_default(),
        type_name: type_name(t),
        type_precision: precision,
        type_scale: scale,
        position: i32::try_from(position).unwrap_or(i32::MAX),
        nullable: field.is_nullable(),
        partition_index: partitions
            .iter()
            .position(|p| p == field.name())
            .and_then(|i| i32::try_from(i).ok()),
        comment: field
            .metadata()
            .get("comment")
            .and_then(|v| serde_json::to_value(v).ok())
            .and_then(|v| v.as_str().map(str::to_string)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::kernel::{ArrayType, DecimalType, MapType, StructType};

    #[test]
    fn types_are_spelled_as_spark_and_duckdb_read_them() {
        let cases = [
            (DataType::LONG, "bigint", "LONG"),
            (DataType::INTEGER, "int", "INT"),
            (DataType::STRING, "string", "STRING"),
            (DataType::TIMESTAMP, "timestamp", "TIMESTAMP"),
            (DataType::DATE, "date", "DATE"),
            (
                DataType::Primitive(PrimitiveType::Decimal(DecimalType::try_new(12, 2).unwrap())),
                "decimal(12,2)",
                "DECIMAL",
            ),
            (
                DataType::Array(Box::new(ArrayType::new(DataType::STRING, true))),
                "array<string>",
                "ARRAY",
            ),
            (
                DataType::Map(Box::new(MapType::new(
                    DataType::STRING,
                    DataType::LONG,
                    true,
                ))),
                "map<string,bigint>",
                "MAP",
            ),
            (
                DataType::Struct(Box::new(
                    StructType::try_new([
                        StructField::new("a", DataType::INTEGER, true),
                        StructField::new("b", DataType::STRING, true),
                    ])
                    .unwrap(),
                )),
                "struct<a:int,b:string>",
                "STRUCT",
            ),
        ];
        for (t, text, name) in cases {
            assert_eq!(
                (type_text(&t).as_str(), type_name(&t)),
                (text, name),
                "{t:?}"
            );
        }
    }

    #[test]
    fn a_column_carries_its_position_partition_and_decimal_digits() {
        let f = StructField::new(
            "amount",
            DataType::Primitive(PrimitiveType::Decimal(DecimalType::try_new(12, 2).unwrap())),
            false,
        );
        let c = column(3, &f, &["order_date".into(), "amount".into()]);
        assert_eq!(
            (
                c.position,
                c.partition_index,
                c.type_precision,
                c.type_scale,
                c.nullable
            ),
            (3, Some(1), 12, 2, false)
        );
        let json: serde_json::Value = serde_json::from_str(&c.type_json).unwrap();
        assert_eq!(json["type"], "decimal(12,2)");
        assert_eq!(json["name"], "amount");
    }
}
