//! Three OS processes in one consumer group handle a keyed at-least-once topic on a real
//! redis-server while the test breaks things, and the bus checker of flowgate-testkit reads
//! what they did:
//!
//! 1. one member is killed with SIGKILL mid-run and a replacement starts: nothing accepted
//!    is lost, no key runs out of order or on two members at once;
//! 2. the server (append-only file on, fsync always) is killed mid-run and restarted:
//!    publishes during the outage fail with a typed, retryable error, and nothing accepted
//!    is lost.
//!
//! This file is its own test harness (`harness = false`): run without arguments it is the
//! test; run with `FLOWGATE_REDIS_WORKER` set it is one worker process. Every attempt of
//! every worker is one line in a shared log (appended with O_APPEND), which the test turns
//! into the checker's history.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flowgate::bus::{Backend, DeliveryMode, PublishError, SubscribeRequest, TopicSettings};
use flowgate::redis::RedisBus;
use flowgate::{Event, EventId, Jitter, RetryPolicy};
use flowgate_testkit::bus::{History, Mode, Record, Spec};
use flowgate_testkit::redis_server::{Persistence, RedisServer};

const WORKER: &str = "FLOWGATE_REDIS_WORKER";
const GROUP: &str = "workers";
const KEYS: u64 = 24;
const EVENTS: u64 = 1_200;
/// Publishes tried while the server is down (each waits out the client's reconnect attempts,
/// about half a second).
const OUTAGE_PUBLISHES: u64 = 5;
const LEASE: Duration = Duration::from_secs(1);

fn settings() -> TopicSettings {
    let retry = RetryPolicy::exponential(5, Duration::from_millis(2)).jitter(Jitter::None);
    TopicSettings::default()
        .partitions(8)
        .capacity(512)
        .concurrency(4)
        .mode(DeliveryMode::AtLeastOnce(retry))
}

async fn connect(url: &str, namespace: &str) -> Result<RedisBus, flowgate::bus::BusError> {
    RedisBus::builder(url)
        .namespace(namespace)
        .lease(LEASE)
        .block(Duration::from_millis(200))
        .response_timeout(Duration::from_millis(500))
        .connect()
        .await
}

fn main() {
    if let Ok(config) = std::env::var(WORKER) {
        worker(&config);
        return;
    }
    let mut failed = 0;
    for (name, scenario) in [
        ("a member killed with SIGKILL mid-run loses nothing and keeps key order", Scenario::KillMember),
        ("redis-server killed and restarted (AOF): publishes fail typed, nothing accepted is lost", Scenario::RestartServer),
    ] {
        println!("test {name} ...");
        let began = Instant::now();
        let outcome = std::panic::catch_unwind(|| run(scenario));
        let took = began.elapsed().as_secs_f64();
        if outcome.is_ok() {
            println!("test {name} ... ok ({took:.1} s)");
        } else {
            println!("test {name} ... FAILED ({took:.1} s)");
            failed += 1;
        }
    }
    if failed > 0 {
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------- the worker process

/// Appends whole lines to the shared log, one write each.
struct Log(File);

impl Log {
    fn line(&self, line: &str) {
        let mut file = &self.0;
        file.write_all(format!("{line}\n").as_bytes())
            .expect("append to the shared log");
    }
}

/// Logs an attempt's end, also when it is cut short (its future dropped).
struct End {
    log: Arc<Log>,
    pid: u32,
    event: EventId,
    ok: bool,
}

impl Drop for End {
    fn drop(&mut self) {
        let outcome = if self.ok { "ok" } else { "fail" };
        self.log
            .line(&format!("end {} {} {outcome}", self.pid, self.event));
    }
}

fn worker(config: &str) {
    let mut parts = config.split('|');
    let (Some(url), Some(namespace), Some(log)) = (parts.next(), parts.next(), parts.next()) else {
        panic!("bad {WORKER}: {config}");
    };
    let log = Arc::new(Log(OpenOptions::new()
        .append(true)
        .create(true)
        .open(log)
        .expect("open the shared log")));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async move {
        let bus = connect(url, namespace).await.expect("connect");
        let topic = bus
            .create_topic("orders", settings())
            .await
            .expect("open the topic");
        let pid = std::process::id();
        let request = SubscribeRequest::new(format!("worker-{pid}"), move |event: Event<u64>| {
            let log = Arc::clone(&log);
            let key = event.key().map(ToString::to_string).unwrap_or_default();
            log.line(&format!("start {pid} {} {key}", event.id()));
            let mut end = End {
                log,
                pid,
                event: event.id(),
                ok: false,
            };
            async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                end.ok = true;
                drop(end);
                Ok(())
            }
        });
        let _member = topic
            .subscribe(request.group(GROUP))
            .await
            .expect("join the group");
        println!("ready");
        std::io::stdout().flush().expect("stdout");
        std::future::pending::<()>().await;
    });
}

