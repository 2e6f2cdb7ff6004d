//! Final transcripts as JSON, plain text (`AI:`/`User:` lines, as VAPI's own artifact) or
//! WebVTT with cue times relative to the call's start.

use axum::Json;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::view;
use crate::store::{CallRow, SegmentRow};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Txt,
    Vtt,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "json" => Some(Format::Json),
            "txt" | "text" => Some(Format::Txt),
            "vtt" => Some(Format::Vtt),
            _ => None,
        }
    }
}

fn speaker(role: &str) -> &'static str {
    match role {
        "assistant" | "bot" => "AI",
        _ => "User",
    }
}

pub fn render(format: Format, call: &CallRow, segments: &[SegmentRow]) -> Response {
    match format {
        Format::Json => {
            Json(json!({ "call_id": call.id, "segments": segments.iter().map(view::segment).collect::<Vec<_>>() })).into_response()
        }
        Format::Txt => {
            let text: String = segments.iter().map(|s| format!("{}: {}\n", speaker(&s.role), one_line(&s.text))).collect();
            ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
        }
        Format::Vtt => ([(header::CONTENT_TYPE, "text/vtt; charset=utf-8")], vtt(call, segments)).into_response(),
    }
}

/// A cue runs from its segment to the next one (or three seconds for the last).
pub fn vtt(call: &CallRow, segments: &[SegmentRow]) -> String {
    let origin = call.started_at.or_else(|| segments.first().map(|s| s.spoken_at)).unwrap_or(call.created_at);
    let mut out = String::from("WEBVTT\n\n");
    for (i, s) in segments.iter().enumerate() {
        let start = (s.spoken_at - origin).max(0);
        let end = segments.get(i + 1).map(|n| (n.spoken_at - origin).max(start + 1)).unwrap_or(start + 3000);
        out.push_str(&format!(
            "{}\n{} --> {}\n<v {}>{}\n\n",
            i + 1,
            stamp(start),
            stamp(end),
            speaker(&s.role),
            escape(&one_line(&s.text))
        ));
    }
    out
}

fn stamp(ms: i64) -> String {
    format!("{:02}:{:02}:{:02}.{:03}", ms / 3_600_000, (ms / 60_000) % 60, (ms / 1000) % 60, ms % 1000)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// WebVTT cue text must not contain `-->`, and `<`/`&` start markup.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(id: i64, role: &str, text: &str, at: i64) -> SegmentRow {
        SegmentRow { id, call_id: "c".into(), role: role.into(), text: text.into(), spoken_at: at }
    }

    #[test]
    fn vtt_cues_are_relative_to_the_start_and_escaped() {
        let call = CallRow { id: "c".into(), org_id: "o".into(), status: "ended".into(), started_at: Some(1000), ..CallRow::default() };
        let out = vtt(&call, &[seg(1, "assistant", "Hi <there>", 1500), seg(2, "user", "a --> b", 3_725_250)]);
        assert!(out.starts_with("WEBVTT\n\n1\n00:00:00.500 --> 01:02:04.250\n<v AI>Hi &lt;there&gt;\n"), "{out}");
        assert!(out.contains("<v User>a --&gt; b"));
    }
}
