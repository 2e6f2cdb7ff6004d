//! `switchboard mock-llm`: an OpenAI-compatible `POST /v1/chat/completions` that stands in for
//! the paid upstream in tests, the demo and benchmarks. It speaks OpenAI's wire format (SSE
//! chunks, usage, tool-call deltas, error objects) and answers deterministically: a fixed
//! sentence, cycled to at least 20 words, cut into `chunks` pieces of whole words; tokens are
//! counted as words.
//!
//! Behaviour is picked per request by directives in the **last user message** (the hub forwards
//! user text, so a test driving the hub can choose), or server-wide by `MockConfig`:
//!
//! | Directive | Effect |
//! |---|---|
//! | `[mock:chunks=N]` | content cut into N chunks of whole words (fewer only when `max_tokens` left fewer words) |
//! | `[mock:delay_ms=N]` | wait N ms before each content chunk |
//! | `[mock:ttft_ms=N]` | wait N ms before the first chunk |
//! | `[mock:status=429]`, `[mock:status=500]` (any 400–599) | that error before any stream, OpenAI's error JSON; 429 carries `retry-after: 1` |
//! | `[mock:error_after=N]` | after N content chunks, `data: {"error":{…,"type":"server_error"}}`, then the body ends without `[DONE]` |
//! | `[mock:drop_after=N]` | after N content chunks the connection is cut: no finish chunk, no `[DONE]` |
//! | `[mock:stall_after=N]` | after N content chunks nothing more is sent until the client goes away |
//! | `[mock:fail_first=N]`, `[mock:fail_first=N label]` | the first N requests with this same value get 500, later ones succeed (one counter per distinct value) |
//! | `[mock:drop_first=N]`, `[mock:drop_first=N label]` | the first N streams with this same value are cut before their first content chunk (after `200`: an HTTP-level retry cannot see it), later ones succeed |
//! | `[mock:tool=NAME {json}]` | when the request offers `tools`: a call to NAME with exactly that JSON as arguments (`{}` when omitted), streamed in pieces; several directives make several calls, indexed in order |
//!
//! A failure after more chunks than the answer has happens after the last one (before the
//! finish chunk). Non-streamed requests honour `status`, `fail_first`, `error_after` (a 500),
//! `drop_after` and `stall_after` (the body is cut or never comes). Once a `tool` message
//! follows the last user message (the result was fed back), the answer is text beginning
//! `Tool result: <content>. `. An unknown or malformed directive is a 400, so a typo cannot make
//! a failure test pass vacuously.

mod answer;
mod directives;
mod request;
mod script;
mod server;
mod stream;
mod wire;

use std::net::SocketAddr;
use std::time::Duration;

pub use server::MockLlm;

#[derive(Debug, Clone)]
pub struct MockConfig {
    pub listen: SocketAddr,
    /// Content chunks per answer (1 to 10,000).
    pub chunks: usize,
    /// Gap before each content chunk.
    pub chunk_delay: Duration,
    /// Wait before the first chunk.
    pub ttft: Duration,
    /// When set, `Authorization: Bearer <key>` is required.
    pub api_key: Option<String>,
    /// Echoed when the request names no model.
    pub model: String,
    /// Writes the text answer from the last user message instead of the steady sentence
    /// (`switchboard demo` gives its clinic's answers this way); streamed one word per chunk.
    pub answers: Option<fn(&str) -> String>,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8090)),
            chunks: 12,
            chunk_delay: Duration::from_millis(20),
            ttft: Duration::ZERO,
            api_key: None,
            model: "mock-model".into(),
            answers: None,
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct MockLlmArgs {
    /// Address to serve on
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    /// Content chunks per answer
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub chunks: u64,
    /// Gap before each content chunk, in milliseconds
    #[arg(long, default_value_t = 20)]
    pub chunk_delay_ms: u64,
    /// Wait before the first chunk, in milliseconds
    #[arg(long, default_value_t = 0)]
    pub ttft_ms: u64,
    /// Require this key as Authorization: Bearer
    #[arg(long)]
    pub api_key: Option<String>,
    /// Model name echoed when a request names none
    #[arg(long, default_value = "mock-model")]
    pub model: String,
}

impl From<MockLlmArgs> for MockConfig {
    fn from(a: MockLlmArgs) -> Self {
        Self {
            listen: a.listen,
            chunks: usize::try_from(a.chunks).unwrap_or(usize::MAX),
            chunk_delay: Duration::from_millis(a.chunk_delay_ms),
            ttft: Duration::from_millis(a.ttft_ms),
            api_key: a.api_key,
            model: a.model,
            answers: None,
        }
    }
}
