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

/// An object's fields as chunks carry them: a dict's items, or an object's attributes.
///
/// Attributes are read from the object's own `__dict__`, fetched once per object: OpenAI's and
/// Anthropic's types are pydantic models, whose Python `__getattr__` spends microseconds
/// building an `AttributeError` for each field a chunk does not have. Objects without a
/// `__dict__` (slots, extension types) go through `getattr`.
struct Fields<'py> {
    object: Bound<'py, PyAny>,
    dict: Option<Bound<'py, PyDict>>,
}

impl<'py> Fields<'py> {
    fn of(object: &Bound<'py, PyAny>) -> Fields<'py> {
        let py = object.py();
        let dict = match object.cast::<PyDict>() {
            Ok(dict) => Some(dict.clone()),
            Err(_) => object
                .getattr(intern!(py, "__dict__"))
                .ok()
                .and_then(|d| d.cast_into::<PyDict>().ok()),
        };
        Fields {
            object: object.clone(),
            dict,
        }
    }

    /// The field `name`; `None` when missing or `None`.
    fn get(&self, name: &Bound<'py, PyString>) -> Option<Bound<'py, PyAny>> {
        let value = match &self.dict {
            Some(dict) => dict.get_item(name).ok().flatten()?,
            None => self.object.getattr(name).ok()?,
        };
        (!value.is_none()).then_some(value)
    }

    fn fields(&self, name: &Bound<'py, PyString>) -> Option<Fields<'py>> {
        self.get(name).map(|value| Fields::of(&value))
    }

    fn text(&self, name: &Bound<'py, PyString>) -> Option<Bound<'py, PyString>> {
        self.get(name)?.cast_into::<PyString>().ok()
    }

    fn int(&self, name: &Bound<'py, PyString>) -> Option<i64> {
        self.get(name)?.extract::<i64>().ok()
    }

    /// The items of the list field `name`, each as fields.
    fn items(&self, name: &Bound<'py, PyString>) -> Vec<Fields<'py>> {
        let Some(Ok(items)) = self.get(name).map(|v| v.try_iter()) else {
            return Vec::new();
        };
        items.flatten().map(|item| Fields::of(&item)).collect()
    }
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
    let chunk = Fields::of(chunk);
    if let Some(kind) = chunk.text(intern!(py, "type")) {
        let Ok(kind) = kind.to_str() else {
            return false;
        };
        return match kind {
            "content_block_delta" => chunk.fields(intern!(py, "delta")).is_some_and(|delta| {
                non_empty(delta.text(intern!(py, "text")))
                    || non_empty(delta.text(intern!(py, "partial_json")))
                    || non_empty(delta.text(intern!(py, "thinking")))
            }),
            "response.output_text.delta"
            | "response.function_call_arguments.delta"
            | "response.refusal.delta" => non_empty(chunk.text(intern!(py, "delta"))),
            _ => false,
        };
    }
    chunk.items(intern!(py, "choices")).iter().any(|choice| {
        match choice.fields(intern!(py, "delta")) {
            Some(delta) => {
                non_empty(delta.text(intern!(py, "content")))
                    || non_empty(delta.text(intern!(py, "refusal")))
                    || has_items(delta.get(intern!(py, "tool_calls")))
                    || delta.get(intern!(py, "function_call")).is_some()
            }
            // Legacy completions stream `choices[i].text`.
            None => non_empty(choice.text(intern!(py, "text"))),
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
    let chunk = Fields::of(chunk);
    if let Some(kind) = chunk.text(intern!(py, "type")) {
        if let Ok(kind) = kind.to_str() {
            absorb_event(&chunk, kind, completion, take_text);
        }
        return;
    }
    absorb_chat_chunk(&chunk, completion, take_text);
}

/// OpenAI Chat Completions (and legacy Completions) chunks.
fn absorb_chat_chunk(chunk: &Fields<'_>, completion: &mut Completion, take_text: bool) {
    let py = chunk.object.py();
    if completion.actual_model.is_none() {
        set_text(
            &mut completion.actual_model,
            chunk.text(intern!(py, "model")),
        );
    }
    if let Some(usage) = chunk.fields(intern!(py, "usage")) {
        if let Some(tokens) = usage.int(intern!(py, "completion_tokens")) {
            completion.output_tokens = Some(tokens);
        }
        if let Some(tokens) = usage.int(intern!(py, "prompt_tokens")) {
            completion.input_tokens = Some(tokens);
        }
        usage_details(
            &usage,
            completion,
            intern!(py, "prompt_tokens_details"),
            intern!(py, "completion_tokens_details"),
        );
    }
    for (position, choice) in chunk.items(intern!(py, "choices")).iter().enumerate() {
        let index = choice
            .int(intern!(py, "index"))
            .and_then(|i| usize::try_from(i).ok())
            .unwrap_or(position);
        set_text(
            &mut completion.finish_reason,
            choice.text(intern!(py, "finish_reason")),
        );
        if !take_text {
            continue;
        }
        let Some(delta) = choice.fields(intern!(py, "delta")) else {
            push(completion, index, choice.text(intern!(py, "text")));
            continue;
        };
        push(completion, index, delta.text(intern!(py, "content")));
        push(completion, index, delta.text(intern!(py, "refusal")));
        let calls = delta.items(intern!(py, "tool_calls"));
        let legacy = delta.fields(intern!(py, "function_call"));
        let functions = calls
            .iter()
            .filter_map(|call| call.fields(intern!(py, "function")))
            .chain(legacy);
        for function in functions {
            push(completion, index, function.text(intern!(py, "name")));
            push(completion, index, function.text(intern!(py, "arguments")));
        }
    }
}

/// OpenAI's usage details: cached input tokens (read from the prompt cache) and reasoning
/// tokens, under `<input>.cached_tokens` and `<output>.reasoning_tokens`.
fn usage_details(
    usage: &Fields<'_>,
    completion: &mut Completion,
    input: &Bound<'_, PyString>,
    output: &Bound<'_, PyString>,
) {
    let py = usage.object.py();
    if let Some(tokens) = usage
        .fields(input)
        .and_then(|details| details.int(intern!(py, "cached_tokens")))
    {
        completion.set_usage_part("cache_read_tokens", tokens);
    }
    if let Some(tokens) = usage
        .fields(output)
        .and_then(|details| details.int(intern!(py, "reasoning_tokens")))
    {
        completion.set_usage_part("reasoning_tokens", tokens);
    }
}

/// Anthropic's input, as the conventions count it: uncached plus cache reads and writes, each
/// part also recorded. `message_start` reports it; a later `message_delta` may restate it.
fn anthropic_input(usage: &Fields<'_>, completion: &mut Completion) {
    let py = usage.object.py();
    let parts = [
        (intern!(py, "input_tokens"), "uncached_prompt_tokens"),
        (intern!(py, "cache_read_input_tokens"), "cache_read_tokens"),
        (
            intern!(py, "cache_creation_input_tokens"),
            "cache_creation_tokens",
        ),
    ];
    let mut total = None;
    for (field, key) in parts {
        if let Some(tokens) = usage.int(field) {
            completion.set_usage_part(key, tokens);
            total = Some(total.unwrap_or(0) + tokens);
        }
    }
    if total.is_some() {
        completion.input_tokens = total;
    }
}

/// Typed events: Anthropic's message stream and OpenAI's Responses API stream.
fn absorb_event(event: &Fields<'_>, kind: &str, completion: &mut Completion, take_text: bool) {
    let py = event.object.py();
    match kind {
        "message_start" => {
            let Some(message) = event.fields(intern!(py, "message")) else {
                return;
            };
            set_text(
                &mut completion.actual_model,
                message.text(intern!(py, "model")),
            );
            if let Some(usage) = message.fields(intern!(py, "usage")) {
                anthropic_input(&usage, completion);
                if let Some(tokens) = usage.int(intern!(py, "output_tokens")) {
                    completion.output_tokens = Some(tokens);
                }
            }
        }
        "content_block_delta" if take_text => {
            if let Some(delta) = event.fields(intern!(py, "delta")) {
                push(completion, 0, delta.text(intern!(py, "text")));
                push(completion, 0, delta.text(intern!(py, "partial_json")));
                push(completion, 0, delta.text(intern!(py, "thinking")));
            }
        }
        "message_delta" => {
            if let Some(delta) = event.fields(intern!(py, "delta")) {
                set_text(
                    &mut completion.finish_reason,
                    delta.text(intern!(py, "stop_reason")),
                );
            }
            // Cumulative: the last one is the completion's count.
            if let Some(usage) = event.fields(intern!(py, "usage")) {
                if let Some(tokens) = usage.int(intern!(py, "output_tokens")) {
                    completion.output_tokens = Some(tokens);
                }
                anthropic_input(&usage, completion);
            }
        }
        "response.output_text.delta"
        | "response.function_call_arguments.delta"
        | "response.refusal.delta"
            if take_text =>
        {
            push(completion, 0, event.text(intern!(py, "delta")));
        }
        "response.created"
        | "response.in_progress"
        | "response.completed"
        | "response.incomplete"
        | "response.failed" => {
            let Some(response) = event.fields(intern!(py, "response")) else {
                return;
            };
            set_text(
                &mut completion.actual_model,
                response.text(intern!(py, "model")),
            );
            if let Some(usage) = response.fields(intern!(py, "usage")) {
                if let Some(tokens) = usage.int(intern!(py, "output_tokens")) {
                    completion.output_tokens = Some(tokens);
                }
                if let Some(tokens) = usage.int(intern!(py, "input_tokens")) {
                    completion.input_tokens = Some(tokens);
                }
                usage_details(
                    &usage,
                    completion,
                    intern!(py, "input_tokens_details"),
                    intern!(py, "output_tokens_details"),
                );
            }
            if let Some(details) = response.fields(intern!(py, "incomplete_details")) {
                set_text(
                    &mut completion.finish_reason,
                    details.text(intern!(py, "reason")),
                );
            }
        }
        _ => {}
    }
}
