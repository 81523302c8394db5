//! An event-sourced bank account on the flowgate event store.
//!
//! - Each account is a stream `account-<id>`; its state is folded from its events.
//! - Two tellers work on the same account at the same time. Each decides on the state it read
//!   and appends with `ExpectedVersion::Exact`; when the other teller got there first, the store
//!   refuses with the actual version, and the teller reads again and retries. No withdrawal can
//!   overdraw the account, however the two interleave.
//! - A balance projection subscribes to the `account` category from the beginning: it catches up
//!   on the history that exists when it starts, then follows the tellers live.
//!
//! ```text
//! cargo run --example bank_account
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use flowgate::store::{ExpectedVersion, Start, Store, StoreError, Target};
use flowgate::Event;
use tokio::sync::watch;

/// What happens to an account.
#[derive(Debug, Clone)]
enum AccountEvent {
    Opened { owner: &'static str },
    Deposited { cents: i64 },
    Withdrawn { cents: i64 },
}

impl AccountEvent {
    fn kind(&self) -> &'static str {
        match self {
            Self::Opened { .. } => "account.opened",
            Self::Deposited { .. } => "account.deposited",
            Self::Withdrawn { .. } => "account.withdrawn",
        }
    }

    /// What the event does to a balance.
    fn delta(&self) -> i64 {
        match self {
            Self::Opened { .. } => 0,
            Self::Deposited { cents } => *cents,
            Self::Withdrawn { cents } => -cents,
        }
    }
}

/// An account's state, folded from its stream.
#[derive(Debug, Default)]
struct Account {
    balance: i64,
    /// The version of the last event folded in: what the next append expects.
    version: Option<u64>,
}

/// Reads the whole stream, page by page, and folds it.
fn load(store: &Store<AccountEvent>, stream: &str) -> Result<Account, StoreError> {
    let mut account = Account::default();
    let mut from = 0;
    loop {
        let page = store.read_stream_forward(stream, from, 100)?;
        for recorded in &page.events {
            account.balance += recorded.event().payload().delta();
            account.version = Some(recorded.version());
        }
        if page.is_end {
            return Ok(account);
        }
        from = page.next;
    }
}

/// How a teller's command ended.
#[derive(Debug, Default)]
struct TellerReport {
    done: u32,
    refused_for_funds: u32,
    retries: u32,
}

/// Decides on the state read and appends with that state's version; on a conflict, reads
/// again and decides again.
async fn execute(
    store: &Store<AccountEvent>,
    stream: &str,
    command: AccountEvent,
    report: &mut TellerReport,
) -> Result<(), Box<dyn std::error::Error>> {
    loop {
        let account = load(store, stream)?;
        if let AccountEvent::Withdrawn { cents } = command {
            if account.balance < cents {
                report.refused_for_funds += 1;
                return Ok(());
            }
        }
        // Let the other teller run between the read and the write, as a real service would
        // (a network round trip, a fraud check, ...): that is where conflicts come from.
        tokio::task::yield_now().await;
        let expected = account
            .version
            .map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
        let event = Event::new(command.kind(), command.clone())?;
        match store.append(stream, expected, event) {
            Ok(_) => {
                report.done += 1;
                return Ok(());
            }
            Err(StoreError::WrongExpectedVersion { .. }) => report.retries += 1,
            Err(other) => return Err(other.into()),
        }
    }
}

async fn teller(
    store: Store<AccountEvent>,
    name: &'static str,
    commands: Vec<AccountEvent>,
) -> Result<TellerReport, String> {
    let mut report = TellerReport::default();
    for command in commands {
        execute(&store, "account-1", command, &mut report)
            .await
            .map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(report)
}

/// Balances per account, fed by a category subscription. Runs until `until` holds a position
/// and everything before it was applied.
async fn projection(
    store: Store<AccountEvent>,
    mut until: watch::Receiver<Option<u64>>,
) -> Result<BTreeMap<String, i64>, StoreError> {
    let mut balances = BTreeMap::new();
    let head_at_start = store.head_position();
    let mut sub = store
        .subscribe(Target::category("account"))
        .start(Start::Beginning)
        .open()?;
    let mut caught_up = head_at_start == 0;
    loop {
        if let Some(end) = *until.borrow() {
            if sub.position() >= end {
                return Ok(balances);
            }
        }
        tokio::select! {
            item = sub.next() => {
                let Some(item) = item else { return Ok(balances) };
                let recorded = item?;
                if let AccountEvent::Opened { owner } = recorded.event().payload() {
                    println!("projection: {} opened for {owner}", recorded.stream());
                }
                *balances.entry(recorded.stream().to_owned()).or_insert(0) +=
                    recorded.event().payload().delta();
                if !caught_up && recorded.position() + 1 >= head_at_start {
                    caught_up = true;
                    println!(
                        "projection: caught up on {head_at_start} historical events; following live"
                    );
                }
            }
            changed = until.changed() => {
                if changed.is_err() {
                    return Ok(balances);
                }
            }
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = Store::<AccountEvent>::new();

    // History from before the projection starts: two accounts opened and funded.
    let open = |owner| Event::new("account.opened", AccountEvent::Opened { owner });
    store.append("account-1", ExpectedVersion::NoStream, open("ada")?)?;
    store.append("account-2", ExpectedVersion::NoStream, open("grace")?)?;
    let deposit = AccountEvent::Deposited { cents: 10_000 };
    store.append(
        "account-1",
        ExpectedVersion::Exact(0),
        Event::new(deposit.kind(), deposit)?,
    )?;
    println!("history: {} events", store.head_position());

    let (done, until) = watch::channel(None);
    let balances = tokio::spawn(projection(store.clone(), until));

    // Two tellers on account-1 at once: each tries to withdraw more than half of what is there.
    let shift = || {
        let mut commands = vec![AccountEvent::Withdrawn { cents: 700 }; 8];
        commands.extend(vec![AccountEvent::Deposited { cents: 150 }; 4]);
        commands
    };
    let (morning, afternoon) = (shift(), shift());
    let (a, b) = tokio::join!(
        tokio::spawn(teller(store.clone(), "teller A", morning)),
        tokio::spawn(teller(store.clone(), "teller B", afternoon)),
    );
    for (name, report) in [("teller A", a??), ("teller B", b??)] {
        println!(
            "{name}: {} done, {} refused for lack of funds, {} retried after a version conflict",
            report.done, report.refused_for_funds, report.retries
        );
    }

    let account = load(&store, "account-1")?;
    println!(
        "account-1 folded from its stream: balance {} cents at version {:?}",
        account.balance, account.version
    );
    assert!(account.balance >= 0, "an overdraft got through");

    let _ = done.send(Some(store.head_position()));
    let balances = tokio::time::timeout(Duration::from_secs(10), balances).await???;
    println!("projection: {balances:?}");
    assert_eq!(balances.get("account-1"), Some(&account.balance));
    let stats = store.stats();
    println!(
        "store: {} streams, {} events, {} version conflicts",
        stats.streams, stats.events, stats.version_conflicts
    );
    Ok(())
}
