//! Stream names: `category-id`.
//!
//! The category is the part before the first `-`; the id is everything after it (and may itself
//! contain `-`, as UUIDs do). A category is one or more ASCII letters, digits, `_`, `.` or `:`;
//! an id is one or more characters that are neither whitespace nor control characters. The whole
//! name is at most [`MAX_STREAM_NAME_LEN`] bytes. Names are case-sensitive.

use crate::StoreError;

/// The longest stream name accepted, in bytes.
///
/// ```
/// use flowgate::store::{Store, ExpectedVersion, MAX_STREAM_NAME_LEN};
/// use flowgate::Event;
///
/// let store = Store::<u32>::new();
/// let long = format!("a-{}", "x".repeat(MAX_STREAM_NAME_LEN));
/// assert!(store.append(&long, ExpectedVersion::Any, Event::new("e", 1)?).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub const MAX_STREAM_NAME_LEN: usize = 255;

fn is_category_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':')
}

/// Splits and checks a stream name; returns the byte length of its category.
pub(crate) fn parse(name: &str) -> Result<usize, StoreError> {
    let invalid = |reason: &'static str| StoreError::InvalidStreamName {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("the name is empty"));
    }
    if name.len() > MAX_STREAM_NAME_LEN {
        return Err(invalid("the name is longer than 255 bytes"));
    }
    let Some(dash) = name.bytes().position(|b| b == b'-') else {
        return Err(invalid("there is no '-' between the category and the id"));
    };
    check_category(&name[..dash]).map_err(invalid)?;
    let id = &name[dash + 1..];
    if id.is_empty() {
        return Err(invalid("the id after the first '-' is empty"));
    }
    if id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("the id contains whitespace or a control character"));
    }
    Ok(dash)
}

fn check_category(category: &str) -> Result<(), &'static str> {
    if category.is_empty() {
        return Err("the category before the first '-' is empty");
    }
    if !category.bytes().all(is_category_byte) {
        return Err("the category may contain only ASCII letters, digits, '_', '.' and ':'");
    }
    Ok(())
}

/// Checks a category name (as used by category reads and subscriptions).
pub(crate) fn parse_category(category: &str) -> Result<(), StoreError> {
    if category.len() > MAX_STREAM_NAME_LEN {
        return Err(StoreError::InvalidCategory {
            category: category.to_owned(),
            reason: "the category is longer than 255 bytes",
        });
    }
    check_category(category).map_err(|reason| StoreError::InvalidCategory {
        category: category.to_owned(),
        reason,
    })
}

/// The category of a stream name: the part before the first `-`.
///
/// # Errors
///
/// [`StoreError::InvalidStreamName`] when `stream` is not a valid `category-id` name.
///
/// ```
/// use flowgate::store::category_of;
/// assert_eq!(category_of("account-42")?, "account");
/// assert_eq!(category_of("order-7f3e-11ee")?, "order");
/// assert!(category_of("no_dash").is_err());
/// # Ok::<(), flowgate::store::StoreError>(())
/// ```
pub fn category_of(stream: &str) -> Result<&str, StoreError> {
    parse(stream).map(|dash| &stream[..dash])
}

/// The id of a stream name: everything after the first `-`. Category consumer groups hash it.
///
/// # Errors
///
/// [`StoreError::InvalidStreamName`] when `stream` is not a valid `category-id` name.
///
/// ```
/// use flowgate::store::id_of;
/// assert_eq!(id_of("order-7f3e-11ee")?, "7f3e-11ee");
/// # Ok::<(), flowgate::store::StoreError>(())
/// ```
pub fn id_of(stream: &str) -> Result<&str, StoreError> {
    parse(stream).map(|dash| &stream[dash + 1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_names_are_typed_errors_with_a_reason() {
        for bad in [
            "", "-", "a-", "-a", "nodash", "a b-1", "acc-a b", "acc-\n", "ä-1", "a*-1",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(
                matches!(err, StoreError::InvalidStreamName { .. }),
                "{bad:?} gave {err:?}"
            );
        }
        assert!(parse(&format!("a-{}", "x".repeat(300))).is_err());
    }

    #[test]
    fn the_category_is_before_the_first_dash() {
        assert_eq!(category_of("account-1").unwrap(), "account");
        assert_eq!(id_of("account-1-2").unwrap(), "1-2");
        assert_eq!(category_of("billing.v2:x-é").unwrap(), "billing.v2:x");
    }
}
