//! [`RedisBus`]: the connection, the options, the topics of this process, and shutdown.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flowgate_bus::{Backend, BusError, BusReport, TopicSettings};
use flowgate_core::{BoxFuture, EventType};
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::AsyncConnectionConfig;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec::{Codec, Json};
use crate::topic::RedisTopic;

/// Settings of a [`RedisBus`], from [`RedisBus::builder`].
///
/// ```
/// use std::time::Duration;
/// let builder = flowgate::redis::RedisBus::builder("redis://127.0.0.1:6379/")
///     .namespace("billing")
///     .lease(Duration::from_secs(5));
/// assert_eq!(builder.options().lease, Duration::from_secs(5));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RedisOptions {
    /// Prefix of every key this bus writes; buses with different namespaces on one server
    /// never see each other's topics. Letters, digits, `-`, `_` and `.`.
    pub namespace: String,
    /// How long a member owns a partition without renewing. A member renews every third of
    /// it while alive (also while a handler runs long); a member that dies is replaced after
    /// at most this long.
    pub lease: Duration,
    /// How long an idle partition worker waits on the server for new entries per request.
    pub block: Duration,
    /// How long a command may take before it fails (publish, acknowledgement, lease).
    pub response_timeout: Duration,
    /// Entries a partition worker reads per request (and acknowledges per request, at most
    /// 2 ms later). Larger batches cost fewer round trips; each worker holds up to twice
    /// this many fetched events, within the topic's capacity.
    pub read_batch: usize,
}

impl Default for RedisOptions {
    /// Namespace `flowgate`, 10 s leases, 1 s blocking reads, 2 s response timeout, reads of
    /// 64 entries.
    ///
    /// ```
    /// use std::time::Duration;
    /// let options = flowgate::redis::RedisOptions::default();
    /// assert_eq!((options.namespace.as_str(), options.lease), ("flowgate", Duration::from_secs(10)));
    /// ```
    fn default() -> Self {
        Self {
            namespace: "flowgate".into(),
            lease: Duration::from_secs(10),
            block: Duration::from_secs(1),
            response_timeout: Duration::from_secs(2),
            read_batch: 64,
        }
    }
}

/// Builds a [`RedisBus`].
///
/// ```no_run
/// # async fn run() -> Result<(), flowgate::bus::BusError> {
/// let bus = flowgate::redis::RedisBus::builder("redis://127.0.0.1:6379/")
///     .namespace("shop")
///     .connect()
///     .await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RedisBusBuilder {
    url: String,
    options: RedisOptions,
}

