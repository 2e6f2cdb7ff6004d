//! Daily token budgets (denial of wallet): what answers used, per UTC day, for a session, its
//! widget site key and all chat, as the model reported it. The counts live in the store, so
//! every instance sees the same ones; a new answer is checked before it starts.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::Value;

use super::chunk::{Chunk, Usage};
use super::{ChatError, ChatService};
use crate::store::ChatUsage;

/// More than any one answer can use: a model's usage report is clamped to it, so a broken or
/// hostile upstream cannot overflow a day's count.
pub(super) const MAX_CHARGE: i64 = 1_000_000_000;

/// What the budgets count for a usage report: its total, or the sum of its parts.
pub(super) fn charge(u: &Usage) -> i64 {
    u.total_tokens.max(u.prompt_tokens.saturating_add(u.completion_tokens)).clamp(0, MAX_CHARGE)
}

/// Tokens for text the model read and wrote when it reported no usage (a stopped or failed
/// answer, a client that left, a server that never reports): OpenAI's rule of thumb of four
/// characters a token. Nothing when it wrote nothing (a refusal before the first token).
pub(super) fn estimate(prompt_chars: usize, completion_chars: usize) -> i64 {
    if completion_chars == 0 {
        return 0;
    }
    ((prompt_chars + completion_chars) / 4).max(1).min(MAX_CHARGE as usize) as i64
}

/// The characters of a request's `messages` (string contents and text parts).
pub(super) fn prompt_chars(messages: &[Value]) -> usize {
    let text = |v: &Value| v.as_str().map_or(0, str::len);
    messages
        .iter()
        .map(|m| match &m["content"] {
            Value::Array(parts) => parts.iter().map(|p| text(&p["text"])).sum(),
            c => text(c),
        })
        .sum()
}

/// The characters of a non-streamed answer's text and tool-call arguments.
pub(super) fn answer_chars(answer: &Value) -> usize {
    let text = |v: &Value| v.as_str().map_or(0, str::len);
    let choices = answer["choices"].as_array().map(Vec::as_slice).unwrap_or_default();
    choices
        .iter()
        .map(|c| {
            let m = &c["message"];
            let calls = m["tool_calls"].as_array().map(Vec::as_slice).unwrap_or_default();
            text(&m["content"]) + calls.iter().map(|t| text(&t["function"]["arguments"])).sum::<usize>()
        })
        .sum()
}

/// Charges what one streamed answer of a route without a session spent, once, when the answer
/// is dropped (it ended, failed, or the client left): the model's last usage report (a server
/// may send a running total in every chunk), else an estimate — leaving early must not make an
/// answer free. Once the model accepted the request its prompt is charged even if nothing
/// came back.
pub(super) struct SpendMeter {
    chat: Arc<ChatService>,
    prompt_chars: usize,
    completion_chars: usize,
    usage: Option<Usage>,
    opened: bool,
}

impl SpendMeter {
    pub fn new(chat: Arc<ChatService>, prompt_chars: usize) -> Self {
        Self { chat, prompt_chars, completion_chars: 0, usage: None, opened: false }
    }

    /// The model accepted the request: from now on its prompt is spent.
    pub fn opened(&mut self) {
        self.opened = true;
    }

    /// Notes one chunk of the answer.
    pub fn saw(&mut self, c: &Chunk<'_>) {
        if let Some(text) = &c.content {
            self.completion_chars += text.len();
        }
        for t in &c.tool_calls {
            self.completion_chars += t.arguments.as_deref().map_or(0, str::len);
        }
        if c.usage.is_some() {
            self.usage = c.usage;
        }
    }
}

impl Drop for SpendMeter {
    fn drop(&mut self) {
        let tokens = match &self.usage {
            Some(u) => charge(u),
            None if self.opened => estimate(self.prompt_chars, self.completion_chars.max(1)),
            None => 0,
        };
        self.chat.count_spend(tokens);
    }
}

/// Time until the next UTC day, when the daily budgets renew.
fn until_next_day(now_ms: i64) -> Duration {
    const DAY: i64 = 86_400_000;
    Duration::from_millis((DAY - now_ms.rem_euclid(DAY)) as u64)
}

impl ChatService {
    /// Refuses a new answer once a budget it counts against is spent. Checked before the
    /// answer starts, so one answer may pass a budget by what it uses itself (at most
    /// `max_completion_tokens` per round plus its prompt).
    fn within_budget(&self, usage: &ChatUsage, site: bool) -> Result<(), ChatError> {
        let b = &self.settings.budgets;
        let spent = |used: i64, budget: u64| budget > 0 && used >= 0 && used as u64 >= budget;
        let scope = if spent(usage.all, b.all) {
            "all"
        } else if site && spent(usage.site, b.site) {
            "site"
        } else if spent(usage.session, b.session) {
            "session"
        } else {
            return Ok(());
        };
        self.metrics.chat_over_budget(scope);
        Err(ChatError::OverBudget { scope, renews: until_next_day(crate::clock::now_ms()) })
    }

