//! The store's snapshot answer to an isolate, sent from storage as it is read.
//!
//! An isolate that needs the whole table gets storage's own copy: the stored snapshot's 1 MiB
//! chunks exactly as they were written, then one change batch holding the changes stored after
//! that snapshot. Nothing is encoded, and the store holds one chunk at a time, where encoding
//! its table would take 48 MB beside it at 1M keys. This is only sent while storage holds
//! exactly the store's table (the store encodes the table itself after a failed write), and a
//! snapshot written while it is under way (a compaction, a reload) ends it with an error: the
//! chunks it would go on reading belong to another snapshot. The isolate then reads again.

use std::cell::Cell;
use std::rc::Rc;

use keyplane_shared::KeyTable;
use keyplane_shared::table::codec::{encode_changes, encode_snapshot};
use worker::{Response, Result, SqlStorage};

use super::storage;

/// One piece of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece {
    /// Stored snapshot chunk `n` (counting from 0).
    Chunk(i64),
    /// No snapshot is stored yet: the snapshot of an empty table, which the stored changes
    /// start from.
    EmptySnapshot,
    /// The changes stored after the snapshot, as one batch: the last piece.
    Changes,
    /// A snapshot was written since the answer started: it ends with an error.
    Replaced,
}

/// The piece at `index` of an answer begun when storage held `chunks` snapshot chunks;
/// `replaced` when a snapshot was written since. `None` past the end.
fn piece(index: i64, chunks: i64, replaced: bool) -> Option<Piece> {
    let snapshot_pieces = chunks.max(1);
    if index > snapshot_pieces {
        None
    } else if replaced {
        Some(Piece::Replaced)
    } else if index == snapshot_pieces {
        Some(Piece::Changes)
    } else if chunks == 0 {
        Some(Piece::EmptySnapshot)
    } else {
        Some(Piece::Chunk(index))
    }
}

/// Whether nothing follows `piece`.
fn is_last(piece: Piece) -> bool {
    matches!(piece, Piece::Changes | Piece::Replaced)
}

/// The answer: a body streamed a piece at a time, each read from storage when the isolate
/// asks for it. `epoch` moves on every snapshot write.
pub fn send(sql: SqlStorage, epoch: &Rc<Cell<u64>>) -> Result<Response> {
    let chunks = storage::snapshot_chunk_count(&sql)?;
    let epoch = Rc::clone(epoch);
    let started_in = epoch.get();
    let pieces = futures_util::stream::unfold(Some(0i64), move |next| {
        let (sql, epoch) = (sql.clone(), Rc::clone(&epoch));
        async move {
            let index = next?;
            let piece = piece(index, chunks, epoch.get() != started_in)?;
            let bytes = match piece {
                Piece::Chunk(n) => storage::snapshot_chunk(&sql, n),
                Piece::EmptySnapshot => Ok(encode_snapshot(&KeyTable::new())),
                Piece::Changes => storage::stored_changes(&sql).map(|c| encode_changes(&c)),
                Piece::Replaced => Err(worker::Error::RustError(
                    "the stored snapshot was replaced while it was being sent".into(),
                )),
            };
            let next = (!is_last(piece)).then_some(index + 1);
            Some((bytes, next))
        }
    });
    Response::from_stream(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every piece of an answer, as the stream takes them, with a snapshot written before
    /// piece `replaced_at` if given.
    fn answer(chunks: i64, replaced_at: Option<i64>) -> Vec<Piece> {
        let mut pieces = Vec::new();
        let mut next = Some(0);
        while let Some(index) = next {
            let replaced = replaced_at.is_some_and(|at| index >= at);
            let Some(piece) = piece(index, chunks, replaced) else {
                break;
            };
            pieces.push(piece);
            next = (!is_last(piece)).then_some(index + 1);
        }
        pieces
    }

    #[test]
    fn the_stored_chunks_come_in_order_then_the_changes_after_them() {
        assert_eq!(
            answer(3, None),
            [
                Piece::Chunk(0),
                Piece::Chunk(1),
                Piece::Chunk(2),
                Piece::Changes
            ]
        );
        assert_eq!(answer(1, None), [Piece::Chunk(0), Piece::Changes]);
    }

    #[test]
    fn with_no_snapshot_stored_the_changes_follow_an_empty_table() {
        assert_eq!(answer(0, None), [Piece::EmptySnapshot, Piece::Changes]);
    }

    #[test]
    fn a_snapshot_written_meanwhile_ends_the_answer_with_an_error() {
        assert_eq!(
            answer(3, Some(2)),
            [Piece::Chunk(0), Piece::Chunk(1), Piece::Replaced]
        );
        assert_eq!(answer(3, Some(0)), [Piece::Replaced]);
        assert_eq!(
            answer(2, Some(2)),
            [Piece::Chunk(0), Piece::Chunk(1), Piece::Replaced],
            "not even the changes: they are the new snapshot's"
        );
    }

    #[test]
    fn nothing_follows_the_end() {
        assert_eq!(piece(4, 3, false), None);
        assert_eq!(piece(2, 0, false), None);
    }
}
