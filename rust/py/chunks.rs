//! The shapes of streamed chunks the SDK understands, as objects or dicts: plain `str`/`bytes`,
//! OpenAI Chat Completions chunks, OpenAI Responses API events and Anthropic message events.
//!
//! Two readers: `carries_output`, asked on the request thread of each chunk until the first
//! token is seen (for time to first token), and `absorb`, which reads everything else a chunk
//! says (text, finish reason, model, usage) on the flusher.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};

use crate::span::Text;
use crate::stream::Completion;

/// `object[name]` for a dict, `object.name` otherwise; `None` when missing or `None`.
fn field<'py>(
    object: &Bound<'py, PyAny>,
    name: &Bound<'py, PyString>,
) -> Option<Bound<'py, PyAny>> {
    let value = if let Ok(dict) = object.cast::<PyDict>() {
        dict.get_item(name).ok().flatten()?
    } else {
        object.getattr(name).ok()?
    };
    (!value.is_none()).then_some(value)
}

fn text_of<'py>(
    object: &Bound<'py, PyAny>,
    name: &Bound<'py, PyString>,
) -> Option<Bound<'py, PyString>> {
    field(object, name)?.cast_into::<PyString>().ok()
}

fn int_of<'py>(object: &Bound<'py, PyAny>, name: &Bound<'py, PyString>) -> Option<i64> {
    field(object, name)?.extract::<i64>().ok()
}

fn non_empty(text: Option<Bound<'_, PyString>>) -> bool {
    text.is_some_and(|t| t.to_str().is_ok_and(|s| !s.is_empty()))
}

fn has_items(value: Option<Bound<'_, PyAny>>) -> bool {
    value.is_some_and(|v| v.len().is_ok_and(|n| n > 0))
}

/// Whether `chunk` carries output text or a tool-call delta (the first such chunk is the
/// first token).
pub(crate) fn carries_output(chunk: &Bound<'_, PyAny>) -> bool {
    if let Ok(text) = chunk.cast::<PyString>() {
        return text.to_str().is_ok_and(|s| !s.is_empty());
    }
    if let Ok(bytes) = chunk.cast::<PyBytes>() {
        return !bytes.as_bytes().is_empty();
    }
    let py = chunk.py();
    if let Some(kind) = text_of(chunk, intern!(py, "type")) {
        let Ok(kind) = kind.to_str() else {
            return false;
        };
        return match kind {
            "content_block_delta" => field(chunk, intern!(py, "delta")).is_some_and(|delta| {
                non_empty(text_of(&delta, intern!(py, "text")))
                    || non_empty(text_of(&delta, intern!(py, "partial_json")))
                    || non_empty(text_of(&delta, intern!(py, "thinking")))
            }),
            "response.output_text.delta"
            | "response.function_call_arguments.delta"
            | "response.refusal.delta" => non_empty(text_of(chunk, intern!(py, "delta"))),
            _ => false,
        };
    }
    let Some(choices) = field(chunk, intern!(py, "choices")) else {
        return false;
    };
    let Ok(choices) = choices.try_iter() else {
        return false;
    };
    choices.flatten().any(|choice| {
        match field(&choice, intern!(py, "delta")) {
            Some(delta) => {
                non_empty(text_of(&delta, intern!(py, "content")))
                    || non_empty(text_of(&delta, intern!(py, "refusal")))
                    || has_items(field(&delta, intern!(py, "tool_calls")))
                    || field(&delta, intern!(py, "function_call")).is_some()
            }
            // Legacy completions stream `choices[i].text`.
            None => non_empty(text_of(&choice, intern!(py, "text"))),
        }
    })
}

fn push(completion: &mut Completion, choice: usize, text: Option<Bound<'_, PyString>>) {
    if let Some(text) = text {
        completion.push_text(choice, &text.to_string_lossy());
    }
}

fn set_text(slot: &mut Option<Text>, value: Option<Bound<'_, PyString>>) {
    if let Some(value) = value {
        let value = value.to_string_lossy();
        if !value.is_empty() {
            *slot = Some(Text::from(value.as_ref()));
        }
    }
}

/// Reads what `chunk` says into `completion`. With `take_text` false (the caller gave its own
/// `text=` function) only the finish reason, model and usage are read.
pub(crate) fn absorb(chunk: &Bound<'_, PyAny>, completion: &mut Completion, take_text: bool) {
    if let Ok(text) = chunk.cast::<PyString>() {
        if take_text {
            completion.push_text(0, &text.to_string_lossy());
        }
        return;
    }
    if let Ok(bytes) = chunk.cast::<PyBytes>() {
        if take_text {
            completion.push_text(0, &String::from_utf8_lossy(bytes.as_bytes()));
        }
        return;
    }
    let py = chunk.py();
    if let Some(kind) = text_of(chunk, intern!(py, "type")) {
        if let Ok(kind) = kind.to_str() {
            absorb_event(chunk, kind, completion, take_text);
        }
        return;
    }
    absorb_chat_chunk(chunk, completion, take_text);
}

