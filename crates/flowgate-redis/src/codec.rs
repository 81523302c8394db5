//! How payloads become bytes on the wire: the [`Codec`] trait, JSON by default.

use std::fmt;
use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A payload could not be encoded or decoded.
///
/// ```
/// use flowgate::redis::{Codec, Json};
/// let error = Codec::<u32>::decode(&Json::new(), b"not json").unwrap_err();
/// assert!(error.to_string().starts_with("payload could not be decoded"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// Encoding failed (e.g. a map with non-string keys in JSON). The publish is refused and
    /// will never succeed with this payload.
    #[error("payload could not be encoded: {0}")]
    Encode(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Decoding failed: the bytes were written by another payload type or codec. The event is
    /// dead-lettered (see the crate docs), never handed to the handler.
    #[error("payload could not be decoded: {0}")]
    Decode(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Turns payloads into bytes and back. Every process that shares a topic must use the same
/// codec for it.
///
/// ```
/// use flowgate::redis::{Codec, CodecError};
/// /// A codec for plain UTF-8 strings, without serde.
/// struct Utf8;
/// impl Codec<String> for Utf8 {
///     fn encode(&self, payload: &String) -> Result<Vec<u8>, CodecError> {
///         Ok(payload.as_bytes().to_vec())
///     }
///     fn decode(&self, bytes: &[u8]) -> Result<String, CodecError> {
///         String::from_utf8(bytes.to_vec()).map_err(|e| CodecError::Decode(e.into()))
///     }
/// }
/// let bytes = Utf8.encode(&"hi".to_owned())?;
/// assert_eq!(Utf8.decode(&bytes)?, "hi");
/// # Ok::<(), CodecError>(())
/// ```
pub trait Codec<T>: Send + Sync + 'static {
    /// Encodes a payload.
    ///
    /// # Errors
    ///
    /// [`CodecError::Encode`] when the payload cannot be represented.
    ///
    /// ```
    /// use flowgate::redis::{Codec, Json};
    /// assert_eq!(Json::new().encode(&vec![1u8, 2])?, b"[1,2]");
    /// # Ok::<(), flowgate::redis::CodecError>(())
    /// ```
    fn encode(&self, payload: &T) -> Result<Vec<u8>, CodecError>;

    /// Decodes a payload.
    ///
    /// # Errors
    ///
    /// [`CodecError::Decode`] when the bytes are not a `T` in this codec.
    ///
    /// ```
    /// use flowgate::redis::{Codec, Json};
    /// let n: u32 = Json::new().decode(b"7")?;
    /// assert_eq!(n, 7);
    /// # Ok::<(), flowgate::redis::CodecError>(())
    /// ```
    fn decode(&self, bytes: &[u8]) -> Result<T, CodecError>;
}

/// JSON through `serde_json`: readable with `redis-cli`, and the default.
///
/// ```
/// use flowgate::redis::{Codec, Json};
/// #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
/// struct Order { id: u64 }
/// let json = Json::new();
/// let bytes = json.encode(&Order { id: 7 })?;
/// assert_eq!(bytes, br#"{"id":7}"#);
/// let back: Order = json.decode(&bytes)?;
/// assert_eq!(back, Order { id: 7 });
/// # Ok::<(), flowgate::redis::CodecError>(())
/// ```
pub struct Json(PhantomData<fn()>);

impl Json {
    /// The JSON codec.
    ///
    /// ```
    /// let _json = flowgate::redis::Json::new();
    /// ```
    pub fn new() -> Self {
        Self(PhantomData)
    }
}

impl Default for Json {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Json")
    }
}

impl<T: Serialize + DeserializeOwned> Codec<T> for Json {
    fn encode(&self, payload: &T) -> Result<Vec<u8>, CodecError> {
        serde_json::to_vec(payload).map_err(|e| CodecError::Encode(e.into()))
    }

    fn decode(&self, bytes: &[u8]) -> Result<T, CodecError> {
        serde_json::from_slice(bytes).map_err(|e| CodecError::Decode(e.into()))
    }
}

/// A compact binary encoding through `postcard` (feature `postcard`): smaller entries and
/// cheaper encoding than JSON, not readable with `redis-cli`. Field order is the format:
/// change a payload type only in ways its readers can decode.
///
/// ```
/// use flowgate::redis::{Codec, Json, Postcard};
/// #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
/// struct Order { id: u64, items: Vec<String> }
/// let order = Order { id: 7, items: vec!["tea".into()] };
/// let compact = Postcard::new().encode(&order)?;
/// assert!(compact.len() < Json::new().encode(&order)?.len());
/// let back: Order = Postcard::new().decode(&compact)?;
/// assert_eq!(back, order);
/// assert!(Codec::<Order>::decode(&Postcard::new(), &[0xff]).is_err(), "not an Order: an error, no panic");
/// # Ok::<(), flowgate::redis::CodecError>(())
/// ```
#[cfg(feature = "postcard")]
pub struct Postcard(PhantomData<fn()>);

#[cfg(feature = "postcard")]
impl Postcard {
    /// The postcard codec.
    ///
    /// ```
    /// let _compact = flowgate::redis::Postcard::new();
    /// ```
    pub fn new() -> Self {
        Self(PhantomData)
    }
}

#[cfg(feature = "postcard")]
impl Default for Postcard {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "postcard")]
impl fmt::Debug for Postcard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Postcard")
    }
}

#[cfg(feature = "postcard")]
impl<T: Serialize + DeserializeOwned> Codec<T> for Postcard {
    fn encode(&self, payload: &T) -> Result<Vec<u8>, CodecError> {
        postcard::to_allocvec(payload).map_err(|e| CodecError::Encode(e.into()))
    }

    fn decode(&self, bytes: &[u8]) -> Result<T, CodecError> {
        postcard::from_bytes(bytes).map_err(|e| CodecError::Decode(e.into()))
    }
}
