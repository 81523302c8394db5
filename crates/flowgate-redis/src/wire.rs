//! An event as a Redis stream entry, and back.
//!
//! Fields: `id` (the event id, canonical UUID text), `type`, `ts` (nanoseconds since the Unix
//! epoch), `key` (the ordering key, when set), `idem` (the idempotency key, when set apart
//! from the id), `m:<name>` per metadata entry, and `p` (the payload, as the topic's codec
//! wrote it).

use std::time::{Duration, SystemTime};

use flowgate_core::{Event, EventId, EventType, Key};
use redis::Value;

use crate::codec::{Codec, CodecError};

/// A stream entry id, ordered as Redis orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct EntryId {
    pub(crate) ms: u64,
    pub(crate) seq: u64,
}

impl EntryId {
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let (ms, seq) = text.split_once('-')?;
        Some(Self {
            ms: ms.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

impl std::fmt::Display for EntryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// An entry's fields (name, value, name, value, ...) in one buffer: two allocations per
/// entry, however many fields. Written as that many command arguments.
#[derive(Debug, Clone, Default)]
pub(crate) struct Fields {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Fields {
    fn with_capacity(bytes: usize, fields: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(2 * fields),
        }
    }

    /// Adds a field.
    pub(crate) fn push(&mut self, name: &[u8], value: &[u8]) {
        self.bytes.extend_from_slice(name);
        self.ends.push(self.bytes.len());
        self.bytes.extend_from_slice(value);
        self.ends.push(self.bytes.len());
    }

    /// Names and values, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter().copied())
            .map(|(a, b)| &self.bytes[a..b])
    }

    /// How many names and values.
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }
}

impl redis::ToRedisArgs for Fields {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        for arg in self.iter() {
            out.write_arg(arg);
        }
    }

    fn num_of_args(&self) -> usize {
        self.len()
    }
}

/// The fields of `event`'s entry.
pub(crate) fn encode<T: 'static>(
    event: &Event<T>,
    codec: &dyn Codec<T>,
) -> Result<Fields, CodecError> {
    let payload = codec.encode(event.payload())?;
    let nanos = event
        .timestamp()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut fields = Fields::with_capacity(96 + payload.len(), 6 + event.metadata().len());
    let mut id = uuid::Uuid::encode_buffer();
    fields.push(
        b"id",
        event
            .id()
            .as_uuid()
            .hyphenated()
            .encode_lower(&mut id)
            .as_bytes(),
    );
    fields.push(b"type", event.kind().as_str().as_bytes());
    fields.push(b"ts", nanos.to_string().as_bytes());
    if let Some(key) = event.key() {
        fields.push(b"key", key.as_str().as_bytes());
    }
    let idempotency = event.idempotency_key();
    if idempotency != Key::from(event.id()) {
        fields.push(b"idem", idempotency.as_str().as_bytes());
    }
    for (name, value) in event.metadata() {
        fields.push(format!("m:{name}").as_bytes(), value.as_bytes());
    }
    fields.push(b"p", &payload);
    Ok(fields)
}

/// One entry read from a stream: its id, and what it holds.
#[derive(Debug)]
pub(crate) struct Entry<T> {
    pub(crate) id: EntryId,
    pub(crate) body: Body<T>,
}

/// What an entry holds.
#[derive(Debug)]
pub(crate) enum Body<T> {
    /// The event.
    Event(Event<T>),
    /// Fields that are not an event of this topic's payload type (and why), for the
    /// dead-letter stream.
    Undecodable(Undecodable),
    /// Nothing: the entry was deleted while it was pending (a drop policy, or an XDEL by
    /// hand). It only needs acknowledging.
    Deleted,
}

/// An entry whose event could not be rebuilt.
#[derive(Debug)]
pub(crate) struct Undecodable {
    pub(crate) reason: String,
    pub(crate) fields: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Decodes the entries of one stream from a reply's `[[id, [field, value, ...]], ...]`.
pub(crate) fn decode_entries<T: 'static>(entries: Value, codec: &dyn Codec<T>) -> Vec<Entry<T>> {
    let Value::Array(entries) = entries else {
        return Vec::new();
    };
    let mut decoded = Vec::with_capacity(entries.len());
    for entry in entries {
        let Value::Array(mut parts) = entry else {
            continue;
        };
        if parts.len() != 2 {
            continue;
        }
        let fields = parts.pop().unwrap_or(Value::Nil);
        let Some(id) = as_text(&parts[0]).and_then(|t| EntryId::parse(&t)) else {
            continue;
        };
        let Value::Array(fields) = fields else {
            decoded.push(Entry {
                id,
                body: Body::Deleted,
            });
            continue;
        };
        let mut pairs = Vec::with_capacity(fields.len() / 2);
        let mut fields = fields.into_iter();
        while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
            if let (Value::BulkString(name), Value::BulkString(value)) = (name, value) {
                pairs.push((name, value));
            }
        }
        let body = match rebuild(&pairs, codec) {
            Ok(event) => Body::Event(event),
            Err(reason) => Body::Undecodable(Undecodable {
                reason,
                fields: pairs,
            }),
        };
        decoded.push(Entry { id, body });
    }
    decoded
}

