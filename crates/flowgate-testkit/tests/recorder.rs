//! The recording handler writes the end of every attempt it began, however the attempt ends:
//! also when its future is dropped before it was ever polled. Otherwise the checker would see
//! an attempt that never finished, and take the next attempt of the same key for an overlap.

use flowgate::{Event, Handler};
use flowgate_testkit::bus::{History, Mode, Record, Spec};

#[tokio::test(flavor = "current_thread")]
async fn an_attempt_dropped_before_its_first_poll_is_recorded_as_ended() {
    let history = History::new();
    history.subscribed("billing");
    let event = Event::new("order.placed", 1u32)
        .unwrap()
        .with_key("order-1");
    history.published(&event, true, false);
    let billing = history.handler("billing", |_: Event<u32>| async { Ok(()) });

    drop(billing.call(event.clone()));
    assert!(
        matches!(
            history.records().last(),
            Some(Record::Finished { ok: false, .. })
        ),
        "the unpolled attempt's end was not recorded: {:?}",
        history.records().last()
    );

    billing.call(event.clone()).await.unwrap();
    let report = history.check(&Spec::new(Mode::AtLeastOnce));
    assert!(
        report.violations.is_empty(),
        "a retry after a dropped attempt broke nothing: {:?} in {:#?}",
        report.violations,
        history.records()
    );
}
