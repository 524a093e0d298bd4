//! Backend-neutral SQL: one statement text with `$n` parameters, which
//! SQLite (through sqlx) and PostgreSQL both read, arguments as plain
//! values, and rows read by column name. The store's logic is written once
//! against [`Backend`]; where the two dialects differ (scalar `MIN`/`MAX`,
//! boolean literals, JSON aggregation) the statement asks [`Dialect`].

use std::borrow::Cow;
use std::fmt::Write as _;
use std::future::Future;

use sqlx::{Postgres, Sqlite};

use crate::StoreError;

/// Which SQL dialect a backend speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The scalar minimum of two values (`MIN(a, b)` in SQLite).
    pub fn least(self) -> &'static str {
        match self {
            Dialect::Sqlite => "MIN",
            Dialect::Postgres => "LEAST",
        }
    }
    /// The scalar maximum of two values (`MAX(a, b)` in SQLite).
    pub fn greatest(self) -> &'static str {
        match self {
            Dialect::Sqlite => "MAX",
            Dialect::Postgres => "GREATEST",
        }
    }
    /// A boolean literal as the column stores it (SQLite keeps 0 and 1,
    /// which its partial indexes name).
    pub fn boolean(self, v: bool) -> &'static str {
        match (self, v) {
            (Dialect::Sqlite, true) => "1",
            (Dialect::Sqlite, false) => "0",
            (Dialect::Postgres, true) => "TRUE",
            (Dialect::Postgres, false) => "FALSE",
        }
    }
    /// A JSON array (as text) of one JSON array per row of `cols`, `[]` when
    /// there are none, in the order of `order` when given.
    pub fn json_rows(self, cols: &str, order: Option<&str>) -> String {
        match (self, order) {
            (Dialect::Sqlite, _) => format!("json_group_array(json_array({cols}))"),
            (Dialect::Postgres, None) => {
                format!("COALESCE(json_agg(json_build_array({cols}))::text, '[]')")
            }
            (Dialect::Postgres, Some(o)) => {
                format!("COALESCE(json_agg(json_build_array({cols}) ORDER BY {o})::text, '[]')")
            }
        }
    }
    /// A subquery yielding the strings of the JSON array bound as parameter
    /// `$n`, each through `decode_hex` when asked (for BLOB keys).
    pub fn json_array_values(self, n: usize, decode_hex: bool) -> String {
        match (self, decode_hex) {
            (Dialect::Sqlite, false) => format!("SELECT value FROM json_each(${n})"),
            (Dialect::Sqlite, true) => format!("SELECT unhex(value) FROM json_each(${n})"),
            (Dialect::Postgres, false) => {
                format!("SELECT v FROM jsonb_array_elements_text(${n}::jsonb) AS j(v)")
            }
            (Dialect::Postgres, true) => format!(
                "SELECT decode(v, 'hex') FROM jsonb_array_elements_text(${n}::jsonb) AS j(v)"
            ),
        }
    }
    /// A BLOB column as hex text (the case differs; callers lowercase).
    pub fn hex(self, col: &str) -> String {
        match self {
            Dialect::Sqlite => format!("hex({col})"),
            Dialect::Postgres => format!("encode({col}, 'hex')"),
        }
    }
}

/// One bound value.
#[derive(Debug, Clone)]
pub enum Arg<'a> {
    Int(Option<i64>),
    Text(Option<Cow<'a, str>>),
    Bool(bool),
    Bytes(Option<Cow<'a, [u8]>>),
}

macro_rules! arg_from {
    ($($t:ty => |$v:ident| $e:expr;)*) => {
        $(impl<'a> From<$t> for Arg<'a> {
            fn from($v: $t) -> Self {
                $e
            }
        })*
    };
}

arg_from! {
    i64 => |v| Arg::Int(Some(v));
    &'a i64 => |v| Arg::Int(Some(*v));
    Option<i64> => |v| Arg::Int(v);
    u32 => |v| Arg::Int(Some(i64::from(v)));
    bool => |v| Arg::Bool(v);
    &'a str => |v| Arg::Text(Some(Cow::Borrowed(v)));
    &'a String => |v| Arg::Text(Some(Cow::Borrowed(v.as_str())));
    String => |v| Arg::Text(Some(Cow::Owned(v)));
    Option<&'a str> => |v| Arg::Text(v.map(Cow::Borrowed));
    Option<String> => |v| Arg::Text(v.map(Cow::Owned));
    &'a Option<String> => |v| Arg::Text(v.as_deref().map(Cow::Borrowed));
    &'a [u8] => |v| Arg::Bytes(Some(Cow::Borrowed(v)));
    Vec<u8> => |v| Arg::Bytes(Some(Cow::Owned(v)));
    Option<Vec<u8>> => |v| Arg::Bytes(v.map(Cow::Owned));
}

/// A statement and its arguments.
#[derive(Debug, Clone)]
pub struct Sql<'a> {
    text: Cow<'static, str>,
    args: Vec<Arg<'a>>,
}

