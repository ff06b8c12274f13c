//! Faults of the edge's Durable Object storage, made from outside the runtime on the object's
//! SQLite file (in the edge's persist directory), by a `python3` child (its standard library
//! has SQLite; the file is in WAL mode, so the runtime sees what another process commits):
//!
//! - [`StorageLock`]: another process holds the file's write lock, so every write the store
//!   makes fails with `SQLITE_BUSY` while reads go on; released when dropped or killed, as the
//!   lock of a process that exits is;
//! - [`corrupt_stored_snapshot`]: the stored snapshot's bytes zeroed (all, or all but its
//!   header), so decoding it fails;
//! - [`forget_batches_head`]: storage as written before the `batches_head` row existed.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{Context as _, Result, bail};

use crate::Deployment;

/// Opens the store's database (not the runtime's `metadata.sqlite`) as `db`, waiting up to
/// 5 s for the runtime's own writes.
const OPEN_STORE: &str = r#"
import glob, sqlite3, sys
found = [f for f in glob.glob(sys.argv[1] + "/*KeyTableStore/*.sqlite")
         if not f.endswith("/metadata.sqlite")]
if len(found) != 1:
    sys.exit("expected one key table store database, found %r" % found)
db = sqlite3.connect(found[0], timeout=5, isolation_level=None)
"#;

/// Takes the write lock and holds it until stdin closes.
const HOLD_LOCK: &str = r#"
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.read()
"#;

/// Zeroes every stored snapshot chunk (same length: only the content goes), after the first
/// `keep` bytes of the first chunk (`keep` is the script's second argument).
const CORRUPT_SNAPSHOT: &str = r#"
keep = int(sys.argv[2])
zeroed = 0
for idx, data in db.execute("SELECT idx, bytes FROM snapshot_chunks").fetchall():
    kept = bytes(data[:keep]) if idx == 0 else b""
    db.execute("UPDATE snapshot_chunks SET bytes = ? WHERE idx = ?",
               (kept + bytes(len(data) - len(kept)), idx))
    zeroed += 1
print("zeroed %d" % zeroed, flush=True)
"#;

/// What [`corrupt_stored_snapshot`] leaves of the stored snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// Every byte zeroed: not even a snapshot's header.
    Whole,
    /// Every byte zeroed but the header (magic, version, sequence: 13 bytes), so the store
    /// takes it for a snapshot and only decoding it finds the damage.
    AfterHeader,
}

/// The write lock of an edge's key table store, held until dropped.
pub struct StorageLock {
    child: Child,
}

impl StorageLock {
    /// Takes the lock of the store of `d`'s edge `edge`.
    pub fn hold(d: &Deployment, edge: usize) -> Result<Self> {
        let persist_dir = persisted(d, edge)?;
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(format!("{OPEN_STORE}{HOLD_LOCK}"))
            .arg(persist_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting python3 to hold the store's lock")?;
        let stdout = child.stdout.take().context("the lock holder's stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let lock = Self { child };
        if line.trim() != "locked" {
            bail!("the store's lock was not taken (the holder said {line:?})");
        }
        Ok(lock)
    }
}

impl Drop for StorageLock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Zeroes the snapshot stored by `d`'s edge `edge` (it may be running) as `damage` says;
/// fails unless at least one chunk was stored.
pub fn corrupt_stored_snapshot(d: &Deployment, edge: usize, damage: Damage) -> Result<()> {
    let persist_dir = persisted(d, edge)?;
    let keep = match damage {
        Damage::Whole => 0,
        Damage::AfterHeader => 13,
    };
    let output = Command::new("python3")
        .arg("-c")
        .arg(format!("{OPEN_STORE}{CORRUPT_SNAPSHOT}"))
        .arg(persist_dir)
        .arg(keep.to_string())
        .output()
        .context("starting python3 to corrupt the stored snapshot")?;
    let said = String::from_utf8_lossy(&output.stdout);
    let zeroed = said
        .trim()
        .strip_prefix("zeroed ")
        .and_then(|count| count.parse::<u64>().ok());
    if !output.status.success() || zeroed.is_none_or(|count| count == 0) {
        bail!(
            "corrupting the stored snapshot: {said} {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// Deletes the `batches_head` row of `d`'s stopped edge `edge`, as storage written before the
/// row existed lacks it: the store then replays its stored batches to learn where it stands.
pub fn forget_batches_head(d: &Deployment, edge: usize) -> Result<()> {
    let output = Command::new("python3")
        .arg("-c")
        .arg(format!(
            "{OPEN_STORE}print(db.execute(\"DELETE FROM batches_head\").rowcount)"
        ))
        .arg(persisted(d, edge)?)
        .output()
        .context("starting python3 to delete the batches' head")?;
    let said = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() || said.trim() != "1" {
        bail!(
            "deleting the batches' head: {said} {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// Where `d`'s edge `edge` keeps its storage.
fn persisted(d: &Deployment, edge: usize) -> Result<&Path> {
    d.edges
        .get(edge)
        .and_then(|edge| edge.options.persist_dir.as_deref())
        .context("the edge persists its storage")
}
