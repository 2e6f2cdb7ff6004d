//! Daily token budgets (denial of wallet): what answers used, per UTC day, for a session, its
//! widget site key and all chat, as the model reported it. The counts live in the store, so
//! every instance sees the same ones; a new answer is checked before it starts.

use std::time::Duration;

use super::{ChatError, ChatService, chunk};
use crate::store::ChatUsage;

/// Time until the next UTC day, when the daily budgets renew.
fn until_next_day(now_ms: i64) -> Duration {
    const DAY: i64 = 86_400_000;
    Duration::from_millis((DAY - now_ms.rem_euclid(DAY)) as u64)
}

impl ChatService {
    /// Refuses a new answer once a budget it counts against is spent. Checked before the
    /// answer starts, so one answer may pass a budget by what it uses itself (at most
    /// `max_completion_tokens` per round plus its prompt).
    pub(super) fn within_budget(&self, usage: &ChatUsage, has_site: bool) -> Result<(), ChatError> {
        let b = &self.settings.budgets;
        let spent = |used: i64, budget: u64| budget > 0 && used >= 0 && used as u64 >= budget;
        let scope = if spent(usage.all, b.all) {
            "all"
        } else if has_site && spent(usage.site, b.site) {
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
    /// the spend breaker, off the answer's path; shutdown waits for it.
    pub(super) fn count_spend(&self, usage: &chunk::Usage) {
        let tokens = usage.total_tokens.max(usage.prompt_tokens + usage.completion_tokens);
        if tokens <= 0 {
            return;
        }
        let store = self.store.clone();
        self.tasks.spawn(async move {
            if let Err(e) = store.add_chat_usage(ChatUsage::day(crate::clock::now_ms()), tokens).await {
                tracing::warn!(error = %e, tokens, "spent tokens not counted");
            }
        });
    }

    /// The spend breaker for the routes that keep no session (`/api/ai/chat`, the pass-through).
    pub async fn within_daily_spend(&self) -> Result<(), ChatError> {
        if self.settings.budgets.all == 0 {
            return Ok(());
        }
        // No session has the id "": only the row of all chat matches.
        let usage = self.store.chat_usage(ChatUsage::day(crate::clock::now_ms()), "").await?;
        self.within_budget(&usage, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_renew_at_the_next_utc_midnight() {
        let midnight = 20_000 * 86_400_000_i64;
        assert_eq!(until_next_day(midnight), Duration::from_secs(86_400));
        assert_eq!(until_next_day(midnight - 1_000), Duration::from_secs(1));
        assert_eq!(until_next_day(midnight + 3_600_000), Duration::from_secs(82_800));
    }
}