impl RedisBusBuilder {
    /// Sets the key namespace (see [`RedisOptions::namespace`]).
    ///
    /// ```
    /// let builder = flowgate::redis::RedisBus::builder("redis://127.0.0.1/").namespace("shop");
    /// assert_eq!(builder.options().namespace, "shop");
    /// ```
    #[must_use]
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.options.namespace = namespace.into();
        self
    }

    /// Sets the partition lease (see [`RedisOptions::lease`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// let builder = flowgate::redis::RedisBus::builder("redis://127.0.0.1/").lease(Duration::from_secs(3));
    /// assert_eq!(builder.options().lease, Duration::from_secs(3));
    /// ```
    #[must_use]
    pub fn lease(mut self, lease: Duration) -> Self {
        self.options.lease = lease;
        self
    }

    /// Sets how long an idle worker's read blocks on the server (see [`RedisOptions::block`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// let builder = flowgate::redis::RedisBus::builder("redis://127.0.0.1/").block(Duration::from_millis(200));
    /// assert_eq!(builder.options().block, Duration::from_millis(200));
    /// ```
    #[must_use]
    pub fn block(mut self, block: Duration) -> Self {
        self.options.block = block;
        self
    }

    /// Sets the response timeout of commands (see [`RedisOptions::response_timeout`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// let builder = flowgate::redis::RedisBus::builder("redis://127.0.0.1/")
    ///     .response_timeout(Duration::from_secs(5));
    /// assert_eq!(builder.options().response_timeout, Duration::from_secs(5));
    /// ```
    #[must_use]
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.options.response_timeout = timeout;
        self
    }

    /// Sets the entries read per request (see [`RedisOptions::read_batch`]).
    ///
    /// ```
    /// let builder = flowgate::redis::RedisBus::builder("redis://127.0.0.1/").read_batch(16);
    /// assert_eq!(builder.options().read_batch, 16);
    /// ```
    #[must_use]
    pub fn read_batch(mut self, entries: usize) -> Self {
        self.options.read_batch = entries;
        self
    }

    /// The options so far.
    ///
    /// ```
    /// let builder = flowgate::redis::RedisBus::builder("redis://127.0.0.1/");
    /// assert_eq!(builder.options().namespace, "flowgate");
    /// ```
    pub fn options(&self) -> &RedisOptions {
        &self.options
    }

    /// Checks the options, connects, and checks that the server answers.
    ///
    /// # Errors
    ///
    /// [`BusError::InvalidConfig`] for a bad URL, namespace or duration;
    /// [`BusError::Unavailable`] when the server cannot be reached.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use flowgate::bus::BusError;
    /// use flowgate::redis::RedisBus;
    /// let bad = RedisBus::builder("redis://127.0.0.1/").namespace("a b").connect().await;
    /// assert!(matches!(bad, Err(BusError::InvalidConfig { what: "namespace", .. })));
    /// let url = RedisBus::builder("not a url").connect().await;
    /// assert!(matches!(url, Err(BusError::InvalidConfig { what: "redis url", .. })));
    /// # }
    /// ```
    pub async fn connect(self) -> Result<RedisBus, BusError> {
        let options = self.options;
        let namespace_ok = !options.namespace.is_empty()
            && options.namespace.len() <= 64
            && options
                .namespace
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !namespace_ok {
            return Err(BusError::InvalidConfig {
                what: "namespace",
                reason: format!(
                    "{:?}: use 1 to 64 letters, digits, '-', '_' or '.'",
                    options.namespace
                ),
            });
        }
        for (what, value) in [
            ("lease", options.lease),
            ("block", options.block),
            ("response timeout", options.response_timeout),
        ] {
            if value < Duration::from_millis(10) {
                return Err(BusError::InvalidConfig {
                    what,
                    reason: format!("{value:?}: must be at least 10 ms"),
                });
            }
        }
        let client =
            redis::Client::open(self.url.as_str()).map_err(|e| BusError::InvalidConfig {
                what: "redis url",
                reason: format!("{:?}: {e}", self.url),
            })?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(options.response_timeout))
            .set_connection_timeout(Some(options.response_timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2));
        let mut conn = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(unavailable)?;
        let _: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(RedisBus {
            shared: Arc::new(Shared {
                client,
                conn,
                options,
                topics: Mutex::new(Topics::default()),
            }),
        })
    }
}

pub(crate) fn unavailable(error: redis::RedisError) -> BusError {
    BusError::Unavailable(Box::new(error))
}

/// What every topic of a bus shares.
pub(crate) struct Shared {
    pub(crate) client: redis::Client,
    /// Commands that do not block (publish, acknowledge, leases): one multiplexed connection,
    /// which pipelines concurrent commands and reconnects with backoff.
    pub(crate) conn: ConnectionManager,
    pub(crate) options: RedisOptions,
    topics: Mutex<Topics>,
}

impl Shared {
    /// A connection of its own for blocking reads (a blocked command holds its connection).
    pub(crate) async fn blocking_connection(&self) -> redis::RedisResult<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_response_timeout(None)
            .set_connection_timeout(Some(self.options.response_timeout));
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }
}

#[derive(Default)]
struct Topics {
    by_name: HashMap<String, Arc<dyn AnyTopic>>,
    closed: bool,
}

