//! Keyset (cursor) pagination of the list endpoints: the page asked for ([`PageRequest`], from
//! `?limit=N&after=CURSOR`), the SQL that reads it, and the page read ([`Page`]). The wire
//! format (limits, the `Link` header) is [`crate::api_types::paging`].
//!
//! Every list is in creation order, `ORDER BY created_at, id`, and a page is the rows after the
//! cursor's `(created_at, id)`, a condition an index on those columns answers directly (no
//! `OFFSET`: a page deep in costs what the first costs). A row inserted while a client walks the
//! list comes after every existing row (its `created_at` is later), so the walk sees every row
//! that existed when it began exactly once.

use chrono::{DateTime, Utc};
use sqlx::{Postgres, QueryBuilder};

use super::error::{ApiError, ApiResult};
use crate::api_types::paging::{DEFAULT_LIMIT, MAX_LIMIT};

/// A position in a list: the (creation time, id) of the last row a page held. On the wire it is
/// opaque: hex of the time in microseconds since 1970 (8 bytes, big-endian) and the id's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// The row's `created_at`.
    pub created_at: DateTime<Utc>,
    /// The row's `id`.
    pub id: String,
}

/// The longest id a cursor may carry (ids are 24 or 10 hex digits).
const MAX_CURSOR_ID: usize = 64;

impl Cursor {
    /// The cursor of a row.
    pub fn of(created_at: DateTime<Utc>, id: &str) -> Self {
        Self {
            created_at,
            id: id.to_owned(),
        }
    }

    /// The cursor as the API shows it.
    pub fn encode(&self) -> String {
        let mut bytes = self.created_at.timestamp_micros().to_be_bytes().to_vec();
        bytes.extend_from_slice(self.id.as_bytes());
        hex::encode(bytes)
    }

    /// A cursor the API showed; `None` for anything else.
    pub fn decode(text: &str) -> Option<Self> {
        let bytes = hex::decode(text).ok()?;
        let (micros, id) = bytes.split_first_chunk::<8>()?;
        let id = std::str::from_utf8(id).ok()?;
        let id_ok = !id.is_empty()
            && id.len() <= MAX_CURSOR_ID
            && id.bytes().all(|byte| byte.is_ascii_alphanumeric());
        if !id_ok {
            return None;
        }
        Some(Self {
            created_at: DateTime::from_timestamp_micros(i64::from_be_bytes(*micros))?,
            id: id.to_owned(),
        })
    }
}

/// The page a list request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// Rows in the page, 1 to [`MAX_LIMIT`].
    pub limit: u32,
    /// Start after this position; `None`: the first page.
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
    /// Reads `limit` and `after` from a query's (name, value) pairs; anything else, a repeated
    /// parameter, a limit out of range or a cursor the API did not make is a 400.
    pub fn from_pairs(pairs: &[(String, String)]) -> ApiResult<Self> {
        let mut page = Self::default();
        let (mut limit_seen, mut after_seen) = (false, false);
        for (name, value) in pairs {
            let seen = match name.as_str() {
                "limit" => &mut limit_seen,
                "after" => &mut after_seen,
                _ => return Err(invalid_query(format!("unknown query parameter {name:?}"))),
            };
            if std::mem::replace(seen, true) {
                return Err(invalid_query(format!("{name} given twice")));
            }
            if name == "limit" {
                page.limit = value
                    .parse()
                    .ok()
                    .filter(|limit| (1..=MAX_LIMIT).contains(limit))
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            "invalid_limit",
                            format!("limit must be a whole number from 1 to {MAX_LIMIT}"),
                            "query: limit",
                        )
                    })?;
            } else {
                page.after = Some(Cursor::decode(value).ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_cursor",
                        "after must be a cursor from a previous page's Link header",
                        "query: after",
                    )
                })?);
            }
        }
        Ok(page)
    }

    /// The query string that asks for the page after `next` with the same limit.
    pub fn next_query(&self, next: &Cursor) -> String {
        format!("limit={}&after={}", self.limit, next.encode())
    }

    /// Ends a `SELECT ... WHERE <condition>` with this page's keyset condition, order and limit
    /// (one row more than the page, to tell whether another page follows).
    pub fn push_keyset(&self, query: &mut QueryBuilder<Postgres>) {
        if let Some(after) = &self.after {
            query
                .push(" AND (created_at, id) > (")
                .push_bind(after.created_at)
                .push(", ")
                .push_bind(after.id.clone())
                .push(")");
        }
        query
            .push(" ORDER BY created_at, id LIMIT ")
            .push_bind(i64::from(self.limit) + 1);
    }
}

