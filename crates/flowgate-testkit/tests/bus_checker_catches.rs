//! The bus checker catches every kind of break: each test hands it a history with one
//! hand-made violation and checks that it reports exactly that, and a clean history passes.

use flowgate::{DeadLetterSink, Event, HandlerError};
use flowgate_testkit::bus::{History, Mode, Record, Spec, Violation};

fn event(n: u32, key: &str) -> Event<u32> {
    Event::new("e", n).unwrap().with_key(key)
}

fn started(h: &History, sub: &str, e: &Event<u32>) {
    h.record(Record::Started {
        subscriber: sub.into(),
        event: e.id(),
        key: e.key().map(|k| k.as_str().to_owned()),
        idempotency_key: e.idempotency_key().as_str().to_owned(),
    });
}

fn finished(h: &History, sub: &str, e: &Event<u32>, ok: bool) {
    h.record(Record::Finished {
        subscriber: sub.into(),
        event: e.id(),
        ok,
    });
}

fn delivered(h: &History, sub: &str, e: &Event<u32>) {
    started(h, sub, e);
    finished(h, sub, e, true);
}

/// Two events of one key published and delivered in order to one subscriber.
fn clean(mode: Mode) -> (History, Event<u32>, Event<u32>) {
    let h = History::new();
    h.subscribed("s");
    let (a, b) = (event(1, "k"), event(2, "k"));
    h.published(&a, true, false);
    h.published(&b, true, false);
    delivered(&h, "s", &a);
    delivered(&h, "s", &b);
    assert!(
        h.check(&Spec::new(mode)).is_ok(),
        "the clean history passes"
    );
    (h, a, b)
}

#[test]
fn clean_histories_pass_in_every_mode() {
    for mode in [Mode::AtMostOnce, Mode::AtLeastOnce, Mode::ExactlyOnce] {
        let (h, _, _) = clean(mode);
        let report = h.check(&Spec::new(mode));
        assert_eq!((report.accepted, report.expected_deliveries), (2, 2));
    }
}

#[test]
fn a_lost_event_is_caught() {
    for mode in [Mode::AtMostOnce, Mode::AtLeastOnce, Mode::ExactlyOnce] {
        let h = History::new();
        h.subscribed("s");
        let (a, b) = (event(1, "k"), event(2, "k"));
        h.published(&a, true, false);
        h.published(&b, true, false);
        delivered(&h, "s", &a);
        let report = h.check(&Spec::new(mode));
        assert_eq!(report.lost, 1, "{mode:?}: {report}");
        assert_eq!(
            report.violations,
            [Violation::Lost {
                subscriber: "s".into(),
                event: b.id()
            }]
        );
    }
}

#[test]
fn a_failed_event_without_dead_letter_is_lost_under_at_least_once() {
    let h = History::new();
    h.subscribed("s");
    let a = event(1, "k");
    h.published(&a, true, false);
    started(&h, "s", &a);
    finished(&h, "s", &a, false);
    assert_eq!(h.check(&Spec::new(Mode::AtLeastOnce)).lost, 1);
    // At-most-once allows it: one attempt, failed, counted.
    assert!(h.check(&Spec::new(Mode::AtMostOnce)).is_ok());
}

#[test]
fn reported_and_dead_lettered_events_are_not_lost() {
    let h = History::new();
    h.subscribed("s");
    let (a, b) = (event(1, "k"), event(2, "j"));
    h.published(&a, true, false);
    h.published(&b, true, false);
    started(&h, "s", &a);
    finished(&h, "s", &a, false);
    h.dead_letters::<u32>("s")
        .dead_letter(flowgate::DeadLetter::new(
            a.clone(),
            HandlerError::permanent("x"),
            1,
            "s",
        ));
    h.undelivered("s", &b);
    let report = h.check(&Spec::new(Mode::AtLeastOnce));
    assert!(report.is_ok(), "{report}");
}

#[test]
fn refused_publishes_and_late_subscribers_expect_nothing() {
    let h = History::new();
    let early = event(1, "k");
    h.published(&early, true, false); // nobody subscribed yet
    h.subscribed("s");
    h.published(&event(2, "k"), false, false); // refused
    assert!(h.check(&Spec::new(Mode::AtLeastOnce)).is_ok());
}

#[test]
fn counted_drops_excuse_at_most_once_losses_and_no_more() {
    let h = History::new();
    h.subscribed("s");
    for n in 0..3 {
        h.published(&event(n, "k"), true, false);
    }
    let mut spec = Spec::new(Mode::AtMostOnce);
    spec.dropped = 3;
    assert!(h.check(&spec).is_ok());
    spec.dropped = 2;
    assert_eq!(h.check(&spec).lost, 1);
}

