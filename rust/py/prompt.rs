//! Taking a prompt (a `str` or a list of chat messages) out of Python objects, into text the core
//! can count without the interpreter.

use std::borrow::Cow;
use std::ops::Deref;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;
use pyo3::types::{PyDict, PyList, PyMapping, PyString, PyTuple};

use crate::tokens::{count_messages, count_text, Count, Encoding, Message};

/// A string's text as tiktoken sees it. Python strings may hold lone surrogates, which have no
/// UTF-8 form; tiktoken then round-trips the text through UTF-16 with `errors="replace"` (each
/// lone surrogate becomes U+FFFD, a valid pair becomes its character), and so do we.
pub enum Text {
    Python(PyBackedStr),
    Repaired(String),
}

impl Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            Text::Python(text) => text,
            Text::Repaired(text) => text,
        }
    }
}

impl Text {
    pub fn extract(text: &Bound<'_, PyString>) -> PyResult<Text> {
        match text.extract::<PyBackedStr>() {
            Ok(text) => Ok(Text::Python(text)),
            Err(_) => repair_surrogates(text).map(Text::Repaired),
        }
    }
}

/// The text of a `str` borrowed straight from the object (no copy), repaired only when needed.
pub fn borrow_text<'a>(text: &'a Bound<'_, PyString>) -> PyResult<Cow<'a, str>> {
    match text.to_str() {
        Ok(text) => Ok(Cow::Borrowed(text)),
        Err(_) => repair_surrogates(text).map(Cow::Owned),
    }
}

fn repair_surrogates(text: &Bound<'_, PyString>) -> PyResult<String> {
    text.call_method1("encode", ("utf-16", "surrogatepass"))?
        .call_method1("decode", ("utf-16", "replace"))?
        .extract()
}

/// One message's strings, held so the core can borrow them while detached.
pub struct OwnedMessage {
    strings: Vec<Text>,
    has_name: bool,
}

pub enum Prompt {
    Text(Text),
    Messages(Vec<OwnedMessage>),
}

impl Prompt {
    /// `what` names the argument in error messages (`prompt`, `prompts[3]`).
    pub fn extract(prompt: &Bound<'_, PyAny>, what: &str) -> PyResult<Prompt> {
        if let Ok(text) = prompt.cast::<PyString>() {
            return Text::extract(text).map(Prompt::Text);
        }
        let items = if let Ok(list) = prompt.cast::<PyList>() {
            list.as_sequence().to_tuple()?
        } else if let Ok(tuple) = prompt.cast::<PyTuple>() {
            tuple.clone()
        } else {
            return Err(PyTypeError::new_err(format!(
                "{what} must be a str or a list of chat messages (mappings), got {}",
                type_name(prompt)
            )));
        };
        let mut messages = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            messages.push(extract_message(&item, what, index)?);
        }
        Ok(Prompt::Messages(messages))
    }

    /// Total UTF-8 bytes to count: decides whether detaching and threads are worth it.
    pub fn text_bytes(&self) -> usize {
        match self {
            Prompt::Text(text) => text.len(),
            Prompt::Messages(messages) => messages
                .iter()
                .flat_map(|m| m.strings.iter())
                .map(|s| s.len())
                .sum(),
        }
    }

    /// Every string of the prompt, one per line (what the injection scanner reads).
    pub fn joined(&self) -> String {
        match self {
            Prompt::Text(text) => text.to_string(),
            Prompt::Messages(messages) => messages
                .iter()
                .flat_map(|m| m.strings.iter())
                .map(Deref::deref)
                .collect::<Vec<&str>>()
                .join("\n"),
        }
    }

    pub fn count(&self, encoding: Option<Encoding>) -> Count {
        match self {
            Prompt::Text(text) => count_text(encoding, text),
            Prompt::Messages(messages) => {
                let messages: Vec<Message<'_>> = messages
                    .iter()
                    .map(|m| Message {
                        strings: m.strings.iter().map(Deref::deref).collect(),
                        has_name: m.has_name,
                    })
                    .collect();
                count_messages(encoding, &messages)
            }
        }
    }
}

fn extract_message(item: &Bound<'_, PyAny>, what: &str, index: usize) -> PyResult<OwnedMessage> {
    let mut message = OwnedMessage {
        strings: Vec::new(),
        has_name: false,
    };
    let mut take = |key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>| -> PyResult<()> {
        if let Ok(text) = value.cast::<PyString>() {
            if key.cast::<PyString>().is_ok_and(|k| k == "name") {
                message.has_name = true;
            }
            message.strings.push(Text::extract(text)?);
        } else if key.cast::<PyString>().is_ok_and(|k| k == "content") {
            // Content parts: count the text of each `{"type": "text", "text": ...}` part.
            let parts = if let Ok(list) = value.cast::<PyList>() {
                Some(list.as_sequence().to_tuple()?)
            } else {
                value.cast::<PyTuple>().ok().cloned()
            };
            if let Some(parts) = parts {
                for part in parts.iter() {
                    if let Some(text) = part_text(&part)? {
                        message.strings.push(text);
                    }
                }
            }
        }
        Ok(())
    };
    if let Ok(dict) = item.cast::<PyDict>() {
        for (key, value) in dict.iter() {
            take(&key, &value)?;
        }
    } else if let Ok(mapping) = item.cast::<PyMapping>() {
        for pair in mapping.items()?.iter() {
            let (key, value): (Bound<'_, PyAny>, Bound<'_, PyAny>) = pair.extract()?;
            take(&key, &value)?;
        }
    } else {
        return Err(PyTypeError::new_err(format!(
            "{what}[{index}] must be a chat message (a mapping such as {{'role': 'user', \
             'content': '...'}}), got {}",
            type_name(item)
        )));
    }
    Ok(message)
}

fn part_text(part: &Bound<'_, PyAny>) -> PyResult<Option<Text>> {
    if let Ok(text) = part.cast::<PyString>() {
        return Text::extract(text).map(Some);
    }
    let text = if let Ok(dict) = part.cast::<PyDict>() {
        dict.get_item("text")?
    } else if let Ok(mapping) = part.cast::<PyMapping>() {
        mapping.get_item("text").ok()
    } else {
        None
    };
    match text {
        Some(text) => match text.cast::<PyString>() {
            Ok(text) => Text::extract(text).map(Some),
            Err(_) => Ok(None),
        },
        None => Ok(None),
    }
}

fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map_or_else(|_| "an object".to_owned(), |name| name.to_string())
}