// ---------------------------------------------------------------- the test

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    KillMember,
    RestartServer,
}

struct Workers {
    config: String,
    children: Vec<Child>,
}

impl Workers {
    fn start(&mut self) -> u32 {
        let mut child = Command::new(std::env::current_exe().expect("this test's binary"))
            .env(WORKER, &self.config)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start a worker process");
        let stdout = child.stdout.take().expect("its stdout");
        let (ready, wait) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next().and_then(Result::ok);
            let _ = ready.send(first);
            for _ in lines {}
        });
        let first = wait
            .recv_timeout(Duration::from_secs(30))
            .expect("the worker says it is ready within 30 s");
        assert_eq!(first.as_deref(), Some("ready"), "worker did not start");
        let pid = child.id();
        self.children.push(child);
        pid
    }

    fn kill(&mut self, i: usize) -> u32 {
        let mut child = self.children.remove(i);
        let pid = child.id();
        child.kill().expect("SIGKILL a worker");
        child.wait().expect("reap it");
        pid
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn run(scenario: Scenario) {
    let persistence = match scenario {
        Scenario::KillMember => Persistence::None,
        Scenario::RestartServer => Persistence::Aof,
    };
    let mut server = RedisServer::start_with(persistence).unwrap_or_else(|e| panic!("{e}"));
    let namespace = format!("{scenario:?}").to_lowercase();
    let log_path = server.dir().join("attempts.log");
    File::create(&log_path).expect("create the shared log");
    let mut workers = Workers {
        config: format!("{}|{namespace}|{}", server.url(), log_path.display()),
        children: Vec::new(),
    };
    for _ in 0..3 {
        workers.start();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let url = server.url();
    let topic = runtime.block_on(async {
        let bus = connect(&url, &namespace).await.expect("connect");
        Backend::<u64>::create_topic(&bus, "orders", settings())
            .await
            .expect("open the topic")
    });
    let mut published: Vec<(Event<u64>, bool)> = Vec::new();
    let mut refused_in_outage = 0;
    let mut killed = None;
    for n in 0..EVENTS {
        if n == EVENTS / 3 {
            let broke = Break {
                workers: &mut workers,
                server: &mut server,
                log: &log_path,
            };
            (refused_in_outage, killed) = broke.now(scenario, &runtime, &topic, &mut published);
        }
        let event = Event::new("order.placed", n)
            .expect("event")
            .with_key(format!("k{}", n % KEYS));
        let accepted = runtime.block_on(topic.publish(event.clone())).is_ok();
        published.push((event, accepted));
        if n % 20 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let accepted: HashSet<EventId> = published
        .iter()
        .filter(|(_, ok)| *ok)
        .map(|(e, _)| e.id())
        .collect();
    wait_handled(&log_path, &accepted);
    drop(workers);
    let history = history(&published, &log_path);
    let mut spec = Spec::new(Mode::AtLeastOnce);
    spec.allow_redelivery = true; // a member killed after a handler's Ok, before its ack
    let report = history.check(&spec);
    println!(
        "  {} published, {} accepted, {refused_in_outage} refused during the outage, killed {killed:?}: {report}",
        published.len(),
        accepted.len(),
    );
    assert!(report.is_ok(), "{report}");
    if scenario == Scenario::RestartServer {
        assert_eq!(refused_in_outage, OUTAGE_PUBLISHES);
    }
}

/// Waits (30 s at most) until every accepted event was handled `Ok` by some worker.
fn wait_handled(log: &Path, accepted: &HashSet<EventId>) {
    let began = Instant::now();
    let deadline = began + Duration::from_secs(30);
    loop {
        let handled = handled_ok(log);
        if accepted.iter().all(|id| handled.contains(id)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} accepted events not handled after 30 s",
            accepted.iter().filter(|id| !handled.contains(id)).count(),
            accepted.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "  all accepted events handled {:.1} s after the last publish",
        began.elapsed().as_secs_f64()
    );
}

/// What the test breaks, a third of the way through.
struct Break<'a> {
    workers: &'a mut Workers,
    server: &'a mut RedisServer,
    log: &'a Path,
}

impl Break<'_> {
    /// Breaks it; returns the publishes refused during an outage and the killed process.
    fn now(
        self,
        scenario: Scenario,
        runtime: &tokio::runtime::Runtime,
        topic: &flowgate::redis::RedisTopic<u64>,
        published: &mut Vec<(Event<u64>, bool)>,
    ) -> (u64, Option<u32>) {
        match scenario {
            Scenario::KillMember => {
                // Kill it mid-delivery: once it has an attempt running.
                let victim = self.workers.children[0].id();
                let deadline = Instant::now() + Duration::from_secs(20);
                while running(self.log, victim) == 0 {
                    assert!(
                        Instant::now() < deadline,
                        "the first worker never ran anything"
                    );
                    std::thread::sleep(Duration::from_millis(1));
                }
                let pid = self.workers.kill(0);
                Log(OpenOptions::new().append(true).open(self.log).expect("log"))
                    .line(&format!("killed {pid}"));
                self.workers.start();
                (0, Some(pid))
            }
            Scenario::RestartServer => {
                self.server.kill();
                let mut refused = 0;
                for m in 0..OUTAGE_PUBLISHES {
                    let event = Event::new("order.placed", EVENTS + m)
                        .expect("event")
                        .with_key(format!("k{}", m % KEYS));
                    let outcome = runtime.block_on(topic.publish(event.clone()));
                    match outcome {
                        Err(PublishError::Unavailable {
                            retryable: true, ..
                        }) => refused += 1,
                        other => panic!("a publish while the server is down: {other:?}"),
                    }
                    published.push((event, false));
                }
                self.server.restart().expect("restart redis-server");
                (refused, None)
            }
        }
    }
}

/// How many attempts process `pid` has running now.
fn running(log: &Path, pid: u32) -> usize {
    let pid = pid.to_string();
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut open = HashSet::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split(' ').collect();
        match words.as_slice() {
            ["start", p, id, _] if *p == pid => {
                open.insert((*id).to_owned());
            }
            ["end", p, id, _] if *p == pid => {
                open.remove(*id);
            }
            _ => {}
        }
    }
    open.len()
}

