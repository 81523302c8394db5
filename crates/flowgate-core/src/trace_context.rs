//! Trace context from a publish to its deliveries: the `tracing` spans every flowgate backend
//! opens, and the context they carry in the event's metadata so that a delivery's span links
//! to its publish's span in the same process or in another one (the Redis backend).
//!
//! - `flowgate.publish` (level DEBUG): fields `topic`, `partition`, `event_id`, `trace_id`,
//!   `span_id`, and `parent_id` when the event came with a `traceparent` of its own.
//! - `flowgate.handle` (level DEBUG), one per handler invocation: fields `topic`,
//!   `partition`, `subscriber`, `event_id`, `attempt`, `trace_id`, `span_id`, and
//!   `parent_id`: the `span_id` of the publish that made the event.
//!
//! When the publish span is enabled, the publish writes the W3C `traceparent` metadata entry
//! (`00-<trace id>-<publish span id>-01`) into the event; the handle span reads it back. The
//! trace id is inherited: an event published from inside a flowgate handler joins the trace of
//! the event being handled; any other event starts a trace whose id is its event id. So a
//! chain of events across topics and processes shares one `trace_id`, and each `flowgate.handle`
//! names its publish through `parent_id`. An event published with a `traceparent` of its own
//! (set by the caller, for example from an OpenTelemetry propagator) stays in that trace, and
//! its publish span names the caller's span as `parent_id`.
//!
//! With the spans disabled (no subscriber, or a level filter above DEBUG), nothing is written
//! into the event and no id is drawn: a disabled span costs a check of the callsite's
//! interest.
//!
//! ```
//! use flowgate::trace_context::{TraceContext, TRACEPARENT};
//! use flowgate::Event;
//! let parent = TraceContext { trace_id: 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736, span_id: 0x00f0_67aa_0ba9_02b7 };
//! let event = Event::new("order.placed", 7)?.with_metadata(TRACEPARENT, parent.to_traceparent());
//! assert_eq!(event.metadata()[TRACEPARENT], "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
//! assert_eq!(TraceContext::of(&event), Some(parent));
//! # Ok::<(), flowgate::CoreError>(())
//! ```

use std::future::Future;

use tracing::field::{display, Empty};
use tracing::{Instrument, Span};

use crate::Event;

/// The metadata entry that carries the trace context (W3C Trace Context's name and format).
pub const TRACEPARENT: &str = "traceparent";

/// A position in a trace: which trace, and which span in it.
///
/// ```
/// use flowgate::trace_context::TraceContext;
/// let context = TraceContext::parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").unwrap();
/// assert_eq!(context.span_id, 0xb7ad_6b71_6920_3331);
/// assert_eq!(TraceContext::parse("not a traceparent"), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceContext {
    /// The trace: shared by every span of one chain of events.
    pub trace_id: u128,
    /// The span: a publish's, or a delivery's.
    pub span_id: u64,
}

tokio::task_local! {
    /// The context of the delivery running on this task, while a flowgate handler runs.
    static CURRENT: TraceContext;
}

impl TraceContext {
    /// Reads a `traceparent` value: `00-<32 hex digits>-<16 hex digits>-<2 hex digits>`, with
    /// ids that are not all zeros. `None` for anything else.
    ///
    /// ```
    /// use flowgate::trace_context::TraceContext;
    /// assert!(TraceContext::parse("00-00000000000000000000000000000000-b7ad6b7169203331-01").is_none());
    /// ```
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
        if parts.next().is_some()
            || !hex(version, 2)
            || !hex(trace, 32)
            || !hex(span, 16)
            || !hex(flags, 2)
        {
            return None;
        }
        let trace_id = u128::from_str_radix(trace, 16).ok()?;
        let span_id = u64::from_str_radix(span, 16).ok()?;
        (trace_id != 0 && span_id != 0).then_some(Self { trace_id, span_id })
    }

    /// The `traceparent` value of this context (version 00, sampled).
    ///
    /// ```
    /// use flowgate::trace_context::TraceContext;
    /// let context = TraceContext { trace_id: 1, span_id: 2 };
    /// assert_eq!(context.to_traceparent(), "00-00000000000000000000000000000001-0000000000000002-01");
    /// ```
    pub fn to_traceparent(&self) -> String {
        format!("00-{:032x}-{:016x}-01", self.trace_id, self.span_id)
    }

    /// The context an event carries in its metadata, if any (and well-formed).
    ///
    /// ```
    /// use flowgate::trace_context::TraceContext;
    /// assert_eq!(TraceContext::of(&flowgate::Event::new("e", ())?), None);
    /// # Ok::<(), flowgate::CoreError>(())
    /// ```
    pub fn of<T>(event: &Event<T>) -> Option<Self> {
        event
            .metadata()
            .get(TRACEPARENT)
            .and_then(|v| Self::parse(v))
    }

    /// The context of the flowgate delivery running on this task, when its span is enabled;
    /// what an event published from a handler inherits.
    ///
    /// ```
    /// assert_eq!(flowgate::trace_context::TraceContext::current(), None);
    /// ```
    pub fn current() -> Option<Self> {
        CURRENT.try_with(|context| *context).ok()
    }
}

