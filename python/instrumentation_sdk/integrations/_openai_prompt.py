"""What an OpenAI request bills as prompt tokens, counted before it is sent.

Chat messages follow the cookbook rule (the core's ``count_tokens``: 3 tokens per message, the
tokens of each string, 1 for a ``name``, 3 to prime the reply). Beyond it, the API renders
into the prompt what the rule does not see:

* a message's text parts, as one text joined as they are (a part's edge may merge with the
  next's into one token);
* function/tool definitions, as a TypeScript namespace (``namespace functions { type name = (_:
  {...}) => any; }``), in the system message (or the developer message, which newer models take for
  it): the first one gains a trailing newline, the definitions cost their text plus 9 tokens, 4
  fewer when such a message is there to hold them. The two forms differ: legacy ``functions=[...]``
  indents a nested object's lines and drops their descriptions; ``tools=[...]`` keeps the
  descriptions, does not indent, renders a property's ``title`` (pydantic's) as a comment line
  before its description and a scalar ``default`` as ``// Default: <value>`` after it (2 tokens more
  per such function), and bills 1 token fewer per object with a property that has neither title nor
  description and is a plain string or a number, and 1 fewer per undocumented boolean (a ``strict``
  inside the parameters, where some clients put it, is not rendered). A ``tools`` schema using a
  keyword no billed count pins down (``format``, ``anyOf``...), a property without a ``type``, a
  title of the whole parameters object, a description over several lines or with blank space at an
  end, or a tool of another type (``custom``) is estimated (the estimate writes a ``$ref`` as the
  definition it names, an array of objects as ``Array<...>``, a list of types as a union, and
  each line of a description as a comment of its own);
* ``tool_choice`` / ``function_call``: ``"none"`` adds 1 token; a named function its name plus 4
  (legacy ``function_call``) or ``functions.<name>`` plus 6 (``tool_choice``);
* an assistant message's ``tool_calls``: one call is addressed to its function (the message's
  role becomes ``assistant to=functions.`` then the name, a string of its own, and the
  arguments, as compact JSON, its content, plus 1 token); several calls in one message are
  estimated as one call to ``multi_tool_use.parallel`` (compact JSON of ``tool_uses``, each a
  ``recipient_name`` and ``parameters``) and 6 tokens, their results as one message holding a
  JSON array of the results' texts (the bill on 37 of the 52 recordings it was chosen on, and
  on 2 of the 14 held out with nothing else estimated, 8 more 1 over); a
  message with text and a call bills 4 more; a
  ``tool`` message speaks as ``functions.<name>`` (its ``tool_call_id`` and any ``name`` on it
  are not billed); a legacy ``function`` result bills 2 fewer than the rule counts;
* gpt-3.5-turbo-0301 bills 4 tokens per message (the cookbook's rule for it);
* gpt-5 models ("harmony") prime the reply with one token fewer (so does o3-mini), put the
  definitions in a message of their own behind a fixed preamble, do not render ``tool_choice``,
  bill each tool call's headers, and 2 tokens for each earlier answer (its final channel); a
  developer message beside their definitions is estimated.

The constants were fitted, not documented by OpenAI: on requests recorded from the real API
(``tests/data/openai_prompt_usage.json``) and on the billed counts two open-source counters pin
(``tests/data/openai_function_definitions.json``), which the tests check. A message's ``name``
joins its role as ``<role>:<name>``, one string for the tokenizer: the cookbook's "+1 per name"
is the colon, true unless the colon merges with the name (o200k's ``:user`` is one token).
Images and audio are billed by rules the request does not fully tell (an image's size is in its
bytes, or behind a URL), and so are structured-output schemas (``response_format``) in a
request without tools, by a rendering not pinned down yet (a schema is estimated as its text
under ``# Response Formats``, see ``_response_format``); with tools, that text follows the
definitions and bills 1 token more; a plain assistant message beside a schema bills about 3
more (estimated). Search models bill their messages' text alone; o1 and o4-mini models,
Azure's unversioned ``gpt-35-turbo`` and requests with a predicted output (``prediction``) are
estimated.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from .. import _core

__all__ = ["chat_prompt_estimate", "embeddings_estimate", "text_estimate"]

Estimate = tuple[int, str, str | None]

#: The roles of the message the definitions and a response format join.
_SYSTEM_ROLES = frozenset({"system", "developer"})
#: A part of a message's content that is not text (billed by rules the request does not tell).
_MEDIA_PARTS = frozenset({"image_url", "input_audio", "file", "input_image", "input_file"})
#: Keys of a message the cookbook rule counts as they are (when its content is text).
_PLAIN_KEYS = frozenset({"role", "content", "name"})
#: Keys rendered in a way of their own (tool calls) or not at all (ids, refusals, audio).
_NOT_RENDERED_AS_IS = frozenset({"tool_calls", "tool_call_id", "function_call", "refusal", "audio"})
#: An assistant message with text besides its tool call bills this many tokens more.
_TEXT_WITH_CALL = 4
#: Models whose chat format primes the reply with 2 tokens (``<|start|>assistant``) where
#: earlier ones used 3: every recorded gpt-5 and o3-mini request bills 1 fewer. o3 too: its one
#: request (langchaingo's fork, sent synchronously and streamed, found off by 1 in that suite's
#: blind check) is exact by it, not held out; o1's 4 recordings (2 suites, estimated) also bill
#: 1 fewer than the 3-token priming.
_REPLY_PRIMED_WITH_2 = ("gpt-5", "o3", "o4-mini")
#: Models with the "harmony" chat format: tool definitions go to a developer message of their
#: own behind a fixed preamble (``_HARMONY_TOOLS`` tokens beyond the definitions and their 9),
#: whatever ``tool_choice`` says (it is not rendered), and each tool call costs
#: ``_HARMONY_CALL`` tokens more (its channel and format headers).
_HARMONY_MODELS = ("gpt-5",)
_HARMONY_TOOLS = 82
_HARMONY_CALL = 6
#: An earlier answer in a harmony prompt is on the final channel (``<|start|>assistant
#: <|channel|>final<|message|>...``, openai/harmony's docs/format.md): 2 tokens more than the
#: rule's message. Predicted by the documentation, then exact on ruby_llm's 4 recordings with one
#: (gpt-5-nano, gpt-5.4), 2 short before.
_HARMONY_FINAL = 2
#: Several tool calls in one message, beyond the ``multi_tool_use.parallel`` call's text and
#: the JSON array of their results: the estimate's constant (the median over the 34 such
#: recordings whose other parts are counted exactly, 28 of them at the bill with it).
_PARALLEL_CALLS = 6
#: The message holding the results of several calls: its 3 tokens and its role's.
_PARALLEL_RESULTS = 4
#: Models billed by the text of their messages alone (no per-message tokens, no priming).
_TEXT_ONLY_MODELS = ("gpt-4o-search", "gpt-4o-mini-search")
#: Models whose billing no rule here describes (o1-mini billed 7 more than the rule): estimated.
#: So is o3-mini with tools (crewAI's 2 such requests bill the priming token the rule saves),
#: o4-mini (its one recording bills o3-mini's 2-token priming: not enough to call it exact),
#: and Azure's ``gpt-35-turbo`` (the name does not tell the version: one deployment billed the
#: 0301 rule, another the later one).
_UNPINNED_MODELS = ("o1", "o4-mini", "gpt-35-turbo")
#: gpt-3.5-turbo-0301 bills 4 tokens per message, not 3 (the cookbook's rule for it; one
#: recording with 4 messages, exact); a ``name`` there replaces the role: estimated.
_FOUR_PER_MESSAGE = ("gpt-3.5-turbo-0301",)
#: A plain assistant message in a request with a structured-output schema: the estimate's
#: tokens beyond the message (see ``chat_prompt_estimate``).
_ANSWER_BESIDE_SCHEMA = 3
#: Models on which no recording pins a property's ``title`` down: langchaingo's 16 recordings on
#: gpt-4-0613 (``model="gpt-4"``; one definition list, two titled properties, descriptions over
#: several lines besides) bill 10-13 fewer than the estimate with the title lines; without them
#: 10 are at the bill, 6 are 2-3 over, while 103 recordings of gpt-4o-class and
#: gpt-3.5-turbo-0125 models bill the lines: estimated without them there (fitted on those 16,
#: one suite, found in its blind check).
_UNTITLED_MODELS = ("gpt-4-0613", "gpt-4-32k")
#: Tokens an image part costs at the lowest detail (85 for gpt-4o-class models): the estimate.
_IMAGE_ESTIMATE = 85


class _Family(NamedTuple):
    """Which of the rules above apply to a model (looked up once per model name)."""

    harmony: bool
    text_only: bool
    unpinned: bool
    primed_with_2: bool
    unpinned_with_tools: bool
    four_per_message: bool


_FAMILIES: dict[str, _Family] = {}
#: ``isinstance`` with a tuple: a ``list | tuple`` union is built and checked on each call.
_LISTS = (list, tuple)


def _family(model: str) -> _Family:
    family = _FAMILIES.get(model)
    if family is None:
        family = _Family(
            harmony=model.startswith(_HARMONY_MODELS),
            text_only=model.startswith(_TEXT_ONLY_MODELS),
            unpinned=model.startswith(_UNPINNED_MODELS),
            primed_with_2=model.startswith(_REPLY_PRIMED_WITH_2),
            unpinned_with_tools=model.startswith("o3-mini"),
            four_per_message=model.startswith(_FOUR_PER_MESSAGE),
        )
        if len(_FAMILIES) >= 256:
            _FAMILIES.clear()
        _FAMILIES[model] = family
    return family


def _as_mapping(message: Any) -> Mapping[str, Any] | None:
    if isinstance(message, Mapping):
        return message
    dump = getattr(message, "model_dump", None)  # a message object from an earlier response
    if callable(dump):
        result = dump(exclude_none=True)
        return result if isinstance(result, Mapping) else None
    return None


def _render_type(
    schema: Mapping[str, Any],
    indent: int,
    tools_form: bool,
    defs: Mapping[str, Any] | None = None,
) -> str:
    # The shapes below the pinned ones (a ``$ref``, a list of types, an array of objects) are
    # always estimated (``_tools_form_adjustment``); their renderings bring the estimate closer
    # (see ``_render_array``).
    schema, defs = _resolved(schema, defs)
    if "anyOf" in schema and isinstance(schema["anyOf"], list):
        return " | ".join(
            _render_type(option, indent, tools_form, defs) for option in schema["anyOf"]
        )
    kind = schema.get("type")
    enum = schema.get("enum")
    if isinstance(kind, list):
        # A list of types (``["string", "null"]``): a union, as openai/harmony's renderer
        # writes it (``src/encoding.rs``); no recording pins it down.
        return " | ".join("number" if k == "integer" else str(k) for k in kind)
    if kind == "string":
        return " | ".join(f'"{value}"' for value in enum) if enum else "string"
    if kind in ("number", "integer"):
        return " | ".join(str(value) for value in enum) if enum else "number"
    if kind in ("boolean", "null"):
        return str(kind)
    if kind == "object":
        return "{\n" + _render_properties(schema, indent + 2, tools_form, defs) + "\n}"
    if kind == "array":
        items = schema.get("items")
        if isinstance(items, Mapping):
            return _render_array(items, indent, tools_form, defs)
        return "any[]"
    return "any"


def _resolved(
    schema: Mapping[str, Any], defs: Mapping[str, Any] | None
) -> tuple[Mapping[str, Any], Mapping[str, Any] | None]:
    """A ``$ref`` (``#/$defs/Entity``) as the definition it names, to be rendered in place,
    and the definitions left to resolve inside it (none twice: no cycles). crewAI's 4
    recordings were 56 tokens under as ``any``, 3 under with it; Mirascope's 2, 26 -> 9 under;
    Pydantic AI's 3 (defaults and docstrings besides), 6 -> 15 over: estimated."""
    ref = schema.get("$ref")
    if not isinstance(ref, str) or not defs:
        return schema, defs
    name = ref.rsplit("/", 1)[-1]
    target = defs.get(name)
    if not isinstance(target, Mapping):
        return schema, defs
    merged = {**target, **{key: value for key, value in schema.items() if key != "$ref"}}
    return merged, {key: value for key, value in defs.items() if key != name}


def _render_array(
    items: Mapping[str, Any], indent: int, tools_form: bool, defs: Mapping[str, Any] | None
) -> str:
    """An array's type. In the ``tools`` form, an array of objects (an estimate) is written
    ``Array<`` / its items' description as a comment / the object / ``>``, each on a line of its
    own: the hypothesis of ChatGPT's published tool prompts. Fitted on Sublayer's 2 recordings
    (gpt-4o, 7 under as ``{...}[]``, exact with it); held out, it does not explain crewAI's 11
    (36 under -> 32, one definition) nor instructor-rb's 1 (31 -> 27): estimated."""
    items, defs = _resolved(items, defs)
    if not tools_form or items.get("type") != "object":
        return _render_type(items, indent, tools_form, defs) + "[]"
    described = f"// {items['description']}\n" if isinstance(items.get("description"), str) else ""
    return "Array<\n" + described + _render_type(items, indent, tools_form, defs) + "\n>"


def _render_properties(
    schema: Mapping[str, Any],
    indent: int,
    tools_form: bool,
    defs: Mapping[str, Any] | None = None,
) -> str:
    required = schema.get("required") or ()
    lines = []
    for name, prop in (schema.get("properties") or {}).items():
        if not isinstance(prop, Mapping):
            continue
        if tools_form and prop.get("title"):
            lines.append(f"// {prop['title']}")  # pydantic's title: a comment line of its own
        # The legacy form drops a nested property's description; the tools form keeps it.
        if prop.get("description") and (tools_form or indent < 2):
            lines.append(f"// {prop['description']}")
        if tools_form and "default" in prop:
            lines.append(f"// Default: {json.dumps(prop['default'], ensure_ascii=False)}")
        optional = "" if name in required else "?"
        lines.append(f"{name}{optional}: {_render_type(prop, indent, tools_form, defs)},")
    # The legacy form indents a nested object's lines; the tools form does not.
    pad = "" if tools_form else " " * indent
    return "\n".join(pad + line for line in lines)


#: Schema keywords whose rendering in the ``tools`` form is pinned down by billed counts.
_KNOWN_KEYWORDS = frozenset(
    {"type", "description", "enum", "items", "properties", "required", "additionalProperties"}
)
#: ... and of a property: pydantic's ``title`` too, a comment line before the description.
_PROPERTY_KEYWORDS = _KNOWN_KEYWORDS | {"title"}


def _tools_form_adjustment(
    schema: Mapping[str, Any], keywords: frozenset[str] = _KNOWN_KEYWORDS
) -> int | None:
    """Tokens the ``tools`` form bills beyond the rendered text of one parameters object,
    nested objects included: 1 fewer for an object with any property that has no description
    (nor title) and is a plain ``string`` or a number, and 1 fewer per undocumented
    ``boolean``; 2 more for a function with a property that has a ``default``. ``None`` when
    the schema uses a keyword whose rendering is not pinned down (``format``, ``anyOf``, a
    ``title`` of the whole parameters object, a default on an object...): the count is then an
    estimate."""
    if not schema.keys() <= keywords and not (
        keywords is _KNOWN_KEYWORDS and schema.keys() - {"strict"} <= keywords
    ):
        return None
    adjustment = 0
    plain_undocumented = False
    defaults = False
    for prop in (schema.get("properties") or {}).values():
        if not isinstance(prop, Mapping) or not prop.keys() - {"default"} <= _PROPERTY_KEYWORDS:
            return None
        if "\n" in str(prop.get("description", "")):
            return None  # a description over several lines: see _definitions_tokens
        kind = prop.get("type")
        if kind is None:
            return None  # rendered "any", billed 2 fewer once (magentic's): not pinned down
        if isinstance(kind, list):
            return None  # a list of types: no recording pins its rendering down
        if _untrimmed(prop.get("description")):
            return None
        if "default" in prop:
            # "// Default: <value>" after the description, and 2 tokens per function: pinned
            # for a documented, non-object property of a function's own parameters with a
            # scalar default (6 recorded requests, 3 definitions); anything else: estimated.
            scalar = prop["default"] is None or type(prop["default"]) in (str, int, float, bool)
            documented = prop.get("description") or prop.get("title")
            if keywords is not _KNOWN_KEYWORDS or kind == "object" or not scalar or not documented:
                return None
            defaults = True
        if kind == "object":
            nested = _tools_form_adjustment(prop, _PROPERTY_KEYWORDS)
            if nested is None:
                return None
            adjustment += nested
        elif isinstance(prop.get("items"), Mapping) and (
            not prop["items"].keys() <= _KNOWN_KEYWORDS or prop["items"].get("type") == "object"
        ):
            return None  # an array of objects: no billed count shows how it is rendered
        elif prop.get("description") or prop.get("title"):
            continue
        elif kind in ("number", "integer") or (kind == "string" and not prop.get("enum")):
            plain_undocumented = True
        elif kind == "boolean":
            adjustment -= 1
    return adjustment - plain_undocumented + 2 * defaults


def _untrimmed(description: Any) -> bool:
    """A description with blank space at an end: billed 1 token fewer than its text once (a
    gpt-3.5-turbo-0613 definition, "... activities. "): perhaps trimmed, not pinned down."""
    return isinstance(description, str) and description != description.strip()


def _comment(description: str) -> str:
    """A function's description as comment lines. Over several lines (an estimate), the text is
    trimmed, then each line is a comment of its own, stripped of its blank space (``// Args:``,
    ``// query: ...``), a blank line ``//``. The line rendering was chosen among 5 on crewAI's
    29 recorded requests whose only unpinned part is such a description: 27 at the bill (the
    previous rule, indented lines as given: 23; openai/harmony's ``// `` before each line as it
    is: 23; the text as given: 0). Held out, ddtrace's 5 and OpenInference's 1 are at the bill,
    Mirascope's 5 were 1-2 over; trimming the text (a blank line at each end of its 159-line
    description: fitted on those 4, and a trailing blank billed 1 fewer on gpt-3.5-turbo-0613
    before) brings 4 to the bill. Then langchaingo's, counted blind: its 12 on gpt-4o are at the
    bill (1 over by the previous rule). Not exact: Mirascope's docstring is 1 over; crewAI's 2
    on gpt-4-0125-preview are 6 under (with property titles besides)."""
    if "\n" not in description:
        return f"// {description}"
    lines = description.strip().split("\n")
    return "\n".join(f"// {line.strip()}" if line.strip() else "//" for line in lines)


def render_functions(functions: Iterable[Mapping[str, Any]], tools_form: bool = False) -> str:
    """The function definitions as the API renders them into the prompt: ``tools_form`` for
    ``tools=[...]``, else the legacy ``functions=[...]`` form."""
    lines = ["namespace functions {", ""]
    for function in functions:
        if function.get("description"):
            lines.append(_comment(str(function["description"])))
        parameters = function.get("parameters") or {}
        if tools_form and isinstance(parameters.get("title"), str):
            # A title of the whole parameters object (an estimate): 4 recorded requests
            # (magentic's, openai-agents' via ddtrace, 3 titles) bill what this line costs.
            lines.append(f"// {parameters['title']}")
        if parameters.get("properties"):
            lines.append(f"type {function['name']} = (_: {{")
            defs = parameters.get("$defs") or parameters.get("definitions")
            defs = defs if isinstance(defs, Mapping) else None
            lines.append(_render_properties(parameters, 0, tools_form, defs))
            lines.append("}) => any;")
        else:
            lines.append(f"type {function['name']} = () => any;")
        lines.append("")
    lines.append("} // namespace functions")
    return "\n".join(lines)


#: The rendered definitions' token count of recent tool lists, by the list's identity: most
#: callers pass the same list every call. A hit also requires the same definition objects in
#: the same order (a definition changed in place without replacing it is not noticed).
_DEFINITIONS_CACHE: dict[tuple[int, str], tuple[Any, tuple[int, ...], tuple[int, bool]]] = {}
_DEFINITIONS_CACHE_SIZE = 64


def _definitions_tokens(request: Mapping[str, Any], model: str) -> tuple[int, bool] | None:
    """The definitions' tokens (rendered text, plus 9, plus the harmony preamble) and whether
    they are exact, or ``None`` when the request defines no function."""
    given = request.get("functions") or request.get("tools")
    if not given or not isinstance(given, _LISTS):
        return None
    key = (id(given), model)
    members = tuple(map(id, given))
    hit = _DEFINITIONS_CACHE.get(key)
    if hit is not None and hit[0] is given and hit[1] == members:
        return hit[2]
    functions = _functions(request)
    if not functions:
        return None
    tools_form = not isinstance(request.get("functions"), list | tuple)
    tokens = _core.count_tokens(render_functions(functions, tools_form), model).tokens + 9
    if model.startswith(_HARMONY_MODELS):
        # A function with an empty description bills 1 fewer there (3 functions recorded).
        tokens += _HARMONY_TOOLS - sum(f.get("description") == "" for f in functions)
    # A description over several lines bills more than its text in a way not pinned down
    # (estimated as comment lines, see ``_comment``: 49 of 52 recordings at the bill).
    exact = not any(
        "\n" in str(function.get("description", "")) or _untrimmed(function.get("description"))
        for function in functions
    )
    if not tools_form:
        # The legacy form: a property's description with blank space at an end, the same.
        exact = exact and not any(
            _untrimmed(prop.get("description"))
            for function in functions
            for prop in ((function.get("parameters") or {}).get("properties") or {}).values()
            if isinstance(prop, Mapping)
        )
    elif len(functions) != len(given):
        exact = False  # a tool of another type (``custom``: a grammar) is rendered otherwise
    if tools_form:
        for function in functions:
            adjustment = _tools_form_adjustment(function.get("parameters") or {})
            if adjustment is None:
                exact = False
            else:
                tokens += adjustment
    if tools_form and (model == "gpt-4" or model.startswith(_UNTITLED_MODELS)):
        titles = [
            f"// {prop['title']}\n"
            for function in functions
            for prop in ((function.get("parameters") or {}).get("properties") or {}).values()
            if isinstance(prop, Mapping) and prop.get("title")
        ]
        if titles:
            # Estimated without the title lines there (see ``_UNTITLED_MODELS``).
            tokens -= sum(c.tokens for c in _core.count_tokens_batch(titles, model))
            exact = False
    if len(_DEFINITIONS_CACHE) >= _DEFINITIONS_CACHE_SIZE:
        _DEFINITIONS_CACHE.clear()
    # The cache keeps the list alive, so ids stay unique.
    _DEFINITIONS_CACHE[key] = (given, members, (tokens, exact))
    return tokens, exact


def _functions(request: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    functions = request.get("functions")
    if isinstance(functions, list | tuple):
        return [f for f in functions if isinstance(f, Mapping)]
    tools = request.get("tools")
    if isinstance(tools, list | tuple):
        return [
            tool["function"]
            for tool in tools
            if (type(tool) is dict or isinstance(tool, Mapping))
            and isinstance(tool.get("function"), dict | Mapping)
        ]
    return []


def _compact_json(text: str) -> str:
    """``text`` as compact JSON when it is JSON, else as given."""
    try:
        return json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False)
    except ValueError:
        return text


def _json_or_text(text: str) -> Any:
    """``text`` parsed when it is JSON, else as given."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _result_text(content: Any) -> str:
    """A tool result's text: its content, or the text of its parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list | tuple):
        return "".join(
            part["text"]
            for part in content
            if isinstance(part, Mapping) and isinstance(part.get("text"), str)
        )
    return ""


def _tool_call_texts(
    message: Mapping[str, Any], call_names: dict[str, str | None]
) -> tuple[list[str], int]:
    """The text an assistant message's calls add, and the tokens beyond it: one call is
    addressed to its function (`` to=functions.<name>``, its arguments the content: a tool
    call's as compact JSON and 2 tokens more, a legacy ``function_call``'s as given); several
    (an estimate) go to ``multi_tool_use.parallel`` as one compact JSON of ``tool_uses``, their
    ids mapped to ``None`` in ``call_names`` (their results are billed together)."""
    calls = []
    for call in message.get("tool_calls") or ():
        if not isinstance(call, Mapping):
            call = _as_mapping(call) or {}
        function = call.get("function")
        if isinstance(function, Mapping):
            name = str(function.get("name", ""))
            calls.append((name, str(function.get("arguments", ""))))
            call_names[str(call.get("id"))] = name
    legacy = message.get("function_call")
    if isinstance(legacy, Mapping):
        calls.append((str(legacy.get("name", "")), str(legacy.get("arguments", ""))))
    if len(calls) == 1:
        name, arguments = calls[0]
        if isinstance(legacy, Mapping):
            return [f" to=functions.{name}", arguments], 0
        # A tool call's arguments are re-serialized compactly, as parallel calls' are, and its
        # name is a string of its own: o200k does not merge it with the dot before it (".j" +
        # "oker" would be 2 tokens, "joker" is 1).
        return [" to=functions.", name, _compact_json(arguments)], 1
    if not calls:
        return [], 0
    # Several calls (an estimate): one call to ``multi_tool_use.parallel`` with the calls as
    # compact JSON (the form models answer with when asked for several calls in one turn) and
    # a constant. Rendered so, 28 of the 34 recordings it was chosen on are at the bill; each
    # call rendered as a single call is 4-34 under on 8 of them. Their results are billed
    # together (``chat_prompt_estimate``): ``call_names`` marks their ids with ``None``.
    for call in message.get("tool_calls") or ():
        call_id = str((call if isinstance(call, Mapping) else _as_mapping(call) or {}).get("id"))
        if call_id in call_names:
            call_names[call_id] = None
    uses = [
        {"recipient_name": f"functions.{name}", "parameters": _json_or_text(arguments)}
        for name, arguments in calls
    ]
    parallel = json.dumps({"tool_uses": uses}, separators=(",", ":"), ensure_ascii=False)
    return [" to=multi_tool_use.parallel", parallel], _PARALLEL_CALLS


def chat_prompt_estimate(model: str, request: Mapping[str, Any]) -> Estimate | None:
    """``(tokens, method, encoding)`` for a Chat Completions request, or ``None`` when its
    messages are not a list."""
    messages = request.get("messages")
    if not isinstance(messages, _LISTS):
        return None
    family = _FAMILIES.get(model) or _family(model)
    if family.text_only:
        return _text_only(model, messages)
    definitions = None
    # Some part of the request no recording pins down (media, a shape the rules do not
    # cover): the count is then an estimate.
    unpinned_part = False
    if "tools" in request or "functions" in request:
        definitions = _definitions_tokens(request, model)
        # Tools none of which is a function (``custom``: a grammar): rendered otherwise.
        unpinned_part = definitions is None and bool(request.get("tools"))
    functions = definitions is not None
    # Harmony puts the definitions in a message of their own: the system message is as given.
    harmony = family.harmony
    padded_system = harmony
    plain: list[Mapping[str, Any]] = []  # what the cookbook rule counts as is
    extra_texts: list[str] = []  # counted on their own, each adding its tokens
    extra = 0
    has_system = False
    has_developer = False
    # tool_call_id -> function name (``None``: one of several calls in one message)
    call_names: dict[str, str | None] = {}
    parallel_results: list[list[str]] = []  # the results of each message's several calls
    role_names: list[str] = []  # role, name of each message with a name ("role:name")
    for item in messages:
        message = item if type(item) is dict else _as_mapping(item)
        if message is None:
            continue
        role = message.get("role")
        content = message.get("content")
        # A developer message is the system message of newer models: the definitions join it
        # (7 recorded requests, ruby_llm's, gpt-4.1-nano: 4 over when it was not).
        system = role in _SYSTEM_ROLES
        has_system = has_system or system
        has_developer = has_developer or role == "developer"
        if (
            role == "tool"
            and parallel_results
            and call_names.get(str(message.get("tool_call_id")), "") is None
        ):
            # The result of one of several calls: billed with the others as one message
            # holding a JSON array of their texts (crewAI's 12 recordings with long results,
            # 22-152 under as messages of their own, are at the bill so: quotes and line
            # breaks are escaped).
            parallel_results[-1].append(_result_text(content))
            continue
        if role == "function":
            extra -= 2  # a legacy function result bills 2 fewer than the rule counts
        elif harmony and role == "assistant" and content and not message.get("tool_calls"):
            extra += _HARMONY_FINAL
        elif role != "tool" and type(message.get("name")) is str and type(role) is str:
            role_names += (role, message["name"])
        # The common message (role, text, maybe a name) is counted as given, not copied.
        if (
            type(content) is str
            and role != "tool"
            # role and content only (the common message), else the keys are compared
            and ((len(message) == 2 and role is not None) or message.keys() <= _PLAIN_KEYS)
        ):
            if functions and system and not padded_system:
                message = {**message, "content": content + "\n"}  # the definitions follow
                padded_system = True
            plain.append(message)
            continue
        counted: dict[str, Any] = {}
        for key, value in message.items():
            if key in _NOT_RENDERED_AS_IS:
                continue
            if key == "content" and isinstance(value, list | tuple):
                texts = []
                for part in value:
                    part_type = part.get("type") if isinstance(part, Mapping) else None
                    if part_type in _MEDIA_PARTS:
                        unpinned_part = True
                        extra += _IMAGE_ESTIMATE
                    elif isinstance(part, Mapping) and isinstance(part.get("text"), str):
                        texts.append(part["text"])
                # The text parts are one text, joined as they are: "?" ending one part and "<"
                # starting the next are one token (ruby_llm's 8 recordings with two parts, 1
                # token fewer per join than counting the parts apart; Pydantic AI's 6 equal).
                counted["content"] = "".join(texts)
                continue
            if isinstance(value, str) and key in _PLAIN_KEYS:
                # Only these are rendered: a key the API does not know is not billed
                # (ActiveAgent's ``type``/``charset`` on each message: 10 tokens fewer).
                counted[key] = value
        if system and functions and not padded_system and isinstance(content, str):
            counted["content"] = content + "\n"
            padded_system = True
        if role == "tool":
            # A tool result speaks as the function it answers: "functions.<name>"; a `name`
            # given on it is not rendered (it is not billed).
            counted.pop("name", None)
            name = call_names.get(str(message.get("tool_call_id")))
            if name:
                counted["role"] = f"functions.{name}"
        plain.append(counted)
        if "tool_calls" in message or "function_call" in message:
            texts, beyond = _tool_call_texts(message, call_names)
            extra_texts.extend(texts)
            extra += beyond
            if len(message.get("tool_calls") or ()) > 1:
                parallel_results.append([])
            if harmony:
                extra += _HARMONY_CALL
            # Several calls in one message: an estimate. Held out, the rendering is the bill
            # on 2 of 14 recordings with nothing else estimated (8 on gpt-5-mini 1 over, 2
            # from 2025 escaping non-ASCII results, 2 from a concurrent agent team 44 / 65 off).
            unpinned_part = unpinned_part or len(message.get("tool_calls") or ()) > 1
            # Text and a call in one message: 4 tokens more. Fitted on openai-agents' handoff
            # (via ddtrace, gpt-4o), then held out: ActiveAgent's (gpt-4o-mini) is exact. No
            # gpt-5 recording has it: estimated there.
            if content and texts:
                extra += _TEXT_WITH_CALL
                unpinned_part = unpinned_part or harmony
    for results in parallel_results:
        if results:
            # Non-ASCII text as is: crewAI's 2026 recordings bill it so; 2025 ones
            # (ActiveAgent's, ruby-openai's, OpenInference's) escaped it, as ``\uXXXX``.
            extra_texts.append(json.dumps(results, ensure_ascii=False))
            extra += _PARALLEL_RESULTS
    count = _core.count_tokens(plain, model)
    tokens = count.tokens + extra
    if role_names:
        tokens += _names_as_rendered(role_names, model)
    if definitions is not None:
        tokens += definitions[0]
        unpinned_part = unpinned_part or not definitions[1]
    if definitions is not None and harmony and has_developer:
        # A developer message (not a system one) beside the definitions: 1 token fewer on
        # ruby_llm's 9 recordings (3 conversations, gpt-5-nano), system ones as the rule: an
        # estimate.
        tokens -= 1
        unpinned_part = True
    if definitions is not None and not harmony:
        if has_system:
            tokens -= 4
        choice = request.get("tool_choice", request.get("function_call"))
        if type(choice) is str or choice is None:  # "auto", "required", "none" (no ABC check)
            tokens += choice == "none"
        elif isinstance(choice, Mapping):
            named = choice.get("function") if "function" in choice else choice
            if isinstance(named, Mapping) and isinstance(named.get("name"), str):
                if "function" in choice:
                    # A named tool: "functions.<name>" (o200k merges the dot into some names:
                    # ".Training" is 1 token more than "Training") and 6 tokens more.
                    extra_texts.append(f"functions.{named['name']}")
                    tokens += 6
                else:
                    extra_texts.append(named["name"])  # a named legacy function_call
                    tokens += 4
    if request.get("prediction") is not None:
        # A predicted output bills part of itself in the prompt (Raix's 43-token prediction:
        # 12 more than the messages, one recording): an estimate of the messages alone.
        unpinned_part = True
    response_format = request.get("response_format")
    if response_format is not None:
        if not isinstance(response_format, str | dict):
            response_format = _format_of_type(response_format)  # parse()'s pydantic model
        if isinstance(response_format, Mapping) and response_format.get("type") == "json_schema":
            text, pinned = _response_format(response_format.get("json_schema") or {})
            extra_texts.append(text)
            answered = _assistant_text(messages)
            if answered:
                # A plain assistant message beside a schema bills about 3 tokens more: the
                # same conversation's second turn bills 3 more than its first beyond the
                # messages (Mirascope's 3 recordings and ruby_llm's 1, no tools); held out,
                # crewAI's 2 without tools 5 under -> 2, its 2 with tools 4 under -> 1: estimated.
                tokens += _ANSWER_BESIDE_SCHEMA
            if definitions is not None:
                # After the definitions, in the message that holds them: its text and 1 token
                # (38 recorded requests with tools, 3 suites, gpt-4o and gpt-4o-mini).
                tokens += 1
                unpinned_part = unpinned_part or not pinned or harmony or answered
            else:
                # Alone, it bills its text and about 4 tokens more (4 more for the system
                # message it creates when none is there), by a rule not pinned down (within
                # 4 of the bill on 66 of the 122 recorded requests without tools).
                # Harmony's prompt has a developer message for it either way (ruby_llm's 3
                # gpt-5-nano recordings, no system message: 4, not 8).
                tokens += 4 if has_system or harmony else 8
                unpinned_part = True
        elif not isinstance(response_format, Mapping):
            unpinned_part = True  # a type whose schema could not be made: the messages alone
    if family.primed_with_2:
        tokens -= 1  # the reply is primed with "<|start|>assistant": 2 tokens, not 3
    if family.four_per_message:
        tokens += len(plain)
        unpinned_part = unpinned_part or bool(role_names)
    if extra_texts:
        tokens += sum(c.tokens for c in _core.count_tokens_batch(extra_texts, model))
    unpinned = family.unpinned or (functions and family.unpinned_with_tools)
    method = "estimate" if unpinned_part or unpinned else count.method
    return tokens, method, count.encoding


def _text_only(model: str, messages: Sequence[Any]) -> Estimate:
    """What a search model bills: its messages' text and nothing more (both recorded requests);
    an estimate when a message holds something other than text."""
    texts: list[str] = []
    exact = True
    for item in messages:
        message = _as_mapping(item)
        content = message.get("content") if message is not None else None
        if isinstance(content, str):
            texts.append(content)
            continue
        for part in content if isinstance(content, list | tuple) else ():
            if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                texts.append(part["text"])
            else:
                exact = False
    counts = _core.count_tokens_batch(texts, model) if texts else []
    method = counts[0].method if counts and exact else "estimate"
    encoding = counts[0].encoding if counts else _core.count_tokens("", model).encoding
    return sum(c.tokens for c in counts), method, encoding


#: Schema keywords of the structured-output schemas billed exactly with tools (any other may be
#: dropped from the rendering, as ``required`` and ``additionalProperties`` are).
_FORMAT_KEYWORDS = frozenset(
    {
        "type",
        "properties",
        "required",
        "additionalProperties",
        "title",
        "description",
        "anyOf",
        "const",
    }
)
#: ... of which the rendering leaves these out.
_FORMAT_DROPPED = frozenset({"required", "additionalProperties"})


def _response_format(json_schema: Mapping[str, Any]) -> tuple[str, bool]:
    """The text a structured-output schema adds to the system message, and whether the schema
    is of the shapes whose billing pins it down: under ``# Response Formats`` its name, its
    description as a comment and the schema as compact JSON, keys as given, without its
    ``required`` and ``additionalProperties``. With tools the request bills this text and 1
    token (38 of 38 recorded requests: fitted on Pydantic AI's 4, held out crewAI's 10 and
    Mirascope's 24 exact at first try); without, its text and 1-7 tokens more, or fewer for
    ``$defs`` schemas with descriptions over several lines: an estimate."""
    header = f"# Response Formats\n\n## {json_schema.get('name', '')}\n\n"
    description = json_schema.get("description")
    if description:
        header += f"// {description}\n"
    schema = json_schema.get("schema") or {}
    keywords: set[str] = set()
    rendered = _without_dropped(schema, keywords)
    pinned = keywords <= _FORMAT_KEYWORDS and "\n" not in str(description or "")
    return header + json.dumps(rendered, separators=(",", ":"), ensure_ascii=False), pinned


def _without_dropped(schema: Any, keywords: set[str]) -> Any:
    """``schema`` without the keywords the rendering drops, in its (sub)schemas; property names
    are kept whatever they are. Collects the keywords it meets into ``keywords``."""
    if isinstance(schema, Mapping):
        keywords.update(schema.keys())
        return {
            key: (
                {name: _without_dropped(sub, keywords) for name, sub in value.items()}
                if key in ("properties", "$defs", "definitions") and isinstance(value, Mapping)
                else _without_dropped(value, keywords)
            )
            for key, value in schema.items()
            if key not in _FORMAT_DROPPED
        }
    if isinstance(schema, list):
        return [_without_dropped(item, keywords) for item in schema]
    return schema


def _assistant_text(messages: Sequence[Any]) -> bool:
    """Whether an assistant message says something of its own (not only calls a tool)."""
    for item in messages:
        message = item if type(item) is dict else _as_mapping(item)
        if (
            message is not None
            and message.get("role") == "assistant"
            and not message.get("tool_calls")
            and not message.get("function_call")
        ):
            return True
    return False


#: The response format ``parse()`` sends for a pydantic model or dataclass, by type (the
#: client makes it from the type's JSON schema; making it each call would cost more).
_FORMATS_OF_TYPES: dict[Any, Mapping[str, Any] | None] = {}


def _format_of_type(given: Any) -> Mapping[str, Any] | None:
    if given in _FORMATS_OF_TYPES:
        return _FORMATS_OF_TYPES[given]
    try:  # the client's own conversion (a private module: any failure leaves the estimate)
        from openai.lib._parsing._completions import type_to_response_format_param

        made = type_to_response_format_param(given)
        result = dict(made) if isinstance(made, Mapping) else None
    except Exception:
        result = None
    if len(_FORMATS_OF_TYPES) >= _DEFINITIONS_CACHE_SIZE:
        _FORMATS_OF_TYPES.clear()
    _FORMATS_OF_TYPES[given] = result
    return result


def _names_as_rendered(role_names: list[str], model: str) -> int:
    """What rendering each name as ``<role>:<name>`` bills beyond the rule's name + 1 (the rule
    counted role and name apart); ``role_names`` is role, name, role, name, ..."""
    texts: list[str] = []
    for role, name in zip(role_names[::2], role_names[1::2], strict=True):
        texts += (f"{role}:{name}", role, name)
    counts = [c.tokens for c in _core.count_tokens_batch(texts, model)]
    return sum(
        joined - role - name - 1
        for joined, role, name in zip(counts[::3], counts[1::3], counts[2::3], strict=True)
    )


def text_estimate(model: str, prompt: Any, instructions: Any = None) -> Estimate | None:
    """A Responses API ``input`` (text or messages) and ``instructions``, counted as text."""
    if isinstance(prompt, str):
        count = _core.count_tokens(prompt, model)
    elif isinstance(prompt, list | tuple):
        messages = [m for m in (_as_mapping(item) for item in prompt) if m is not None]
        count = _core.count_tokens(messages, model)
    else:
        return None
    tokens = count.tokens
    if isinstance(instructions, str):
        tokens += _core.count_tokens(instructions, model).tokens
    return tokens, count.method, count.encoding


def embeddings_estimate(model: str, inputs: Any) -> Estimate | None:
    """Embedding inputs bill their tokens and nothing more: exact for OpenAI's models."""
    if isinstance(inputs, str):
        count = _core.count_tokens(inputs, model)
        return count.tokens, count.method, count.encoding
    if isinstance(inputs, Sequence) and inputs and all(isinstance(x, str) for x in inputs):
        counts = _core.count_tokens_batch(list(inputs), model)
        return sum(c.tokens for c in counts), counts[0].method, counts[0].encoding
    if isinstance(inputs, Sequence) and inputs and all(isinstance(x, int) for x in inputs):
        return len(inputs), "token_ids", None
    return None
