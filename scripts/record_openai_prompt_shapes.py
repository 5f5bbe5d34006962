"""Record, on purpose, the OpenAI requests that would settle the pre-count's open shapes.

The exact pre-count of an OpenAI request (``integrations/_openai_prompt.py``) rests on requests
recorded from the real API by public test suites (``tests/data/openai_prompt_usage.json``).
Some shapes stay estimates because no public recording pins their rendering down: a
structured-output schema without tools, several tool calls in one assistant message, tool
schemas with ``$ref``/``anyOf``/``format``/arrays of objects, and some o-series models. This
script sends each of those shapes, varied one thing at a time (the model; a system, developer or
no system message; the kind of tool result), and writes what the API billed as rows in the
test data's format, beside our pre-count of each::

    OPENAI_API_KEY=sk-... python scripts/record_openai_prompt_shapes.py --out shapes.json
    python scripts/record_openai_prompt_shapes.py --out shapes.json \\
        --append tests/data/openai_prompt_usage.json
    python -m pytest tests/test_openai_precount.py   # which rules the new rows hold

64 requests, each answered with at most 16 tokens (a fraction of a cent in all). Rows
recorded from another address than api.openai.com (``--base-url``) are kept with that address,
and the tests never count them as billed. ``--only`` picks groups (``schema``, ``calls``,
``keywords``, ``models``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
Case = tuple[str, str, dict[str, Any]]  # (group, name, request)

#: One schema for every structured-output case: nested object, enum, array, a description.
SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "description": "The city's name"},
        "population": {"type": "integer"},
        "climate": {"type": "string", "enum": ["dry", "temperate", "tropical"]},
        "landmarks": {"type": "array", "items": {"type": "string"}},
        "mayor": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "since": {"type": "integer"}},
            "required": ["name", "since"],
            "additionalProperties": False,
        },
    },
    "required": ["city", "population", "climate", "landmarks", "mayor"],
    "additionalProperties": False,
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Get the local time in a time zone",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string", "description": "An IANA time zone"}},
            "required": ["zone"],
        },
    },
}
#: Tool parameters with the keywords no public recording pins down, one per tool.
KEYWORD_PARAMETERS: dict[str, dict[str, Any]] = {
    "ref": {
        "type": "object",
        "$defs": {
            "Address": {
                "type": "object",
                "properties": {"street": {"type": "string"}, "zip": {"type": "string"}},
                "required": ["street"],
            }
        },
        "properties": {"address": {"$ref": "#/$defs/Address"}},
        "required": ["address"],
    },
    "array_of_objects": {
        "type": "object",
        "properties": {
            "items": {
                "type": "array",
                "description": "The order's lines",
                "items": {
                    "type": "object",
                    "properties": {"sku": {"type": "string"}, "quantity": {"type": "integer"}},
                    "required": ["sku", "quantity"],
                },
            }
        },
        "required": ["items"],
    },
    "any_of": {
        "type": "object",
        "properties": {"id": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
        "required": ["id"],
    },
    "format": {
        "type": "object",
        "properties": {"when": {"type": "string", "format": "date-time"}},
        "required": ["when"],
    },
    "untyped": {
        "type": "object",
        "properties": {"value": {"description": "Anything"}},
        "required": ["value"],
    },
    "titled": {
        "type": "object",
        "title": "LookupArguments",
        "properties": {"key": {"type": "string", "title": "Key"}},
        "required": ["key"],
    },
}
SCHEMA_MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "gpt-5-mini")
CALL_MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "gpt-5-mini")
KEYWORD_MODELS = ("gpt-4o-mini", "gpt-4o")
O_SERIES = ("o1", "o3-mini", "o3", "o4-mini")
GROUPS = ("schema", "calls", "keywords", "models")


def _opening(system: str | None, question: str) -> list[dict[str, Any]]:
    messages = [{"role": system, "content": "You answer briefly."}] if system else []
    return [*messages, {"role": "user", "content": question}]


def _answer_limit(model: str) -> dict[str, Any]:
    # Reasoning models take max_completion_tokens (and spend it on reasoning first).
    if model.startswith(("gpt-5", "o1", "o3", "o4")):
        return {"max_completion_tokens": 16}
    return {"max_tokens": 16}


def _parallel_turn(results: str) -> list[dict[str, Any]]:
    """An assistant message with two tool calls, and their results."""
    calls = [
        ("call_w", "get_weather", {"city": "Paris"}),
        ("call_t", "get_time", {"zone": "Europe/Paris"}),
    ]
    answers = {
        "text": ["Sunny, 21 degrees.", "14:05"],
        "json": [
            json.dumps({"condition": "sunny", "celsius": 21}),
            json.dumps({"time": "14:05", "utc_offset": "+01:00"}),
        ],
    }[results]
    assistant = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": call_id,
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(arguments)},
            }
            for call_id, name, arguments in calls
        ],
    }
    tools = [
        {"role": "tool", "tool_call_id": call_id, "content": answer}
        for (call_id, _name, _arguments), answer in zip(calls, answers, strict=True)
    ]
    return [assistant, *tools]


def cases() -> Iterator[Case]:
    """Every request, each differing from a sibling in one thing."""
    question = "Describe Lyon."
    for model in SCHEMA_MODELS:
        for system in (None, "system", "developer"):
            fmt: dict[str, Any] = {
                "type": "json_schema",
                "json_schema": {"name": "city", "schema": SCHEMA},
            }
            strict: dict[str, Any] = {**fmt, "json_schema": {**fmt["json_schema"], "strict": True}}
            described = {
                **strict,
                "json_schema": {**strict["json_schema"], "description": "A city's facts"},
            }
            for variant, response_format in (
                ("plain", fmt),
                ("strict", strict),
                ("described", described),
            ):
                if variant != "plain" and system == "developer":
                    continue
                yield (
                    "schema",
                    f"schema-{model}-{system or 'none'}-{variant}",
                    {
                        "model": model,
                        "messages": _opening(system, question),
                        "response_format": response_format,
                        **_answer_limit(model),
                    },
                )
    ask = "What is the weather and the time in Paris?"
    for model in CALL_MODELS:
        for system in (None, "system"):
            for results in ("text", "json"):
                yield (
                    "calls",
                    f"calls-{model}-{system or 'none'}-{results}",
                    {
                        "model": model,
                        "messages": [*_opening(system, ask), *_parallel_turn(results)],
                        "tools": [WEATHER, TIME],
                        **_answer_limit(model),
                    },
                )
    for model in KEYWORD_MODELS:
        for keyword, parameters in KEYWORD_PARAMETERS.items():
            tool = {
                "type": "function",
                "function": {
                    "name": "lookup",
                    "description": "Look it up",
                    "parameters": parameters,
                },
            }
            yield (
                "keywords",
                f"keywords-{model}-{keyword}",
                {
                    "model": model,
                    "messages": _opening("system", "Look up order 12."),
                    "tools": [tool],
                    **_answer_limit(model),
                },
            )
    for model in O_SERIES:
        for system in (None, "developer"):
            yield (
                "models",
                f"models-{model}-{system or 'none'}",
                {"model": model, "messages": _opening(system, question), **_answer_limit(model)},
            )


def _commit() -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def record(client: Any, base_url: str, case: Case, commit: str) -> dict[str, Any]:
    """Send one case; its row in the test data's format."""
    _group, name, request = case
    response = client.chat.completions.create(**request)
    return {
        "source": f"recorded on purpose: scripts/record_openai_prompt_shapes.py@{commit}#{name}",
        "uri": base_url.rstrip("/") + "/chat/completions",
        "response_model": response.model,
        "prompt_tokens": response.usage.prompt_tokens,
        "response_id": response.id,
        "response_created": response.created,
        "request": request,
    }


