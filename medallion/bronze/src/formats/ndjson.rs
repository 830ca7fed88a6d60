//! NDJSON: one JSON object per line. Scalars are kept as text, nested values as JSON text;
//! a line that is not a JSON object is rejected with its line number.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};

use serde_json::Value;

use super::{BATCH_ROWS, Chunk, FileError, RESERVED, Reject, StringBatch};

/// Parses NDJSON from `reader`, calling `emit` with each chunk; stops early when `emit`
/// returns false.
///
/// # Errors
/// IO errors (as a message).
pub(crate) fn parse(
    reader: impl Read,
    mut emit: impl FnMut(Chunk) -> bool,
) -> Result<(), FileError> {
    let mut reader = BufReader::with_capacity(1 << 16, reader);
    let mut line_buf = Vec::new();
    let mut line_no = 0u64;
    let mut batch = StringBatch::new(Vec::new());
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut chunk = Chunk::default();
    let mut filled: Vec<bool> = Vec::new();
    loop {
        line_buf.clear();
        let n = reader
            .read_until(b'\n', &mut line_buf)
            .map_err(|e| FileError::Io(format!("line {}: {e}", line_no + 1)))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let text = trim_line(&line_buf);
        if text.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        chunk.records += 1;
        let reject = |reason: String| Reject {
            line: Some(line_no),
            raw: Some(String::from_utf8_lossy(text).into_owned()),
            reason,
        };
        let object = match serde_json::from_slice::<Value>(text) {
            Ok(Value::Object(map)) => map,
            Ok(other) => {
                chunk.rejects.push(reject(format!(
                    "expected a JSON object, found {}",
                    kind(&other)
                )));
                continue;
            }
            Err(e) => {
                chunk.rejects.push(reject(format!("invalid JSON: {e}")));
                continue;
            }
        };
        if let Some(bad) = object
            .keys()
            .find(|k| RESERVED.contains(&k.as_str()) || k.is_empty())
        {
            chunk.rejects.push(reject(format!(
                "key `{bad}` is empty or reserved for lineage"
            )));
            continue;
        }
        filled.clear();
        filled.resize(index.len(), false);
        for (key, value) in object {
            let i = match index.get(&key) {
                Some(&i) => i,
                None => {
                    let i = batch.add_column(key.clone());
                    index.insert(key, i);
                    filled.push(false);
                    i
                }
            };
            filled[i] = true;
            match value {
                Value::Null => batch.column(i).append_null(),
                Value::String(s) => batch.column(i).append_value(s),
                other => batch.column(i).append_value(other.to_string()),
            }
        }
        for (i, done) in filled.iter().enumerate() {
            if !done {
                batch.column(i).append_null();
            }
        }
        batch.end_row();
        if batch.rows() >= BATCH_ROWS {
            chunk.batch = batch.take().map_err(|e| FileError::Format(e.to_string()))?;
            if !emit(std::mem::take(&mut chunk)) {
                return Ok(());
            }
        }
    }
    chunk.batch = batch.take().map_err(|e| FileError::Format(e.to_string()))?;
    emit(chunk);
    Ok(())
}

fn trim_line(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    while end > 0 && (line[end - 1] == b'\n' || line[end - 1] == b'\r') {
        end -= 1;
    }
    &line[..end]
}

/// How a JSON value is named in messages (`a string`, `an array`, ...).
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};

    #[test]
    fn objects_become_rows_and_bad_lines_are_rejected() {
        let text =
            "{\"id\": 1, \"tags\": [\"a\"]}\n\n{\"id\": 2, \"note\": \"x\"}\nnot json\n[1]\n";
        let mut batches = Vec::new();
        let mut rejects = Vec::new();
        parse(text.as_bytes(), |c| {
            batches.extend(c.batch);
            rejects.extend(c.rejects);
            true
        })
        .unwrap();
        let b = &batches[0];
        assert_eq!(b.num_rows(), 2);
        assert_eq!(b.schema().field(2).name(), "note");
        assert_eq!(b.column(1).as_string::<i32>().value(0), "[\"a\"]");
        assert!(b.column(2).is_null(0));
        assert_eq!(rejects.len(), 2);
        assert_eq!(rejects[0].line, Some(4));
        assert!(
            rejects[0].reason.starts_with("invalid JSON"),
            "{}",
            rejects[0].reason
        );
        assert_eq!(rejects[1].reason, "expected a JSON object, found an array");
    }

    /// Random NDJSON lines: every non-blank line is a row or a reject, nothing panics.
    #[test]
    fn random_ndjson_keeps_or_rejects_every_line() {
        let alphabet = [
            "{",
            "}",
            "\"a\"",
            ":",
            "1",
            ",",
            "[",
            "]",
            "null",
            "\n",
            "\r\n",
            " ",
            "\"é\"",
            "{\"id\": 1}",
            "\\",
        ];
        let texts = assay_engine::fuzz::pieces(&alphabet, 0..40, "");
        assay_engine::fuzz::check(2000, texts, |text| {
            let lines = text
                .as_bytes()
                .split(|b| *b == b'\n')
                .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
                .count();
            let (mut rows, mut rejected) = (0, 0);
            let parsed = parse(text.as_bytes(), |c| {
                rows += c.batch.as_ref().map_or(0, |b| b.num_rows());
                rejected += c.rejects.len();
                true
            });
            if parsed.is_ok() {
                proptest::prop_assert_eq!(rows + rejected, lines, "{:?}", text);
            }
            Ok(())
        })
        .unwrap();
    }
}
