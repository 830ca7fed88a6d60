//! The COPY half of a PostgreSQL source: `COPY ... TO STDOUT` CSV decoded into typed Arrow
//! batches (rows that do not decode become rejects), parallel ranges each on its own
//! connection in one exported snapshot, and the channel that feeds the one writer.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use assay_engine::config::DatabaseSource;
use futures::StreamExt;

use super::{BATCH_ROWS, db_message, err, quote_literal};
use crate::error::{BronzeError, Result};
use crate::formats::{Chunk, Reject};

fn decoder(schema: &SchemaRef, rows: usize) -> arrow::csv::reader::Decoder {
    // `\N` alone is NULL; an empty field is an empty string.
    let mut builder = arrow::csv::ReaderBuilder::new(Arc::clone(schema))
        .with_header(false)
        .with_batch_size(rows);
    if let Ok(null) = regex::Regex::new(r"^\\N$") {
        builder = builder.with_null_regex(null);
    }
    builder.build_decoder()
}

/// The rows of `raw` (CSV lines that failed to decode together) one by one: those that
/// decode are kept, the others are rejects with the decoder's reason. `first_row` numbers
/// the rows of this read (1-based).
fn salvage(schema: &SchemaRef, raw: &[u8], first_row: u64) -> Chunk {
    let mut good = Vec::new();
    let mut rejects = Vec::new();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(raw);
    let mut record = csv::ByteRecord::new();
    let mut start = 0usize;
    let mut row = first_row;
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                rejects.push(Reject {
                    line: Some(row),
                    raw: Some(String::from_utf8_lossy(&raw[start..]).into_owned()),
                    reason: e.to_string(),
                });
                break;
            }
        }
        let end = reader.position().byte() as usize;
        let line = &raw[start..end.min(raw.len())];
        let mut one = decoder(schema, 1);
        let decoded = one.decode(line).and_then(|_| one.flush());
        match decoded {
            Ok(Some(batch)) => good.push(batch),
            Ok(None) => {}
            Err(e) => rejects.push(Reject {
                line: Some(row),
                raw: Some(String::from_utf8_lossy(line).trim_end().to_string()),
                reason: format!("a value does not fit its column type: {e}"),
            }),
        }
        start = end;
        row += 1;
    }
    let records = good.iter().map(|b| b.num_rows() as u64).sum::<u64>() + rejects.len() as u64;
    Chunk {
        batch: arrow::compute::concat_batches(schema, &good)
            .ok()
            .filter(|b| b.num_rows() > 0),
        rejects,
        records,
    }
}

/// Streams one COPY into `tx`, a chunk at a time (rows that do not fit their types become
/// rejects); stops quietly when the writer is gone.
pub(super) async fn copy_into(
    client: &tokio_postgres::Client,
    copy: &str,
    schema: &SchemaRef,
    source: &DatabaseSource,
    url: &str,
    tx: &tokio::sync::mpsc::Sender<Chunk>,
) -> Result<()> {
    let db = |e: tokio_postgres::Error| err(source, db_message(&e, url));
    let mut decoder = decoder(schema, BATCH_ROWS);
    // The bytes of the rows in the decoder, kept to find a bad row when a batch fails.
    let mut pending: Vec<u8> = Vec::new();
    let mut first_row = 1u64;
    let stream = client.copy_out(copy).await.map_err(db)?;
    futures::pin_mut!(stream);
    let mut done = false;
    while !done {
        let bytes = match stream.next().await {
            Some(b) => b.map_err(db)?,
            None => {
                done = true;
                bytes::Bytes::new()
            }
        };
        let mut at = 0;
        loop {
            let used = match decoder.decode(&bytes[at..]) {
                Ok(n) => n,
                Err(e) => return Err(err(source, format!("malformed COPY output: {e}"))),
            };
            pending.extend_from_slice(&bytes[at..at + used]);
            at += used;
            let full = decoder.capacity() == 0;
            if full || (done && at >= bytes.len()) {
                let chunk = match decoder.flush() {
                    Ok(batch) => {
                        let records = batch.as_ref().map_or(0, |b| b.num_rows() as u64);
                        Chunk {
                            batch,
                            rejects: Vec::new(),
                            records,
                        }
                    }
                    Err(_) => salvage(schema, &pending, first_row),
                };
                first_row += chunk.records;
                pending.clear();
                if chunk.records > 0 && tx.send(chunk).await.is_err() {
                    return Ok(());
                }
            }
            if at >= bytes.len() || (used == 0 && !full) {
                break;
            }
        }
    }
    Ok(())
}

/// One parallel range on its own connection, in the exported snapshot.
pub(super) async fn read_range(
    url: &str,
    snapshot: &str,
    copy: &str,
    schema: &SchemaRef,
    source: &DatabaseSource,
    tx: &tokio::sync::mpsc::Sender<Chunk>,
) -> Result<()> {
    let db = |e: tokio_postgres::Error| err(source, db_message(&e, url));
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(db)?;
    let conn_task = tokio::spawn(connection);
    let begin = format!(
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT {}; \
         SET LOCAL TimeZone = 'UTC'; SET LOCAL extra_float_digits = 3",
        quote_literal(snapshot)
    );
    client.batch_execute(&begin).await.map_err(db)?;
    copy_into(&client, copy, schema, source, url, tx).await?;
    client.batch_execute("COMMIT").await.map_err(db)?;
    drop(client);
    let _ = conn_task.await;
    Ok(())
}

/// Runs the writer until every reader is done; the first error of either wins.
pub(super) async fn written_and_read(
    writer: impl std::future::Future<Output = Result<()>>,
    readers: &mut tokio::task::JoinSet<Result<()>>,
) -> Result<()> {
    let all_read = async {
        while let Some(done) = readers.join_next().await {
            match done {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(e) => {
                    return Err(BronzeError::Database {
                        system: "PostgreSQL",
                        what: "range reader".into(),
                        message: e.to_string(),
                    });
                }
            }
        }
        Ok(())
    };
    let (written, read) = tokio::join!(writer, all_read);
    read?;
    written
}

/// `n` conditions covering every value of integer column `c` between `lo` and `hi` (NULLs
/// in the first), each range about the same width.
pub(super) fn ranges(c: &str, lo: Option<i64>, hi: Option<i64>, n: u32) -> Vec<String> {
    let (Some(lo), Some(hi)) = (lo, hi) else {
        return vec!["TRUE".into()];
    };
    let span = (i128::from(hi) - i128::from(lo) + 1).max(1);
    let n = i128::from(n).min(span);
    let mut out = Vec::new();
    for i in 0..n {
        let from = i128::from(lo) + span * i / n;
        let to = i128::from(lo) + span * (i + 1) / n; // exclusive
        let mut cond = if i + 1 == n {
            format!("{c} >= {from}")
        } else {
            format!("{c} >= {from} AND {c} < {to}")
        };
        if i == 0 {
            cond = format!("({cond}) OR {c} IS NULL");
        }
        out.push(cond);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::ranges;

    #[test]
    fn ranges_cover_every_value_once_and_nulls() {
        assert_eq!(
            ranges("c", Some(1), Some(10), 3),
            vec![
                "(c >= 1 AND c < 4) OR c IS NULL",
                "c >= 4 AND c < 7",
                "c >= 7"
            ]
        );
        assert_eq!(
            ranges("c", Some(5), Some(5), 4),
            vec!["(c >= 5) OR c IS NULL"]
        );
        assert_eq!(ranges("c", None, None, 4), vec!["TRUE"]);
        let wide = ranges("c", Some(i64::MIN), Some(i64::MAX), 2);
        assert_eq!(wide.len(), 2);
    }
}
