//! The connection enum that lets one binary speak SQLite or PostgreSQL.
//! Kept alone in its module because the derive generates a lot around it.

use diesel::pg::PgConnection;
use diesel::sqlite::SqliteConnection;

#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}
