//! The persistent part of the store on disk: `<data-dir>/naming.redb` (persistent
//! instances) and `<data-dir>/config.redb` (configurations), each read once at start and
//! written by a thread of its own, in batches, outside the store lock.

use std::path::Path;
use std::sync::mpsc;

use redb::{Database, ReadableTable, TableDefinition};
use tokio::sync::oneshot;

use super::{Instance, ServiceKey};

const PERSISTENT: TableDefinition<'static, &str, &str> =
    TableDefinition::new("persistent_instances");

/// The table of configurations in `config.redb`.
pub(crate) const CONFIGS: TableDefinition<'static, &str, &str> = TableDefinition::new("configs");

/// Opens (or creates) `<dir>/<file>` with `table`: its rows, and the writer of later
/// changes.
pub(crate) fn open_table(
    dir: &Path,
    file: &str,
    table: TableDefinition<'static, &'static str, &'static str>,
) -> Result<(Writer, Vec<(String, String)>), String> {
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create data dir {}: {e}", dir.display()))?;
    let path = dir.join(file);
    let db = Database::create(&path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    {
        let tx = db.begin_write().map_err(|e| e.to_string())?;
        tx.open_table(table).map_err(|e| e.to_string())?;
        tx.commit().map_err(|e| e.to_string())?;
    }
    let mut rows = Vec::new();
    {
        let tx = db.begin_read().map_err(|e| e.to_string())?;
        let t = tx.open_table(table).map_err(|e| e.to_string())?;
        for row in t.iter().map_err(|e| e.to_string())? {
            let (k, v) = row.map_err(|e| e.to_string())?;
            rows.push((k.value().to_owned(), v.value().to_owned()));
        }
    }
    tracing::info!(path = %path.display(), rows = rows.len(), "stored data loaded");
    Ok((Writer::start(db, table)?, rows))
}

/// Opens (or creates) `<dir>/naming.redb`: the instances stored in it, and the writer of
/// later changes.
pub(super) fn open(dir: &Path) -> Result<(Writer, Vec<(ServiceKey, Instance)>), String> {
    let (writer, rows) = open_table(dir, "naming.redb", PERSISTENT)?;
    let mut stored = Vec::new();
    for (k, v) in rows {
        let mut parts = k.splitn(3, '\n');
        let (Some(ns), Some(grouped)) = (parts.next(), parts.next()) else {
            tracing::warn!(key = %k, "skipping a malformed stored instance");
            continue;
        };
        match serde_json::from_str::<Instance>(&v) {
            Ok(inst) => {
                let key = ServiceKey {
                    namespace: ns.to_owned(),
                    grouped: grouped.to_owned(),
                };
                stored.push((key, inst));
            }
            Err(e) => tracing::warn!(error = %e, "skipping an unreadable stored instance"),
        }
    }
    Ok((writer, stored))
}

/// The key of a stored instance: namespace, grouped name, cluster, IP and port.
pub(super) fn db_key(key: &ServiceKey, cluster: &str, ip: &str, port: u16) -> String {
    format!(
        "{}\n{}\n{}\n{}\n{}",
        key.namespace, key.grouped, cluster, ip, port
    )
}

/// Completion of a write to disk: resolves once the write is committed (or failed).
pub(crate) type Flush = oneshot::Receiver<Result<(), String>>;

/// The outcome of a registration or removal.
#[must_use]
pub(crate) struct Change {
    /// Whether anything visible changed.
    pub changed: bool,
    /// Set when the change is written to disk: wait for it outside the store lock.
    pub flush: Option<Flush>,
}

impl Change {
    pub(super) fn memory(changed: bool) -> Change {
        Change {
            changed,
            flush: None,
        }
    }

    /// Waits for the disk write, if any (never under the store lock).
    pub async fn flushed(self) -> Result<bool, String> {
        if let Some(f) = self.flush {
            f.await
                .map_err(|_| "storage closed".to_owned())
                .and_then(|r| r)?;
        }
        Ok(self.changed)
    }

    /// Waits for the disk write from a thread that is not a runtime thread.
    #[cfg(test)]
    pub fn flushed_blocking(self) -> Result<bool, String> {
        if let Some(f) = self.flush {
            f.blocking_recv()
                .map_err(|_| "storage closed".to_owned())
                .and_then(|r| r)?;
        }
        Ok(self.changed)
    }
}

struct WriteOp {
    key: String,
    /// `None` removes.
    value: Option<String>,
    done: oneshot::Sender<Result<(), String>>,
}

/// The redb database, written by a thread of its own: writes queued under the store lock
/// are committed in batches (one fsync for many), never while the lock is held.
pub(crate) struct Writer {
    tx: Option<mpsc::Sender<WriteOp>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(
        db: Database,
        table: TableDefinition<'static, &'static str, &'static str>,
    ) -> Result<Writer, String> {
        let (tx, rx) = mpsc::channel::<WriteOp>();
        let thread = std::thread::Builder::new()
            .name("naming-redb".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    while batch.len() < 4096 {
                        match rx.try_recv() {
                            Ok(op) => batch.push(op),
                            Err(_) => break,
                        }
                    }
                    let result = Writer::commit(&db, table, &batch);
                    if let Err(e) = &result {
                        tracing::error!(error = %e, writes = batch.len(), "cannot store data");
                    }
                    for op in batch {
                        let _ = op.done.send(result.clone());
                    }
                }
                drop(db);
            })
            .map_err(|e| format!("cannot start the storage thread: {e}"))?;
        Ok(Writer {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    fn commit(
        db: &Database,
        table: TableDefinition<'static, &'static str, &'static str>,
        batch: &[WriteOp],
    ) -> Result<(), String> {
        let tx = db.begin_write().map_err(|e| e.to_string())?;
        {
            let mut table = tx.open_table(table).map_err(|e| e.to_string())?;
            for op in batch {
                match &op.value {
                    None => {
                        table.remove(op.key.as_str()).map_err(|e| e.to_string())?;
                    }
                    Some(v) => {
                        table
                            .insert(op.key.as_str(), v.as_str())
                            .map_err(|e| e.to_string())?;
                    }
                }
            }
        }
        tx.commit().map_err(|e| e.to_string())
    }

    pub(crate) fn send(&self, key: String, value: Option<String>) -> Result<Flush, String> {
        let (done, flush) = oneshot::channel();
        self.tx
            .as_ref()
            .ok_or_else(|| "storage closed".to_owned())?
            .send(WriteOp { key, value, done })
            .map_err(|_| "storage closed".to_owned())?;
        Ok(flush)
    }

    /// Stops taking writes; returns the thread, which ends once the queued writes are
    /// committed (and then closes the database).
    pub(crate) fn close(&mut self) -> Option<std::thread::JoinHandle<()>> {
        self.tx.take();
        self.thread.take()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Some(t) = self.close() {
            let _ = t.join();
        }
    }
}
