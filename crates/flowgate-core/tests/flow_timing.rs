//! The flow-control operators' timing, exactly, on tokio's paused clock: debounce hands on a
//! key's last item once per quiet period, batch hands on at `max` items or at the window, the
//! token bucket admits exactly `burst + refill * t`, sampling counts add up, and each operator
//! stays inside its key bound and accounts for every item. No real sleeps: the clock only
//! moves when every task waits.

use std::fmt::Debug;
use std::time::Duration;

use flowgate::flow::{Batching, Debouncing, FlowExt, FlowMeter, Overflow, RateLimit, Sampling};
use futures_util::{stream, Stream, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};

const MS: Duration = Duration::from_millis(1);

/// An input stream fed with `(at_ms, item)` pairs at those instants after `start`; it ends
/// at `end_ms` (or after the last item, if later).
fn feed<T: Send + 'static>(
    start: Instant,
    items: Vec<(u64, T)>,
    end_ms: u64,
) -> impl Stream<Item = T> + Unpin + Send + 'static {
    let (tx, mut rx) = mpsc::channel(1024);
    tokio::spawn(async move {
        for (at, item) in items {
            sleep_until(start + MS * at as u32).await;
            tx.send(item).await.expect("the operator reads its input");
        }
        sleep_until(start + MS * end_ms as u32).await;
    });
    stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Reads `output` to its end, noting the millisecond after `start` at which each item came.
/// Fails after an hour of the paused clock (no real time): an operator that never ends its
/// output fails the test instead of hanging it.
fn record<S>(start: Instant, mut output: S) -> JoinHandle<Vec<(u64, S::Item)>>
where
    S: Stream + Unpin + Send + 'static,
    S::Item: Send + 'static,
{
    tokio::spawn(async move {
        let mut seen = Vec::new();
        let read = async {
            while let Some(item) = output.next().await {
                seen.push((start.elapsed().as_millis() as u64, item));
            }
        };
        tokio::time::timeout(Duration::from_secs(3600), read)
            .await
            .expect("the output ends within an hour of the paused clock");
        seen
    })
}

fn assert_balanced(meter: &FlowMeter) {
    let stats = meter.stats();
    assert!(
        stats.balanced(),
        "every received item is passed, coalesced, dropped or pending once: {stats:?}"
    );
    assert_eq!(
        stats.pending, 0,
        "nothing is held once the output ended: {stats:?}"
    );
}

fn assert_timeline<T: PartialEq + Debug>(got: &[(u64, T)], want: &[(u64, T)]) {
    assert_eq!(got, want, "(millisecond, item) of each output");
}

#[tokio::test(start_paused = true)]
async fn debounce_hands_on_the_last_item_of_a_key_once_per_quiet_period() {
    let start = Instant::now();
    let input = feed(
        start,
        vec![
            (0, ("a", 1)),
            (10, ("b", 1)),
            (50, ("a", 2)),
            (90, ("a", 3)),  // a is quiet from here: handed on at 190
            (300, ("a", 4)), // a new run of a: handed on at 400
            (450, ("b", 2)), // b's first run ended at 110
            (520, ("b", 3)),
        ],
        1000,
    );
    let debounced = input
        .debounce_by(Debouncing::new(MS * 100), |(key, _)| *key)
        .unwrap();
    let meter = debounced.meter();
    let seen = record(start, debounced).await.unwrap();
    assert_timeline(
        &seen,
        &[
            (110, ("b", 1)),
            (190, ("a", 3)),
            (400, ("a", 4)),
            (620, ("b", 3)),
        ],
    );
    let stats = meter.stats();
    assert_eq!((stats.received, stats.passed, stats.coalesced), (7, 4, 3));
    assert_eq!(
        stats.flushed_early, 0,
        "the input ended after the last quiet period"
    );
    assert_balanced(&meter);
}

#[tokio::test(start_paused = true)]
async fn debounce_hands_on_a_busy_key_at_max_wait() {
    let start = Instant::now();
    // One update every 40 ms from 0 to 680 ms: the key is never quiet for 100 ms.
    let input = feed(start, (0..=17).map(|n| (n * 40, n)).collect(), 1000);
    let config = Debouncing::new(MS * 100).max_wait(MS * 300);
    let debounced = input.debounce_by(config, |_| "cursor").unwrap();
    let meter = debounced.meter();
    let seen = record(start, debounced).await.unwrap();
    // Runs start at 0 (held until 300: the item of 280), at 320 (until 620: the item of 600),
    // and at 640; the last run ends quietly at 680 + 100.
    assert_timeline(&seen, &[(300, 7), (620, 15), (780, 17)]);
    assert_eq!(meter.stats().coalesced, 15);
    assert_balanced(&meter);
}

