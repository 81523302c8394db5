//! The conformance suite can fail: run against a backend that silently loses deliveries (every
//! third event a subscriber receives is acknowledged without running its handler), it reports
//! the break in every delivery mode.
#![cfg(not(loom))]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flowgate::bus::{
    Backend, BackendSubscription, BackendTopic, Bus, BusError, BusReport, PublishError, Published,
    SubscribeRequest, Subscription, Topic, TopicSettings, TopicStats,
};
use flowgate::{BoxHandler, Event, Handler};
use flowgate_testkit::bus::Mode;
use flowgate_testkit::conformance::{check_bus, Behavior, Suite};

/// The in-process bus, except that its subscriptions drop every third event on the floor.
#[derive(Clone)]
struct LossyBus(Bus);

#[derive(Clone)]
struct LossyTopic(Topic<Behavior>);

struct LossySubscription(Subscription<Behavior>);

impl Backend<Behavior> for LossyBus {
    type Topic = LossyTopic;

    async fn create_topic(
        &self,
        name: &str,
        settings: TopicSettings,
    ) -> Result<LossyTopic, BusError> {
        Backend::<Behavior>::create_topic(&self.0, name, settings)
            .await
            .map(LossyTopic)
    }

    async fn shutdown(&self, deadline: Duration) -> BusReport {
        Backend::<Behavior>::shutdown(&self.0, deadline).await
    }
}

impl BackendTopic<Behavior> for LossyTopic {
    type Subscription = LossySubscription;

    async fn publish(&self, event: Event<Behavior>) -> Result<Published, PublishError<Behavior>> {
        BackendTopic::publish(&self.0, event).await
    }

    async fn subscribe(
        &self,
        mut request: SubscribeRequest<Behavior>,
    ) -> Result<LossySubscription, BusError> {
        let inner = request.handler.clone();
        let seen = Arc::new(AtomicU64::new(0));
        request.handler = BoxHandler::new(move |event: Event<Behavior>| {
            let lose = seen.fetch_add(1, Ordering::Relaxed) % 3 == 2;
            let call = (!lose).then(|| inner.call(event));
            async move {
                match call {
                    Some(call) => call.await,
                    None => Ok(()), // acknowledged, never handled
                }
            }
        });
        BackendTopic::subscribe(&self.0, request)
            .await
            .map(LossySubscription)
    }

    async fn stats(&self) -> TopicStats {
        BackendTopic::stats(&self.0).await
    }
}

impl BackendSubscription<Behavior> for LossySubscription {
    async fn unsubscribe(self) -> Vec<Event<Behavior>> {
        BackendSubscription::unsubscribe(self.0).await
    }
}

#[test]
fn a_backend_that_loses_deliveries_fails_the_suite_in_every_mode() {
    let mut suite = Suite::default();
    suite.cases = 64;
    suite.multi_thread = false;
    for mode in [Mode::AtMostOnce, Mode::AtLeastOnce, Mode::ExactlyOnce] {
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            check_bus(|| async { LossyBus(Bus::new()) }, mode, &suite);
        }));
        let message = match outcome {
            Ok(()) => panic!("{mode:?}: the suite passed a backend that loses deliveries"),
            Err(payload) => payload
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_default(),
        };
        assert!(message.contains("lost"), "{mode:?}: {message}");
    }
}
