//! Category consumer groups: member i of n receives exactly the streams of the category whose
//! id's `stable_hash` maps to i, every event of them once, each stream in version order; the
//! members together receive the whole category.
#![cfg(not(loom))]

mod common;

use std::collections::BTreeMap;
use std::num::NonZeroU32;

use common::{ev, within};
use flowgate_core::{partition_of_hash, stable_hash};
use flowgate_store::{id_of, ExpectedVersion, Start, Store, StoreError, Target};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_split_the_category_by_the_stable_hash_of_the_stream_id() {
    const MEMBERS: u32 = 3;
    const EVENTS: u64 = 3_000;
    let store = Store::<u64>::new();
    let mut readers = Vec::new();
    for member in 0..MEMBERS {
        let mut sub = store
            .subscribe(Target::category("acct"))
            .start(Start::Beginning)
            .buffer(16)
            .consumer_group(member, MEMBERS)
            .open()
            .unwrap();
        readers.push(tokio::spawn(async move {
            let mut seen: BTreeMap<String, Vec<u64>> = BTreeMap::new();
            // Each member reads until the marker event appended after all the others.
            loop {
                let e = sub.next().await.unwrap().unwrap();
                if *e.event().payload() == u64::MAX {
                    return seen;
                }
                seen.entry(e.stream().to_owned())
                    .or_default()
                    .push(e.version());
            }
        }));
    }
    // Half appended before the members start reading live, half after, from two threads.
    let writers: Vec<_> = (0..2)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..EVENTS / 2 {
                    let stream = format!("acct-{}", (i * 2 + t) % 40);
                    store.append(&stream, ExpectedVersion::Any, ev(i)).unwrap();
                    store
                        .append("other-1", ExpectedVersion::Any, ev(i))
                        .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    // One marker per member: the first stream id that maps to it.
    let n = NonZeroU32::new(MEMBERS).unwrap();
    for member in 0..MEMBERS {
        let id = (0..1_000)
            .map(|i| format!("m{i}"))
            .find(|id| partition_of_hash(stable_hash(id), n) == member)
            .unwrap();
        store
            .append(&format!("acct-{id}"), ExpectedVersion::Any, ev(u64::MAX))
            .unwrap();
    }

    let mut union = BTreeMap::new();
    for (member, reader) in readers.into_iter().enumerate() {
        let seen = within("each member's share", reader).await.unwrap();
        for (stream, versions) in seen {
            let id = id_of(&stream).unwrap();
            assert_eq!(
                partition_of_hash(stable_hash(id), n),
                member as u32,
                "member {member} got {stream}"
            );
            assert_eq!(
                versions,
                (0..versions.len() as u64).collect::<Vec<_>>(),
                "{stream} out of order, with a gap or a duplicate at member {member}"
            );
            assert!(
                union.insert(stream, versions.len()).is_none(),
                "two members got one stream"
            );
        }
    }
    assert_eq!(union.len(), 40, "every stream went to some member");
    assert_eq!(union.values().sum::<usize>() as u64, EVENTS);
}

#[test]
fn group_settings_are_checked() {
    let store = Store::<u64>::new();
    for (member, size) in [(0, 0), (2, 2), (5, 1)] {
        let err = store
            .subscribe(Target::category("a"))
            .consumer_group(member, size)
            .open()
            .unwrap_err();
        assert_eq!(err, StoreError::InvalidGroupMember { member, size });
    }
    let err = store
        .subscribe(Target::All)
        .consumer_group(0, 2)
        .open()
        .unwrap_err();
    assert!(
        matches!(err, StoreError::InvalidGroupMember { .. }),
        "groups are for categories"
    );
    assert!(store
        .subscribe(Target::category("a"))
        .consumer_group(0, 1)
        .open()
        .is_ok());
}