    /// Counts tokens a route without a session spent (`/api/ai/chat`, the pass-through) toward
    /// the spend breaker, off the answer's path (on the service's task tracker, which shutdown
    /// waits for up to its deadline).
    pub(super) fn count_spend(&self, tokens: i64) {
        if tokens <= 0 || self.settings.budgets.all == 0 {
            return;
        }
        let store = self.store.clone();
        self.tasks.spawn(async move {
            if let Err(e) = store.add_chat_usage(ChatUsage::day(crate::clock::now_ms()), tokens).await {
                tracing::warn!(error = %e, tokens, "spent tokens not counted");
            }
        });
    }

    /// A new message's check, from the usage `state` read with the session: before the
    /// session's and site's buckets take a token, so a refusal costs the visitor's site nothing.
    pub fn check_budget(&self, state: &super::SessionState) -> Result<(), ChatError> {
        match &state.usage {
            Some(usage) => self.within_budget(usage, true),
            None => Ok(()),
        }
    }

    /// The spend breaker for the routes that keep no session (`/api/ai/chat`, the pass-through),
    /// as far as known without a read: once found spent, the rest of the day is refused here,
    /// before the caller's rate-limit bucket, so a refusal costs the caller no token (and the
    /// store nothing).
    pub fn known_spent(&self) -> Result<(), ChatError> {
        if self.settings.budgets.all == 0 {
            return Ok(());
        }
        // One reading of the clock: at midnight, the day checked is the day renewed from.
        let now = crate::clock::now_ms();
        if self.spent_day.load(Ordering::Relaxed) != ChatUsage::day(now) {
            return Ok(());
        }
        self.metrics.chat_over_budget("all");
        Err(ChatError::OverBudget { scope: "all", renews: until_next_day(now) })
    }

    /// The spend breaker, read from the store (after the rate limit, which keeps a flood off
    /// the store); a spent day is remembered for `known_spent`.
    pub async fn within_daily_spend(&self) -> Result<(), ChatError> {
        if self.settings.budgets.all == 0 {
            return Ok(());
        }
        // No session has the id "": only the rows of all chat and of the site "" match, and
        // only the first is checked here.
        let day = ChatUsage::day(crate::clock::now_ms());
        let usage = self.store.chat_usage(day, "").await?;
        let checked = self.within_budget(&usage, false);
        if checked.is_err() {
            // The day that was read, not the clock's now: a read of yesterday's count that
            // returns after midnight must not close today.
            self.spent_day.store(day, Ordering::Relaxed);
        }
        checked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_usage_report_is_charged_whole_and_clamped() {
        assert_eq!(charge(&Usage { prompt_tokens: 17, completion_tokens: 10, total_tokens: 27 }), 27);
        assert_eq!(charge(&Usage { prompt_tokens: 17, completion_tokens: 10, total_tokens: 0 }), 27, "a server that omits the total");
        assert_eq!(charge(&Usage { prompt_tokens: i64::MAX, completion_tokens: i64::MAX, total_tokens: -1 }), MAX_CHARGE);
        assert_eq!(charge(&Usage { prompt_tokens: -5, completion_tokens: -5, total_tokens: -5 }), 0);
    }

    #[test]
    fn an_answer_with_no_usage_is_estimated_from_its_text_and_one_that_wrote_nothing_is_free() {
        assert_eq!(estimate(400, 0), 0);
        assert_eq!(estimate(400, 100), 125);
        assert_eq!(estimate(0, 1), 1);
        let messages =
            serde_json::json!([{"role": "system", "content": "abcd"}, {"role": "user", "content": [{"type": "text", "text": "efgh"}]}]);
        assert_eq!(prompt_chars(messages.as_array().unwrap()), 8);
        let answer = serde_json::json!({"choices": [{"message": {"content": "hello", "tool_calls": [{"function": {"arguments": "{}"}}]}}]});
        assert_eq!(answer_chars(&answer), 7);
    }

    #[test]
    fn budgets_renew_at_the_next_utc_midnight() {
        let midnight = 20_000 * 86_400_000_i64;
        assert_eq!(until_next_day(midnight), Duration::from_secs(86_400));
        assert_eq!(until_next_day(midnight - 1_000), Duration::from_secs(1));
        assert_eq!(until_next_day(midnight + 3_600_000), Duration::from_secs(82_800));
    }
}
