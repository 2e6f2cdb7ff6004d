//! Records the store reads and writes. Times are milliseconds since the Unix epoch on both
//! backends, so one set of queries serves SQLite and Postgres alike.

use serde::Serialize;

// Durable jobs' records live apart, by domain; the queries and callers see them here too.
pub use super::job_types::*;
pub use super::webhook_types::*;

/// Which organisations a caller may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrgScope {
    All,
    Only(Vec<String>),
}

impl OrgScope {
    /// From stored org ids, where `*` stands for every org.
    pub fn from_names(orgs: Vec<String>) -> Self {
        if orgs.iter().any(|o| o == "*") { OrgScope::All } else { OrgScope::Only(orgs) }
    }

    /// A JSON array of org ids, as stored (`["*"]` for every org).
    pub fn from_json(orgs: &str) -> Option<Self> {
        serde_json::from_str::<Vec<String>>(orgs).ok().map(Self::from_names)
    }

    pub fn to_json(&self) -> String {
        match self {
            OrgScope::All => r#"["*"]"#.to_string(),
            OrgScope::Only(orgs) => serde_json::Value::from(orgs.clone()).to_string(),
        }
    }

    pub fn allows(&self, org: &str) -> bool {
        match self {
            OrgScope::All => true,
            OrgScope::Only(orgs) => orgs.iter().any(|o| o == org),
        }
    }

    /// Every org `other` allows, this allows too.
    pub fn covers(&self, other: &OrgScope) -> bool {
        match (self, other) {
            (OrgScope::All, _) => true,
            (OrgScope::Only(_), OrgScope::All) => false,
            (OrgScope::Only(_), OrgScope::Only(theirs)) => theirs.iter().all(|o| self.allows(o)),
        }
    }
}

/// One delivery of a VAPI message, redacted, for the raw event log.
#[derive(Debug, Clone)]
pub struct RawEvent {
    pub call_id: Option<String>,
    pub org_id: String,
    pub kind: String,
    pub received_at: i64,
    pub message_ts: Option<i64>,
    /// Unique: a second delivery of the same message finds it and has no effect.
    pub dedup_key: String,
    pub payload: String,
}

/// What a message's embedded `call` object says. It may be stale, so it never moves status.
#[derive(Debug, Clone, Default)]
pub struct CallSeen {
    pub id: String,
    pub org_id: String,
    pub assistant_id: Option<String>,
    /// The assistant's display name (`assistant.name`).
    pub assistant_name: Option<String>,
    pub call_type: Option<String>,
    pub customer_number: Option<String>,
    pub phone_number: Option<String>,
    pub created_at: i64,
    pub seen_at: i64,
    /// The embedded status, used only when the call is first inserted.
    pub initial_status: Option<String>,
    pub control_url: Option<String>,
    pub listen_url: Option<String>,
    pub metadata: Option<String>,
}

#[derive(Debug, Clone)]
pub struct StatusChange {
    pub status: String,
    pub at: i64,
    pub ended_reason: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewSegment {
    pub role: String,
    pub text: String,
    pub spoken_at: i64,
}

#[derive(Debug, Clone)]
pub struct NewRecording {
    pub kind: String,
    pub source_url: String,
}

#[derive(Debug, Clone, Default)]
pub struct EndReport {
    pub ended_reason: Option<String>,
    pub started_at: Option<i64>,
    pub ended_at: i64,
    pub cost: Option<f64>,
    pub cost_breakdown: Option<String>,
    pub summary: Option<String>,
    pub analysis: Option<String>,
    pub recordings: Vec<NewRecording>,
}

#[derive(Debug, Clone)]
pub enum CallChange {
    Nothing,
    Status(StatusChange),
    Transcript(NewSegment),
    Ended(EndReport),
}

/// Everything one message changes, written in one transaction with its dedup record.
#[derive(Debug, Clone)]
pub struct Ingest {
    pub raw: RawEvent,
    pub call: Option<CallSeen>,
    pub change: CallChange,
    /// Jobs that announce what the message changed (outgoing webhooks), enqueued in its
    /// transaction: they commit with the change or not at all.
    pub follow_ups: Option<FollowUps>,
}

/// Derives, inside a write's transaction, the jobs (outgoing webhooks) that announce what it
/// stored, from what only the transaction knows (`T`: what a message changed, a chat message's
/// position). It runs once per write that stores something, never for a redelivery that stores
/// nothing; it runs on the store's writer, so it only builds rows: it must not block, and must
/// not panic (that would end the writer).
pub struct FollowUps<T: ?Sized = Applied>(pub std::sync::Arc<DeriveJobs<T>>);

pub type DeriveJobs<T> = dyn Fn(&T) -> Vec<NewJob> + Send + Sync;

impl<T: ?Sized> FollowUps<T> {
    pub fn jobs(&self, stored: &T) -> Vec<NewJob> {
        (self.0)(stored)
    }
}

impl<T: ?Sized> Clone for FollowUps<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T: ?Sized> std::fmt::Debug for FollowUps<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FollowUps(..)")
    }
}

