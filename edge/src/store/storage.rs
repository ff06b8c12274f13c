//! The key table store's durable state, in its Durable Object's SQLite storage.
//!
//! - `snapshot_chunks`: the table at some sequence, KPSN-encoded, in 1 MiB chunks (written and
//!   read a chunk at a time, and sent to isolates as they are: see `KeyTableStore`);
//! - `change_batches`: the change batches applied since, KPCB-encoded, by last sequence;
//! - `lineage`: one row: the feed history the table comes from, the feed chain at the stored
//!   snapshot's sequence (the chain at the table's own sequence follows by replaying the
//!   batches), and the store's generation (random, new on every snapshot load, so isolates
//!   know to drop their copy);
//! - `batches_head`: one row: the feed chain after the last stored batch and its sequence, so a
//!   restarted store knows where storage stands without replaying the batches (trusted only
//!   when its sequence is the last batch's);
//! - `push_nonces`: nonces of accepted pushes until their signature's window has passed.
//!
//! A storage written before lineages existed has no `lineage` row: its table is then of an
//! unknown history, and the store reloads a snapshot on its first pull.

use keyplane_shared::ids::HistoryId;
use keyplane_shared::table::codec::{
    CodecError, SnapshotDecoder, decode_changes, encode_changes_within, encode_snapshot_in_pieces,
    snapshot_sequence,
};
use keyplane_shared::table::lineage::{apply_following, follow};
use keyplane_shared::{Change, FeedChain, KeyTable, Lineage};
use worker::{Result, SqlStorage, SqlStorageValue, console_error};

const CHUNK_BYTES: usize = 1 << 20;

/// What the storage holds, read back on an object's first use.
pub struct Stored {
    /// The table (the snapshot plus every stored batch).
    pub table: KeyTable,
    /// Its lineage at its sequence, if known.
    pub lineage: Option<Lineage>,
    /// The store's generation.
    pub generation: u64,
    /// Whether the table is exactly what storage holds (it is not when storage did not
    /// decode, or its batches have a gap): only then can isolates be sent storage's copy.
    pub matches_storage: bool,
}

/// Creates the tables on an object's first start (a no-op afterwards).
pub fn create_tables(sql: &SqlStorage) {
    for statement in [
        "CREATE TABLE IF NOT EXISTS snapshot_chunks (idx INTEGER PRIMARY KEY, bytes BLOB NOT NULL)",
        "CREATE TABLE IF NOT EXISTS change_batches (last_seq INTEGER PRIMARY KEY, body BLOB NOT NULL)",
        "CREATE TABLE IF NOT EXISTS push_nonces (nonce TEXT PRIMARY KEY, expires_at INTEGER NOT NULL)",
        "CREATE TABLE IF NOT EXISTS lineage (id INTEGER PRIMARY KEY CHECK (id = 1), \
         history BLOB NOT NULL, snapshot_chain BLOB NOT NULL, generation INTEGER NOT NULL)",
        "CREATE TABLE IF NOT EXISTS batches_head (id INTEGER PRIMARY KEY CHECK (id = 1), \
         last_seq INTEGER NOT NULL, chain BLOB NOT NULL)",
    ] {
        if let Err(error) = sql.exec(statement, None) {
            console_error!("key table store: creating its tables failed: {error}");
        }
    }
}

/// Reads the stored snapshot, replays the stored batches after it, and reads the lineage.
/// Storage that does not decode is reported and read as empty: the first pull then loads a
/// snapshot from the control plane.
pub fn read(sql: &SqlStorage) -> Stored {
    match try_read(sql) {
        Ok(stored) => stored,
        Err(error) => {
            console_error!(
                "key table store: its storage does not decode ({error}); starting empty, \
                 the next pull loads a snapshot"
            );
            Stored {
                table: KeyTable::new(),
                lineage: None,
                generation: 0,
                matches_storage: false,
            }
        }
    }
}

