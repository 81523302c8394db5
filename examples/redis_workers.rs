//! Two (or more) processes sharing a topic's partitions through Redis.
//!
//! Each process joins consumer group `workers` of topic `jobs` (8 partitions) and publishes a
//! steady trickle of keyed jobs. Every second it prints which partitions it handled jobs of:
//! start a second process and watch the partitions split between them; stop one (Ctrl-C, or
//! kill it) and watch the other take them all over. Ctrl-C leaves the group at once; a
//! killed process's partitions move when its lease expires (3 s here).
//!
//! ```text
//! redis-server --port 6379 &                      # a local server (apt-get install redis-server)
//! cargo run --example redis_workers --features redis          # terminal 1
//! cargo run --example redis_workers --features redis          # terminal 2
//! REDIS_URL=redis://127.0.0.1:6380/ cargo run --example redis_workers --features redis -- 20
//! ```
//!
//! The optional argument stops the process after that many seconds.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flowgate::bus::{Backend, SubscribeRequest, TopicSettings};
use flowgate::redis::RedisBus;
use flowgate::{partition_for, Event, Key};

const PARTITIONS: u32 = 8;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    let seconds: Option<u64> = std::env::args().nth(1).map(|s| s.parse()).transpose()?;
    let pid = std::process::id();
    let bus = match RedisBus::builder(&url)
        .namespace("example")
        .lease(Duration::from_secs(3))
        .connect()
        .await
    {
        Ok(bus) => bus,
        Err(error) => {
            eprintln!("cannot reach Redis at {url}: {error}");
            eprintln!("start one with `redis-server --port 6379` (Debian: apt-get install redis-server), or set REDIS_URL");
            std::process::exit(1);
        }
    };
    let jobs = bus
        .create_topic("jobs", TopicSettings::default().partitions(PARTITIONS))
        .await?;

    // Which partitions this process handled jobs of since the last report.
    let seen = Arc::new(Mutex::new(BTreeSet::new()));
    let handled = Arc::clone(&seen);
    let worker = SubscribeRequest::new(format!("worker-{pid}"), move |job: Event<u64>| {
        if let Some(key) = job.key() {
            let partitions = std::num::NonZeroU32::new(PARTITIONS).expect("not zero");
            handled
                .lock()
                .unwrap()
                .insert(partition_for(key, partitions));
        }
        async { Ok(()) }
    });
    let member = jobs.subscribe(worker.group("workers")).await?;
    println!("[{pid}] joined group `workers` of topic `jobs` on {url}");

    let publisher = {
        let jobs = jobs.clone();
        tokio::spawn(async move {
            for n in 0u64.. {
                let job = Event::new("job", n)
                    .expect("a valid type")
                    .with_key(Key::from(format!("customer-{}", n % 256)));
                if let Err(error) = jobs.publish(job).await {
                    eprintln!("[{pid}] publish refused: {error}");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    ticks.tick().await;
    let mut elapsed = 0;
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                elapsed += 1;
                let partitions = std::mem::take(&mut *seen.lock().unwrap());
                println!("[{pid}] handled jobs of partitions {partitions:?}");
                if seconds.is_some_and(|s| elapsed >= s) {
                    break;
                }
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    publisher.abort();
    println!("[{pid}] leaving: the other members take over this process's partitions");
    member.detach().await;
    bus.shutdown(Duration::from_secs(5)).await;
    Ok(())
}