/// A topic of any payload type, as shutdown sees it.
pub(crate) trait AnyTopic: Send + Sync {
    fn close(&self);
    #[cfg(feature = "metrics")]
    fn report_metrics(&self) -> BoxFuture<'static, ()>;
    fn shutdown(&self, deadline: tokio::time::Instant) -> BoxFuture<'static, ReportPart>;
}

/// One topic's part of a shutdown report.
pub(crate) type ReportPart = Box<dyn FnOnce(&mut BusReport) + Send>;

/// flowgate's bus on Redis Streams: the same topics, partitions, consumer groups and delivery
/// promises as the in-process [`Bus`](flowgate_bus::Bus), shared by every process that
/// connects to the same server and namespace.
///
/// It implements [`Backend`]: code written against the backend-neutral API moves from the
/// in-process bus to Redis by changing the line that builds the bus. See the crate docs for
/// the layout in Redis and what each promise means across processes.
///
/// ```no_run
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use flowgate::bus::{Backend, BackendTopic, SubscribeRequest, TopicSettings};
/// use flowgate::redis::RedisBus;
/// use flowgate::Event;
///
/// let bus = RedisBus::connect("redis://127.0.0.1:6379/").await?;
/// let orders = bus.create_topic("orders", TopicSettings::default().partitions(8)).await?;
/// let request = SubscribeRequest::new("billing-1", |order: Event<u64>| async move {
///     println!("order {}", order.payload());
///     Ok(())
/// });
/// let _billing = orders.subscribe(request.group("billing")).await?;
/// orders.publish(Event::new("order.placed", 42u64)?.with_key("customer-7")).await?;
/// bus.shutdown(Duration::from_secs(5)).await;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisBus {
    shared: Arc<Shared>,
}

impl RedisBus {
    /// Connects with the default [`RedisOptions`].
    ///
    /// # Errors
    ///
    /// As [`RedisBusBuilder::connect`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use flowgate::bus::BusError;
    /// // Nothing listens on port 1: a typed error, not a panic.
    /// let refused = flowgate::redis::RedisBus::connect("redis://127.0.0.1:1/").await;
    /// assert!(matches!(refused, Err(BusError::Unavailable(_))));
    /// # }
    /// ```
    pub async fn connect(url: &str) -> Result<Self, BusError> {
        Self::builder(url).connect().await
    }

    /// A builder for a bus with other options.
    ///
    /// ```
    /// let builder = flowgate::redis::RedisBus::builder("redis://127.0.0.1/");
    /// assert_eq!(builder.options().namespace, "flowgate");
    /// ```
    pub fn builder(url: impl Into<String>) -> RedisBusBuilder {
        RedisBusBuilder {
            url: url.into(),
            options: RedisOptions::default(),
        }
    }

    /// The options it runs with.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), flowgate::bus::BusError> {
    /// let bus = flowgate::redis::RedisBus::connect("redis://127.0.0.1/").await?;
    /// assert_eq!(bus.options().namespace, "flowgate");
    /// # Ok(())
    /// # }
    /// ```
    pub fn options(&self) -> &RedisOptions {
        &self.shared.options
    }