/// The events some attempt finished `Ok`.
fn handled_ok(log: &Path) -> HashSet<EventId> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let mut words = line.split(' ');
            match (words.next(), words.next(), words.next(), words.next()) {
                (Some("end"), Some(_), Some(id), Some("ok")) => parse_id(id),
                _ => None,
            }
        })
        .collect()
}

fn parse_id(text: &str) -> Option<EventId> {
    text.parse::<uuid::Uuid>().ok().map(EventId::from_uuid)
}

/// The checker's history: the publishes in order, then every attempt in log order. A killed
/// process's unfinished attempts end (failed) where the kill is logged.
fn history(published: &[(Event<u64>, bool)], log: &PathBuf) -> History {
    let history = History::new();
    history.subscribed(GROUP);
    for (event, accepted) in published {
        history.published(event, *accepted, false);
    }
    let subscriber: Arc<str> = Arc::from(GROUP);
    let mut open: HashMap<String, Vec<EventId>> = HashMap::new();
    let text = std::fs::read_to_string(log).expect("read the shared log");
    for line in text.lines() {
        let words: Vec<&str> = line.split(' ').collect();
        match words.as_slice() {
            ["start", pid, id, key] => {
                let event = parse_id(id).expect("an event id");
                open.entry((*pid).to_owned()).or_default().push(event);
                history.record(Record::Started {
                    subscriber: Arc::clone(&subscriber),
                    event,
                    key: Some((*key).to_owned()),
                    idempotency_key: (*id).to_owned(),
                });
            }
            ["end", pid, id, outcome] => {
                let event = parse_id(id).expect("an event id");
                if let Some(running) = open.get_mut(*pid) {
                    running.retain(|e| *e != event);
                }
                history.record(Record::Finished {
                    subscriber: Arc::clone(&subscriber),
                    event,
                    ok: *outcome == "ok",
                });
            }
            ["killed", pid] => {
                let cut = open.remove(*pid).unwrap_or_default();
                println!("  the kill cut {} attempt(s) short", cut.len());
                assert!(!cut.is_empty(), "the member was killed mid-delivery");
                for event in cut {
                    history.record(Record::Finished {
                        subscriber: Arc::clone(&subscriber),
                        event,
                        ok: false,
                    });
                }
            }
            _ => panic!("a line the workers do not write: {line:?}"),
        }
    }
    history
}