/// [`read`], with what fails to read or decode as an error.
pub fn try_read(sql: &SqlStorage) -> Result<Stored> {
    // A chunk at a time: the encoded snapshot is never held whole beside the table.
    let mut decoder: Option<SnapshotDecoder> = None;
    for row in sql
        .exec("SELECT bytes FROM snapshot_chunks ORDER BY idx", None)?
        .raw()
    {
        if let Some(SqlStorageValue::Blob(chunk)) = row?.into_iter().next() {
            decoder
                .get_or_insert_with(SnapshotDecoder::new)
                .push(&chunk)
                .map_err(stored_snapshot_error)?;
        }
    }
    let mut table = match decoder {
        None => KeyTable::new(),
        Some(decoder) => match decoder.finish().map_err(stored_snapshot_error)? {
            (table, rest) if rest.is_empty() => table,
            _ => return Err(stored_snapshot_error(CodecError::TrailingBytes)),
        },
    };
    let (mut lineage, generation) = read_lineage(sql)?;
    let mut gap = false;
    for_each_stored_batch(sql, |changes| {
        gap = changes
            .iter()
            .any(|change| apply_following(&mut table, lineage.as_mut(), change).is_err());
        !gap
    })?;
    if gap {
        console_error!("key table store: stored batches have a gap; the next pull fills it");
    }
    Ok(Stored {
        table,
        lineage,
        generation,
        matches_storage: !gap,
    })
}

/// Where the stored table stands, read without building it (see `unloaded`).
pub struct Head {
    /// The sequence of its last stored change.
    pub seq: u64,
    /// Its lineage at that sequence.
    pub lineage: Lineage,
    /// Its generation.
    pub generation: u64,
}

/// Where the stored table stands, without building it: the stored snapshot's sequence (from
/// its first chunk's header) and lineage, moved to the last stored batch by the `batches_head`
/// row when it names that batch, else carried through the batches by [`follow`], the rule a
/// table applying them follows. `None` when the table must be read whole ([`read`]): no first
/// chunk or no lineage stored, a first chunk that is not a snapshot's, or a gap in the stored
/// changes. The rest of the snapshot is not read here: isolates decode (and check) it
/// as they receive it, and one that cannot makes the store build its table (`unloaded`).
pub fn read_head(sql: &SqlStorage) -> Result<Option<Head>> {
    let first = first_row(sql, "SELECT bytes FROM snapshot_chunks WHERE idx = 0", None)?;
    let Some(SqlStorageValue::Blob(first)) = first.and_then(|row| row.into_iter().next()) else {
        return Ok(None);
    };
    let Ok(mut seq) = snapshot_sequence(&first) else {
        return Ok(None);
    };
    let (Some(mut lineage), generation) = read_lineage(sql)? else {
        return Ok(None);
    };
    let last_batch = first_row(sql, "SELECT MAX(last_seq) FROM change_batches", None)?;
    let last_batch =
        u64::try_from(integer(last_batch.as_ref().and_then(|row| row.first()))).unwrap_or(0);
    if last_batch == 0 {
        return Ok(Some(Head {
            seq,
            lineage,
            generation,
        }));
    }
    if let Some((head_seq, chain)) = read_batches_head(sql)?
        && head_seq == last_batch
        && head_seq > seq
    {
        return Ok(Some(Head {
            seq: head_seq,
            lineage: Lineage {
                history: lineage.history,
                chain,
            },
            generation,
        }));
    }
    // No head row for these batches (written before it existed, or its write failed): the
    // chain is carried through them.
    let mut gap = false;
    for_each_stored_batch(sql, |changes| {
        gap = changes
            .iter()
            .any(|change| follow(&mut seq, &mut lineage, change).is_err());
        !gap
    })?;
    Ok((!gap).then_some(Head {
        seq,
        lineage,
        generation,
    }))
}