impl<'a> Sql<'a> {
    /// A fixed statement.
    pub fn new(text: &'static str) -> Self {
        Sql {
            text: Cow::Borrowed(text),
            args: Vec::new(),
        }
    }
    /// A statement assembled from fixed fragments (never from input: every
    /// value is bound).
    pub fn built(text: String) -> Self {
        Sql {
            text: Cow::Owned(text),
            args: Vec::new(),
        }
    }
    /// Bind the next parameter.
    pub fn bind(mut self, v: impl Into<Arg<'a>>) -> Self {
        self.args.push(v.into());
        self
    }
    /// Append fixed text.
    pub fn push(&mut self, text: &str) -> &mut Self {
        self.text.to_mut().push_str(text);
        self
    }
    /// Append a parameter placeholder (`$n`) and bind it.
    pub fn push_bind(&mut self, v: impl Into<Arg<'a>>) -> &mut Self {
        self.args.push(v.into());
        let n = self.args.len();
        // writing to a String cannot fail
        let _ = write!(self.text.to_mut(), "${n}");
        self
    }
    /// Append `VALUES (…), (…)`: `row` binds one item's parameters.
    pub fn push_values<T>(
        &mut self,
        items: impl IntoIterator<Item = T>,
        mut row: impl FnMut(Values<'_, 'a>, T),
    ) -> &mut Self {
        self.push("VALUES ");
        for (i, item) in items.into_iter().enumerate() {
            self.push(if i == 0 { "(" } else { ", (" });
            row(
                Values {
                    sql: &mut *self,
                    first: true,
                },
                item,
            );
            self.push(")");
        }
        self
    }
    /// Append `(v1, v2, …)` for an `IN` list.
    pub fn push_list<T: Into<Arg<'a>>>(&mut self, items: impl IntoIterator<Item = T>) -> &mut Self {
        self.push("(");
        for (i, v) in items.into_iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.push_bind(v);
        }
        self.push(")")
    }

    /// Every row.
    pub async fn all<B: Backend>(
        self,
        on: impl Into<Exec<'a, B>>,
    ) -> Result<Vec<B::Row>, StoreError> {
        B::fetch_all(on.into(), self).await
    }
    /// The first row, if any.
    pub async fn optional<B: Backend>(
        self,
        on: impl Into<Exec<'a, B>>,
    ) -> Result<Option<B::Row>, StoreError> {
        B::fetch_optional(on.into(), self).await
    }
    /// The one row (a storage error when there is none).
    pub async fn one<B: Backend>(self, on: impl Into<Exec<'a, B>>) -> Result<B::Row, StoreError> {
        B::fetch_optional(on.into(), self)
            .await?
            .ok_or_else(|| StoreError::Storage("a statement returned no row".into()))
    }
    /// Run it; how many rows it changed.
    pub async fn run<B: Backend>(self, on: impl Into<Exec<'a, B>>) -> Result<u64, StoreError> {
        B::execute(on.into(), self).await
    }
}

/// The parameters of one `VALUES` row.
pub struct Values<'s, 'a> {
    sql: &'s mut Sql<'a>,
    first: bool,
}

impl<'a> Values<'_, 'a> {
    /// Bind the row's next parameter.
    pub fn push_bind(&mut self, v: impl Into<Arg<'a>>) -> &mut Self {
        if !std::mem::take(&mut self.first) {
            self.sql.push(", ");
        }
        self.sql.push_bind(v);
        self
    }
}

/// The writer's connection.
pub struct Conn<B: Backend>(pub B::Conn);
/// The readers' pool.
pub struct Pool<B: Backend>(pub B::Pool);

impl<B: Backend> Clone for Pool<B> {
    fn clone(&self) -> Self {
        Pool(self.0.clone())
    }
}

/// Where a statement runs.
pub enum Exec<'c, B: Backend> {
    Conn(&'c mut B::Conn),
    Pool(&'c B::Pool),
}

impl<'c, B: Backend> From<&'c mut Conn<B>> for Exec<'c, B> {
    fn from(c: &'c mut Conn<B>) -> Self {
        Exec::Conn(&mut c.0)
    }
}

