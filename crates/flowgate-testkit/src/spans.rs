//! Records the `tracing` spans code opens, with their fields (also those recorded after the
//! span was opened), so that a test can check the spans flowgate emits and how they link.
//!
//! The recorder is a subscriber for the current thread (`tracing::subscriber::with_default` or
//! `set_default`): run the code under test on a current-thread runtime.
//!
//! ```
//! use flowgate_testkit::spans::SpanLog;
//! let log = SpanLog::new();
//! tracing::subscriber::with_default(log.subscriber(), || {
//!     let span = tracing::debug_span!("work", job = 7, done = tracing::field::Empty);
//!     span.record("done", true);
//! });
//! let spans = log.named("work");
//! assert_eq!(spans[0].field("job"), Some("7"));
//! assert_eq!(spans[0].field("done"), Some("true"));
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// One span as opened, with its fields as last recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedSpan {
    /// The span's name.
    pub name: &'static str,
    /// Its fields, rendered with `Display` for strings and `Debug` otherwise.
    pub fields: BTreeMap<&'static str, String>,
}

impl RecordedSpan {
    /// A field's value, if it was recorded.
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// let span = flowgate_testkit::spans::RecordedSpan { name: "s", fields: BTreeMap::from([("a", "1".to_owned())]) };
    /// assert_eq!((span.field("a"), span.field("b")), (Some("1"), None));
    /// ```
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

/// The spans recorded so far, in the order they were opened. Clones share the log.
#[derive(Clone, Default)]
pub struct SpanLog {
    spans: Arc<Mutex<Log>>,
}

#[derive(Default)]
struct Log {
    opened: Vec<RecordedSpan>,
    by_id: HashMap<Id, usize>,
}

impl SpanLog {
    /// An empty log.
    ///
    /// ```
    /// assert!(flowgate_testkit::spans::SpanLog::new().all().is_empty());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// A subscriber (a registry with this log's layer) that records every span into the log.
    ///
    /// ```
    /// let log = flowgate_testkit::spans::SpanLog::new();
    /// let _guard = tracing::subscriber::set_default(log.subscriber());
    /// let _span = tracing::info_span!("seen");
    /// assert_eq!(log.all().len(), 1);
    /// ```
    pub fn subscriber(&self) -> impl Subscriber + Send + Sync + 'static {
        tracing_subscriber::registry().with(Recorder { log: self.clone() })
    }

    /// Every span recorded so far.
    ///
    /// ```
    /// assert!(flowgate_testkit::spans::SpanLog::new().all().is_empty());
    /// ```
    pub fn all(&self) -> Vec<RecordedSpan> {
        self.lock().opened.clone()
    }

    /// The spans named `name`, in the order they were opened.
    ///
    /// ```
    /// assert!(flowgate_testkit::spans::SpanLog::new().named("flowgate.publish").is_empty());
    /// ```
    pub fn named(&self, name: &str) -> Vec<RecordedSpan> {
        self.lock()
            .opened
            .iter()
            .filter(|span| span.name == name)
            .cloned()
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, Log> {
        self.spans
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl fmt::Debug for SpanLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpanLog")
            .field("spans", &self.lock().opened.len())
            .finish()
    }
}

struct Recorder {
    log: SpanLog,
}

struct Fields<'a>(&'a mut BTreeMap<&'static str, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name(), format!("{value:?}"));
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Recorder {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _ctx: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        let mut log = self.log.lock();
        let index = log.opened.len();
        log.opened.push(RecordedSpan {
            name: attrs.metadata().name(),
            fields,
        });
        log.by_id.insert(id.clone(), index);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
        let mut log = self.log.lock();
        if let Some(&index) = log.by_id.get(id) {
            values.record(&mut Fields(&mut log.opened[index].fields));
        }
    }

    fn on_close(&self, id: Id, _ctx: Context<'_, S>) {
        // Ids are reused once a span closes: forget the mapping, keep the record.
        self.log.lock().by_id.remove(&id);
    }
}
