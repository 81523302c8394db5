//! The first thing to run: an emitter with a few handlers doing real work, inline and through
//! the worker pool, including a flaky handler that is retried and a broken one whose events end
//! up in the dead letters; then a keyed at-least-once bus topic whose per-customer payments are
//! handled in order while failures are retried. Prints what happened.
//!
//! ```text
//! cargo run --example quickstart
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flowgate::bus::Bus;
use flowgate::emitter::{Backpressure, Emitter, EmitterError, Subscription};
use flowgate::middleware::TimeoutLayer;
use flowgate::{DeadLetterQueue, Event, HandlerError, Jitter, RetryPolicy};

#[derive(Debug)]
struct Order {
    id: u32,
    customer: &'static str,
    cents: u64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dead_letters = DeadLetterQueue::new(100);
    let emitter = Emitter::<Order>::builder()
        .workers(4)
        .queue_capacity(64)
        .backpressure(Backpressure::Block {
            max_wait: Duration::from_secs(1),
        })
        .retry(RetryPolicy::exponential(4, Duration::from_millis(5)).jitter(Jitter::None))
        .dead_letters(dead_letters.clone())
        .build()?;

    let revenue = Arc::new(Mutex::new(BTreeMap::<&'static str, u64>::new()));
    let _subscriptions = subscribe_handlers(&emitter, &revenue)?;

    // One order inline: emit returns once every handler ran, with every failure.
    let first = Event::new(
        "order.placed",
        Order {
            id: 1,
            customer: "ada",
            cents: 1_250,
        },
    )?;
    let inline = emitter.emit(first).await?;
    println!("inline emit: {} handlers ran", inline.handlers);

    // Twenty more through the worker pool.
    let customers = ["ada", "grace", "linus", "barbara"];
    for id in 2..=21_u32 {
        let order = Order {
            id,
            customer: customers[id as usize % customers.len()],
            cents: u64::from(id) * 3_100,
        };
        emitter
            .emit_async(Event::new("order.placed", order)?.with_key(id))
            .await?;
    }
    emitter
        .emit_async(Event::new(
            "order.shipped",
            Order {
                id: 2,
                customer: "grace",
                cents: 0,
            },
        )?)
        .await?;

    let report = emitter.shutdown(Duration::from_secs(5)).await;
    let stats = report.stats;
    println!(
        "emitted {} events: {} handler runs ok, {} failed attempts, {} retries, {} dead-lettered",
        stats.emitted, stats.handled, stats.failed, stats.retried, stats.dead_lettered
    );
    println!(
        "shutdown: complete = {}, not run = {}, interrupted = {}",
        report.is_complete(),
        report.not_run.len(),
        report.interrupted.len()
    );
    println!("revenue per customer (cents):");
    for (customer, cents) in revenue.lock().unwrap().iter() {
        println!("  {customer:<8} {cents:>7}");
    }
    for letter in dead_letters.drain() {
        println!(
            "dead letter: order {} from {} after {} attempt(s): {}",
            letter.event.payload().id,
            letter.subscriber,
            letter.attempts,
            std::error::Error::source(&letter.error)
                .map_or_else(|| letter.error.to_string(), ToString::to_string)
        );
    }
    payments_on_the_bus().await
}

/// A keyed at-least-once topic: payments partitioned by customer, each customer's handled in
/// publish order (retries included) while different customers run concurrently.
async fn payments_on_the_bus() -> Result<(), Box<dyn std::error::Error>> {
    let bus = Bus::new();
    let payments = bus
        .topic::<u64>("payments")
        .partitions(4)
        .concurrency(2)
        .at_least_once(RetryPolicy::exponential(3, Duration::from_millis(5)).jitter(Jitter::None))
        .create()?;
    let ledger = Arc::new(Mutex::new(BTreeMap::<String, Vec<u64>>::new()));
    let tries = Arc::new(AtomicU32::new(0));
    let (log, attempts) = (Arc::clone(&ledger), Arc::clone(&tries));
    let _ledger = payments
        .subscribe("ledger", move |event: Event<u64>| {
            let (log, attempts) = (Arc::clone(&log), Arc::clone(&attempts));
            async move {
                // Every fourth attempt fails once: the retry keeps the customer's order.
                if attempts.fetch_add(1, Ordering::Relaxed) % 4 == 3 {
                    return Err(HandlerError::retryable("ledger: lock timeout"));
                }
                let customer = event.key().map_or("?", |k| k.as_str()).to_owned();
                log.lock()
                    .unwrap()
                    .entry(customer)
                    .or_default()
                    .push(*event.payload());
                Ok(())
            }
        })
        .start()?;
    let customers = ["ada", "grace", "linus"];
    for n in 1..=12_u64 {
        let customer = customers[n as usize % customers.len()];
        payments
            .publish(Event::new("payment.received", n * 100)?.with_key(customer))
            .await?;
    }
    let report = bus.shutdown(Duration::from_secs(5)).await;
    let stats = payments.stats().total;
    println!(
        "bus: {} payments published, {} handled, {} retried, {} not delivered",
        stats.published,
        stats.processed,
        stats.retried,
        report.not_delivered()
    );
    for (customer, amounts) in ledger.lock().unwrap().iter() {
        println!("  {customer:<8} payments in publish order: {amounts:?}");
    }
    Ok(())
}

type Revenue = Arc<Mutex<BTreeMap<&'static str, u64>>>;

/// Three subscribers: revenue per customer, a flaky mailer, a strict fraud check.
fn subscribe_handlers(
    emitter: &Emitter<Order>,
    revenue: &Revenue,
) -> Result<Vec<Subscription>, EmitterError> {
    // Revenue per customer, from every placed order.
    let ledger = Arc::clone(revenue);
    let revenue = emitter
        .subscribe("order.placed", move |event: Event<Order>| {
            let ledger = Arc::clone(&ledger);
            async move {
                let order = event.payload();
                *ledger.lock().unwrap().entry(order.customer).or_default() += order.cents;
                Ok(())
            }
        })
        .name("revenue")
        .start()?;

    // A mailer that fails on the first try for every third order: retried, then succeeds.
    let attempts = Arc::new(AtomicU32::new(0));
    let tries = Arc::clone(&attempts);
    let mailer = emitter
        .subscribe("order.*", move |event: Event<Order>| {
            let tries = Arc::clone(&tries);
            async move {
                let n = tries.fetch_add(1, Ordering::Relaxed);
                if event.payload().id % 3 == 0 && n % 2 == 0 {
                    return Err(HandlerError::retryable("smtp: connection reset"));
                }
                Ok(())
            }
        })
        .name("mailer")
        .concurrency(2)
        .layer(TimeoutLayer::new(Duration::from_secs(2)))
        .start()?;

    // A fraud check that rejects large orders for good: those go to the dead letters.
    let fraud = emitter
        .subscribe("order.placed", |event: Event<Order>| async move {
            if event.payload().cents > 50_000 {
                return Err(HandlerError::permanent(format!(
                    "order {} over the 500.00 limit",
                    event.payload().id
                )));
            }
            Ok(())
        })
        .name("fraud-check")
        .start()?;

    Ok(vec![revenue, mailer, fraud])
}
