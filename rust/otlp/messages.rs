//! Captured prompts and completions as the GenAI conventions' `gen_ai.input.messages` and
//! `gen_ai.output.messages`: a JSON array of `{"role", "parts": [{"type": "text", "content"}]}`
//! messages (output messages also carry `finish_reason`). A prompt given as a string is one user
//! message; a message list in the OpenAI chat shape (`content` a string or a list of parts,
//! `tool_calls`, `role: "tool"`) is converted; messages already in the conventions' shape
//! (`parts`) are kept as they are.

use serde_json::{json, Map, Value as Json};

/// `gen_ai.input.messages` for a prompt (`text` already bounded; `is_json` when it is a message
/// list that fit its bound whole).
pub fn input_messages(text: &str, is_json: bool) -> String {
    messages(text, is_json, "user", None)
}

/// `gen_ai.output.messages` for a completion.
pub fn output_messages(text: &str, is_json: bool, finish_reason: Option<&str>) -> String {
    messages(
        text,
        is_json,
        "assistant",
        Some(finish_reason.unwrap_or("stop")),
    )
}

fn messages(text: &str, is_json: bool, role: &str, finish_reason: Option<&str>) -> String {
    let parsed = is_json
        .then(|| serde_json::from_str::<Json>(text).ok())
        .flatten();
    let list = match parsed {
        Some(Json::Array(items)) => items
            .into_iter()
            .map(|item| message(item, role, finish_reason))
            .collect(),
        Some(Json::Object(object)) => vec![message(Json::Object(object), role, finish_reason)],
        Some(Json::String(text)) => vec![text_message(role, &text, finish_reason)],
        _ => vec![text_message(role, text, finish_reason)],
    };
    Json::Array(list).to_string()
}

fn text_message(role: &str, text: &str, finish_reason: Option<&str>) -> Json {
    let mut message = json!({"role": role, "parts": [{"type": "text", "content": text}]});
    if let Some(reason) = finish_reason {
        message["finish_reason"] = Json::from(reason);
    }
    message
}

/// One chat message in the conventions' shape.
fn message(item: Json, default_role: &str, finish_reason: Option<&str>) -> Json {
    let Json::Object(mut object) = item else {
        let text = match item {
            Json::String(text) => text,
            other => other.to_string(),
        };
        return text_message(default_role, &text, finish_reason);
    };
    let role = match object.remove("role") {
        Some(Json::String(role)) => role,
        _ => default_role.to_owned(),
    };
    let mut out = Map::new();
    out.insert("role".into(), Json::from(role.as_str()));
    let parts = match object.remove("parts") {
        Some(Json::Array(parts)) => parts,
        _ => {
            let mut parts = Vec::new();
            match object.remove("content") {
                Some(Json::String(text)) if role == "tool" => parts.push(json!({
                    "type": "tool_call_response",
                    "id": object.get("tool_call_id").cloned().unwrap_or(Json::Null),
                    "response": text,
                })),
                Some(Json::String(text)) => {
                    parts.push(json!({"type": "text", "content": text}));
                }
                Some(Json::Array(items)) => parts.extend(items.into_iter().map(part)),
                Some(Json::Null) | None => {}
                Some(other) => parts.push(json!({"type": "text", "content": other.to_string()})),
            }
            if let Some(Json::Array(calls)) = object.remove("tool_calls") {
                parts.extend(calls.into_iter().map(tool_call));
            }
            parts
        }
    };
    out.insert("parts".into(), Json::Array(parts));
    if let Some(Json::String(name)) = object.remove("name") {
        out.insert("name".into(), Json::from(name));
    }
    if let Some(reason) = finish_reason {
        let reason = match object.remove("finish_reason") {
            Some(Json::String(given)) => given,
            _ => reason.to_owned(),
        };
        out.insert("finish_reason".into(), Json::from(reason));
    }
    Json::Object(out)
}

/// A content part: OpenAI's `{"type": "text", "text": ...}` becomes a text part; other parts
/// (images, audio) are kept with their type.
fn part(item: Json) -> Json {
    match item {
        Json::String(text) => json!({"type": "text", "content": text}),
        Json::Object(mut object) => {
            if object.get("type").and_then(Json::as_str) == Some("text") {
                if let Some(text) = object.remove("text") {
                    return json!({"type": "text", "content": text});
                }
            }
            Json::Object(object)
        }
        other => json!({"type": "text", "content": other.to_string()}),
    }
}

/// OpenAI's `{"id", "function": {"name", "arguments"}}` as a `tool_call` part.
fn tool_call(call: Json) -> Json {
    let function = call.get("function").cloned().unwrap_or(Json::Null);
    let arguments = match function.get("arguments") {
        Some(Json::String(text)) => serde_json::from_str(text).unwrap_or(Json::from(text.as_str())),
        Some(other) => other.clone(),
        None => Json::Null,
    };
    json!({
        "type": "tool_call",
        "id": call.get("id").cloned().unwrap_or(Json::Null),
        "name": function.get("name").cloned().unwrap_or(Json::Null),
        "arguments": arguments,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Json {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn a_string_prompt_is_one_user_message() {
        assert_eq!(
            parse(&input_messages("Hello \"you\"", false)),
            json!([{"role": "user", "parts": [{"type": "text", "content": "Hello \"you\""}]}])
        );
        assert_eq!(
            parse(&output_messages("Hi", false, None)),
            json!([{"role": "assistant", "parts": [{"type": "text", "content": "Hi"}],
                    "finish_reason": "stop"}])
        );
    }

    #[test]
    fn openai_chat_messages_are_converted() {
        let prompt = json!([
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "What is 2+2?"},
                                          {"type": "image_url", "image_url": {"url": "u"}}]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function",
                 "function": {"name": "add", "arguments": "{\"a\":2,\"b\":2}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "4"},
        ]);
        assert_eq!(
            parse(&input_messages(&prompt.to_string(), true)),
            json!([
                {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
                {"role": "user", "parts": [{"type": "text", "content": "What is 2+2?"},
                                           {"type": "image_url", "image_url": {"url": "u"}}]},
                {"role": "assistant", "parts": [{"type": "tool_call", "id": "c1", "name": "add",
                                                 "arguments": {"a": 2, "b": 2}}]},
                {"role": "tool", "parts": [{"type": "tool_call_response", "id": "c1",
                                            "response": "4"}]},
            ])
        );
    }

    #[test]
    fn conventions_shaped_messages_are_kept_and_cut_json_is_text() {
        let given = json!([{"role": "user", "parts": [{"type": "text", "content": "x"}]}]);
        assert_eq!(parse(&input_messages(&given.to_string(), true)), given);
        // A message list cut by its bound is no longer JSON: it goes out as one text part.
        let cut = "[{\"role\":\"user\",\"content\":\"abc...[truncated 9 bytes]";
        assert_eq!(
            parse(&input_messages(cut, false)),
            json!([{"role": "user", "parts": [{"type": "text", "content": cut}]}])
        );
        let reason = output_messages(
            &json!([{"role": "assistant", "content": "ok"}]).to_string(),
            true,
            Some("length"),
        );
        assert_eq!(parse(&reason)[0]["finish_reason"], "length");
    }
}