/// OpenAI Chat Completions (and legacy Completions) chunks.
fn absorb_chat_chunk(chunk: &Bound<'_, PyAny>, completion: &mut Completion, take_text: bool) {
    let py = chunk.py();
    if completion.actual_model.is_none() {
        set_text(
            &mut completion.actual_model,
            text_of(chunk, intern!(py, "model")),
        );
    }
    if let Some(usage) = field(chunk, intern!(py, "usage")) {
        if let Some(tokens) = int_of(&usage, intern!(py, "completion_tokens")) {
            completion.output_tokens = Some(tokens);
        }
        if let Some(tokens) = int_of(&usage, intern!(py, "prompt_tokens")) {
            completion.input_tokens = Some(tokens);
        }
    }
    let Some(Ok(choices)) = field(chunk, intern!(py, "choices")).map(|c| c.try_iter()) else {
        return;
    };
    for (position, choice) in choices.flatten().enumerate() {
        let index = int_of(&choice, intern!(py, "index"))
            .and_then(|i| usize::try_from(i).ok())
            .unwrap_or(position);
        set_text(
            &mut completion.finish_reason,
            text_of(&choice, intern!(py, "finish_reason")),
        );
        if !take_text {
            continue;
        }
        let Some(delta) = field(&choice, intern!(py, "delta")) else {
            push(completion, index, text_of(&choice, intern!(py, "text")));
            continue;
        };
        push(completion, index, text_of(&delta, intern!(py, "content")));
        push(completion, index, text_of(&delta, intern!(py, "refusal")));
        let calls = field(&delta, intern!(py, "tool_calls"));
        let calls = calls.and_then(|c| c.try_iter().ok());
        let legacy = field(&delta, intern!(py, "function_call"));
        let functions = calls
            .into_iter()
            .flat_map(Iterator::flatten)
            .filter_map(|call| field(&call, intern!(py, "function")))
            .chain(legacy);
        for function in functions {
            push(completion, index, text_of(&function, intern!(py, "name")));
            push(
                completion,
                index,
                text_of(&function, intern!(py, "arguments")),
            );
        }
    }
}

/// Typed events: Anthropic's message stream and OpenAI's Responses API stream.
fn absorb_event(
    event: &Bound<'_, PyAny>,
    kind: &str,
    completion: &mut Completion,
    take_text: bool,
) {
    let py = event.py();
    match kind {
        "message_start" => {
            let Some(message) = field(event, intern!(py, "message")) else {
                return;
            };
            set_text(
                &mut completion.actual_model,
                text_of(&message, intern!(py, "model")),
            );
            if let Some(usage) = field(&message, intern!(py, "usage")) {
                // Input as the conventions count it: uncached plus cache reads and writes.
                let parts = [
                    intern!(py, "input_tokens"),
                    intern!(py, "cache_read_input_tokens"),
                    intern!(py, "cache_creation_input_tokens"),
                ];
                let reported: Vec<i64> = parts.iter().filter_map(|p| int_of(&usage, p)).collect();
                if !reported.is_empty() {
                    completion.input_tokens = Some(reported.iter().sum());
                }
                if let Some(tokens) = int_of(&usage, intern!(py, "output_tokens")) {
                    completion.output_tokens = Some(tokens);
                }
            }
        }
        "content_block_delta" if take_text => {
            if let Some(delta) = field(event, intern!(py, "delta")) {
                push(completion, 0, text_of(&delta, intern!(py, "text")));
                push(completion, 0, text_of(&delta, intern!(py, "partial_json")));
                push(completion, 0, text_of(&delta, intern!(py, "thinking")));
            }
        }
        "message_delta" => {
            if let Some(delta) = field(event, intern!(py, "delta")) {
                set_text(
                    &mut completion.finish_reason,
                    text_of(&delta, intern!(py, "stop_reason")),
                );
            }
            // Cumulative: the last one is the completion's count.
            if let Some(usage) = field(event, intern!(py, "usage")) {
                if let Some(tokens) = int_of(&usage, intern!(py, "output_tokens")) {
                    completion.output_tokens = Some(tokens);
                }
            }
        }
        "response.output_text.delta"
        | "response.function_call_arguments.delta"
        | "response.refusal.delta"
            if take_text =>
        {
            push(completion, 0, text_of(event, intern!(py, "delta")));
        }
        "response.created"
        | "response.in_progress"
        | "response.completed"
        | "response.incomplete"
        | "response.failed" => {
            let Some(response) = field(event, intern!(py, "response")) else {
                return;
            };
            set_text(
                &mut completion.actual_model,
                text_of(&response, intern!(py, "model")),
            );
            if let Some(usage) = field(&response, intern!(py, "usage")) {
                if let Some(tokens) = int_of(&usage, intern!(py, "output_tokens")) {
                    completion.output_tokens = Some(tokens);
                }
                if let Some(tokens) = int_of(&usage, intern!(py, "input_tokens")) {
                    completion.input_tokens = Some(tokens);
                }
            }
            if let Some(details) = field(&response, intern!(py, "incomplete_details")) {
                set_text(
                    &mut completion.finish_reason,
                    text_of(&details, intern!(py, "reason")),
                );
            }
        }
        _ => {}
    }
}
