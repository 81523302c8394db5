//! An at-least-once topic keyed by order id: each order's events (placed, paid, shipped) are
//! handled in order, one at a time per order, while different orders run concurrently. The
//! handler fails transiently now and then (retried with backoff) and permanently for orders it
//! cannot process (dead-lettered with the reason). The summary checks that every event was
//! handled exactly once and in order, or dead-lettered.
//!
//! ```text
//! cargo run --example orders
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flowgate::bus::Bus;
use flowgate::{DeadLetter, Event, HandlerError, Jitter, RetryPolicy};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Placed,
    Paid,
    Shipped,
}

#[derive(Debug)]
struct OrderEvent {
    order: u32,
    step: Step,
}

type Handled = Arc<Mutex<BTreeMap<u32, Vec<Step>>>>;
type Dead = Arc<Mutex<Vec<(u32, Step, u32, String)>>>;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bus = Bus::new();
    let orders = bus
        .topic::<OrderEvent>("orders")
        .partitions(8)
        .concurrency(4)
        .at_least_once(RetryPolicy::exponential(4, Duration::from_millis(2)).jitter(Jitter::Full))
        .create()?;

    let handled: Handled = Arc::default();
    let dead: Dead = Arc::default();
    let attempts = Arc::new(Mutex::new(BTreeMap::<(u32, Step), u32>::new()));

    let (log, tries) = (Arc::clone(&handled), Arc::clone(&attempts));
    let letters = Arc::clone(&dead);
    let _fulfilment = orders
        .subscribe("fulfilment", move |event: Event<OrderEvent>| {
            let (log, tries) = (Arc::clone(&log), Arc::clone(&tries));
            async move {
                let OrderEvent { order, step } = *event.payload();
                let attempt = {
                    let mut tries = tries.lock().unwrap();
                    let n = tries.entry((order, step)).or_insert(0);
                    *n += 1;
                    *n
                };
                // Order 13's payment is refused for good.
                if order == 13 && step == Step::Paid {
                    return Err(HandlerError::permanent("card declined"));
                }
                // Every seventh order's warehouse times out twice before answering.
                if order % 7 == 0 && step == Step::Shipped && attempt <= 2 {
                    return Err(HandlerError::retryable("warehouse timed out"));
                }
                // Order 29's shipment never gets through: retries run out.
                if order == 29 && step == Step::Shipped {
                    return Err(HandlerError::retryable("carrier unreachable"));
                }
                tokio::time::sleep(Duration::from_micros(200)).await; // the real work
                log.lock().unwrap().entry(order).or_default().push(step);
                Ok(())
            }
        })
        .dead_letters(move |letter: DeadLetter<OrderEvent>| {
            let reason = std::error::Error::source(&letter.error)
                .map_or_else(|| letter.error.to_string(), ToString::to_string);
            let OrderEvent { order, step } = *letter.event.payload();
            letters
                .lock()
                .unwrap()
                .push((order, step, letter.attempts, reason));
        })
        .start()?;

    // 40 orders, each with its three steps, interleaved across orders.
    let total_orders = 40;
    for step in [Step::Placed, Step::Paid, Step::Shipped] {
        for order in 1..=total_orders {
            let event = Event::new("order.step", OrderEvent { order, step })?
                .with_key(format!("order-{order}"));
            orders.publish(event).await?;
        }
    }

    let report = bus.shutdown(Duration::from_secs(10)).await;
    let stats = orders.stats();
    println!(
        "published {} events over {} partitions: {} handled, {} failed attempts, {} retries, {} dead-lettered, {} not delivered",
        stats.total.published,
        stats.partitions.len(),
        stats.total.processed,
        stats.total.failed,
        stats.total.retried,
        stats.total.dead_lettered,
        report.not_delivered()
    );

    let handled = handled.lock().unwrap();
    let dead = dead.lock().unwrap();
    let mut in_order = 0;
    for order in 1..=total_orders {
        let steps = handled.get(&order).cloned().unwrap_or_default();
        let dead_steps: Vec<Step> = dead.iter().filter(|d| d.0 == order).map(|d| d.1).collect();
        let mut all: Vec<Step> = steps.iter().chain(&dead_steps).copied().collect();
        all.sort();
        assert_eq!(
            all,
            [Step::Placed, Step::Paid, Step::Shipped],
            "order {order}: every step handled once or dead-lettered"
        );
        assert!(
            steps.windows(2).all(|w| w[0] < w[1]),
            "order {order}: {steps:?} out of order"
        );
        in_order += 1;
    }
    println!(
        "{in_order} of {total_orders} orders: every step handled once, in order, or dead-lettered"
    );
    for (order, step, attempts, reason) in dead.iter() {
        println!("dead letter: order {order} {step:?} after {attempts} attempt(s): {reason}");
    }
    Ok(())
}
