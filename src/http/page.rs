//! Paged lists share one rule for `limit`: 1 to 200, 50 when not given; anything else is a
//! `422 invalid_limit`, the same on every route.

use super::ApiError;

const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 200;

pub fn page_limit(limit: Option<i64>) -> Result<i64, ApiError> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if (1..=MAX_LIMIT).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::invalid("invalid_limit", format!("limit must be between 1 and {MAX_LIMIT}")))
    }
}

#[cfg(test)]
mod tests {
    use super::page_limit;

    #[test]
    fn a_limit_is_fifty_by_default_and_between_one_and_two_hundred() {
        assert_eq!(page_limit(None).ok(), Some(50));
        assert_eq!(page_limit(Some(1)).ok(), Some(1));
        assert_eq!(page_limit(Some(200)).ok(), Some(200));
        assert!(page_limit(Some(0)).is_err());
        assert!(page_limit(Some(201)).is_err());
    }
}
