//! switchboard: a real-time hub between VAPI voice assistants, browser chat and supervisors.
//!
//! The spine:
//! ```text
//! VAPI ── POST /vapi/webhook ──► vapi (verify, parse leniently, dedup) ──► store (SQLite | Postgres)
//!                                   │  tool calls ──► functions (registry, exactly-once executor)
//!                                   └─ domain events ──► hub broker (per-topic seq + history)
//! supervisors ── GET /api/calls… ──► calls (org-scoped views of the store)
//! supervisors ── GET /ws ──► live (snapshots, resume, presence) ◄── hub broker (memory | Redis)
//! browsers ── POST /api/chat/sessions/{id}/messages ──► chat (a run owned by the hub: model stream ──► broker) ──► SSE
//! supervisors ── POST /api/calls/{id}/control ──► control (validate, allowlist, audit) ──► VAPI controlUrl
//! end-of-call report ──► jobs: recording.download (SSRF guard) ──► recordings storage (folder or S3 bucket) ◄── GET /api/calls/{id}/recording
//! admins ── /api/admin/jobs… ──► jobs (registry of kinds, leased claims, retries) ◄── store ──► workers on every instance
//! call/chat/recording events ──► webhooks (cached endpoints) ──► jobs: webhook.deliver (signed, SSRF-safe) ──► admins' endpoints
//! ```
//! `config` loads settings, `app` wires everything, `http` owns the listener and errors.

pub mod app;
pub mod auth;
pub mod calls;
pub mod chat;
pub mod cli;
pub mod clock;
pub mod config;
pub mod control;
pub mod demo;
pub mod functions;
pub mod http;
pub mod hub;
pub mod jobs;
pub mod live;
pub mod metrics;
pub mod mockllm;
pub mod reconcile;
pub mod recordings;
pub mod retention;
pub mod simulate;
pub mod store;
pub mod telemetry;
pub mod vapi;
pub mod web;
pub mod webhooks;