/// Decodes the stored change batches in order, one at a time, handing each to `take` until it
/// answers `false`.
fn for_each_stored_batch(
    sql: &SqlStorage,
    mut take: impl FnMut(Vec<Change>) -> bool,
) -> Result<()> {
    for row in sql
        .exec("SELECT body FROM change_batches ORDER BY last_seq", None)?
        .raw()
    {
        let Some(SqlStorageValue::Blob(body)) = row?.into_iter().next() else {
            continue;
        };
        let changes = decode_changes(&body)
            .map_err(|error| worker::Error::RustError(format!("stored changes: {error}")))?;
        if !take(changes) {
            break;
        }
    }
    Ok(())
}

/// The lineage row: the lineage at the stored snapshot's sequence, and the generation.
fn read_lineage(sql: &SqlStorage) -> Result<(Option<Lineage>, u64)> {
    let row = first_row(
        sql,
        "SELECT history, snapshot_chain, generation FROM lineage WHERE id = 1",
        None,
    )?;
    let Some(row) = row else {
        return Ok((None, 0));
    };
    let mut values = row.into_iter();
    let blob = |value: Option<SqlStorageValue>| match value {
        Some(SqlStorageValue::Blob(bytes)) => Some(bytes),
        _ => None,
    };
    let history = blob(values.next())
        .and_then(|bytes| <[u8; 16]>::try_from(bytes).ok())
        .map(HistoryId::from_bytes);
    let chain = blob(values.next())
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .map(FeedChain::from_bytes);
    let generation = u64::try_from(integer(values.next().as_ref())).unwrap_or(0);
    let lineage = history
        .zip(chain)
        .map(|(history, chain)| Lineage { history, chain });
    Ok((lineage, generation))
}

fn stored_snapshot_error(error: CodecError) -> worker::Error {
    worker::Error::RustError(format!("stored snapshot: {error}"))
}

/// The first row `query` gives, if any.
fn first_row(
    sql: &SqlStorage,
    query: &str,
    bindings: impl Into<Option<Vec<SqlStorageValue>>>,
) -> Result<Option<Vec<SqlStorageValue>>> {
    sql.exec(query, bindings)?.raw().next().transpose()
}

/// An integer column's value; 0 for anything else (there is no row, or the column is NULL).
fn integer(value: Option<&SqlStorageValue>) -> i64 {
    match value {
        Some(SqlStorageValue::Integer(value)) => *value,
        _ => 0,
    }
}

/// How many chunks the stored snapshot has (0: none was ever written).
pub fn snapshot_chunk_count(sql: &SqlStorage) -> Result<i64> {
    let row = first_row(sql, "SELECT COUNT(*) FROM snapshot_chunks", None)?;
    Ok(integer(row.as_ref().and_then(|row| row.first())))
}

/// The stored snapshot's chunk `index` (counting from 0).
pub fn snapshot_chunk(sql: &SqlStorage, index: i64) -> Result<Vec<u8>> {
    let row = first_row(
        sql,
        "SELECT bytes FROM snapshot_chunks WHERE idx = ?",
        vec![index.into()],
    )?;
    match row.and_then(|row| row.into_iter().next()) {
        Some(SqlStorageValue::Blob(bytes)) => Ok(bytes),
        _ => Err(worker::Error::RustError(format!(
            "stored snapshot: chunk {index} is missing"
        ))),
    }
}

/// Every change stored after the stored snapshot, in order.
pub fn stored_changes(sql: &SqlStorage) -> Result<Vec<Change>> {
    let mut all = Vec::new();
    for_each_stored_batch(sql, |changes| {
        all.extend(changes);
        true
    })?;
    Ok(all)
}