#[tokio::test(start_paused = true)]
async fn debounce_makes_room_for_a_new_key_by_handing_on_the_soonest_due_early() {
    let start = Instant::now();
    let input = feed(start, vec![(0, "a"), (1, "b"), (2, "c"), (3, "b")], 1000);
    let config = Debouncing::new(MS * 100).max_keys(2);
    let debounced = input.debounce_by(config, |key| *key).unwrap();
    let meter = debounced.meter();
    let watcher = {
        let meter = meter.clone();
        tokio::spawn(async move {
            let mut most = 0;
            for _ in 0..200 {
                most = most.max(meter.stats().keys);
                tokio::time::sleep(MS).await;
            }
            most
        })
    };
    let seen = record(start, debounced).await.unwrap();
    assert_timeline(&seen, &[(2, "a"), (102, "c"), (103, "b")]);
    let stats = meter.stats();
    assert_eq!((stats.flushed_early, stats.coalesced), (1, 1));
    assert!(watcher.await.unwrap() <= 2, "never more keys than max_keys");
    assert_balanced(&meter);
}

#[tokio::test(start_paused = true)]
async fn debounce_flushes_what_it_holds_when_its_input_ends() {
    let start = Instant::now();
    let (tx, mut rx) = mpsc::channel(8);
    let input = stream::poll_fn(move |cx| rx.poll_recv(cx));
    let debounced = input
        .debounce_by(Debouncing::new(Duration::from_secs(60)), |n: &u32| n % 2)
        .unwrap();
    let meter = debounced.meter();
    let out = record(start, debounced);
    for n in 0..6 {
        tx.send(n).await.unwrap();
    }
    tokio::time::sleep(MS * 5).await;
    drop(tx); // the subscription ended
    let seen = out.await.unwrap();
    assert_timeline(&seen, &[(5, 4), (5, 5)]);
    let stats = meter.stats();
    assert_eq!(
        (stats.flushed_early, stats.coalesced, stats.passed),
        (2, 4, 2)
    );
    assert_balanced(&meter);
}

#[tokio::test(start_paused = true)]
async fn debounce_memory_stays_under_max_keys_whatever_the_cardinality() {
    let start = Instant::now();
    let debounced = stream::iter(0..100_000u32)
        .debounce_by(Debouncing::new(MS * 10).max_keys(100), |n| *n)
        .unwrap();
    let meter = debounced.meter();
    let mut debounced = debounced;
    let mut most = 0;
    let mut passed = 0;
    while debounced.next().await.is_some() {
        passed += 1;
        most = most.max(meter.stats().keys);
    }
    assert_eq!(passed, 100_000, "distinct keys are never coalesced");
    assert!(most <= 100, "held {most} keys, more than max_keys");
    assert_eq!(start.elapsed(), Duration::ZERO, "the input ended at once");
    assert_balanced(&meter);
}

#[tokio::test(start_paused = true)]
async fn batch_hands_on_at_max_items() {
    let start = Instant::now();
    let input = feed(start, (0..10).map(|n| (0, n)).collect(), 0);
    let batches = input
        .batch(Batching::new(4, Duration::from_secs(1)))
        .unwrap();
    let meter = batches.meter();
    let seen = record(start, batches).await.unwrap();
    // Two full batches at once; the input ends at 0 ms with 2 left over, flushed then.
    assert_timeline(
        &seen,
        &[
            (0, vec![0, 1, 2, 3]),
            (0, vec![4, 5, 6, 7]),
            (0, vec![8, 9]),
        ],
    );
    let stats = meter.stats();
    assert_eq!(
        (stats.outputs, stats.passed, stats.flushed_early),
        (3, 10, 1)
    );
    assert_balanced(&meter);
}

#[tokio::test(start_paused = true)]
async fn batch_hands_on_at_the_window_after_its_first_item() {
    let start = Instant::now();
    let input = feed(
        start,
        vec![
            (0, 'a'),
            (300, 'b'),
            (700, 'c'),
            (900, 'd'),
            (1190, 'e'),
            (1600, 'f'),
        ],
        0,
    );
    let batches = input.batch(Batching::new(100, MS * 500)).unwrap();
    let meter = batches.meter();
    let seen = record(start, batches).await.unwrap();
    // Windows open at 0 (closes 500), 700 (closes 1200), 1600 (input ends at once).
    assert_timeline(
        &seen,
        &[
            (500, vec!['a', 'b']),
            (1200, vec!['c', 'd', 'e']),
            (1600, vec!['f']),
        ],
    );
    let stats = meter.stats();
    assert_eq!((stats.outputs, stats.flushed_early), (3, 1));
    assert_balanced(&meter);
}

