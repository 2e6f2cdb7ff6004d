//! What a `/v1/chat/completions` caller may ask of the model on the hub's key
//! (`chat.passthrough_*`): a model the hub allows, and a bounded number of completion tokens.
//! Checked before the request leaves, so a refused one reaches no model and costs nothing.
//! Without a bound, one token holder could name the priciest model and ask for its longest
//! answer, many times over, before any daily budget noticed.

use serde_json::{Map, Value};

use crate::config::Passthrough;

/// Why a request was refused, in the words of OpenAI's error object.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    /// 403 for a model the caller may not use, else 400.
    pub status: u16,
    pub message: String,
    pub param: &'static str,
    pub code: &'static str,
}

fn invalid(param: &'static str, message: String) -> Refusal {
    Refusal { status: 400, message, param, code: "invalid_value" }
}

/// The fields that bound an answer's length, newest name first; both are honoured upstream.
const LENGTH_FIELDS: [&str; 2] = ["max_completion_tokens", "max_tokens"];

/// Fills in the hub's model when the caller named none, refuses a model it does not allow and
/// a request that may use more than `max_tokens` completion tokens (per choice, times `n`);
/// a request that sets no length gets `max_completion_tokens` so its answer is bounded too.
pub fn bound(body: &mut Map<String, Value>, default_model: &str, p: &Passthrough) -> Result<(), Refusal> {
    match body.get("model") {
        None | Some(Value::Null) => {
            body.insert("model".into(), Value::from(default_model));
        }
        Some(Value::String(m)) if m.is_empty() => {
            body.insert("model".into(), Value::from(default_model));
        }
        Some(Value::String(m)) if !p.allows(m, default_model) => {
            return Err(Refusal {
                status: 403,
                message: format!("The model {m:?} is not available through this hub."),
                param: "model",
                code: "model_not_allowed",
            });
        }
        Some(Value::String(_)) => {}
        Some(_) => return Err(invalid("model", "model must be a string.".into())),
    }
    let n = match body.get("n") {
        None | Some(Value::Null) => 1,
        Some(v) => v.as_u64().filter(|n| *n >= 1).ok_or_else(|| invalid("n", "n must be a whole number of at least 1.".into()))?,
    };
    let mut asked = None;
    for field in LENGTH_FIELDS {
        match body.get(field) {
            None | Some(Value::Null) => {}
            Some(v) => {
                let tokens = v
                    .as_u64()
                    .filter(|t| *t >= 1)
                    .ok_or_else(|| invalid(field, format!("{field} must be a whole number of at least 1.")))?;
                if tokens.saturating_mul(n) > u64::from(p.max_tokens) {
                    return Err(Refusal {
                        status: 400,
                        message: format!(
                            "{field} × n asks for up to {} completion tokens; this hub allows {} per request.",
                            tokens.saturating_mul(n),
                            p.max_tokens
                        ),
                        param: field,
                        code: "max_tokens_too_large",
                    });
                }
                asked = Some(tokens);
            }
        }
    }
    if asked.is_none() {
        let per_choice = u64::from(p.max_tokens) / n;
        if per_choice == 0 {
            return Err(invalid(
                "n",
                format!("n asks for more choices than the {} completion tokens this hub allows per request.", p.max_tokens),
            ));
        }
        body.insert("max_completion_tokens".into(), Value::from(per_choice));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn limits(models: &[&str], max_tokens: u32) -> Passthrough {
        Passthrough { models: models.iter().map(|m| m.to_string()).collect(), max_tokens }
    }

    fn check(body: Value, p: &Passthrough) -> Result<Value, Refusal> {
        let Value::Object(mut map) = body else { panic!("an object") };
        bound(&mut map, "house", p).map(|()| Value::Object(map))
    }

    #[test]
    fn the_hubs_model_is_always_allowed_and_stands_in_for_a_missing_one() {
        let p = limits(&[], 100);
        assert_eq!(check(json!({}), &p).unwrap()["model"], "house");
        assert_eq!(check(json!({"model": ""}), &p).unwrap()["model"], "house");
        assert_eq!(check(json!({"model": "house"}), &p).unwrap()["model"], "house");
    }

    #[test]
    fn a_model_is_refused_unless_listed_or_everything_is() {
        let err = check(json!({"model": "o1-pro"}), &limits(&["gpt-4o"], 100)).unwrap_err();
        assert_eq!((err.status, err.code, err.param), (403, "model_not_allowed", "model"));
        assert!(check(json!({"model": "gpt-4o"}), &limits(&["gpt-4o"], 100)).is_ok());
        assert!(check(json!({"model": "o1-pro"}), &limits(&["*"], 100)).is_ok());
        assert_eq!(check(json!({"model": 4}), &limits(&["*"], 100)).unwrap_err().status, 400);
    }

    #[test]
    fn a_length_over_the_cap_is_refused_counting_every_choice() {
        let p = limits(&[], 100);
        assert!(check(json!({"max_tokens": 100}), &p).is_ok());
        let over = check(json!({"max_completion_tokens": 101}), &p).unwrap_err();
        assert_eq!((over.status, over.code, over.param), (400, "max_tokens_too_large", "max_completion_tokens"));
        assert_eq!(check(json!({"max_tokens": 60, "n": 2}), &p).unwrap_err().param, "max_tokens");
        assert!(check(json!({"max_tokens": 50, "n": 2}), &p).is_ok());
        // Either name counts: the older one cannot slip past a small newer one.
        assert_eq!(check(json!({"max_completion_tokens": 10, "max_tokens": 500}), &p).unwrap_err().param, "max_tokens");
    }

    #[test]
    fn a_request_without_a_length_is_given_the_cap_shared_by_its_choices() {
        let p = limits(&[], 100);
        assert_eq!(check(json!({}), &p).unwrap()["max_completion_tokens"], 100);
        assert_eq!(check(json!({"n": 3}), &p).unwrap()["max_completion_tokens"], 33);
        assert_eq!(check(json!({"max_tokens": null}), &p).unwrap()["max_completion_tokens"], 100);
        assert_eq!(check(json!({"n": 101}), &p).unwrap_err().param, "n");
    }

    #[test]
    fn lengths_and_choices_that_are_not_whole_positive_numbers_are_refused() {
        let p = limits(&[], 100);
        for (body, param) in [
            (json!({"max_tokens": 0}), "max_tokens"),
            (json!({"max_tokens": -5}), "max_tokens"),
            (json!({"max_completion_tokens": 1.5}), "max_completion_tokens"),
            (json!({"max_completion_tokens": "10"}), "max_completion_tokens"),
            (json!({"n": 0}), "n"),
            (json!({"n": "2"}), "n"),
        ] {
            let err = check(body.clone(), &p).unwrap_err();
            assert_eq!((err.status, err.param, err.code), (400, param, "invalid_value"), "{body}");
        }
    }
}
