//! CSV: header, delimiter, quote and null string; a line with the wrong number of fields
//! or invalid UTF-8 is rejected with its line number and raw text.

use std::io::Read;

use assay_engine::config::CsvOptions;
use csv::{ByteRecord, ReaderBuilder};

use super::{BATCH_ROWS, Chunk, FileError, Reject, StringBatch, check_columns};

/// Keeps the bytes the CSV reader has consumed so a rejected record's raw text can be cut out.
struct Tee<R> {
    inner: R,
    buf: Vec<u8>,
    /// Absolute offset of `buf[0]`.
    base: u64,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(out)?;
        self.buf.extend_from_slice(&out[..n]);
        Ok(n)
    }
}

impl<R> Tee<R> {
    fn slice(&self, start: u64, end: u64) -> String {
        let s = start.saturating_sub(self.base) as usize;
        let e = (end.saturating_sub(self.base) as usize).min(self.buf.len());
        let text = String::from_utf8_lossy(&self.buf[s.min(e)..e]);
        text.trim_end_matches(['\r', '\n']).to_string()
    }

    /// True when the bytes hold an even number of quote characters (escaped quotes are
    /// doubled, so an odd count means a quoted field never closed).
    fn quotes_balanced(&self, start: u64, end: u64, quote: u8) -> bool {
        let s = start.saturating_sub(self.base) as usize;
        let e = (end.saturating_sub(self.base) as usize).min(self.buf.len());
        memchr::memchr_iter(quote, &self.buf[s.min(e)..e])
            .count()
            .is_multiple_of(2)
    }

    fn discard_before(&mut self, offset: u64) {
        let n = offset.saturating_sub(self.base) as usize;
        // Drain in large steps: a memmove per record would dominate parsing.
        if n > (1 << 20) && n <= self.buf.len() {
            self.buf.drain(..n);
            self.base = offset;
        }
    }
}

/// Parses CSV from `reader`, calling `emit` with each chunk; stops early when `emit`
/// returns false.
///
/// # Errors
/// IO errors, and a header that cannot name the columns (as a message).
pub(crate) fn parse(
    reader: impl Read,
    opts: &CsvOptions,
    mut emit: impl FnMut(Chunk) -> bool,
) -> Result<(), FileError> {
    let fmt = |m: String| FileError::Format(m);
    let delimiter =
        u8::try_from(opts.delimiter).map_err(|_| fmt("delimiter must be one byte".into()))?;
    let quote = u8::try_from(opts.quote).map_err(|_| fmt("quote must be one byte".into()))?;
    let mut rdr = ReaderBuilder::new()
        .buffer_capacity(1 << 20)
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .quote(quote)
        .from_reader(Tee {
            inner: reader,
            buf: Vec::new(),
            base: 0,
        });
    let mut record = ByteRecord::new();
    let mut names: Option<Vec<String>> = None;
    let mut batch = StringBatch::new(Vec::new());
    let mut chunk = Chunk::default();
    loop {
        let start = rdr.position().clone();
        match rdr.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                // The csv crate reports IO errors here; lengths are not checked (flexible).
                let msg = format!("line {}: {e}", start.line());
                return Err(if e.is_io_error() {
                    FileError::Io(msg)
                } else {
                    fmt(msg)
                });
            }
        }
        let end = rdr.position().byte();
        let line = start.line();
        let Some(cols) = names.as_ref() else {
            let header: Vec<String> = if opts.header {
                record
                    .iter()
                    .map(|f| String::from_utf8_lossy(f).trim().to_string())
                    .collect()
            } else {
                (1..=record.len()).map(|i| format!("column_{i}")).collect()
            };
            check_columns(&header).map_err(|m| fmt(format!("line {line}: header: {m}")))?;
            batch = StringBatch::new(header.clone());
            names = Some(header);
            if opts.header {
                rdr.get_mut().discard_before(end);
                continue;
            }
            // Without a header the first line is data.
            let cols = names.as_ref().map_or(0, Vec::len);
            push_record(&record, cols, line, opts, &mut batch, &mut chunk, || {
                rdr.get_ref().slice(start.byte(), end)
            });
            continue;
        };
        let cols = cols.len();
        if !rdr.get_ref().quotes_balanced(start.byte(), end, quote) {
            chunk.records += 1;
            chunk.rejects.push(Reject {
                line: Some(line),
                raw: Some(rdr.get_ref().slice(start.byte(), end)),
                reason: "unterminated quoted field".into(),
            });
            continue;
        }
        push_record(&record, cols, line, opts, &mut batch, &mut chunk, || {
            rdr.get_ref().slice(start.byte(), end)
        });
        rdr.get_mut().discard_before(end);
        if batch.rows() >= BATCH_ROWS {
            chunk.batch = batch.take().map_err(|e| fmt(e.to_string()))?;
            if !emit(std::mem::take(&mut chunk)) {
                return Ok(());
            }
        }
    }
    chunk.batch = batch.take().map_err(|e| fmt(e.to_string()))?;
    emit(chunk);
    Ok(())
}