fn invalid_query(message: String) -> ApiError {
    ApiError::bad_request(
        "invalid_query",
        message,
        "query: limit and after only (see the API's pagination)",
    )
}

/// One page of a list and where the next begins (`None`: this is the last).
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The rows, in creation order.
    pub items: Vec<T>,
    /// The cursor of the next page, when more rows follow.
    pub next: Option<Cursor>,
}

impl<T> Page<T> {
    /// The page of `rows` read by [`PageRequest::push_keyset`] (up to one more than the limit),
    /// `key` giving a row's position.
    pub fn cut(mut rows: Vec<T>, request: &PageRequest, key: impl Fn(&T) -> Cursor) -> Self {
        let limit = usize::try_from(request.limit).unwrap_or(usize::MAX);
        let next = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(key)
        } else {
            None
        };
        Self { items: rows, next }
    }

    /// The same page with each row converted.
    pub fn try_map<U, E>(self, convert: impl FnMut(T) -> Result<U, E>) -> Result<Page<U>, E> {
        Ok(Page {
            items: self.items.into_iter().map(convert).collect::<Result<_, E>>()?,
            next: self.next,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(query: &[(&str, &str)]) -> Vec<(String, String)> {
        query
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn cursors_round_trip_and_others_are_refused() {
        let at = DateTime::from_timestamp_micros(1_767_225_600_123_456).expect("time");
        let cursor = Cursor::of(at, "0123456789abcdef01234567");
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor.clone()));
        for bad in [
            "",
            "zz",
            "00",
            &cursor.encode()[..16],
            &format!("{}2f", cursor.encode()),
            &hex::encode([0u8; 8 + MAX_CURSOR_ID + 1]),
        ] {
            assert_eq!(Cursor::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn limits_and_cursors_are_read_and_bad_ones_refused() {
        assert_eq!(
            PageRequest::from_pairs(&[]).expect("none"),
            PageRequest::default()
        );
        let page = PageRequest::from_pairs(&pairs(&[("limit", "1000")])).expect("max");
        assert_eq!(page.limit, MAX_LIMIT);
        let cursor = Cursor::of(DateTime::UNIX_EPOCH, "abc");
        let page =
            PageRequest::from_pairs(&pairs(&[("after", &cursor.encode()), ("limit", "5")])).expect("both");
        assert_eq!(page.after, Some(cursor.clone()));
        assert_eq!(
            page.next_query(&cursor),
            format!("limit=5&after={}", cursor.encode())
        );
        for (query, code) in [
            (vec![("limit", "0")], "invalid_limit"),
            (vec![("limit", "1001")], "invalid_limit"),
            (vec![("limit", "ten")], "invalid_limit"),
            (vec![("limit", "-1")], "invalid_limit"),
            (vec![("after", "not-a-cursor")], "invalid_cursor"),
            (vec![("after", "")], "invalid_cursor"),
            (vec![("offset", "10")], "invalid_query"),
            (vec![("limit", "1"), ("limit", "2")], "invalid_query"),
        ] {
            let error = PageRequest::from_pairs(&pairs(&query)).expect_err("refused");
            assert_eq!(error.code(), code, "{query:?}");
        }
    }

    #[test]
    fn a_page_holds_the_limit_and_points_after_its_last_row() {
        let request = PageRequest {
            limit: 2,
            after: None,
        };
        let key = |n: &i64| Cursor::of(DateTime::UNIX_EPOCH, &n.to_string());
        let full = Page::cut(vec![1, 2, 3], &request, key);
        assert_eq!(full.items, vec![1, 2]);
        assert_eq!(full.next.map(|cursor| cursor.id), Some("2".to_owned()));
        let last = Page::cut(vec![1, 2], &request, key);
        assert_eq!((last.items, last.next), (vec![1, 2], None));
    }
}
