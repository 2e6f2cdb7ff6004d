//! Integration tests: the real server on port 0, over HTTP. Postgres instead of SQLite when
//! SWITCHBOARD_TEST_DATABASE_URL is set (CI runs both).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bad_input;
mod calls_api;
mod chat;
mod chat_access;
mod chat_compat;
mod cli;
mod control;
mod events;
mod fixtures;
mod functions;
mod helpers;
mod idempotency;
mod jobs;
mod jobs_crash;
mod lifecycle;
mod live;
mod mock_llm;
mod openapi;
mod operations;
mod outage;
mod reconcile;
mod recordings;
mod recordings_s3;
mod retention;
mod scale_out;
mod store;
mod variants;
mod web;
mod webhook_auth;
mod webhooks;
mod ws;
