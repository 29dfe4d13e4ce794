//! Connection slots of the small HTTP/telnet listeners (QoS, metrics) that make room for a
//! newcomer by closing the connection that is least useful, instead of refusing the
//! newcomer: a client that opens connections and sends nothing cannot lock a probe out.
//!
//! Each connection reports how far it got ([`Stage`]); at the limit the oldest connection
//! that has not sent anything is closed, else the oldest that is between requests or
//! still sending one; a connection that is answering is never closed. Only when every
//! slot is answering is the newcomer refused.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// How far a connection got; lower stages are closed first to make room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub(crate) enum Stage {
    /// Nothing received yet.
    Silent = 0,
    /// Between requests, or a request still arriving.
    Idle = 1,
    /// Answering a request or running a command.
    Busy = 2,
}

struct Entry {
    stage: Arc<AtomicU8>,
    evict: Arc<Notify>,
}

/// At most `max` connections, making room as described above.
pub(crate) struct Slots {
    max: usize,
    open: Mutex<(u64, BTreeMap<u64, Entry>)>,
}

/// One connection's slot: report its stage, learn when it is closed to make room; the
/// slot is freed when this is dropped.
pub(crate) struct Slot {
    slots: Arc<Slots>,
    id: u64,
    stage: Arc<AtomicU8>,
    evict: Arc<Notify>,
}

impl Slots {
    /// Room for `max` connections.
    pub(crate) fn new(max: usize) -> Arc<Slots> {
        Arc::new(Slots {
            max,
            open: Mutex::new((0, BTreeMap::new())),
        })
    }

    /// A slot for a new connection, closing the least useful one at the limit; `None` when
    /// every open connection is answering.
    pub(crate) fn acquire(self: &Arc<Slots>) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let (next, map) = &mut *open;
        if map.len() >= self.max {
            let victim = [Stage::Silent, Stage::Idle].into_iter().find_map(|stage| {
                map.iter()
                    .find(|(_, e)| e.stage.load(Ordering::Relaxed) == stage as u8)
                    .map(|(id, _)| *id)
            })?;
            if let Some(entry) = map.remove(&victim) {
                entry.evict.notify_one();
            }
        }
        let id = *next;
        *next += 1;
        let stage = Arc::new(AtomicU8::new(Stage::Silent as u8));
        let evict = Arc::new(Notify::new());
        map.insert(
            id,
            Entry {
                stage: stage.clone(),
                evict: evict.clone(),
            },
        );
        Some(Slot {
            slots: self.clone(),
            id,
            stage,
            evict,
        })
    }

    /// Open connections.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).1.len()
    }
}

impl Slot {
    /// Reports how far the connection got.
    pub(crate) fn set(&self, stage: Stage) {
        self.stage.store(stage as u8, Ordering::Relaxed);
    }

    /// A handle to report the stage from elsewhere (a request handler).
    pub(crate) fn stage_handle(&self) -> StageHandle {
        StageHandle(self.stage.clone())
    }

    /// Completes when the connection was closed to make room for a newer one.
    pub(crate) async fn evicted(&self) {
        self.evict.notified().await
    }
}

/// Reports a connection's stage (see [`Slot::stage_handle`]).
#[derive(Clone)]
pub(crate) struct StageHandle(Arc<AtomicU8>);

impl StageHandle {
    /// Reports how far the connection got.
    pub(crate) fn set(&self, stage: Stage) {
        self.0.store(stage as u8, Ordering::Relaxed);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|e| e.into_inner());
        open.1.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_oldest_silent_connection_makes_room_then_the_oldest_idle_never_a_busy_one() {
        let slots = Slots::new(3);
        let a = slots.acquire().unwrap();
        let b = slots.acquire().unwrap();
        let c = slots.acquire().unwrap();
        a.set(Stage::Busy);
        c.set(Stage::Idle);
        // b is the only silent one: it goes, although a is older.
        let d = slots.acquire().unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(1), b.evicted())
            .await
            .expect("b evicted");
        assert_eq!(slots.len(), 3);
        // d is silent now and c idle: d goes first (silent before idle).
        d.set(Stage::Busy);
        let e = slots.acquire().unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(1), c.evicted())
            .await
            .expect("c evicted");
        // a, d busy; e silent → e goes for f; then all busy → refused.
        e.set(Stage::Busy);
        assert!(slots.acquire().is_none());
        drop(a);
        assert!(slots.acquire().is_some());
        drop(b);
        drop(c);
    }
}
