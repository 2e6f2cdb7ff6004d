//! `[mock:…]` directives: per-request behaviour picked from the last user message, so a test
//! that drives the hub (which forwards user text upstream) can ask for a slow stream, an error
//! or a tool call without any side channel. The syntax is in the module docs (`super`).

use std::time::Duration;

/// What the last user message asked for. `None` fields fall back to the server's config.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Directives {
    pub chunks: Option<usize>,
    pub delay: Option<Duration>,
    pub ttft: Option<Duration>,
    pub status: Option<u16>,
    pub error_after: Option<usize>,
    pub drop_after: Option<usize>,
    pub stall_after: Option<usize>,
    pub fail_first: Option<FailFirst>,
    /// `[mock:drop_first=N label]`: like `fail_first`, but the first N streams are cut before
    /// their first content chunk (after `200`), which a client's HTTP retry cannot see.
    pub drop_first: Option<FailFirst>,
    pub tools: Vec<ToolDirective>,
    /// `[mock:echo=1]`: the answer is the user's message itself, directives removed — so a
    /// test decides the exact text (Markdown, hostile HTML, multi-byte characters).
    pub echo: bool,
    /// `[mock:usage=every]`: with `include_usage`, a running total after every delta (some
    /// compatible servers do that); `[mock:usage=final]` (the default): one report at the end.
    pub running_usage: bool,
    /// `[mock:usage=none]`: no usage at all, even when asked (servers that ignore
    /// `stream_options`).
    pub no_usage: bool,
}

/// `[mock:fail_first=N label]`: the first `n` requests with this same `key` (the whole value,
/// so two tests on one server can keep separate counters with different labels) get a 500.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailFirst {
    pub n: u64,
    pub key: String,
}

/// `[mock:tool=NAME {json}]`: answer with a call to NAME; `arguments` is the JSON exactly as
/// written (not re-serialized), so a test can compare the streamed string byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolDirective {
    pub name: String,
    pub arguments: String,
}

const OPEN: &str = "[mock:";

/// The answer has at least one word per chunk, so this bounds the memory one request takes.
pub const MAX_CHUNKS: u64 = 10_000;

/// Reads every directive in `text`. A malformed or unknown directive is an error (the caller
/// answers 400), because silently ignoring a typo would make a failure test pass vacuously.
pub fn parse(text: &str) -> Result<Directives, String> {
    let mut d = Directives::default();
    let mut rest = text;
    while let Some(at) = rest.find(OPEN) {
        let body = &rest[at + OPEN.len()..];
        let Some((key, after_key)) = body.split_once('=') else {
            return Err(format!("mock directive `{}` has no `=`", excerpt(body)));
        };
        let key = key.trim();
        if key == "tool" {
            let (tool, after) = tool(after_key)?;
            d.tools.push(tool);
            rest = after;
            continue;
        }
        let Some(end) = after_key.find(']') else {
            return Err(format!("mock directive `{key}` is not closed with `]`"));
        };
        let value = after_key[..end].trim();
        rest = &after_key[end + 1..];
        match key {
            "chunks" => match number(key, value)? {
                n @ 1..=MAX_CHUNKS => d.chunks = Some(n as usize),
                _ => return Err(format!("mock directive `chunks` must be 1 to {MAX_CHUNKS}")),
            },
            "delay_ms" => d.delay = Some(Duration::from_millis(number(key, value)?)),
            "ttft_ms" => d.ttft = Some(Duration::from_millis(number(key, value)?)),
            "status" => match number(key, value)? {
                n @ 400..=599 => d.status = Some(n as u16),
                _ => return Err("mock directive `status` must be an HTTP error status (400-599)".into()),
            },
            "error_after" => d.error_after = Some(number(key, value)? as usize),
            "drop_after" => d.drop_after = Some(number(key, value)? as usize),
            "stall_after" => d.stall_after = Some(number(key, value)? as usize),
            "fail_first" => {
                let n = number(key, value.split_whitespace().next().unwrap_or(""))?;
                d.fail_first = Some(FailFirst { n, key: value.to_string() });
            }
            "drop_first" => {
                let n = number(key, value.split_whitespace().next().unwrap_or(""))?;
                d.drop_first = Some(FailFirst { n, key: format!("drop {value}") });
            }
            "echo" => d.echo = matches!(value, "1" | "true"),
            "usage" => match value {
                "every" => (d.running_usage, d.no_usage) = (true, false),
                "final" => (d.running_usage, d.no_usage) = (false, false),
                "none" => (d.running_usage, d.no_usage) = (false, true),
                _ => return Err("mock directive `usage` must be every, final or none".into()),
            },
            other => return Err(format!("unknown mock directive `{other}`")),
        }
    }
    Ok(d)
}

/// `text` with every directive taken out (from `[mock:` to the next `]`) and trimmed.
pub fn without(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(OPEN) {
        out.push_str(&rest[..at]);
        rest = rest[at..].find(']').map_or("", |end| &rest[at + end + 1..]);
    }
    out.push_str(rest);
    out.trim().to_string()
}

