//! Paging helpers shared by reads and subscriptions.

use crate::log::{Cursor, Log, Read, Slot};
use crate::record::{Page, Recorded};
use crate::stream::StreamState;

pub(crate) fn empty_page<T>(next: u64) -> Page<T> {
    Page {
        events: Vec::new(),
        next,
        is_end: true,
        truncated: 0,
    }
}

pub(crate) fn read_forward<T>(
    state: &StreamState<T>,
    from_version: u64,
    max_count: usize,
) -> Page<T> {
    let start = from_version.max(state.first_version);
    let truncated = state.first_version.saturating_sub(from_version);
    let offset = (start - state.first_version) as usize;
    let events: Vec<Recorded<T>> = state
        .events
        .iter()
        .skip(offset)
        .take(max_count)
        .cloned()
        .collect();
    let next = start + events.len() as u64;
    Page {
        events,
        next: next.max(from_version),
        is_end: next >= state.next_version,
        truncated,
    }
}

/// A log entry as a reader sees it: its global position, and its record unless retention
/// removed it.
pub(crate) struct Resolved<T> {
    pub(crate) position: u64,
    pub(crate) record: Option<Recorded<T>>,
}

/// Reads live entries from a log at `cursor` until `max_count` events or the published end;
/// `resolve` turns a slot (and its index) into the event it stands for.
pub(crate) fn read_log<S: Slot, T>(
    log: &Log<S>,
    cursor: &mut Cursor<S>,
    from_position: u64,
    max_count: usize,
    mut resolve: impl FnMut(u64, &S::Value) -> Resolved<T>,
) -> Page<T> {
    let mut events = Vec::new();
    let mut truncated = 0;
    let mut next = from_position;
    while events.len() < max_count {
        let before = cursor.index();
        let read = cursor.read(log, max_count - events.len(), |index, slot| {
            if events.len() >= max_count {
                return false;
            }
            let entry = resolve(index, slot);
            match entry.record {
                Some(recorded) => events.push(recorded),
                None => truncated += 1,
            }
            next = entry.position + 1;
            true
        });
        match read {
            Read::Entries(0) => break,
            Read::Entries(_) => {}
            Read::Dropped { front, through } => {
                // Released segments: every entry in them was dead. For the global log the index
                // is the position, so the count is exact; for a category log it counts the
                // slots released from the first one read (the first run may hold a few below
                // `from_position`). Nothing is counted when all of them were below it.
                if through > from_position {
                    truncated += front.saturating_sub(before).max(1);
                }
            }
        }
    }
    Page {
        events,
        next,
        is_end: cursor.index() >= log.published(),
        truncated,
    }
}