impl<'c, B: Backend> From<&'c Pool<B>> for Exec<'c, B> {
    fn from(p: &'c Pool<B>) -> Self {
        Exec::Pool(&p.0)
    }
}

/// A database the store runs on.
pub trait Backend: Send + Sync + Sized + 'static {
    type Conn: Send + 'static;
    type Pool: Clone + Send + Sync + 'static;
    type Row: RowRead + Send + 'static;
    const DIALECT: Dialect;

    fn fetch_all<'c>(
        on: Exec<'c, Self>,
        q: Sql<'c>,
    ) -> impl Future<Output = Result<Vec<Self::Row>, StoreError>> + Send + 'c;
    fn fetch_optional<'c>(
        on: Exec<'c, Self>,
        q: Sql<'c>,
    ) -> impl Future<Output = Result<Option<Self::Row>, StoreError>> + Send + 'c;
    fn execute<'c>(
        on: Exec<'c, Self>,
        q: Sql<'c>,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send + 'c;
}

/// Statements with at least this many arguments bind anonymous
/// placeholders on SQLite ([`anonymous_placeholders`]).
const ANONYMOUS_FROM: usize = 16;

/// `text` with `$1 … $n` written as anonymous `?` when they appear once
/// each, in order, outside quotes (as [`Sql::push_bind`] writes them);
/// None when the text uses them any other way (it is then kept as is).
///
/// SQLite looks a numbered parameter's name up by a linear scan, and sqlx
/// asks for every parameter's name, so binding a statement with n numbered
/// parameters costs O(n²): a group commit inserting a few hundred tokens
/// in one statement spent most of its time there. Anonymous parameters
/// have no name to scan for.
fn anonymous_placeholders(text: &str, args: usize) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let (mut next, mut quote, mut copied, mut i) = (1usize, None::<u8>, 0usize, 0usize);
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'\'' || b == b'"' => quote = Some(b),
            None if b == b'$' => {
                let digits = bytes[i + 1..]
                    .iter()
                    .take_while(|c| c.is_ascii_digit())
                    .count();
                if digits > 0 {
                    let n: usize = text[i + 1..i + 1 + digits].parse().ok()?;
                    if n != next {
                        return None;
                    }
                    next += 1;
                    out.push_str(&text[copied..i]);
                    out.push('?');
                    i += 1 + digits;
                    copied = i;
                    continue;
                }
            }
            None => {}
        }
        i += 1;
    }
    if next - 1 != args || next == 1 {
        return None;
    }
    out.push_str(&text[copied..]);
    Some(out)
}

/// The sqlx query for `q`, every argument bound.
fn build<DB>(
    q: Sql<'_>,
    dialect: Dialect,
) -> sqlx::query::Query<'static, DB, <DB as sqlx::Database>::Arguments>
where
    DB: sqlx::Database,
    for<'e> Option<i64>: sqlx::Encode<'e, DB> + sqlx::Type<DB>,
    for<'e> Option<&'e str>: sqlx::Encode<'e, DB> + sqlx::Type<DB>,
    for<'e> String: sqlx::Encode<'e, DB> + sqlx::Type<DB>,
    for<'e> Option<&'e [u8]>: sqlx::Encode<'e, DB> + sqlx::Type<DB>,
    for<'e> Vec<u8>: sqlx::Encode<'e, DB> + sqlx::Type<DB>,
    for<'e> bool: sqlx::Encode<'e, DB> + sqlx::Type<DB>,
{
    let text = match dialect {
        // short statements bind cheaply either way: no scan on the hot path
        Dialect::Sqlite if q.args.len() < ANONYMOUS_FROM => q.text,
        Dialect::Sqlite => match anonymous_placeholders(&q.text, q.args.len()) {
            Some(t) => Cow::Owned(t),
            None => q.text,
        },
        Dialect::Postgres => q.text,
    };
    let mut query = sqlx::query(sqlx::AssertSqlSafe(text));
    for a in q.args {
        // owned values move into the arguments; borrowed ones are copied
        query = match a {
            Arg::Int(v) => query.bind(v),
            Arg::Text(Some(Cow::Owned(v))) => query.bind(v),
            Arg::Text(v) => query.bind(v.as_deref()),
            Arg::Bool(v) => query.bind(v),
            Arg::Bytes(Some(Cow::Owned(v))) => query.bind(v),
            Arg::Bytes(v) => query.bind(v.as_deref()),
        };
    }
    query
}

