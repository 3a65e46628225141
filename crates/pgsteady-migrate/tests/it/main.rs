//! The migration runner against real PostgreSQL servers, and through a real PgBouncer.

mod migrate;
mod pooler;
