//! Chat messages, counted by the OpenAI cookbook rule: 3 tokens per message, the encoded length of
//! every string value in it, 1 more when it has a `name`, and 3 to prime the reply.

use super::{count_text, Count, Encoding, Method};

pub const TOKENS_PER_MESSAGE: usize = 3;
pub const TOKENS_PER_NAME: usize = 1;
pub const REPLY_PRIMING_TOKENS: usize = 3;

/// One message, already taken out of the caller's objects: its string values (role, content or
/// the `text` of each content part, name, ...) and whether it has a `name`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message<'a> {
    pub strings: Vec<&'a str>,
    pub has_name: bool,
}

/// The cookbook count of `messages`. Exact when `encoding` is known (and every string counted
/// exactly); otherwise the heuristic per string under the same per-message overheads.
pub fn count_messages(encoding: Option<Encoding>, messages: &[Message<'_>]) -> Count {
    let mut tokens = REPLY_PRIMING_TOKENS;
    let mut method = if encoding.is_some() {
        Method::Tiktoken
    } else {
        Method::Heuristic
    };
    for message in messages {
        tokens += TOKENS_PER_MESSAGE;
        if message.has_name {
            tokens += TOKENS_PER_NAME;
        }
        for value in &message.strings {
            let count = count_text(encoding, value);
            if count.method == Method::Heuristic {
                method = Method::Heuristic;
            }
            tokens += count.tokens;
        }
    }
    Count {
        tokens,
        method,
        encoding: match method {
            Method::Tiktoken => encoding,
            Method::Heuristic => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message<'a>(strings: &[&'a str], has_name: bool) -> Message<'a> {
        Message {
            strings: strings.to_vec(),
            has_name,
        }
    }

    #[test]
    fn cookbook_rule_matches_tiktoken_golden() {
        // shared/token-golden: gpt-4o, system + user, 19 tokens.
        let messages = [
            message(&["system", "You are a helpful assistant."], false),
            message(&["user", "Hello!"], false),
        ];
        let count = count_messages(Some(Encoding::O200kBase), &messages);
        assert_eq!(count.tokens, 19);
        assert_eq!(count.method, Method::Tiktoken);
    }

    #[test]
    fn empty_conversation_is_priming_only() {
        let count = count_messages(Some(Encoding::Cl100kBase), &[]);
        assert_eq!(count.tokens, REPLY_PRIMING_TOKENS);
    }

    #[test]
    fn name_adds_one() {
        let without = count_messages(
            Some(Encoding::Cl100kBase),
            &[message(&["user", "hi"], false)],
        );
        let with = count_messages(
            Some(Encoding::Cl100kBase),
            &[message(&["user", "hi", "alice"], true)],
        );
        assert_eq!(with.tokens, without.tokens + 1 + 1);
    }
}