fn rebuild<T: 'static>(
    fields: &[(Vec<u8>, Vec<u8>)],
    codec: &dyn Codec<T>,
) -> Result<Event<T>, String> {
    let text = |name: &[u8]| -> Result<Option<&str>, String> {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| {
                std::str::from_utf8(v)
                    .map_err(|_| format!("field {:?} is not UTF-8", String::from_utf8_lossy(name)))
            })
            .transpose()
    };
    let required = |name: &'static str| -> Result<&str, String> {
        text(name.as_bytes())?.ok_or_else(|| format!("entry has no {name:?} field"))
    };
    let id = uuid::Uuid::parse_str(required("id")?).map_err(|e| format!("bad event id: {e}"))?;
    let kind = EventType::new(required("type")?).map_err(|e| format!("bad event type: {e}"))?;
    let nanos: u64 = required("ts")?
        .parse()
        .map_err(|e| format!("bad timestamp: {e}"))?;
    let payload = fields
        .iter()
        .find(|(n, _)| n == b"p")
        .ok_or("entry has no \"p\" (payload) field")?;
    let payload = codec.decode(&payload.1).map_err(|e| e.to_string())?;
    let mut event = Event::with_type(kind, payload)
        .with_id(EventId::from_uuid(id))
        .with_timestamp(SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos));
    if let Some(key) = text(b"key")? {
        event = event.with_key(key);
    }
    if let Some(idem) = text(b"idem")? {
        event = event.with_idempotency_key(idem);
    }
    for (name, value) in fields {
        if let Some(meta) = name.strip_prefix(b"m:") {
            event = event.with_metadata(
                String::from_utf8_lossy(meta).into_owned(),
                String::from_utf8_lossy(value).into_owned(),
            );
        }
    }
    Ok(event)
}

/// A reply value as text (bulk or simple strings).
pub(crate) fn as_text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(text) => Some(text.clone()),
        Value::Okay => Some("OK".into()),
        _ => None,
    }
}

/// A reply value as an integer (integers, or numeric text).
pub(crate) fn as_int(value: &Value) -> Option<i64> {
    match value {
        Value::Int(n) => Some(*n),
        other => as_text(other)?.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Json;

    fn reply(id: &str, fields: &Fields) -> Value {
        Value::Array(vec![Value::Array(vec![
            Value::BulkString(id.as_bytes().to_vec()),
            Value::Array(
                fields
                    .iter()
                    .map(|f| Value::BulkString(f.to_vec()))
                    .collect(),
            ),
        ])])
    }

    #[test]
    fn an_event_survives_the_round_trip_whole() {
        let sent = Event::new("order.placed", vec![1u32, 2])
            .unwrap()
            .with_key("order-7")
            .with_idempotency_key("pay-7")
            .with_metadata("traceparent", "00-abc-01");
        let fields = encode(&sent, &Json::new()).unwrap();
        let mut entries = decode_entries::<Vec<u32>>(reply("5-3", &fields), &Json::new());
        let entry = entries.pop().unwrap();
        assert_eq!(entry.id, EntryId { ms: 5, seq: 3 });
        let Body::Event(got) = entry.body else {
            panic!("not decoded: {:?}", entry.body)
        };
        assert_eq!(got.id(), sent.id());
        assert_eq!(got.kind(), sent.kind());
        assert_eq!(got.timestamp(), sent.timestamp());
        assert_eq!(got.key(), sent.key());
        assert_eq!(got.idempotency_key(), sent.idempotency_key());
        assert_eq!(got.metadata(), sent.metadata());
        assert_eq!(got.payload(), sent.payload());
    }

    #[test]
    fn the_default_idempotency_key_is_not_written_twice() {
        let sent = Event::new("tick", 1u8).unwrap();
        let fields = encode(&sent, &Json::new()).unwrap();
        assert!(!fields.iter().any(|f| f == b"idem"));
        assert_eq!(fields.len(), 8, "id, type, ts, p");
        let entry = decode_entries::<u8>(reply("1-0", &fields), &Json::new()).pop();
        let Some(Entry {
            body: Body::Event(got),
            ..
        }) = entry
        else {
            panic!("not decoded: {entry:?}")
        };
        assert_eq!(got.idempotency_key(), Key::from(sent.id()));
    }

    #[test]
    fn an_entry_of_another_payload_type_is_undecodable_not_a_panic() {
        let fields = encode(
            &Event::new("tick", String::from("text")).unwrap(),
            &Json::new(),
        )
        .unwrap();
        let entry = decode_entries::<u64>(reply("1-0", &fields), &Json::new())
            .pop()
            .unwrap();
        let Body::Undecodable(undecodable) = entry.body else {
            panic!("decoded a string as a u64")
        };
        assert!(
            undecodable.reason.contains("could not be decoded"),
            "{}",
            undecodable.reason
        );
        assert!(undecodable.fields.iter().any(|(n, _)| n == b"p"));
    }

    #[test]
    fn a_deleted_entry_is_reported_as_deleted() {
        let deleted = Value::Array(vec![Value::Array(vec![
            Value::BulkString(b"7-0".to_vec()),
            Value::Nil,
        ])]);
        let entry = decode_entries::<u8>(deleted, &Json::new()).pop().unwrap();
        assert!(matches!(entry.body, Body::Deleted));
    }

    #[test]
    fn entry_ids_order_as_redis_orders_them() {
        let a = EntryId::parse("99-5").unwrap();
        let b = EntryId::parse("100-0").unwrap();
        assert!(a < b);
        assert_eq!(b.to_string(), "100-0");
        assert!(EntryId::parse("x-1").is_none());
    }
}
