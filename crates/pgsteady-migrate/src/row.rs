//! Checked access to the server's answers to the migrator's own statements. A column that is
//! missing or of another type than asked for (a history table made by hand with
//! `version integer`, a proxy or a server that only speaks the protocol) is an error naming
//! the statement and the column (exit 3 in the CLI: retrying will not change the answer),
//! never a panic in tokio-postgres' `Row::get`.

use tokio_postgres::types::FromSql;
use tokio_postgres::{Row, SimpleQueryRow};

use crate::{Error, ErrorKind};

/// Column `idx` of `row` (named `column` in the message), answering what `context` says.
pub(crate) fn get<'a, T: FromSql<'a>>(
    row: &'a Row,
    idx: usize,
    column: &str,
    context: &str,
) -> Result<T, Error> {
    row.try_get(idx).map_err(|e| {
        Error::new(
            ErrorKind::Db,
            format!("{context}: the server's answer has no usable column {idx} ({column})"),
        )
        .with_source(e)
    })
}

/// Column `idx` of a simple-protocol row (`None`: SQL NULL), answering what `context` says.
pub(crate) fn text<'a>(
    row: &'a SimpleQueryRow,
    idx: usize,
    context: &str,
) -> Result<Option<&'a str>, Error> {
    row.try_get(idx).map_err(|e| {
        Error::new(
            ErrorKind::Db,
            format!("{context}: the server's answer has no usable column {idx}"),
        )
        .with_source(e)
    })
}
