//! What the mock answers: deterministic text, or tool calls, and how either is cut into
//! stream chunks. Tokens are estimated as whitespace-separated words, the same way for the
//! prompt, the answer and `usage`, so a test can check the counts against the text it got.

use super::directives::ToolDirective;
use super::request::ChatRequest;

/// The sentence every text answer is made of, cycled to length.
const SENTENCE: &str =
    "This is the mock model answering with one steady sentence so that every client and test can count the words it streams back.";

/// Text answers are at least this many words, so even a one-chunk stream carries a sentence.
const MIN_WORDS: usize = 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `finish` is `stop`, or `length` when the request's token limit cut the text.
    Text {
        text: String,
        finish: &'static str,
    },
    ToolCalls(Vec<ToolCall>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

impl Reply {
    /// Builds the answer to `req`. `tools` are the request's tool directives; they only apply
    /// when the request offers tools and no tool result has been fed back yet. `written` replaces
    /// the steady sentence (echo, or the demo's answers).
    pub fn for_request(req: &ChatRequest, tools: &[ToolDirective], chunks: usize, written: Option<String>) -> Reply {
        let results = req.tool_results();
        if results.is_empty() && req.offers_tools() && !tools.is_empty() {
            return Reply::ToolCalls(
                tools
                    .iter()
                    .map(|t| ToolCall { id: format!("call_{}", short_id()), name: t.name.clone(), arguments: t.arguments.clone() })
                    .collect(),
            );
        }
        let mut text: String = results.iter().map(|r| format!("Tool result: {r}. ")).collect();
        match written {
            Some(w) => text.push_str(&w),
            None => text.push_str(&SENTENCE.split(' ').cycle().take(chunks.max(MIN_WORDS)).collect::<Vec<_>>().join(" ")),
        }
        match req.token_limit() {
            Some(limit) if (text.split_whitespace().count() as u64) > limit => {
                let kept: usize = words_of(&text).into_iter().take(limit as usize).map(str::len).sum();
                Reply::Text { text: text[..kept].trim_end().to_string(), finish: "length" }
            }
            _ => Reply::Text { text, finish: "stop" },
        }
    }

    pub fn finish_reason(&self) -> &'static str {
        match self {
            Reply::Text { finish, .. } => finish,
            Reply::ToolCalls(_) => "tool_calls",
        }
    }

    /// Completion tokens: words of the text, or of each call's name and arguments.
    pub fn tokens(&self) -> u64 {
        let words = |s: &str| s.split_whitespace().count() as u64;
        match self {
            Reply::Text { text, .. } => words(text),
            Reply::ToolCalls(calls) => calls.iter().map(|c| words(&c.name) + words(&c.arguments)).sum(),
        }
    }
}

/// 24 hex characters: unique enough for ids, short like OpenAI's.
pub fn short_id() -> String {
    let mut id = uuid::Uuid::new_v4().simple().to_string();
    id.truncate(24);
    id
}

/// Each word with the whitespace after it (leading whitespace stays with the first word), so
/// the pieces concatenate back to `text` and there is one piece per token.
pub fn words_of(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut prev_space = false;
    for (i, c) in text.char_indices() {
        if !c.is_whitespace() && prev_space && text[start..i].chars().any(|c| !c.is_whitespace()) {
            pieces.push(&text[start..i]);
            start = i;
        }
        prev_space = c.is_whitespace();
    }
    if start < text.len() {
        pieces.push(&text[start..]);
    }
    pieces
}

/// Cuts `text` into at most `n` pieces of whole words, as evenly as the words allow.
pub fn text_pieces(text: &str, n: usize) -> Vec<&str> {
    let words = words_of(text);
    let n = n.clamp(1, words.len().max(1));
    let mut pieces = Vec::with_capacity(n);
    let (mut word, mut byte) = (0, 0);
    for i in 1..=n {
        let until = words.len() * i / n;
        let len: usize = words[word..until].iter().map(|w| w.len()).sum();
        pieces.push(&text[byte..byte + len]);
        (word, byte) = (until, byte + len);
    }
    pieces.retain(|p| !p.is_empty());
    pieces
}

/// Cuts a tool call's arguments into at most `n` pieces on character boundaries, the way
/// OpenAI streams them: fragments that are not JSON on their own.
pub fn argument_pieces(arguments: &str, n: usize) -> Vec<&str> {
    let bounds: Vec<usize> = arguments.char_indices().map(|(i, _)| i).chain([arguments.len()]).collect();
    let chars = bounds.len() - 1;
    let n = n.clamp(1, chars.max(1));
    (1..=n).map(|i| &arguments[bounds[chars * (i - 1) / n]..bounds[chars * i / n]]).filter(|p| !p.is_empty()).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn req(body: serde_json::Value) -> ChatRequest {
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn text_pieces_are_whole_words_that_concatenate_to_the_text() {
        let text = "  one two  three four five six seven";
        for n in 1..10 {
            let pieces = text_pieces(text, n);
            assert_eq!(pieces.concat(), text, "n = {n}");
            assert_eq!(pieces.len(), n.min(7), "n = {n}");
            assert!(pieces.iter().skip(1).all(|p| !p.starts_with(' ')), "{pieces:?}");
        }
        assert_eq!(words_of(text).len() as u64, text.split_whitespace().count() as u64);
    }

    #[test]
    fn argument_pieces_split_on_character_boundaries_and_concatenate_exactly() {
        let args = r#"{"city":"Zürich","n":[1,2]}"#;
        for n in 1..40 {
            assert_eq!(argument_pieces(args, n).concat(), args);
        }
        assert_eq!(argument_pieces(args, 4).len(), 4);
        assert_eq!(argument_pieces("", 4), Vec::<&str>::new());
    }

    #[test]
    fn the_answer_is_deterministic_and_at_least_as_long_as_the_chunk_count() {
        let r = req(json!({"messages": [{"role": "user", "content": "hi"}]}));
        assert_eq!(Reply::for_request(&r, &[], 12, None), Reply::for_request(&r, &[], 12, None));
        assert_eq!(Reply::for_request(&r, &[], 12, None).tokens(), 20);
        assert_eq!(Reply::for_request(&r, &[], 50, None).tokens(), 50);
    }

    #[test]
    fn a_token_limit_cuts_the_text_and_finishes_with_length() {
        let r = req(json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}));
        let reply = Reply::for_request(&r, &[], 12, None);
        assert_eq!(reply, Reply::Text { text: "This is the mock model".into(), finish: "length" });
        assert_eq!(reply.tokens(), 5);
    }

    #[test]
    fn tool_directives_need_offered_tools_and_no_result_fed_back() {
        let tools = [ToolDirective { name: "f".into(), arguments: "{}".into() }];
        let plain = req(json!({"messages": [{"role": "user", "content": "x"}]}));
        assert!(matches!(Reply::for_request(&plain, &tools, 3, None), Reply::Text { .. }));
        let offered = req(json!({"tools": [{"type": "function"}], "messages": [{"role": "user", "content": "x"}]}));
        assert!(matches!(Reply::for_request(&offered, &tools, 3, None), Reply::ToolCalls(ref c) if c[0].id.starts_with("call_")));
        let answered = req(json!({"tools": [{"type": "function"}], "messages": [
            {"role": "user", "content": "x"}, {"role": "tool", "content": "sunny"}
        ]}));
        let Reply::Text { text, finish } = Reply::for_request(&answered, &tools, 3, None) else { panic!("a text answer") };
        assert!(text.starts_with("Tool result: sunny. This is"), "{text}");
        assert_eq!(finish, "stop");
    }
}