fn push_record(
    record: &ByteRecord,
    cols: usize,
    line: u64,
    opts: &CsvOptions,
    batch: &mut StringBatch,
    chunk: &mut Chunk,
    raw: impl FnOnce() -> String,
) {
    chunk.records += 1;
    if record.len() != cols {
        chunk.rejects.push(Reject {
            line: Some(line),
            raw: Some(raw()),
            reason: format!("expected {cols} fields, found {}", record.len()),
        });
        return;
    }
    // One check for the whole record: fields are split at ASCII bytes, so they are valid
    // UTF-8 when the record is.
    let Ok(text) = std::str::from_utf8(record.as_slice()) else {
        let bad = record
            .iter()
            .position(|f| std::str::from_utf8(f).is_err())
            .unwrap_or(0);
        chunk.rejects.push(Reject {
            line: Some(line),
            raw: Some(raw()),
            reason: format!("field {} is not valid UTF-8", bad + 1),
        });
        return;
    };
    for i in 0..cols {
        let v = record
            .range(i)
            .and_then(|r| text.get(r))
            .unwrap_or_default();
        if v == opts.null {
            batch.column(i).append_null();
        } else {
            batch.column(i).append_value(v);
        }
    }
    batch.end_row();
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};

    fn run(text: &str) -> (Vec<arrow::array::RecordBatch>, Vec<Reject>, u64) {
        let mut batches = Vec::new();
        let mut rejects = Vec::new();
        let mut records = 0;
        parse(text.as_bytes(), &CsvOptions::default(), |c| {
            batches.extend(c.batch);
            rejects.extend(c.rejects);
            records += c.records;
            true
        })
        .unwrap();
        (batches, rejects, records)
    }

    #[test]
    fn keeps_good_rows_and_rejects_bad_lines_with_numbers() {
        let (batches, rejects, records) =
            run("id,name\n1,\"a, b\"\n2,x,extra\n3,\n\"4\",\"multi\nline\"\n5,e\n");
        assert_eq!(records, 5);
        let b = &batches[0];
        assert_eq!(b.num_rows(), 4);
        let names = b.column(1).as_string::<i32>();
        assert_eq!(names.value(0), "a, b");
        assert!(names.is_null(1), "empty field is NULL by default");
        assert_eq!(names.value(2), "multi\nline");
        assert_eq!(rejects.len(), 1);
        assert_eq!(rejects[0].line, Some(3));
        assert_eq!(rejects[0].raw.as_deref(), Some("2,x,extra"));
        assert_eq!(rejects[0].reason, "expected 2 fields, found 3");
    }

    #[test]
    fn delimiter_quote_null_and_headerless_options_apply() {
        let opts = CsvOptions {
            header: false,
            delimiter: ';',
            quote: '\'',
            null: "NA".into(),
        };
        let mut batches = Vec::new();
        parse("1;'a;b'\n2;NA\n".as_bytes(), &opts, |c| {
            batches.extend(c.batch);
            true
        })
        .unwrap();
        let b = &batches[0];
        assert_eq!(b.schema().field(1).name(), "column_2");
        assert_eq!(b.num_rows(), 2);
        let col = b.column(1).as_string::<i32>();
        assert_eq!(col.value(0), "a;b");
        assert!(col.is_null(1), "NA is NULL");
    }

    #[test]
    fn header_problems_are_errors() {
        let Err(FileError::Format(err)) =
            parse("a,a\n1,2\n".as_bytes(), &CsvOptions::default(), |_| true)
        else {
            panic!("expected a format error")
        };
        assert_eq!(
            err,
            "line 1: header: column `a` appears twice in the header"
        );
        let Err(FileError::Format(err)) =
            parse("_batch_id\n1\n".as_bytes(), &CsvOptions::default(), |_| {
                true
            })
        else {
            panic!("expected a format error")
        };
        assert!(err.contains("reserved"), "{err}");
    }

    /// Random CSV from the format's special bytes: every record is a row or a reject
    /// (none is dropped) and nothing panics, over a bounded run.
    #[test]
    fn random_csv_keeps_or_rejects_every_record() {
        let alphabet = [
            "a", "1", ",", "\"", "\n", "\r\n", " ", "é", "\"\"", ",,", "\u{0}",
        ];
        let bodies = assay_engine::fuzz::pieces(&alphabet, 0..60, "");
        assay_engine::fuzz::check(2000, bodies, |body| {
            let text = format!("id,name\n{body}");
            let (mut rows, mut rejected, mut records) = (0, 0, 0);
            let parsed = parse(text.as_bytes(), &CsvOptions::default(), |c| {
                rows += c.batch.as_ref().map_or(0, |b| b.num_rows() as u64);
                rejected += c.rejects.len() as u64;
                records += c.records;
                true
            });
            if parsed.is_ok() {
                proptest::prop_assert_eq!(rows + rejected, records, "{:?}", text);
            }
            Ok(())
        })
        .unwrap();
    }
}
