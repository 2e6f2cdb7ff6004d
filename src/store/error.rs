//! Store failures, split by what a caller can do about them.

#[derive(Debug)]
pub enum StoreError {
    /// The database cannot be reached or is overloaded: retry later (HTTP 503).
    Unavailable(String),
    /// Anything else: a bug or a broken invariant (HTTP 500, details only in logs).
    Internal(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Unavailable(m) => write!(f, "store unavailable: {m}"),
            StoreError::Internal(m) => write!(f, "store error: {m}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => {
                StoreError::Unavailable(e.to_string())
            }
            sqlx::Error::Database(db) if is_busy(db.code().as_deref()) => StoreError::Unavailable(e.to_string()),
            _ => StoreError::Internal(e.to_string()),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Internal(format!("migration failed: {e}"))
    }
}

/// SQLite BUSY/LOCKED, Postgres connection and shutdown classes: transient, not bugs.
fn is_busy(code: Option<&str>) -> bool {
    matches!(code, Some("5" | "6" | "517" | "262")) || code.is_some_and(|c| c.starts_with("08") || c.starts_with("57P"))
}