/// Parses `NAME {json}]` (the JSON is optional: `{}`), returning what follows the `]`.
fn tool(s: &str) -> Result<(ToolDirective, &str), String> {
    let s = s.trim_start();
    let name_end = s.find(|c: char| c.is_whitespace() || c == ']').unwrap_or(s.len());
    let name = &s[..name_end];
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(format!("mock tool name `{}` must be letters, digits, `_` or `-`", excerpt(name)));
    }
    let after_name = &s[name_end..];
    let args_start = after_name.len() - after_name.trim_start().len();
    let rest = &after_name[args_start..];
    let (arguments, rest) = if rest.starts_with(']') {
        ("{}".to_string(), rest)
    } else {
        // The JSON may itself contain `]`, so its end is where a JSON parser says it is.
        let mut values = serde_json::Deserializer::from_str(rest).into_iter::<serde_json::Value>();
        match values.next() {
            Some(Ok(_)) => {
                let end = values.byte_offset();
                (rest[..end].to_string(), &rest[end..])
            }
            _ => return Err(format!("the arguments of mock tool `{name}` are not valid JSON")),
        }
    };
    match rest.trim_start().strip_prefix(']') {
        Some(after) => Ok((ToolDirective { name: name.to_string(), arguments }, after)),
        None => Err(format!("mock directive `tool={name}` is not closed with `]`")),
    }
}

fn number(key: &str, value: &str) -> Result<u64, String> {
    value.parse().map_err(|_| format!("mock directive `{key}` needs a whole number, not `{}`", excerpt(value)))
}

/// Enough of the offending text to find it, without echoing a whole message back.
fn excerpt(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn echo_answers_with_the_message_without_its_directives() {
        let text = "**Hi** <b>there</b> ✨ [mock:echo=1] [mock:delay_ms=5]";
        assert!(super::parse(text).is_ok_and(|d| d.echo));
        assert_eq!(super::without(text), "**Hi** <b>there</b> ✨");
        assert_eq!(super::without("plain"), "plain");
    }

    use super::*;

    #[test]
    fn text_without_directives_asks_for_nothing() {
        assert_eq!(parse("What is the weather like? [not:mock]").unwrap(), Directives::default());
    }

    #[test]
    fn numeric_directives_are_read_wherever_they_stand() {
        let d = parse("[mock:chunks=3] hello [mock:delay_ms=15][mock:ttft_ms=200] bye [mock:error_after=2]").unwrap();
        assert_eq!(d.chunks, Some(3));
        assert_eq!(d.delay, Some(Duration::from_millis(15)));
        assert_eq!(d.ttft, Some(Duration::from_millis(200)));
        assert_eq!(d.error_after, Some(2));
    }

    #[test]
    fn tool_arguments_are_kept_exactly_as_written_even_with_brackets_inside() {
        let d = parse(r#"book it [mock:tool=book {"slots": [1, 2], "note":"a ] b"}] and [mock:tool=ping]"#).unwrap();
        assert_eq!(d.tools[0], ToolDirective { name: "book".into(), arguments: r#"{"slots": [1, 2], "note":"a ] b"}"#.into() });
        assert_eq!(d.tools[1], ToolDirective { name: "ping".into(), arguments: "{}".into() });
    }

    #[test]
    fn drop_first_keeps_a_counter_apart_from_fail_first() {
        let d = parse("[mock:drop_first=1 a] [mock:fail_first=1 a]").unwrap();
        assert_eq!(d.drop_first, Some(FailFirst { n: 1, key: "drop 1 a".into() }));
        assert_eq!(d.fail_first, Some(FailFirst { n: 1, key: "1 a".into() }));
    }

    #[test]
    fn fail_first_counts_per_whole_value_so_labels_separate_counters() {
        let d = parse("[mock:fail_first=2 checkout]").unwrap();
        assert_eq!(d.fail_first, Some(FailFirst { n: 2, key: "2 checkout".into() }));
    }

    #[test]
    fn a_typo_or_a_bad_value_is_an_error_not_silence() {
        assert!(parse("[mock:chunk=3]").unwrap_err().contains("chunk"));
        assert!(parse("[mock:chunks=many]").is_err());
        assert!(parse("[mock:chunks=0]").is_err());
        assert!(parse("[mock:chunks=10001]").is_err());
        assert!(parse("[mock:status=200]").is_err());
        assert!(parse("[mock:delay_ms=5").is_err());
        assert!(parse("[mock:tool=x {broken]").is_err());
        assert!(parse("[mock:tool=a b]").is_err());
        assert!(parse("[mock:usage=sometimes]").is_err());
        let d = parse("[mock:usage=every] [mock:usage=none]").unwrap();
        assert!(d.no_usage && !d.running_usage, "the last one wins");
    }
}