/// Writes `table` as the stored snapshot with its lineage and the generation, and drops the
/// stored batches; all in one synchronous run, which the runtime commits atomically.
pub fn write_snapshot(
    sql: &SqlStorage,
    table: &KeyTable,
    lineage: Option<Lineage>,
    generation: u64,
) -> Result<()> {
    sql.exec("DELETE FROM snapshot_chunks", None)?;
    sql.exec("DELETE FROM change_batches", None)?;
    sql.exec("DELETE FROM batches_head", None)?;
    // A chunk at a time, as it is encoded: the snapshot is never held whole beside the table.
    let mut index = 0i64;
    encode_snapshot_in_pieces(table, CHUNK_BYTES, |chunk| {
        sql.exec(
            "INSERT INTO snapshot_chunks (idx, bytes) VALUES (?, ?)",
            vec![index.into(), chunk.to_vec().into()],
        )?;
        index += 1;
        Ok::<(), worker::Error>(())
    })?;
    write_lineage(sql, lineage, generation)
}

/// Replaces the lineage row (the lineage at the stored snapshot's sequence).
pub fn write_lineage(sql: &SqlStorage, lineage: Option<Lineage>, generation: u64) -> Result<()> {
    sql.exec("DELETE FROM lineage", None)?;
    if let Some(lineage) = lineage {
        sql.exec(
            "INSERT INTO lineage (id, history, snapshot_chain, generation) VALUES (1, ?, ?, ?)",
            vec![
                lineage.history.to_bytes().to_vec().into(),
                lineage.chain.to_bytes().to_vec().into(),
                seq_value(generation),
            ],
        )?;
    }
    Ok(())
}

/// The change batches stored after the stored snapshot: what the last piece of a snapshot
/// answer to an isolate gathers into one batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StoredBatches {
    /// How many batches.
    pub batches: i64,
    /// Their encoded bytes, together.
    pub bytes: i64,
}

/// Appends a batch of applied changes; what is stored after the snapshot now. A batch whose
/// encoding passes [`CHUNK_BYTES`] is stored as several, each under the 2 MB a storage row
/// holds: the control plane sends at most 1 MiB at once, but a push may be up to 8 MiB
/// (`sync::MAX_PUSH_BYTES`).
///
/// `chain_after` (the feed chain after the last change, when the lineage is known) goes in the
/// `batches_head` row, written after the batch: a restarted store reads where storage stands
/// from it ([`read_head`]).
pub fn append_batch(
    sql: &SqlStorage,
    changes: &[Change],
    chain_after: Option<FeedChain>,
) -> Result<StoredBatches> {
    for (last_seq, body) in encoded_pieces(changes, CHUNK_BYTES) {
        sql.exec(
            "INSERT OR REPLACE INTO change_batches (last_seq, body) VALUES (?, ?)",
            vec![seq_value(last_seq), body.into()],
        )?;
    }
    if let (Some(chain), Some(last)) = (chain_after, changes.last()) {
        sql.exec(
            "INSERT OR REPLACE INTO batches_head (id, last_seq, chain) VALUES (1, ?, ?)",
            vec![seq_value(last.seq), chain.to_bytes().to_vec().into()],
        )?;
    }
    stored_batches(sql)
}

/// The `batches_head` row: the sequence of the last batch written with it, and the chain
/// after it.
fn read_batches_head(sql: &SqlStorage) -> Result<Option<(u64, FeedChain)>> {
    let Some(row) = first_row(
        sql,
        "SELECT last_seq, chain FROM batches_head WHERE id = 1",
        None,
    )?
    else {
        return Ok(None);
    };
    let seq = u64::try_from(integer(row.first())).unwrap_or(0);
    let chain = match row.get(1) {
        Some(SqlStorageValue::Blob(bytes)) => <[u8; 32]>::try_from(bytes.as_slice()).ok(),
        _ => None,
    };
    Ok(chain.map(|chain| (seq, FeedChain::from_bytes(chain))))
}