fn new_span_id() -> u64 {
    fastrand::u64(1..)
}

/// Records the event id and `context`'s ids on an enabled span, in hexadecimal as in a
/// `traceparent`.
fn record_ids<T>(span: &Span, event: &Event<T>, context: TraceContext) {
    span.record("event_id", display(event.id()));
    span.record(
        "trace_id",
        display(format_args!("{:032x}", context.trace_id)),
    );
    span.record("span_id", display(format_args!("{:016x}", context.span_id)));
}

/// Opens the `flowgate.publish` span of `event`, bound for `partition` of `topic`. When the
/// span is enabled, records the ids and writes the event's `traceparent`: this publish's
/// span, in the trace of the `traceparent` the event came with (recorded as `parent_id`), else
/// of the delivery running on the task, else a new trace named after the event id.
/// For backends; the in-process bus calls it in `publish`.
///
/// ```
/// use flowgate::trace_context::publish_span;
/// let mut event = flowgate::Event::new("order.placed", 7)?;
/// let span = publish_span("orders", 0, &mut event);
/// assert!(span.is_disabled(), "no tracing subscriber here");
/// assert!(event.metadata().is_empty(), "nothing written when disabled");
/// # Ok::<(), flowgate::CoreError>(())
/// ```
pub fn publish_span<T>(topic: &str, partition: u32, event: &mut Event<T>) -> Span {
    let span = tracing::debug_span!(
        "flowgate.publish",
        topic,
        partition,
        event_id = Empty,
        trace_id = Empty,
        span_id = Empty,
        parent_id = Empty,
    );
    if span.is_disabled() {
        return span;
    }
    let context = match TraceContext::of(event) {
        // The caller set a traceparent (an incoming request's, say): it is this publish's
        // parent, and this publish's span becomes the event's traceparent from here on.
        Some(given) => {
            span.record("parent_id", display(format_args!("{:016x}", given.span_id)));
            TraceContext {
                trace_id: given.trace_id,
                span_id: new_span_id(),
            }
        }
        None => TraceContext {
            trace_id: TraceContext::current()
                .map_or_else(|| event.id().as_uuid().as_u128(), |c| c.trace_id),
            span_id: new_span_id(),
        },
    };
    record_ids(&span, event, context);
    event
        .metadata_mut()
        .insert(TRACEPARENT.to_owned(), context.to_traceparent());
    span
}

/// The `flowgate.handle` span of one handler invocation, and the context that is current on
/// the task while it runs; from [`handle_scope`].
#[derive(Debug)]
#[must_use = "run the invocation inside it with `run`"]
pub struct HandleScope {
    /// `None` when the span is disabled.
    enabled: Option<(Span, TraceContext)>,
}

/// Opens the `flowgate.handle` span of attempt `attempt` of `subscriber` at `event`, from
/// `partition` of `topic`; run the invocation inside it with [`HandleScope::run`], so that
/// what the handler publishes joins the trace. For backends; the in-process bus does it for
/// every invocation.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), flowgate::CoreError> {
/// use flowgate::trace_context::handle_scope;
/// let event = flowgate::Event::new("order.placed", 7)?;
/// let scope = handle_scope("orders", 0, "billing", &event, 1);
/// assert_eq!(scope.run(|| async { 42 }).await, 42);
/// # Ok(())
/// # }
/// ```
pub fn handle_scope<T>(
    topic: &str,
    partition: u32,
    subscriber: &str,
    event: &Event<T>,
    attempt: u32,
) -> HandleScope {
    let span = tracing::debug_span!(
        "flowgate.handle",
        topic,
        partition,
        subscriber,
        attempt,
        event_id = Empty,
        trace_id = Empty,
        span_id = Empty,
        parent_id = Empty,
    );
    if span.is_disabled() {
        return HandleScope { enabled: None };
    }
    let parent = TraceContext::of(event);
    let context = TraceContext {
        trace_id: parent.map_or_else(|| event.id().as_uuid().as_u128(), |p| p.trace_id),
        span_id: new_span_id(),
    };
    record_ids(&span, event, context);
    if let Some(parent) = parent {
        span.record(
            "parent_id",
            display(format_args!("{:016x}", parent.span_id)),
        );
    }
    HandleScope {
        enabled: Some((span, context)),
    }
}

impl HandleScope {
    /// Makes the invocation's future with `call` and runs it, both inside the span and with
    /// the delivery's context current on the task (so a handler's synchronous work in
    /// `Handler::call` is inside too).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), flowgate::CoreError> {
    /// let event = flowgate::Event::new("e", ())?;
    /// let scope = flowgate::trace_context::handle_scope("t", 0, "s", &event, 1);
    /// assert_eq!(scope.run(|| async { 42 }).await, 42);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn run<F: Future>(self, call: impl FnOnce() -> F) -> F::Output {
        match self.enabled {
            None => call().await,
            Some((span, context)) => {
                let future = span.in_scope(|| CURRENT.sync_scope(context, call));
                CURRENT.scope(context, future).instrument(span).await
            }
        }
    }
}
