//! The function registry shared by VAPI tool calls and (later) chat: declared functions with a
//! JSON-schema signature, run by a built-in or an HTTP endpoint, always within their timeout.
//! `Executor` adds exactly-once semantics per tool-call id on top, through the store.

pub mod builtin;
mod executor;
mod http;

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use crate::config::{FunctionHandler, FunctionSpec};
use crate::store::DynStore;

pub use executor::{Executor, ToolCall, ToolOutcome};

/// Longest result handed back to the model; longer ones are cut with a note.
pub const MAX_RESULT_BYTES: usize = 32 * 1024;

/// What the call is about, for functions that need the caller or the org.
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    pub call_id: Option<String>,
    pub org_id: String,
    pub customer_number: Option<String>,
}

/// A function's answer: a string for the model either way (VAPI wants strings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok(String),
    Err(String),
}

pub struct Registry {
    specs: HashMap<String, FunctionSpec>,
    http: reqwest::Client,
    store: DynStore,
}

impl Registry {
    pub fn new(specs: &[FunctionSpec], store: DynStore) -> Self {
        Self { specs: specs.iter().map(|s| (s.name.clone(), s.clone())).collect(), http: crate::http::direct_client(), store }
    }

    pub fn spec(&self, name: &str) -> Option<&FunctionSpec> {
        self.specs.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.specs.keys().map(String::as_str)
    }

    /// Runs a function; an unknown name, a failure or the timeout all yield `Outcome::Err`.
    pub async fn invoke(&self, name: &str, args: &Value, ctx: &CallContext, tool_call_id: &str) -> Outcome {
        let Some(spec) = self.specs.get(name) else {
            return Outcome::Err(format!("Unknown function {name:?}."));
        };
        if !args.is_object() {
            return Outcome::Err("Arguments must be a JSON object.".into());
        }
        let run = async {
            match &spec.handler {
                FunctionHandler::Builtin(b) => builtin::run(b, args, ctx, self.store.as_ref()).await,
                FunctionHandler::Http { url, secret } => http::call(&self.http, url, secret.as_ref(), spec, args, ctx, tool_call_id).await,
            }
        };
        match tokio::time::timeout(spec.timeout, run).await {
            Ok(Outcome::Ok(s)) => Outcome::Ok(cap(s)),
            Ok(Outcome::Err(s)) => Outcome::Err(cap(s)),
            Err(_) => Outcome::Err(format!("{name} timed out after {}.", human(spec.timeout))),
        }
    }
}

fn cap(mut s: String) -> String {
    if s.len() > MAX_RESULT_BYTES {
        let mut end = MAX_RESULT_BYTES;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str(" …[truncated]");
    }
    s
}

fn human(d: Duration) -> String {
    if d.as_millis().is_multiple_of(1000) { format!("{} s", d.as_secs()) } else { format!("{} ms", d.as_millis()) }
}
