//! Text cleaning at the store boundary. Postgres rejects NUL in `text`, and SQLite's text
//! functions stop at it; serde_json accepts `\u0000`, so one character could become a 500.

use std::borrow::Cow;

/// Replaces NUL with U+FFFD (the replacement character), leaving all other text untouched.
pub fn sanitize_text(s: &str) -> Cow<'_, str> {
    if s.contains('\0') { Cow::Owned(s.replace('\0', "\u{FFFD}")) } else { Cow::Borrowed(s) }
}

/// Replaces NUL in every string and key of a JSON value, in place.
pub fn sanitize_json(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) if s.contains('\0') => *s = s.replace('\0', "\u{FFFD}"),
        serde_json::Value::Array(items) => items.iter_mut().for_each(sanitize_json),
        serde_json::Value::Object(map) => {
            if map.keys().any(|k| k.contains('\0')) {
                *map = std::mem::take(map).into_iter().map(|(k, v)| (k.replace('\0', "\u{FFFD}"), v)).collect();
            }
            map.values_mut().for_each(sanitize_json);
        }
        _ => {}
    }
}

/// Same for optional values.
pub(crate) fn clean(s: &Option<String>) -> Option<String> {
    s.as_deref().map(|v| sanitize_text(v).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_is_replaced_and_other_text_is_kept() {
        assert_eq!(sanitize_text("a\0b"), "a\u{FFFD}b");
        assert!(matches!(sanitize_text("plain ünïcode"), Cow::Borrowed(_)));
    }
}