    /// Opens topic `name` with payloads encoded by `codec`. Every process opening the topic
    /// must give the same partition count, mode and codec; the first one to open it records
    /// its settings in Redis, and a later open with another partition count or mode fails.
    ///
    /// # Errors
    ///
    /// [`BusError::TopicExists`] when this bus opened the topic already or Redis holds other
    /// settings for it; [`BusError::InvalidConfig`] / [`BusError::Core`] for bad settings or
    /// name; [`BusError::ShutDown`] after shutdown; [`BusError::Unavailable`] when Redis
    /// cannot be reached.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), flowgate::bus::BusError> {
    /// use flowgate::bus::TopicSettings;
    /// use flowgate::redis::{Json, RedisBus};
    /// let bus = RedisBus::connect("redis://127.0.0.1/").await?;
    /// let orders = bus.create_topic_with::<u64>("orders", TopicSettings::default(), Json::new()).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn create_topic_with<T: Send + Sync + 'static>(
        &self,
        name: &str,
        settings: TopicSettings,
        codec: impl Codec<T>,
    ) -> Result<RedisTopic<T>, BusError> {
        let name = EventType::new(name)?;
        let config = settings.validate::<T>()?;
        {
            let topics = crate::lock(&self.shared.topics);
            if topics.closed {
                return Err(BusError::ShutDown);
            }
            if topics.by_name.contains_key(name.as_str()) {
                return Err(BusError::TopicExists {
                    topic: name.as_str().to_owned(),
                    detail: "",
                });
            }
        }
        let topic = RedisTopic::open(
            Arc::clone(&self.shared),
            name.as_str().to_owned(),
            config,
            Arc::new(codec),
        )
        .await?;
        let mut topics = crate::lock(&self.shared.topics);
        if topics.closed {
            return Err(BusError::ShutDown);
        }
        if topics.by_name.contains_key(name.as_str()) {
            return Err(BusError::TopicExists {
                topic: name.as_str().to_owned(),
                detail: "",
            });
        }
        topics
            .by_name
            .insert(name.as_str().to_owned(), Arc::new(topic.clone()));
        Ok(topic)
    }

    /// Copies every topic's figures into its `metrics` series (feature `metrics`; the series
    /// of `flowgate::bus::metrics`). Reading them costs a few Redis round trips per topic.
    #[cfg(feature = "metrics")]
    pub async fn report_metrics(&self) {
        let topics: Vec<_> = crate::lock(&self.shared.topics)
            .by_name
            .values()
            .cloned()
            .collect();
        for topic in topics {
            topic.report_metrics().await;
        }
    }

    /// Stops accepting publishes on every topic of this bus, lets this process's
    /// subscriptions work off what their groups still owe until `deadline`, then stops them,
    /// and reports what they did not deliver.
    ///
    /// A plain subscriber ends with the bus: what it was owed is listed in the report. A
    /// consumer-group member leaves its group in Redis: the group's remaining events stay
    /// there for its other members (or the next process that joins), and the report lists only
    /// what this process had fetched and not finished.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), flowgate::bus::BusError> {
    /// use std::time::Duration;
    /// let bus = flowgate::redis::RedisBus::connect("redis://127.0.0.1/").await?;
    /// let report = bus.shutdown(Duration::from_secs(5)).await;
    /// assert_eq!(report.not_delivered(), 0);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn shutdown(&self, deadline: Duration) -> BusReport {
        let until = tokio::time::Instant::now() + deadline;
        let topics: Vec<_> = {
            let mut topics = crate::lock(&self.shared.topics);
            topics.closed = true;
            topics.by_name.values().cloned().collect()
        };
        for topic in &topics {
            topic.close();
        }
        let parts = futures_util::future::join_all(topics.iter().map(|t| t.shutdown(until))).await;
        let mut report = BusReport::new();
        for part in parts {
            part(&mut report);
        }
        report
    }
}

impl fmt::Debug for RedisBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let topics = crate::lock(&self.shared.topics);
        let mut names: Vec<_> = topics.by_name.keys().collect();
        names.sort();
        f.debug_struct("RedisBus")
            .field("options", &self.shared.options)
            .field("topics", &names)
            .field("closed", &topics.closed)
            .finish()
    }
}

impl<T> Backend<T> for RedisBus
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    type Topic = RedisTopic<T>;

    async fn create_topic(
        &self,
        name: &str,
        settings: TopicSettings,
    ) -> Result<RedisTopic<T>, BusError> {
        self.create_topic_with(name, settings, Json::new()).await
    }

    async fn shutdown(&self, deadline: Duration) -> BusReport {
        RedisBus::shutdown(self, deadline).await
    }
}