#[test]
fn a_second_attempt_under_at_most_once_is_a_duplicate() {
    let (h, a, _) = clean(Mode::AtMostOnce);
    delivered(&h, "s", &a);
    let report = h.check(&Spec::new(Mode::AtMostOnce));
    assert_eq!(report.duplicated, 1, "{report}");
}

#[test]
fn an_attempt_after_ok_is_a_duplicate_under_at_least_once() {
    let (h, a, _) = clean(Mode::AtLeastOnce);
    delivered(&h, "s", &a);
    assert_eq!(h.check(&Spec::new(Mode::AtLeastOnce)).duplicated, 1);
    let mut tolerant = Spec::new(Mode::AtLeastOnce);
    tolerant.allow_redelivery = true;
    assert!(h.check(&tolerant).is_ok(), "allowed when redelivery is");
}

#[test]
fn retries_after_failures_are_not_duplicates() {
    let h = History::new();
    h.subscribed("s");
    let a = event(1, "k");
    h.published(&a, true, false);
    started(&h, "s", &a);
    finished(&h, "s", &a, false);
    delivered(&h, "s", &a);
    assert!(h.check(&Spec::new(Mode::AtLeastOnce)).is_ok());
    assert!(h.check(&Spec::new(Mode::ExactlyOnce)).is_ok());
    assert_eq!(h.check(&Spec::new(Mode::AtMostOnce)).duplicated, 1);
}

#[test]
fn exactly_once_catches_a_key_handled_twice() {
    let h = History::new();
    h.subscribed("s");
    let a = event(1, "k").with_idempotency_key("pay-1");
    // A second event with the same idempotency key, published as if the dedupe had failed.
    let b = event(2, "k").with_idempotency_key("pay-1");
    h.published(&a, true, false);
    delivered(&h, "s", &a);
    h.published(&b, true, false);
    delivered(&h, "s", &b);
    let report = h.check(&Spec::new(Mode::ExactlyOnce));
    // The publish was accepted twice inside the window, and the subscriber ran the key twice.
    assert_eq!(report.duplicated, 2, "{report}");
}

#[test]
fn exactly_once_allows_a_key_again_once_the_window_forgot_it() {
    let h = History::new();
    let a = event(1, "k").with_idempotency_key("pay-1");
    h.published(&a, true, false);
    for n in 0..3 {
        h.published(&event(10 + n, "x"), true, false);
    }
    h.published(&event(2, "k").with_idempotency_key("pay-1"), true, false);
    let mut spec = Spec::new(Mode::ExactlyOnce);
    spec.dedupe_max_keys = Some(3);
    assert!(
        h.check(&spec).is_ok(),
        "3 other keys pushed it out of a 3-key window"
    );
    spec.dedupe_max_keys = Some(4);
    assert_eq!(h.check(&spec).duplicated, 1);
}

#[test]
fn duplicate_acknowledgements_expect_no_delivery() {
    let h = History::new();
    h.subscribed("s");
    let a = event(1, "k");
    h.published(&a, true, false);
    delivered(&h, "s", &a);
    h.published(&a, true, true); // acknowledged as a duplicate
    assert!(h.check(&Spec::new(Mode::ExactlyOnce)).is_ok());
}

#[test]
fn two_same_key_events_out_of_order_are_caught() {
    for mode in [Mode::AtMostOnce, Mode::AtLeastOnce, Mode::ExactlyOnce] {
        let h = History::new();
        h.subscribed("s");
        let (a, b) = (event(1, "k"), event(2, "k"));
        h.published(&a, true, false);
        h.published(&b, true, false);
        delivered(&h, "s", &b);
        delivered(&h, "s", &a);
        let report = h.check(&Spec::new(mode));
        assert_eq!(report.reordered, 1, "{mode:?}: {report}");
        assert_eq!(report.overlaps, 0);
    }
}

#[test]
fn a_later_event_starting_while_the_earlier_retries_is_caught() {
    let h = History::new();
    h.subscribed("s");
    let (a, b) = (event(1, "k"), event(2, "k"));
    h.published(&a, true, false);
    h.published(&b, true, false);
    started(&h, "s", &a);
    finished(&h, "s", &a, false); // a failed and will retry ...
    delivered(&h, "s", &b); // ... but b ran first
    delivered(&h, "s", &a);
    let report = h.check(&Spec::new(Mode::AtLeastOnce));
    assert_eq!(report.reordered, 1, "{report}");
}

#[test]
fn different_keys_may_interleave() {
    let h = History::new();
    h.subscribed("s");
    let (a, b) = (event(1, "k"), event(2, "j"));
    h.published(&a, true, false);
    h.published(&b, true, false);
    started(&h, "s", &a);
    delivered(&h, "s", &b);
    finished(&h, "s", &a, true);
    assert!(h.check(&Spec::new(Mode::AtLeastOnce)).is_ok());
}