macro_rules! backend {
    ($db:ty, $conn:ty, $row:ty, $dialect:expr) => {
        impl Backend for $db {
            type Conn = $conn;
            type Pool = sqlx::Pool<$db>;
            type Row = $row;
            const DIALECT: Dialect = $dialect;

            async fn fetch_all<'c>(
                on: Exec<'c, Self>,
                q: Sql<'c>,
            ) -> Result<Vec<$row>, StoreError> {
                let q = build::<$db>(q, $dialect);
                Ok(match on {
                    Exec::Conn(c) => q.fetch_all(c).await?,
                    Exec::Pool(p) => q.fetch_all(p).await?,
                })
            }
            async fn fetch_optional<'c>(
                on: Exec<'c, Self>,
                q: Sql<'c>,
            ) -> Result<Option<$row>, StoreError> {
                let q = build::<$db>(q, $dialect);
                Ok(match on {
                    Exec::Conn(c) => q.fetch_optional(c).await?,
                    Exec::Pool(p) => q.fetch_optional(p).await?,
                })
            }
            async fn execute<'c>(on: Exec<'c, Self>, q: Sql<'c>) -> Result<u64, StoreError> {
                let q = build::<$db>(q, $dialect);
                Ok(match on {
                    Exec::Conn(c) => q.execute(c).await?,
                    Exec::Pool(p) => q.execute(p).await?,
                }
                .rows_affected())
            }
        }
    };
}

backend!(
    Sqlite,
    sqlx::SqliteConnection,
    sqlx::sqlite::SqliteRow,
    Dialect::Sqlite
);
backend!(
    Postgres,
    sqlx::PgConnection,
    sqlx::postgres::PgRow,
    Dialect::Postgres
);

/// Columns of a row by name, as the store's types.
pub trait RowRead {
    fn int(&self, col: &str) -> Result<i64, StoreError>;
    fn opt_int(&self, col: &str) -> Result<Option<i64>, StoreError>;
    fn text(&self, col: &str) -> Result<String, StoreError>;
    fn opt_text(&self, col: &str) -> Result<Option<String>, StoreError>;
    fn flag(&self, col: &str) -> Result<bool, StoreError>;
    fn opt_bytes(&self, col: &str) -> Result<Option<Vec<u8>>, StoreError>;
}

impl<R> RowRead for R
where
    R: sqlx::Row,
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    fn int(&self, col: &str) -> Result<i64, StoreError> {
        Ok(self.try_get(col)?)
    }
    fn opt_int(&self, col: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.try_get(col)?)
    }
    fn text(&self, col: &str) -> Result<String, StoreError> {
        Ok(self.try_get(col)?)
    }
    fn opt_text(&self, col: &str) -> Result<Option<String>, StoreError> {
        Ok(self.try_get(col)?)
    }
    fn flag(&self, col: &str) -> Result<bool, StoreError> {
        Ok(self.try_get(col)?)
    }
    fn opt_bytes(&self, col: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.try_get(col)?)
    }
}

#[cfg(test)]
mod placeholder_tests {
    use super::anonymous_placeholders;

    #[test]
    fn numbered_parameters_in_order_become_anonymous() {
        assert_eq!(
            anonymous_placeholders("INSERT INTO t VALUES ($1, $2), ($3, $4)", 4).as_deref(),
            Some("INSERT INTO t VALUES (?, ?), (?, ?)")
        );
        // inside quotes a `$` is text (JSON paths), not a parameter
        assert_eq!(
            anonymous_placeholders("SELECT json_extract(x, '$.a') FROM t WHERE id = $1", 1)
                .as_deref(),
            Some("SELECT json_extract(x, '$.a') FROM t WHERE id = ?")
        );
        assert_eq!(
            anonymous_placeholders("SELECT \"$1\" FROM t WHERE a = $1 AND b = $2", 2).as_deref(),
            Some("SELECT \"$1\" FROM t WHERE a = ? AND b = ?")
        );
    }

    #[test]
    fn reused_reordered_or_miscounted_parameters_are_kept() {
        for (text, args) in [
            ("SELECT $1, $1", 1),
            ("SELECT $2, $1", 2),
            ("SELECT $1, $2", 3),
            ("SELECT 1", 0),
        ] {
            assert_eq!(anonymous_placeholders(text, args), None, "{text}");
        }
        // an escaped quote does not end the string
        assert_eq!(
            anonymous_placeholders("SELECT $1 || 'it''s $2'", 1).as_deref(),
            Some("SELECT ? || 'it''s $2'")
        );
    }
}