/// One key offered `per_ms` items every millisecond from 0 to `until_ms - 1` (more than it
/// may take), refused when out of tokens; returns the admission instants.
async fn admissions(config: RateLimit, until_ms: u64, per_ms: u64) -> (Vec<u64>, FlowMeter) {
    let start = Instant::now();
    let offers = (0..until_ms).flat_map(|at| (0..per_ms).map(move |_| (at, at)));
    let input = feed(start, offers.collect(), 0);
    let limited = input
        .rate_limit_by(config.overflow(Overflow::Refuse), |_| "key")
        .unwrap();
    let meter = limited.meter();
    let seen = record(start, limited).await.unwrap();
    (seen.into_iter().map(|(at, _)| at).collect(), meter)
}

#[tokio::test(start_paused = true)]
async fn the_token_bucket_admits_exactly_burst_plus_refill_times_t() {
    // Burst 5, then 10 a second (one every 100 ms).
    let (admitted, meter) =
        admissions(RateLimit::new(5, 10, Duration::from_secs(1)), 1000, 5).await;
    let mut want = vec![0; 5];
    want.extend((1..10).map(|n| n * 100));
    assert_eq!(admitted, want);
    // The same, as the rule: by any instant t, floor(burst + rate * t) admitted.
    for t in 0..1000u64 {
        let by_t = admitted.iter().filter(|&&at| at <= t).count() as u64;
        assert_eq!(by_t, 5 + t * 10 / 1000, "admitted by {t} ms");
    }
    let stats = meter.stats();
    assert_eq!((stats.passed, stats.dropped), (14, 5000 - 14));
    assert_balanced(&meter);
}

#[tokio::test(start_paused = true)]
async fn the_token_bucket_is_exact_at_rates_that_do_not_divide_a_nanosecond() {
    // 3 tokens a second: one every 333.33... ms; burst 2.
    let (admitted, meter) = admissions(RateLimit::new(2, 3, Duration::from_secs(1)), 2000, 2).await;
    assert_eq!(admitted, [0, 0, 334, 667, 1000, 1334, 1667]);
    for t in 0..2000u64 {
        let by_t = admitted.iter().filter(|&&at| at <= t).count() as u64;
        assert_eq!(by_t, 2 + t * 3 / 1000, "admitted by {t} ms");
    }
    assert_balanced(&meter);
}

#[tokio::test(start_paused = true)]
async fn rate_limit_wait_delays_excess_to_the_next_token() {
    let start = Instant::now();
    let input = feed(start, (0..6).map(|n| (0, n)).collect(), 0);
    let limit = RateLimit::new(3, 1, MS * 100); // burst 3, then one every 100 ms
    let limited = input.rate_limit_by(limit, |_| "key").unwrap();
    let meter = limited.meter();
    let seen = record(start, limited).await.unwrap();
    assert_timeline(
        &seen,
        &[(0, 0), (0, 1), (0, 2), (100, 3), (200, 4), (300, 5)],
    );
    let stats = meter.stats();
    assert_eq!((stats.delayed, stats.dropped), (3, 0));
    // Each waited 100 ms inside the operator (it takes the next item once the one before left).
    assert_eq!(stats.delayed_nanos, (MS * 300).as_nanos() as u64);
    assert_balanced(&meter);
}

#[tokio::test(start_paused = true)]
async fn rate_limit_keys_have_buckets_of_their_own() {
    let start = Instant::now();
    let offers = vec![
        (0, "a"),
        (0, "a"),
        (0, "a"),
        (0, "b"),
        (0, "b"),
        (150, "a"),
        (150, "b"),
    ];
    let input = feed(start, offers, 0);
    let limit = RateLimit::new(2, 1, MS * 100).overflow(Overflow::Refuse);
    let limited = input.rate_limit_by(limit, |key| *key).unwrap();
    let meter = limited.meter();
    let seen = record(start, limited).await.unwrap();
    assert_timeline(
        &seen,
        &[
            (0, "a"),
            (0, "a"),
            (0, "b"),
            (0, "b"),
            (150, "a"),
            (150, "b"),
        ],
    );
    assert_eq!(meter.stats().dropped, 1, "a's third item at 0 ms");
    assert_balanced(&meter);
}

#[tokio::test(start_paused = true)]
async fn rate_limit_forgets_full_buckets_first_and_counts_what_it_forgets_early() {
    let start = Instant::now();
    // Keys 0..4 each take their one token at 0 ms (refill one a second). At 2 s every bucket is
    // full again, so keys 4..8 take their places without evicting a limiting bucket. At 2 s,
    // key 8 finds four limiting buckets: one is forgotten early.
    let mut offers: Vec<(u64, u32)> = (0..4).map(|k| (0, k)).collect();
    offers.extend((4..9).map(|k| (2000, k)));
    let input = feed(start, offers, 0);
    let limit = RateLimit::new(1, 1, Duration::from_secs(1)).max_keys(4);
    let limited = input.rate_limit_by(limit, |key| *key).unwrap();
    let meter = limited.meter();
    let seen = record(start, limited).await.unwrap();
    assert_eq!(seen.len(), 9, "every key had a token");
    let stats = meter.stats();
    assert_eq!(stats.evicted_keys, 1);
    assert!(stats.keys <= 4, "{stats:?}");
    assert_balanced(&meter);
}