def append(rows: list[dict[str, Any]], data_path: Path) -> int:
    """Add ``rows`` to a data file's ``chat`` list, leaving out rows already there; how many."""
    data = json.loads(data_path.read_text())
    known = {(row["source"], row.get("response_id")) for row in data["chat"]}
    new = [row for row in rows if (row["source"], row["response_id"]) not in known]
    data["chat"].extend(new)
    data_path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    return len(new)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="where to write the rows (JSON)")
    parser.add_argument(
        "--base-url",
        default=os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1"),
        help="the API's address (default: api.openai.com; rows from elsewhere are never counted)",
    )
    parser.add_argument("--only", action="append", choices=GROUPS, help="record these groups only")
    parser.add_argument(
        "--append",
        type=Path,
        metavar="DATA",
        help="then add the rows to this data file's chat list",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if not os.environ.get("OPENAI_API_KEY"):
        print("record_openai_prompt_shapes: set OPENAI_API_KEY", file=sys.stderr)
        return 2
    if args.append is not None and not args.append.is_file():
        print(f"record_openai_prompt_shapes: no data file at {args.append}", file=sys.stderr)
        return 2
    try:
        import openai
    except ImportError:
        print("record_openai_prompt_shapes: pip install openai", file=sys.stderr)
        return 2
    from instrumentation_sdk.integrations._openai_prompt import chat_prompt_estimate

    client = openai.OpenAI(base_url=args.base_url, max_retries=2)
    commit = _commit()
    rows, failed = [], 0
    print(f"{'case':44} {'billed':>6} {'ours':>6} {'diff':>5}  method")
    for case in cases():
        if args.only and case[0] not in args.only:
            continue
        try:
            row = record(client, args.base_url, case, commit)
        except openai.OpenAIError as err:  # a model this key cannot use, say: the rest goes on
            failed += 1
            print(f"{case[1]:44} failed: {type(err).__name__}: {err}", file=sys.stderr)
            continue
        rows.append(row)
        estimate = chat_prompt_estimate(row["response_model"], row["request"])
        ours, method = (estimate[0], estimate[1]) if estimate else (0, "none")
        diff = row["prompt_tokens"] - ours
        print(f"{case[1]:44} {row['prompt_tokens']:>6} {ours:>6} {diff:>+5}  {method}")
    args.out.write_text(json.dumps({"chat": rows}, indent=1, ensure_ascii=False) + "\n")
    print(f"{len(rows)} recorded, {failed} failed: {args.out}")
    if args.append is not None:
        print(f"{append(rows, args.append)} added to {args.append}")
    return 1 if failed and not rows else 0


if __name__ == "__main__":
    sys.exit(main())
