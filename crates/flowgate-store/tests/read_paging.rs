//! Paged reads: paging a stream forward or backward, a category, or all events with any page
//! size returns every event exactly once, in order, with no hole and no repeat, also while
//! other streams are appended to between pages.
#![cfg(not(loom))]

mod common;

use common::ev;
use flowgate_store::{ExpectedVersion, Page, Store};

fn fill(store: &Store<u64>) {
    for i in 0..300_u64 {
        let stream = match i % 3 {
            0 => format!("order-{}", i % 4),
            1 => format!("user-{}", i % 5),
            _ => "order-x".to_owned(),
        };
        store.append(&stream, ExpectedVersion::Any, ev(i)).unwrap();
    }
}

fn page_all(mut read: impl FnMut(u64) -> Page<u64>, start: u64) -> Vec<u64> {
    let mut seen = Vec::new();
    let mut from = start;
    loop {
        let page = read(from);
        seen.extend(page.events.iter().map(|e| *e.event().payload()));
        if page.is_end {
            return seen;
        }
        assert!(!page.events.is_empty(), "a page before the end was empty");
        from = page.next;
    }
}

#[test]
fn paging_all_and_categories_has_no_hole_or_repeat() {
    let store = Store::<u64>::new();
    fill(&store);
    for size in [1, 2, 7, 64, 1000] {
        let all = page_all(|from| store.read_all(from, size).unwrap(), 0);
        assert_eq!(
            all,
            (0..300).collect::<Vec<_>>(),
            "read_all, page size {size}"
        );
        let orders = page_all(|from| store.read_category("order", from, size).unwrap(), 0);
        let expected: Vec<u64> = (0..300).filter(|i| i % 3 != 1).collect();
        assert_eq!(orders, expected, "read_category, page size {size}");
        let from_middle = page_all(|from| store.read_category("user", from, size).unwrap(), 150);
        let expected: Vec<u64> = (150..300).filter(|i| i % 3 == 1).collect();
        assert_eq!(
            from_middle, expected,
            "read_category from 150, page size {size}"
        );
    }
}

#[test]
fn paging_a_stream_forward_and_backward_has_no_hole_or_repeat() {
    let store = Store::<u64>::new();
    fill(&store);
    let expected: Vec<u64> = (0..300).filter(|i| i % 3 == 2).collect();
    for size in [1, 3, 100, 1000] {
        let forward = page_all(
            |from| store.read_stream_forward("order-x", from, size).unwrap(),
            0,
        );
        assert_eq!(forward, expected, "forward, page size {size}");
        let mut backward = page_all(
            |from| store.read_stream_backward("order-x", from, size).unwrap(),
            u64::MAX,
        );
        backward.reverse();
        assert_eq!(backward, expected, "backward, page size {size}");
    }
}

#[test]
fn pages_continue_correctly_while_other_streams_are_appended() {
    let store = Store::<u64>::new();
    fill(&store);
    let mut seen = Vec::new();
    let mut from = 0;
    let mut extra = 1_000;
    loop {
        let page = store.read_category("order", from, 5).unwrap();
        seen.extend(page.events.iter().map(|e| *e.event().payload()));
        // Appends between pages: to another category, and to this one (which must show up
        // once, at its place, after everything read so far).
        store
            .append("user-9", ExpectedVersion::Any, ev(extra))
            .unwrap();
        if extra < 1_010 {
            store
                .append("order-y", ExpectedVersion::Any, ev(extra + 1))
                .unwrap();
        }
        extra += 2;
        if page.is_end {
            break;
        }
        from = page.next;
    }
    let mut expected: Vec<u64> = (0..300).filter(|i| i % 3 != 1).collect();
    expected.extend((1_000..1_010).step_by(2).map(|i| i + 1));
    assert_eq!(seen, expected);
}

#[test]
fn reading_what_does_not_exist_is_empty_not_an_error() {
    let store = Store::<u64>::new();
    let page = store.read_stream_forward("none-1", 0, 10).unwrap();
    assert!(page.events.is_empty() && page.is_end);
    assert!(
        store
            .read_stream_backward("none-1", u64::MAX, 10)
            .unwrap()
            .is_end
    );
    assert!(store.read_category("none", 0, 10).unwrap().is_end);
    assert!(store.read_all(1_000, 10).unwrap().events.is_empty());
    store.append("a-1", ExpectedVersion::Any, ev(1)).unwrap();
    assert!(
        store.read_all(0, 0).unwrap().events.is_empty(),
        "max_count 0"
    );
    assert!(store
        .read_stream_forward("a-1", 5, 10)
        .unwrap()
        .events
        .is_empty());
}