#[tokio::test]
async fn sampling_every_nth_counts_add_up() {
    let sampled = stream::iter(0..1000u32)
        .sample(Sampling::every_nth(7))
        .unwrap();
    let meter = sampled.meter();
    let kept: Vec<u32> = sampled.collect().await;
    assert_eq!(kept, (0..1000).step_by(7).collect::<Vec<_>>());
    let stats = meter.stats();
    assert_eq!(
        (stats.received, stats.passed, stats.dropped),
        (1000, 143, 857)
    );
    assert_balanced(&meter);
}

#[tokio::test]
async fn sampling_by_probability_counts_add_up_and_repeats_with_a_seed() {
    let run = |seed| async move {
        let sampled = stream::iter(0..10_000u32)
            .sample(Sampling::probability(0.3).seed(seed))
            .unwrap();
        let meter = sampled.meter();
        let kept: Vec<u32> = sampled.collect().await;
        (kept, meter.stats())
    };
    let (kept, stats) = run(7).await;
    assert_eq!(stats.passed, kept.len() as u64);
    assert_eq!(stats.passed + stats.dropped, 10_000);
    // 10,000 draws at 0.3: mean 3,000, standard deviation about 46; 5 deviations either side.
    assert!(
        (2770..=3230).contains(&stats.passed),
        "kept {}",
        stats.passed
    );
    assert_eq!(run(7).await.0, kept, "the same seed keeps the same items");
    let none = stream::iter(0..100)
        .sample(Sampling::probability(0.0))
        .unwrap();
    assert_eq!(none.count().await, 0);
    let all = stream::iter(0..100)
        .sample(Sampling::probability(1.0))
        .unwrap();
    assert_eq!(all.count().await, 100);
}

#[test]
fn bad_operator_settings_are_typed_errors() {
    use flowgate::CoreError;
    let setting = |e: CoreError| match e {
        CoreError::InvalidConfig { setting, reason } => {
            assert!(!reason.is_empty());
            setting
        }
        other => panic!("not InvalidConfig: {other:?}"),
    };
    let s = || stream::iter(0..1);
    let zero = Duration::ZERO;
    let second = Duration::from_secs(1);
    let e = s().debounce_by(Debouncing::new(zero), |_| ()).unwrap_err();
    assert_eq!(setting(e), "grace");
    let e = s()
        .debounce_by(Debouncing::new(second).max_wait(MS), |_| ())
        .unwrap_err();
    assert_eq!(setting(e), "max_wait");
    let e = s()
        .debounce_by(Debouncing::new(second).max_keys(0), |_| ())
        .unwrap_err();
    assert_eq!(setting(e), "max_keys");
    assert_eq!(
        setting(s().batch(Batching::new(0, second)).unwrap_err()),
        "max"
    );
    assert_eq!(
        setting(s().batch(Batching::new(1, zero)).unwrap_err()),
        "window"
    );
    let limit = |b, t, p| {
        s().rate_limit_by(RateLimit::new(b, t, p), |_| ())
            .unwrap_err()
    };
    assert_eq!(setting(limit(0, 1, second)), "burst");
    assert_eq!(setting(limit(1, 0, second)), "tokens");
    assert_eq!(setting(limit(1, 1, zero)), "per");
    let e = s()
        .rate_limit_by(RateLimit::new(1, 1, second).max_keys(0), |_| ())
        .unwrap_err();
    assert_eq!(setting(e), "max_keys");
    assert_eq!(
        setting(s().sample(Sampling::every_nth(0)).unwrap_err()),
        "every_nth"
    );
    for p in [-0.1, 1.1, f64::NAN] {
        let e = s().sample(Sampling::probability(p)).unwrap_err();
        assert_eq!(setting(e), "probability");
    }
}

#[test]
fn operators_can_be_built_outside_a_runtime() {
    let batches = stream::iter(0..3)
        .batch(Batching::new(2, Duration::from_secs(1)))
        .unwrap();
    let debounced = stream::iter(0..3)
        .debounce_by(Debouncing::new(Duration::from_secs(1)), |n| *n)
        .unwrap();
    let limited = stream::iter(0..3)
        .rate_limit_by(RateLimit::new(5, 1, Duration::from_secs(1)), |_| ())
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async {
        assert_eq!(batches.collect::<Vec<_>>().await, [vec![0, 1], vec![2]]);
        assert_eq!(debounced.collect::<Vec<_>>().await, [0, 1, 2]);
        assert_eq!(limited.collect::<Vec<_>>().await, [0, 1, 2]);
    });
}