#[test]
fn same_key_overlap_is_caught() {
    let h = History::new();
    h.subscribed("s");
    let (a, b) = (event(1, "k"), event(2, "k"));
    h.published(&a, true, false);
    h.published(&b, true, false);
    started(&h, "s", &a);
    started(&h, "s", &b);
    finished(&h, "s", &a, true);
    finished(&h, "s", &b, true);
    let report = h.check(&Spec::new(Mode::AtLeastOnce));
    assert_eq!(report.overlaps, 1, "{report}");
    assert_eq!(report.reordered, 1, "b also started before a was done");
}

#[test]
fn a_wrong_dead_letter_attempt_count_is_caught() {
    let h = History::new();
    h.subscribed("s");
    let a = event(1, "k");
    h.published(&a, true, false);
    started(&h, "s", &a);
    finished(&h, "s", &a, false);
    h.record(Record::DeadLettered {
        subscriber: "s".into(),
        event: a.id(),
        attempts: 3,
    });
    let report = h.check(&Spec::new(Mode::AtLeastOnce));
    assert_eq!(report.wrong_attempts, 1, "{report}");
}

#[test]
fn each_subscriber_is_checked_on_its_own() {
    let h = History::new();
    h.subscribed("a");
    h.subscribed("b");
    let e = event(1, "k");
    h.published(&e, true, false);
    delivered(&h, "a", &e);
    let report = h.check(&Spec::new(Mode::AtLeastOnce));
    assert_eq!(
        report.violations,
        [Violation::Lost {
            subscriber: "b".into(),
            event: e.id()
        }]
    );
}

#[tokio::test]
async fn the_recording_handler_records_attempts_and_panics() {
    let h = History::new();
    h.subscribed("s");
    let handler = h.handler("s", |e: Event<u32>| async move {
        assert!(*e.payload() != 2, "boom");
        Ok(())
    });
    let (a, b) = (event(1, "k"), event(2, "k"));
    h.published(&a, true, false);
    h.published(&b, true, false);
    assert!(flowgate::invoke(&handler, a).await.is_ok());
    assert!(
        flowgate::invoke(&handler, b).await.is_err(),
        "the panic is a failure"
    );
    let report = h.check(&Spec::new(Mode::AtLeastOnce));
    assert_eq!(
        report.lost, 1,
        "b failed and was never dead-lettered: {report}"
    );
    let finishes = h
        .records()
        .iter()
        .filter(|r| matches!(r, Record::Finished { .. }))
        .count();
    assert_eq!(finishes, 2, "the panicking attempt's end is recorded too");
}

#[test]
fn a_key_handed_back_may_be_accepted_again() {
    let h = History::new();
    h.subscribed("s");
    let a = event(1, "k").with_idempotency_key("pay-1");
    h.published(&a, true, false);
    h.unsubscribed("s", [&a]); // handed back undelivered
    h.subscribed("s");
    let again = event(1, "k").with_idempotency_key("pay-1");
    h.published(&again, true, false);
    delivered(&h, "s", &again);
    let report = h.check(&Spec::new(Mode::ExactlyOnce));
    assert!(report.is_ok(), "{report}");
}

#[test]
fn an_attempt_recorded_before_its_publish_still_counts() {
    // On a multi-threaded bus a delivery can start and end before `published` is recorded.
    let h = History::new();
    h.subscribed("s");
    let a = event(1, "k").with_idempotency_key("pay-1");
    delivered(&h, "s", &a);
    h.published(&a, true, false);
    // The key handed back elsewhere, published again, skipped by "s" (it handled it Ok).
    h.undelivered("other", &a);
    let again = event(2, "k").with_idempotency_key("pay-1");
    h.published(&again, true, false);
    let report = h.check(&Spec::new(Mode::ExactlyOnce));
    assert!(report.is_ok(), "{report}");
}

#[test]
fn a_name_subscribed_again_is_a_new_subscriber() {
    let h = History::new();
    h.subscribed("g");
    let a = event(1, "k").with_idempotency_key("pay-1");
    h.published(&a, true, false);
    delivered(&h, "g", &a);
    h.unsubscribed::<u32>("g", []);
    h.undelivered("other", &a); // the key was handed back by another subscriber
    h.subscribed("g");
    let again = event(2, "k").with_idempotency_key("pay-1");
    h.published(&again, true, false);
    delivered(&h, "g", &again);
    assert!(
        h.check(&Spec::new(Mode::ExactlyOnce)).is_ok(),
        "the new g never handled pay-1"
    );
    // Without the unsubscribe in between, the same g running pay-1 again is a duplicate.
    let same = History::new();
    same.subscribed("g");
    same.published(&a, true, false);
    delivered(&same, "g", &a);
    same.undelivered("other", &a);
    same.published(&again, true, false);
    delivered(&same, "g", &again);
    assert_eq!(same.check(&Spec::new(Mode::ExactlyOnce)).duplicated, 1);
}
