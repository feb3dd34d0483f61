//! Cursor pagination for every list route: `limit` (default 10, max 100) and an opaque `cursor`.
//! A cursor encodes the sort key of the last item returned, so pages stay stable while items are
//! added, and a client cannot forge a position it was not given (it would fail to decode).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::{Error, Result};

/// Items per page when the client does not say.
pub const DEFAULT_LIMIT: usize = 10;
/// The largest page a client may ask for.
pub const MAX_LIMIT: usize = 100;

/// Where a page ends; handed to the client as an opaque string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(String);

impl Cursor {
    /// Wraps the sort key of the last item of a page.
    pub fn after(sort_key: impl Into<String>) -> Self {
        Self(sort_key.into())
    }

    /// The sort key to continue after.
    pub fn sort_key(&self) -> &str {
        &self.0
    }

    /// The opaque form given to clients.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0.as_bytes())
    }

    /// Reads a cursor a client sent back.
    pub fn decode(raw: &str) -> Result<Self> {
        URL_SAFE_NO_PAD
            .decode(raw)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .filter(|s| !s.is_empty())
            .map(Self)
            .ok_or_else(Self::invalid)
    }

    /// The error for a cursor that decodes but points nowhere valid.
    pub fn invalid() -> Error {
        Error::invalid("invalid_cursor", "cursor is not one this API returned").at("cursor")
    }
}

/// What page of a list the client wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// How many items at most (1 to `MAX_LIMIT`).
    pub limit: usize,
    /// Continue after this position; `None` for the first page.
    pub after: Option<Cursor>,
}

impl Default for PageRequest {
    fn default() -> Self {
        Self {
            limit: DEFAULT_LIMIT,
            after: None,
        }
    }
}

impl PageRequest {
    /// Parses the `limit` and `cursor` query parameters.
    pub fn parse(limit: Option<&str>, cursor: Option<&str>) -> Result<Self> {
        let limit = match limit {
            None => DEFAULT_LIMIT,
            Some(raw) => raw
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    Error::invalid(
                        "invalid_limit",
                        format!("limit must be a whole number from 1 to {MAX_LIMIT}"),
                    )
                    .at("limit")
                })?,
        };
        let after = cursor.map(Cursor::decode).transpose()?;
        Ok(Self { limit, after })
    }
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items, in list order.
    pub items: Vec<T>,
    /// Present when more items follow.
    pub next: Option<Cursor>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` fetched items: the extra one only proves that more
    /// follow, so `hasMore` is exact rather than a guess.
    pub fn from_overfetch(
        mut items: Vec<T>,
        limit: usize,
        sort_key: impl Fn(&T) -> String,
    ) -> Self {
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|last| Cursor::after(sort_key(last)))
        } else {
            None
        };
        Self { items, next }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_outside_one_to_a_hundred_are_refused() {
        assert_eq!(PageRequest::parse(None, None).unwrap().limit, 10);
        assert_eq!(PageRequest::parse(Some("100"), None).unwrap().limit, 100);
        for bad in ["0", "101", "-1", "ten", ""] {
            let e = PageRequest::parse(Some(bad), None).unwrap_err();
            assert_eq!(e.code, "invalid_limit", "{bad}");
        }
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let c = Cursor::after("cus_0190");
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        for bad in ["", "%%%", "!"] {
            assert_eq!(
                Cursor::decode(bad).unwrap_err().code,
                "invalid_cursor",
                "{bad}"
            );
        }
    }

    #[test]
    fn overfetch_tells_exactly_whether_more_follow() {
        let page = Page::from_overfetch(vec![1, 2, 3], 2, |n| n.to_string());
        assert_eq!(page.items, vec![1, 2]);
        assert_eq!(page.next, Some(Cursor::after("2")));
        let page = Page::from_overfetch(vec![1, 2], 2, |n| n.to_string());
        assert_eq!(page.next, None);
    }
}