#[derive(Debug, Clone)]
pub enum IngestOutcome {
    /// The dedup key was already present: nothing was written.
    Duplicate,
    Applied(Box<Applied>),
}

#[derive(Debug, Clone, Default)]
pub struct Applied {
    /// The call after the change (when the message named one).
    pub call: Option<CallRow>,
    /// This message is the first the hub has seen of the call.
    pub call_created: bool,
    /// The status actually moved (out-of-order updates do not).
    pub status_changed: bool,
    pub segment: Option<SegmentRow>,
    /// Recordings this message added (an end-of-call report's), by id; a report repeating a
    /// kind the call already has adds nothing.
    pub recordings: Vec<i64>,
    /// Jobs the message's follow-ups created (not those a dedup key already had).
    pub jobs_created: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, sqlx::FromRow)]
pub struct CallRow {
    pub id: String,
    pub org_id: String,
    pub assistant_id: Option<String>,
    pub assistant_name: Option<String>,
    pub call_type: Option<String>,
    pub customer_number: Option<String>,
    pub phone_number: Option<String>,
    pub status: String,
    pub status_rank: i64,
    pub status_at: Option<i64>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub ended_reason: Option<String>,
    pub cost: Option<f64>,
    pub cost_breakdown: Option<String>,
    pub summary: Option<String>,
    pub analysis: Option<String>,
    pub metadata: Option<String>,
    pub control_url: Option<String>,
    pub listen_url: Option<String>,
    pub last_event_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct SegmentRow {
    pub id: i64,
    pub call_id: String,
    pub role: String,
    pub text: String,
    pub spoken_at: i64,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct RecordingRow {
    pub id: i64,
    pub call_id: String,
    pub kind: String,
    pub source_url: String,
    /// `pending`, `ready`, `failed` or `refused`.
    pub state: String,
    pub created_at: i64,
    pub size_bytes: Option<i64>,
    pub sha256: Option<String>,
    pub content_type: Option<String>,
    /// Relative to the recordings folder; set once `ready`.
    pub path: Option<String>,
    /// Why a download was refused or failed.
    pub reason: Option<String>,
}

/// A download's outcome: `ready` with what was stored, or `failed`/`refused` with the reason.
#[derive(Debug, Clone)]
pub struct RecordingDone {
    pub id: i64,
    pub state: String,
    pub size_bytes: Option<i64>,
    pub sha256: Option<String>,
    pub content_type: Option<String>,
    pub path: Option<String>,
    pub reason: Option<String>,
    pub now: i64,
    /// Jobs written in the same transaction (the `recording.ready` deliveries).
    pub announce: Vec<NewJob>,
}

#[derive(Debug, Clone)]
pub struct NewInvocation {
    pub tool_call_id: String,
    pub call_id: Option<String>,
    pub org_id: String,
    pub name: String,
    pub arguments: String,
    pub started_at: i64,
    /// A claim older than this is taken over (its worker is presumed dead).
    pub lease_until: i64,
    /// The result follows within microseconds (an in-process function): SQLite's writer then
    /// keeps the claim's transaction open for it, so both commit with one fsync.
    pub result_soon: bool,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct InvocationRow {
    pub tool_call_id: String,
    pub call_id: Option<String>,
    pub org_id: String,
    pub name: String,
    pub arguments: String,
    pub status: String,
    pub result: Option<String>,
    pub error: Option<String>,
    pub latency_ms: Option<f64>,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub lease_until: i64,
}

#[derive(Debug, Clone)]
pub enum Claim {
    /// This caller runs the function.
    Claimed,
    /// Someone already ran it (or is running it): here is its row.
    Existing(Box<InvocationRow>),
}

#[derive(Debug, Clone)]
pub struct Finished {
    /// The claim this result answers: only its claimant (same `started_at`) may write the
    /// result, and should the claim's row be gone, it is written whole from this.
    pub claim: NewInvocation,
    pub ok: bool,
    pub result: Option<String>,
    pub error: Option<String>,
    pub latency_ms: f64,
    pub finished_at: i64,
    /// Jobs written in the same transaction when the result is (the `function.completed`
    /// deliveries): a result on record has its deliveries on record.
    pub announce: Vec<NewJob>,
}

#[derive(Debug, Clone, Default)]
pub struct CallFilter {
    pub status: Option<String>,
    pub assistant_id: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub q: Option<String>,
    pub limit: i64,
    /// Keyset position: calls strictly older than (created_at, id).
    pub before: Option<(i64, String)>,
    /// Only calls not over yet that were heard from since this time (a call whose end never
    /// arrived stops counting as live once it falls silent).
    pub live_since: Option<i64>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TokenRow {
    pub id: String,
    pub role: String,
    /// JSON array of org ids, `["*"]` for all.
    pub orgs: String,
    pub label: Option<String>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct CustomerRow {
    pub phone: String,
    pub name: String,
    pub email: Option<String>,
    pub notes: Option<String>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct DepartmentRow {
    pub name: String,
    pub number: Option<String>,
    pub sip_uri: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Booking {
    Booked { id: i64 },
    SlotTaken,
}

/// A live control attempt, recorded before the request to VAPI goes out.
#[derive(Debug, Clone)]
pub struct NewControlAction {
    pub id: String,
    pub call_id: String,
    pub org_id: String,
    pub token_id: String,
    pub actor: String,
    pub action_type: String,
    /// The hub's action object, as JSON.
    pub action: String,
    /// The exact body sent (or that would have been sent) to the control URL.
    pub vapi_body: String,
    pub requested_at: i64,
    /// `pending` while the request is out; a final outcome when the attempt never left (`refused`).
    pub outcome: String,
    pub error: Option<String>,
    pub finished_at: Option<i64>,
}

/// How a control attempt ended.
#[derive(Debug, Clone)]
pub struct ControlFinished {
    pub id: String,
    pub outcome: String,
    pub upstream_status: Option<i64>,
    pub error: Option<String>,
    pub finished_at: i64,
    pub latency_ms: f64,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ControlActionRow {
    pub id: String,
    pub call_id: String,
    pub org_id: String,
    pub token_id: String,
    pub actor: String,
    pub action_type: String,
    pub action: String,
    pub vapi_body: String,
    pub requested_at: i64,
    pub finished_at: Option<i64>,
    pub outcome: String,
    pub upstream_status: Option<i64>,
    pub error: Option<String>,
    pub latency_ms: Option<f64>,
}

/// A chat session a browser (or a test) opened.
#[derive(Debug, Clone)]
pub struct NewChatSession {
    pub id: String,
    pub org_id: String,
    pub site_key: Option<String>,
    pub created_at: i64,
    pub metadata: Option<String>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ChatSessionRow {
    pub id: String,
    pub org_id: String,
    pub site_key: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub message_count: i64,
    /// The run answering now, if any.
    pub active_run_id: Option<String>,
}

/// A message to append to a session; its position is assigned by the store.
#[derive(Debug, Clone)]
pub struct NewChatMessage {
    pub id: String,
    /// `user`, `assistant` or `tool`.
    pub role: String,
    pub content: String,
    /// `complete`, `stopped` or `failed`.
    pub status: String,
    pub run_id: Option<String>,
    pub finish_reason: Option<String>,
    /// An assistant message's tool calls, as the model's JSON array.
    pub tool_calls: Option<String>,
    /// A tool message: the call it answers, and the function's name.
    pub tool_call_id: Option<String>,
    pub name: Option<String>,
    pub created_at: i64,
}

impl NewChatMessage {
    /// A visitor's message, complete as sent.
    pub fn from_user(id: String, content: String, run_id: Option<String>, created_at: i64) -> Self {
        Self {
            id,
            role: "user".into(),
            content,
            status: "complete".into(),
            run_id,
            finish_reason: None,
            tool_calls: None,
            tool_call_id: None,
            name: None,
            created_at,
        }
    }

    /// The row this message becomes at position `seq` of its session.
    pub fn into_row(self, session_id: &str, seq: i64) -> ChatMessageRow {
        ChatMessageRow {
            id: self.id,
            session_id: session_id.to_string(),
            seq,
            role: self.role,
            content: self.content,
            status: self.status,
            run_id: self.run_id,
            finish_reason: self.finish_reason,
            tool_calls: self.tool_calls,
            tool_call_id: self.tool_call_id,
            name: self.name,
            created_at: self.created_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ChatMessageRow {
    pub id: String,
    pub session_id: String,
    pub seq: i64,
    pub role: String,
    pub content: String,
    pub status: String,
    pub run_id: Option<String>,
    pub finish_reason: Option<String>,
    pub tool_calls: Option<String>,
    pub tool_call_id: Option<String>,
    pub name: Option<String>,
    pub created_at: i64,
}

/// Stores a user message and opens a run to answer it, atomically.
#[derive(Debug, Clone)]
pub struct StartRun {
    pub session_id: String,
    pub run_id: String,
    pub message: NewChatMessage,
    pub now: i64,
    /// Past this the run counts as abandoned (its instance died) and another may start.
    pub lease_until: i64,
    /// Messages the session may hold, the new one included.
    pub max_messages: i64,
    /// Given the message's position, once the run started.
    pub follow_ups: Option<FollowUps<i64>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunStart {
    Started {
        message_seq: i64,
    },
    NoSession,
    /// Another run is answering; its id.
    Busy {
        run_id: String,
    },
    /// The session holds its maximum of messages.
    Full,
}

/// How a run ended, with the messages it produced (assistant answer, tool calls and results).
#[derive(Debug, Clone)]
pub struct FinishRun {
    pub session_id: String,
    /// The session's widget, whose daily budget the run's tokens count against too (sessions
    /// of no widget count as the site `""`).
    pub site_key: Option<String>,
    /// Tokens the budgets count for this run (what the model reported, else an estimate);
    /// 0 adds nothing (and no budget is set, nothing is counted).
    pub charged_tokens: i64,
    pub run_id: String,
    /// `done`, `stopped` or `failed`.
    pub status: String,
    pub finish_reason: Option<String>,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub error_code: Option<String>,
    pub error: Option<String>,
    pub finished_at: i64,
    pub messages: Vec<NewChatMessage>,
    /// Jobs written in the same transaction when the answer is stored (its `chat.message`
    /// deliveries).
    pub announce: Vec<NewJob>,
}

/// Tokens the model used on one UTC day, as the chat budgets count them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChatUsage {
    pub session: i64,
    pub site: i64,
    pub all: i64,
}

impl ChatUsage {
    /// The day `ms` falls on, as `chat_usage.day` counts it.
    pub fn day(ms: i64) -> i64 {
        ms.div_euclid(86_400_000)
    }

    /// What `FinishRun` adds to, per scope: `(scope, key)`.
    pub fn scopes(f: &FinishRun) -> [(&'static str, &str); 3] {
        [("session", f.session_id.as_str()), ("site", f.site_key.as_deref().unwrap_or("")), ("all", "")]
    }

    /// Builds the counts from `CHAT_USAGE`'s rows.
    pub fn from_rows(rows: impl IntoIterator<Item = (String, i64)>) -> Self {
        let mut u = Self::default();
        for (scope, tokens) in rows {
            match scope.as_str() {
                "session" => u.session = tokens,
                "site" => u.site = tokens,
                _ => u.all = tokens,
            }
        }
        u
    }
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ChatRunRow {
    pub id: String,
    pub session_id: String,
    pub status: String,
    pub started_at: i64,
    pub lease_until: i64,
    pub finished_at: Option<i64>,
    pub finish_reason: Option<String>,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub error_code: Option<String>,
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::OrgScope;

    fn only(orgs: &[&str]) -> OrgScope {
        OrgScope::Only(orgs.iter().map(|o| o.to_string()).collect())
    }

    #[test]
    fn a_scope_covers_another_only_when_it_allows_every_org_of_it() {
        assert!(OrgScope::All.covers(&OrgScope::All));
        assert!(OrgScope::All.covers(&only(&["a"])));
        assert!(!only(&["a", "b"]).covers(&OrgScope::All), "some orgs never cover every org");
        assert!(only(&["a", "b"]).covers(&only(&["b"])));
        assert!(!only(&["a"]).covers(&only(&["a", "b"])));
    }

    #[test]
    fn stored_org_lists_read_back_as_scopes_with_a_star_meaning_every_org() {
        assert_eq!(OrgScope::from_json(r#"["*"]"#), Some(OrgScope::All));
        assert_eq!(OrgScope::from_json(r#"["a","*"]"#), Some(OrgScope::All));
        assert_eq!(OrgScope::from_json(r#"["a"]"#), Some(only(&["a"])));
        assert_eq!(OrgScope::from_json("not json"), None);
        assert_eq!(OrgScope::from_json(&only(&["a", "b"]).to_json()), Some(only(&["a", "b"])));
        assert_eq!(OrgScope::All.to_json(), r#"["*"]"#);
    }
}