/// `changes` encoded as consecutive batches of at most `limit` bytes each (a single change
/// over it stays whole), each with the sequence of its last change.
fn encoded_pieces(mut changes: &[Change], limit: usize) -> Vec<(u64, Vec<u8>)> {
    let mut pieces = Vec::new();
    // Ends at the empty part that `changes` gives once every change is taken.
    while let (piece @ [.., last], body) = encode_changes_within(changes, limit) {
        pieces.push((last.seq, body));
        changes = &changes[piece.len()..];
    }
    pieces
}

/// The change batches stored after the stored snapshot.
pub fn stored_batches(sql: &SqlStorage) -> Result<StoredBatches> {
    let row = first_row(
        sql,
        "SELECT COUNT(*), COALESCE(SUM(LENGTH(body)), 0) FROM change_batches",
        None,
    )?
    .unwrap_or_default();
    Ok(StoredBatches {
        batches: integer(row.first()),
        bytes: integer(row.get(1)),
    })
}

/// Records a push's nonce, forgetting the expired ones first; `false` if it was seen before.
pub fn remember_nonce(sql: &SqlStorage, nonce: &str, expires_at: i64, now: i64) -> Result<bool> {
    sql.exec(
        "DELETE FROM push_nonces WHERE expires_at < ?",
        vec![now.into()],
    )?;
    let seen = sql
        .exec(
            "SELECT 1 FROM push_nonces WHERE nonce = ?",
            vec![nonce.into()],
        )?
        .raw()
        .next()
        .is_some();
    if seen {
        return Ok(false);
    }
    sql.exec(
        "INSERT INTO push_nonces (nonce, expires_at) VALUES (?, ?)",
        vec![nonce.into(), expires_at.into()],
    )?;
    Ok(true)
}

fn seq_value(seq: u64) -> SqlStorageValue {
    SqlStorageValue::Integer(i64::try_from(seq).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyplane_shared::table::codec::encode_changes;
    use keyplane_shared::{
        ChangeOp, Environment, KeyId, KeyStatus, LookupDigest, OrgId, ScopeSet, TableEntry,
    };

    fn upsert(seq: u64) -> Change {
        let mut digest = [0u8; 32];
        digest[..8].copy_from_slice(&seq.to_le_bytes());
        Change {
            seq,
            op: ChangeOp::Upsert(TableEntry {
                digest: LookupDigest::from_bytes(digest),
                key_id: KeyId::from_bytes(u128::from(seq).to_be_bytes()),
                org_id: OrgId::from_bytes([3; 16]),
                env: Environment::Live,
                status: KeyStatus::Active,
                expires_at: None,
                scopes: ScopeSet::empty(),
                rate_limit: None,
            }),
        }
    }

    #[test]
    fn a_batch_past_the_limit_is_stored_as_consecutive_pieces_under_it() {
        let changes: Vec<Change> = (1..=3_000).map(upsert).collect();
        let whole = encode_changes(&changes).len();
        let limit = whole / 5;
        let pieces = encoded_pieces(&changes, limit);
        assert!(pieces.len() >= 5, "{} pieces", pieces.len());
        let mut decoded = Vec::new();
        for (last_seq, body) in &pieces {
            assert!(body.len() <= limit, "{} bytes over {limit}", body.len());
            let piece = decode_changes(body).expect("decodes");
            assert_eq!(piece.last().map(|change| change.seq), Some(*last_seq));
            decoded.extend(piece);
        }
        assert_eq!(decoded, changes, "the pieces hold the batch, in order");
    }

    #[test]
    fn a_batch_under_the_limit_is_one_piece_and_a_lone_change_is_never_split() {
        let changes: Vec<Change> = (1..=10).map(upsert).collect();
        let body = encode_changes(&changes);
        assert_eq!(encoded_pieces(&changes, body.len()), vec![(10, body)]);
        let lone = [upsert(7)];
        assert_eq!(
            encoded_pieces(&lone, 1),
            vec![(7, encode_changes(&lone))],
            "a change over the limit stays whole"
        );
        assert!(encoded_pieces(&[], 1).is_empty());
    }
}
