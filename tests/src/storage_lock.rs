//! A storage fault for the edge's Durable Object: another process holds the write lock of the
//! object's SQLite file (in the edge's persist directory), so every write the store makes
//! fails with `SQLITE_BUSY` while reads go on (the file is in WAL mode). Held by a `python3`
//! child (its standard library has SQLite); released when it is dropped or killed, as the
//! lock of a process that exits is.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{Context as _, Result, bail};

/// Finds the store's database (not the runtime's `metadata.sqlite`), waits up to 5 s for the
/// runtime's own write to end, takes the write lock and holds it until stdin closes.
const HOLD_LOCK: &str = r#"
import glob, sqlite3, sys
found = [f for f in glob.glob(sys.argv[1] + "/*KeyTableStore/*.sqlite")
         if not f.endswith("/metadata.sqlite")]
if len(found) != 1:
    sys.exit("expected one key table store database, found %r" % found)
db = sqlite3.connect(found[0], timeout=5, isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.read()
"#;

/// The write lock of an edge's key table store, held until dropped.
pub struct StorageLock {
    child: Child,
}

impl StorageLock {
    /// Takes the lock of the store persisted under `persist_dir`.
    pub fn hold(persist_dir: &Path) -> Result<Self> {
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(HOLD_LOCK)
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
