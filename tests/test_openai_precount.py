"""The pre-count of an OpenAI request against what the real API billed for it.

``tests/data/openai_prompt_usage.json`` holds requests recorded from the real API with their
``usage.prompt_tokens`` (from the public test cassettes of OpenTelemetry, OpenLLMetry,
OpenInference, Logfire, Pydantic AI, crewAI, Mirascope and, added later as held-out checks,
magentic, ddtrace, LangSmith, AgentOps and simonw/llm, then Langtrace, Laminar, OpenLLMetry-JS,
DSPy.rb, RubyLLM, ruby-openai, ActiveAgent, instructor-rb, Sublayer, Boxcars, Raix and
langchaingo; each row names its source, and keeps the id and creation time of the answer
where the recording has them). Every
request counted exactly (not estimated) must match what OpenAI billed; a recording made
against a local stand-in server, whose usage was written by hand, or whose answer belongs to
another request, is shown to be one, not counted.
``tests/data/openai_function_definitions.json`` adds the billed counts two open-source token
counters pin for both function-definition forms.
"""

from __future__ import annotations

import copy
import json
import re
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from instrumentation_sdk import count_tokens, encoding_for_model
from instrumentation_sdk.integrations._openai_prompt import (
    chat_prompt_estimate,
    embeddings_estimate,
    render_functions,
)

HERE = Path(__file__).parent
DATA = json.loads((HERE / "data" / "openai_prompt_usage.json").read_text())
#: Requests whose billed counts two open-source token counters pin in their tests: the legacy
#: ``functions`` form (2023) and the ``tools`` form with nested, enum and undocumented
#: properties and every ``tool_choice``.
PINNED = json.loads((HERE / "data" / "openai_function_definitions.json").read_text())


def _billed_by_openai(row: dict[str, Any]) -> bool:
    """Recorded against OpenAI's API (or Azure OpenAI's), not a local stand-in, and not a
    hand-written response (``not_billed`` says why, with the evidence)."""
    host = urlsplit(row["uri"]).hostname or ""
    api = host == "api.openai.com" or host.endswith(".openai.azure.com")
    return api and "not_billed" not in row


#: Requests with ``name`` fields (AutoGen's, on gpt-4o): the cookbook's "+1 per name" bills 1
#: too many where o200k merges the colon of ``user:user`` into one token. Exact now; pinned
#: here as (billed, the cookbook rule's count) so the evidence stays in view.
NAMED = {
    "test_instrumenting_model_client.yaml#0": (15, 16),
    "TestTeam.test_team_run.yaml#0": (28, 29),
    "TestTeam.test_team_run.yaml#1": (160, 161),
    "TestTeam.test_team_run.yaml#2": (321, 322),
    "TestTeam.test_team_run.yaml#3": (489, 490),
}
#: A single tool call's name is tokenized on its own: Logfire's ``joker`` (o200k: ".j" + "oker"
#: after a dot, "joker" alone) billed 1 fewer than the rule that merged it with the dot. Found
#: on that one request, then checked on Pydantic AI's held-out ``durability_get_weather_in_city``
#: (1 call: 1 fewer; 2 calls: 2 fewer), and no other request changed. (billed, the old count)
NAME_ON_ITS_OWN = {
    "test_pydantic_ai_mcp_sampling.yaml#2": (87, 88),
    "test_durability_agent_with_model_retry.yaml#1": (93, 94),
    "test_durability_agent_with_model_retry.yaml#2": (127, 129),
}
#: No recorded request the rules count as exact misses its bill. (Several tool calls in one
#: message are estimated: the ``multi_tool_use.parallel`` rendering fits 5 recorded requests on
#: gpt-4o-mini and misses 21: gpt-4o's by -2 or +5, gpt-4o-mini's once and gpt-5-nano's by +10.)
#: One exception (billed, counted): instructor-rb's tool_choice "required" request on
#: gpt-3.5-turbo-0125 bills 2 more than the rule, recorded 2024-05-18, three weeks after the API
#: took "required"; the same shape on the same model is exact in OpenLLMetry's and
#: ruby-openai's recordings of 2025 (the rendering may have changed since). The cassette's
#: previous version (another request, no tool_choice) is exact too.
#: (The blind check of langchaingo's fork found o3's one request, sent synchronously and
#: streamed, 1 under the 3-token priming: o3 primes with 2 as o3-mini does, see
#: ``test_o3_primes_the_reply_with_2``.)
OTHER_MISSES: dict[str, tuple[int, int]] = {"valid_response.yml#0": (80, 78)}


def _counted_rows() -> list[dict[str, Any]]:
    return [
        r
        for r in DATA["chat"]
        if encoding_for_model(r["response_model"]) is not None and _billed_by_openai(r)
    ]


def _uses_tools(request: dict[str, Any]) -> bool:
    return bool(
        request.get("tools")
        or request.get("functions")
        or any(m.get("tool_calls") or m.get("role") == "tool" for m in request["messages"])
    )


def test_precount_equals_billed_prompt_tokens(oracle: Any) -> None:
    oracle("o200k_base")  # the counts below are checked against official tiktoken elsewhere
    exact, estimated, misses = [], [], {}
    for row in _counted_rows():
        tokens, method, _encoding = chat_prompt_estimate(row["response_model"], row["request"])
        if method == "estimate":
            estimated.append(row["source"])
        elif tokens == row["prompt_tokens"]:
            exact.append(row)
        else:
            misses[row["source"].rsplit("/", 1)[-1]] = (row["prompt_tokens"], tokens)
    assert misses == OTHER_MISSES
    for source, (billed, cookbook) in NAMED.items():
        row = next(r for r in DATA["chat"] if r["source"].endswith("/" + source))
        assert row in exact, source
        assert row["prompt_tokens"] == billed
        assert count_tokens(row["request"]["messages"], row["response_model"]).tokens == cookbook
    for source, (billed, _old) in NAME_ON_ITS_OWN.items():
        row = next(r for r in DATA["chat"] if r["source"].endswith("/" + source))
        assert row in exact, source
        assert row["prompt_tokens"] == billed, source
    with_tools = [row for row in exact if _uses_tools(row["request"])]
    harmony_tools = [r for r in with_tools if r["response_model"].startswith("gpt-5")]
    # 1,032 counted requests exact (one more off: OTHER_MISSES), 567 of them with tools or tool
    # calls (56 of those on gpt-5 models, 38 with a structured-output schema); 435 estimated
    # (images, documents, audio, structured-output schemas without tools, definitions with
    # keywords such as ``anyOf`` or untyped properties or descriptions over several lines,
    # several calls in one message, tools of other types, a developer message beside gpt-5's
    # definitions, a predicted output, o1, o4-mini, Azure's unversioned gpt-35-turbo).
    counts = (len(exact), len(with_tools), len(harmony_tools), len(estimated))
    assert counts == (1032, 567, 56, 435)


def test_pinned_counts_of_both_function_forms() -> None:
    forms = {"tools": 0, "functions": 0, "messages only": 0}
    for row in PINNED["rows"]:
        tokens, method, _ = chat_prompt_estimate(row["model"], row["request"])
        # Azure's ``gpt-35-turbo`` does not name its version (one recorded deployment bills
        # the 0301 rule, these the later one): the same count, called an estimate.
        expected = "estimate" if row["model"] == "gpt-35-turbo" else "tiktoken"
        assert (tokens, method) == (row["prompt_tokens"], expected), row["source"]
        form = next((f for f in ("tools", "functions") if f in row["request"]), "messages only")
        forms[form] += 1
    assert forms == {"tools": 18, "functions": 20, "messages only": 16}


def test_a_recording_from_a_local_server_is_not_counted() -> None:
    """The one chat recording whose billed count the rule misses (10 billed, 15 counted) was
    not billed by OpenAI: OpenLLMetry re-recorded the cassette (commit 8176494, 2025-08-01)
    against a local stand-in on ``localhost:5002``. Its answer shows it: the model is the
    undated ``gpt-3.5-turbo`` (the API answers with a dated snapshot, as the earlier
    recording of the same request from api.openai.com did: ``gpt-3.5-turbo-0125``, and no
    usage at all, since the request does not ask for ``stream_options.include_usage``)."""
    local = [r for r in DATA["chat"] if not _billed_by_openai(r) and "not_billed" not in r]
    by_source = {r["source"].rsplit("/", 1)[-1]: r for r in local}
    row = by_source["test_chat_streaming.yaml#0"]
    assert row["uri"] == "http://localhost:5002/v1/chat/completions"
    assert row["response_model"] == "gpt-3.5-turbo"
    assert "stream_options" not in row["request"]
    tokens, method, _ = chat_prompt_estimate("gpt-3.5-turbo-0125", row["request"])
    assert (row["prompt_tokens"], tokens, method) == (10, 15, "tiktoken")
    # The others from local servers are open models served by vLLM (no OpenAI encoding).
    others = {r["response_model"] for r in local if r is not row and "not_billed" not in r}
    assert all(encoding_for_model(model) is None for model in others), others


def test_a_hand_written_response_is_not_counted() -> None:
    """A cassette whose "API" answer was written by hand (10 billed, 14 counted by the rule
    exact everywhere else): a placeholder id, created 2023-12-21, months before gpt-4o-mini
    existed (2024-07-18), and the undated model name the API never answers with."""
    (row,) = [
        r
        for r in DATA["chat"]
        if r.get("not_billed", {}).get("response_id") == "chatcmpl-1234567890abcdef"
    ]
    evidence = row["not_billed"]
    assert evidence["response_id"] == "chatcmpl-1234567890abcdef"
    assert evidence["response_created"] < 1721260800  # 2024-07-18, gpt-4o-mini's release
    assert row["response_model"] == "gpt-4o-mini"  # no snapshot date
    tokens, method, _ = chat_prompt_estimate("gpt-4o-mini-2024-07-18", row["request"])
    assert (row["prompt_tokens"], tokens, method) == (10, 14, "tiktoken")


def test_hand_written_answers_are_not_counted() -> None:
    """ddtrace's suite holds answers written by hand, not billed: placeholder ids
    (``chatcmpl-ai-guard-test``, created 1700000000, the undated ``gpt-3.5-turbo``, 20 billed
    for requests with function definitions the rule counts at 65-78; ``chatcmpl-audio-test``;
    ``chatcmpl-BKtestREASONING``)."""
    placeholders = {
        r["not_billed"]["response_id"]
        for r in DATA["chat"]
        if "response_id" in r.get("not_billed", {})
    }
    assert placeholders == {
        "chatcmpl-1234567890abcdef",
        "chatcmpl-ai-guard-test",
        "chatcmpl-audio-test",
        "chatcmpl-BKtestREASONING",
    }


def test_usage_written_into_a_stream_is_not_counted() -> None:
    """Two of ddtrace's streamed recordings carry a usage chunk the API did not send: their
    requests do not ask for one (``stream_options.include_usage``), one is from April 2023
    (a year before the API could send usage in a stream) with the chunk spaced as the API's
    compact JSON never is, and the other answers with a call to a tool the request does not
    define (billed 166 for a one-line question)."""
    rows = [r for r in DATA["chat"] if "why" in r.get("not_billed", {})]
    hand_written = [
        r
        for r in rows
        if "response_id" not in r["not_billed"] and "same_response_as" not in r["not_billed"]
    ]
    assert len(hand_written) == 2
    for row in hand_written:
        request = row["request"]
        assert request["stream"] is True
        assert "stream_options" not in request
        assert "tools" not in request
    dated = next(r for r in hand_written if "response_created" in r["not_billed"])
    assert dated["not_billed"]["response_created"] < 1714521600  # 2024-05-01
    assert ', "usage": {' in dated["not_billed"]["usage_chunk"]


def test_an_answer_given_to_another_request_is_not_counted() -> None:
    """ddtrace's tools-form recording holds the answer its legacy-functions recording got: the
    same response id and creation time (2023-09-26), six weeks before the API took a ``tools``
    parameter (2023-11-06). The request it is stored with was never billed."""
    (row,) = [r for r in DATA["chat"] if "same_response_as" in r.get("not_billed", {})]
    other = next(r for r in DATA["chat"] if r["source"] == row["not_billed"]["same_response_as"])
    assert row["response_id"] == other["response_id"]
    assert row["response_created"] == other["response_created"] < 1699228800  # 2023-11-06
    assert "tools" in row["request"]
    assert "functions" in other["request"]
    assert "not_billed" not in other


#: Request keys the API does not bill: two recordings answered by one response may differ in
#: these (a cassette copied for a test of another option), never in what is counted.
_NOT_BILLED_KEYS = frozenset({"user", "n", "temperature"})


def test_every_counted_answer_is_one_the_api_gave() -> None:
    """The screen that found the hand-written answers, over every counted recording: an id of
    the API's form (search-preview models answer with a UUID), a creation time from the API's
    years, after the dated model's release, and no id answering two requests that differ in
    anything billed."""
    by_id: dict[str, list[dict[str, Any]]] = {}
    for row in _counted_rows():
        response_id, created = row["response_id"], row["response_created"]
        search = "search-preview" in row["response_model"]
        pattern = r"chatcmpl-[0-9a-f-]{36}" if search else r"chatcmpl-[A-Za-z0-9]{29}"
        assert re.fullmatch(pattern, response_id), row["source"]
        assert 1677628800 < created < 1798761600, row["source"]  # 2023-03 .. 2027
        dated = re.search(r"(20\d\d)-(\d\d)-(\d\d)$", row["response_model"])
        if dated:
            released = datetime(*map(int, dated.groups()), tzinfo=UTC)
            assert created >= released.timestamp(), row["source"]
        by_id.setdefault(response_id, []).append(row)
    shared = [rows for rows in by_id.values() if len(rows) > 1]
    assert len(shared) == 4  # Pydantic AI's user_id copy, ddtrace's 3 (n, temperature)
    for first, second in shared:
        assert first["prompt_tokens"] == second["prompt_tokens"]
        keys = first["request"].keys() | second["request"].keys()
        differing = {k for k in keys if first["request"].get(k) != second["request"].get(k)}
        assert differing <= _NOT_BILLED_KEYS, differing


def _suite(source: str) -> str:
    return source.split("@", 1)[0].removeprefix("github.com/")


#: The suites added in increments 6 and 7, by exact / off / estimated now. Counted blind with the
#: rules as they were before (main 189171a), they were magentic 30 / 2 / 4, ddtrace 81 / 6 / 13,
#: LangSmith 58 / 1 / 0, AgentOps 5 / 0 / 0, simonw/llm 5 / 0 / 0 (179 exact, 9 off, 17
#: estimated of 205). The 9 off, each now either counted by a documented rule (0301's 4
#: tokens per message) or estimated, see ``test_shapes_the_blind_check_found``.
NEW_SUITES = {
    "jackmpcollins/magentic": (30, 0, 6),
    # 18 estimated before one was shown not billed and text with a call was pinned down
    "DataDog/dd-trace-py": (83, 0, 16),
    "langchain-ai/langsmith-sdk": (58, 0, 1),
    "AgentOps-AI/agentops": (5, 0, 0),
    "simonw/llm": (5, 0, 0),
    # Increment 7, counted blind with main c49fd9e's rules: Langtrace 2 / 0 / 0, Laminar
    # 8 / 0 / 0, OpenLLMetry-JS 7 / 0 / 2, DSPy.rb 268 / 0 / 18 (of 286: its 262 plain
    # two-message gpt-4o-mini requests, all exact, are not kept), RubyLLM 78 / 17 / 82,
    # ruby-openai 3 / 0 / 1. RubyLLM's 17 off were 3 rules no earlier recording showed, now
    # counted (see ``test_rules_the_seventh_blind_check_found``); its estimates were mostly a
    # ``strict`` keyword inside the parameters, which the rendering drops.
    "Scale3-Labs/langtrace-python-sdk": (2, 0, 0),
    "lmnr-ai/lmnr-python": (8, 0, 1),
    "traceloop/openllmetry-js": (7, 0, 2),
    "vicentereig/dspy.rb": (6, 0, 18),
    "crmne/ruby_llm": (149, 0, 28),
    "alexrudall/ruby-openai": (3, 0, 1),
    # Then, counted blind with main c49fd9e's rules: ActiveAgent 83 / 2 / 12 (gpt-5's text
    # parts, exact by the join RubyLLM's recordings showed once that was in; a message's
    # unknown keys, see ``test_keys_a_message_does_not_render_are_not_billed``) and
    # instructor-rb 3 / 1 / 3 (see ``OTHER_MISSES``).
    "activeagents/activeagent": (86, 0, 13),
    "instructor-ai/instructor-rb": (3, 1, 3),
    # Last, counted blind with main c49fd9e's rules and with these (the same either way):
    # Sublayer 16 / 0 / 2, Boxcars 85 / 0 / 0, Raix 5 / 1 / 0 (a predicted output: 12 more
    # than the messages, estimated now).
    "sublayerapp/sublayer": (16, 0, 2),
    "BoxcarsAI/boxcars": (85, 0, 0),
    "OlympiaAI/raix": (5, 0, 1),
    # Increment 8, counted blind with main bbd5253's rules: langchaingo 452 / 0 / 46 of 498
    # (every version of its httprr recordings; its 413 plain requests, all exact, not kept).
    # The estimates' errors then: a ``json_schema`` without tools 0 (12), descriptions over
    # several lines +1 (12, gpt-4o; 0 with increment 8's rendering) and +11..+14 (16,
    # gpt-4-0613, property titles besides: see ``test_titles_on_gpt_4_0613_are_estimated``),
    # an image -170 (6).
    "tmc/langchaingo": (39, 0, 46),
    # Increment 10, counted blind with fba347e's rules: langchaingo's fork vxcontrol/langchaingo
    # (every version in its history; 217 requests to api.openai.com not already here, recorded
    # June 2025) 195 / 2 / 20. Its 181 plain requests counted exactly are not kept; the 36 kept:
    # o3's 2 off (exact since: ``test_o3_primes_the_reply_with_2``), o1's and o4-mini's 4
    # (estimated: 1 over, 0), the estimates of tools on gpt-4-0613 (0 x2, +3 x3), descriptions
    # over several lines on gpt-4o (0 x7), a json_schema (0 x2) and an image (-170 x2). No
    # several calls in one message: langchaingo's parallel-call tests record the answer with the
    # calls, not a request with them.
    "vxcontrol/langchaingo": (16, 0, 20),
}


def test_held_out_suites_counted_blind() -> None:
    found: dict[str, list[int]] = {suite: [0, 0, 0] for suite in NEW_SUITES}
    for row in _counted_rows():
        suite = _suite(row["source"])
        if suite not in found:
            continue
        tokens, method, _ = chat_prompt_estimate(row["response_model"], row["request"])
        found[suite][2 if method == "estimate" else 0 if tokens == row["prompt_tokens"] else 1] += 1
    assert {suite: tuple(counts) for suite, counts in found.items()} == NEW_SUITES


def _recorded(source_end: str) -> dict[str, Any]:
    return next(r for r in DATA["chat"] if r["source"].endswith(source_end))


@pytest.mark.parametrize(
    ("source_end", "billed_minus_estimate"),
    [
        # A tool of type ``custom`` (a Lark grammar, gpt-5): its rendering is not the
        # functions namespace; the rule saw no definition at all (224 short before too).
        ("chat_completion_custom_tool_call.yaml#0", 224),
        # Properties with no ``type`` (magentic's ``{"title": "Location"}``): billed 2 fewer
        # than the previous rule's ``any`` with the default's 2 tokens; 0 without them.
        ("test_async_prompt_chain.yaml#0", 0),
        # A description ending in a blank ("... activities. "): 1 fewer (the tools form's
        # recording of it turned out to be the same answer, not billed for its request).
        ("v1/chat_completion_function_call.yaml#0", -1),
        # o4-mini: 1 fewer than the 3-token priming; o3-mini's 2 fits its one recording.
        ("test_openai_test_wrap_openai_chat_async_tokens.yaml#3", 0),
        # Azure's gpt-35-turbo: 1 more here (the 0301 rule), exact on OpenLLMetry's.
        ("azure_chat_completion.yaml#0", 1),
        # A predicted output (Raix's, 43 tokens): 12 more than the messages.
        ("with_predicted_outputs/does_a_completion_with_OpenAI.yml#0", 12),
    ],
)
def test_shapes_the_blind_check_found(source_end: str, billed_minus_estimate: int) -> None:
    """What the held-out suites found off under the previous rules: each shape is estimated
    now, not called exact, and the estimate's error is what it is."""
    row = _recorded(source_end)
    tokens, method, _ = chat_prompt_estimate(row["response_model"], row["request"])
    assert method == "estimate", source_end
    assert row["prompt_tokens"] - tokens == billed_minus_estimate, source_end


def _ruby_llm(source_end: str, model: str) -> dict[str, Any]:
    return next(
        r for r in DATA["chat"] if r["source"].endswith(source_end) and r["response_model"] == model
    )


def test_rules_the_seventh_blind_check_found() -> None:
    """RubyLLM's 17 recordings off under main c49fd9e's rules, 3 shapes, each counted now:
    a ``developer`` message holds the definitions as a system one does (was 4 over, 7
    recordings); a message's text parts are one text, joined as they are (was 1 over per
    join, 8); an earlier answer in a gpt-5 prompt is on the final channel, 2 tokens (was 2
    under, 4; the 2 predicted by openai/harmony's format docs)."""
    nano, gpt5 = "gpt-4.1-nano-2025-04-14", "gpt-5-nano-2025-08-07"
    row = _ruby_llm(
        "openai_gpt-4_1-nano_can_handle_multiple_tool_calls_in_a_single_response.yml#0", nano
    )
    request = row["request"]
    assert request["messages"][0]["role"] == "developer"
    assert chat_prompt_estimate(nano, request)[:2] == (row["prompt_tokens"], "tiktoken")
    as_system = copy.deepcopy(request)
    as_system["messages"][0]["role"] = "system"
    assert chat_prompt_estimate(nano, as_system)[0] == row["prompt_tokens"]

    row = _ruby_llm("chat_text_models_openai_gpt-4_1-nano_can_understand_text.yml#1", nano)
    assert chat_prompt_estimate(nano, row["request"])[:2] == (row["prompt_tokens"], "tiktoken")
    apart = copy.deepcopy(row["request"])
    for message in apart["messages"]:
        if isinstance(message["content"], list):
            message["content"] = " ".join(part["text"] for part in message["content"])
    assert chat_prompt_estimate(nano, apart)[0] == row["prompt_tokens"] + 2

    row = _ruby_llm("openai_gpt-5-nano_can_handle_multi-turn_conversations.yml#1", gpt5)
    assert chat_prompt_estimate(gpt5, row["request"])[:2] == (row["prompt_tokens"], "tiktoken")
    as_user = copy.deepcopy(row["request"])
    as_user["messages"][1]["role"] = "user"
    assert chat_prompt_estimate(gpt5, as_user)[0] == row["prompt_tokens"] - 2


def test_text_with_a_call_in_one_message_bills_4_more() -> None:
    """An assistant message with text besides its one tool call bills 4 tokens more than the
    rule: fitted on openai-agents' handoff (recorded by ddtrace, gpt-4o, increment 6, where it
    was estimated), then held out on ActiveAgent's (gpt-4o-mini, an estimate 4 under in the
    blind pass): exact. These are the only two recordings of the shape."""
    rows = [
        r
        for r in _counted_rows()
        if any(m.get("tool_calls") and m.get("content") for m in r["request"]["messages"])
    ]
    assert {_suite(r["source"]) for r in rows} == {
        "DataDog/dd-trace-py",
        "activeagents/activeagent",
    }
    for row in rows:
        model, request = row["response_model"], row["request"]
        assert chat_prompt_estimate(model, request)[:2] == (row["prompt_tokens"], "tiktoken")
        silent = copy.deepcopy(request)
        message = next(m for m in silent["messages"] if m.get("tool_calls") and m.get("content"))
        text = message["content"]
        message["content"] = None
        without_text = chat_prompt_estimate(model, silent)[0]
        assert row["prompt_tokens"] == without_text + count_tokens(text, model).tokens + 4


def test_keys_a_message_does_not_render_are_not_billed() -> None:
    """ActiveAgent sent ``type`` and ``charset`` on each message: billed as if absent (the rule
    counted their values, 10 tokens over). A message renders its role, content and name."""
    row = next(r for r in DATA["chat"] if r["request"]["messages"][0].get("charset"))
    model = row["response_model"]
    assert chat_prompt_estimate(model, row["request"])[:2] == (row["prompt_tokens"], "tiktoken")
    bare = copy.deepcopy(row["request"])
    for message in bare["messages"]:
        del message["type"], message["charset"]
    assert chat_prompt_estimate(model, bare)[0] == row["prompt_tokens"]


def test_text_parts_joined_held_out() -> None:
    """The join of text parts, found on RubyLLM's gpt-4.1-nano recordings, held out on
    ActiveAgent's gpt-5 developer message of two parts: exact (1 over counted apart)."""
    row = next(
        r
        for r in DATA["chat"]
        if r["source"].endswith("array_instructions_agent_basic_request_with_override.yml#0")
        and r["response_model"].startswith("gpt-5")
    )
    model, request = row["response_model"], row["request"]
    assert chat_prompt_estimate(model, request)[:2] == (row["prompt_tokens"], "tiktoken")
    apart = copy.deepcopy(request)
    apart["messages"][0]["content"] = " ".join(p["text"] for p in request["messages"][0]["content"])
    assert chat_prompt_estimate(model, apart)[0] == row["prompt_tokens"] + 1


def test_a_strict_keyword_inside_the_parameters_is_not_rendered() -> None:
    """RubyLLM sends ``strict`` (and ``additionalProperties``) inside each function's
    parameters: billed as if absent, on its 54 such recordings that nothing else makes an
    estimate (gpt-4.1-nano, gpt-5-nano, gpt-5.4)."""
    nano = "gpt-4.1-nano-2025-04-14"
    rows = [
        r
        for r in _counted_rows()
        if any(
            "strict" in ((t.get("function") or {}).get("parameters") or {})
            for t in r["request"].get("tools") or ()
        )
    ]
    counted = [(r, chat_prompt_estimate(r["response_model"], r["request"])) for r in rows]
    exact = [r for r, (tokens, method, _) in counted if method != "estimate"]
    assert all(r["prompt_tokens"] == t for r, (t, m, _) in counted if m != "estimate")
    assert len(exact) == 54
    row = _ruby_llm("chat_function_calling_openai_gpt-4_1-nano_can_use_tools.yml#0", nano)
    without = copy.deepcopy(row["request"])
    del without["tools"][0]["function"]["parameters"]["strict"]
    assert "strict" in row["request"]["tools"][0]["function"]["parameters"]
    assert chat_prompt_estimate(nano, row["request"]) == chat_prompt_estimate(nano, without)
    assert chat_prompt_estimate(nano, without)[:2] == (row["prompt_tokens"], "tiktoken")


def test_o3_primes_the_reply_with_2() -> None:
    """o3's one recorded request (langchaingo's fork, sent synchronously and streamed) bills 1
    fewer than the cookbook's 3-token priming, as o3-mini's and gpt-5's do: exact by the 2-token
    priming, which leaves o3-mini's counts as they were."""
    for form in ("synchronous", "streaming"):
        row = _recorded(f"TestMultiContentTextWithReasoning-{form}-openai-o3.httprr#0")
        assert row["response_model"] == "o3-2025-04-16"
        plain = count_tokens(row["request"]["messages"], row["response_model"]).tokens
        assert chat_prompt_estimate(row["response_model"], row["request"]) == (
            row["prompt_tokens"],
            "tiktoken",
            "o200k_base",
        )
        assert row["prompt_tokens"] == plain - 1
    mini = _recorded("test_openai_model_without_system_prompt.yaml#0")
    assert mini["response_model"] == "o3-mini-2025-01-31"
    assert chat_prompt_estimate(mini["response_model"], mini["request"])[0] == mini["prompt_tokens"]


def test_gpt_35_turbo_0301_bills_4_tokens_per_message() -> None:
    """The cookbook's rule for gpt-3.5-turbo-0301 (4 tokens per message where later models
    bill 3), not fitted: ddtrace's 4-message recording is exact by it (3-per-message: 4 off)."""
    row = _recorded("v1/chat_completion.yaml#0")
    assert row["response_model"] == "gpt-3.5-turbo-0301"
    assert len(row["request"]["messages"]) == 4
    assert chat_prompt_estimate(row["response_model"], row["request"])[:2] == (57, "tiktoken")
    later = chat_prompt_estimate("gpt-3.5-turbo-0125", row["request"])
    assert later == (57 - 4, "tiktoken", "cl100k_base")


def test_embeddings_precount_is_exact() -> None:
    rows = [r for r in DATA["embeddings"] if encoding_for_model(r["response_model"]) is not None]
    assert len(rows) == 13
    for row in rows:
        tokens, method, _ = embeddings_estimate(row["response_model"], row["request"]["input"])
        assert (tokens, method) == (row["prompt_tokens"], "tiktoken"), row["source"]


def test_function_rendering() -> None:
    rendered = render_functions(
        [
            {
                "name": "get_weather",
                "description": "Get the weather",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "city": {"type": "string", "description": "The city"},
                        "unit": {"type": "string", "enum": ["c", "f"]},
                        "days": {"type": "array", "items": {"type": "integer"}},
                    },
                    "required": ["city"],
                },
            },
            {"name": "now", "parameters": {"type": "object", "properties": {}}},
        ]
    )
    assert rendered == (
        "namespace functions {\n\n"
        "// Get the weather\n"
        "type get_weather = (_: {\n"
        "// The city\n"
        "city: string,\n"
        'unit?: "c" | "f",\n'
        "days?: number[],\n"
        "}) => any;\n\n"
        "type now = () => any;\n\n"
        "} // namespace functions"
    )


def test_tools_form_rendering() -> None:
    """The ``tools`` form keeps a nested property's description and does not indent a
    nested object's lines (the legacy form drops the one and indents the other)."""
    function = {
        "name": "f",
        "parameters": {
            "type": "object",
            "properties": {
                "o": {
                    "type": "object",
                    "description": "An object",
                    "properties": {"s": {"type": "string", "description": "Inner"}},
                },
            },
            "required": ["o"],
        },
    }
    head = "namespace functions {\n\ntype f = (_: {\n// An object\no: {\n"
    tail = "\n},\n}) => any;\n\n} // namespace functions"
    assert render_functions([function], tools_form=True) == head + "// Inner\ns?: string," + tail
    assert render_functions([function]) == head + "  s?: string," + tail


@pytest.mark.parametrize(
    ("keyword", "method"),
    [
        (None, "tiktoken"),
        ({"title": "City"}, "tiktoken"),  # a comment line: exact on 103 recorded requests
        ({"default": "Paris"}, "tiktoken"),  # "// Default: ..." (6 recorded requests)
        ({"type": "object", "properties": {}, "default": None}, "estimate"),
        ({"default": ["Paris"]}, "estimate"),
        ({"format": "date"}, "estimate"),
        ({"type": "array", "items": {"type": "object", "properties": {}}}, "estimate"),
        ({"type": ["string", "null"]}, "estimate"),  # a list of types: no recording has it
    ],
)
def test_tools_with_keywords_not_pinned_down_are_estimated(
    keyword: dict[str, Any] | None, method: str
) -> None:
    """A ``tools`` definition using a schema keyword whose rendering no billed count pins
    down (``format``, a default list or on an object, arrays of objects...) is estimated, not
    called exact; pydantic's property ``title`` and a scalar ``default`` are pinned."""
    prop = {"type": "string", "description": "The city", **(keyword or {})}
    tool = {"name": "f", "parameters": {"type": "object", "properties": {"city": prop}}}
    request = {
        "messages": [{"role": "user", "content": "Hi"}],
        "tools": [{"type": "function", "function": tool}],
    }
    assert chat_prompt_estimate("gpt-4o", request)[1] == method


@pytest.mark.parametrize(
    ("content", "method"),
    [
        ("hello", "tiktoken"),
        ([{"type": "text", "text": "hello"}], "tiktoken"),
        ([{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}], "estimate"),
    ],
)
def test_media_is_estimated(content: Any, method: str) -> None:
    request = {"model": "gpt-4o", "messages": [{"role": "user", "content": content}]}
    assert chat_prompt_estimate("gpt-4o", request)[1] == method


def test_message_objects_from_a_response_count_like_dicts() -> None:
    openai = pytest.importorskip("openai")
    message = openai.types.chat.ChatCompletionMessage(role="assistant", content="Hi there")
    as_object = {"messages": [{"role": "user", "content": "Hello"}, message]}
    as_dict = {"messages": [{"role": "user", "content": "Hello"}, message.model_dump()]}
    assert chat_prompt_estimate("gpt-4o", as_object) == chat_prompt_estimate("gpt-4o", as_dict)


def test_harmony_models_do_not_render_tool_choice() -> None:
    """gpt-5 models put the definitions in a message of their own (a fixed preamble, recorded
    on 26 requests) and bill the same whatever ``tool_choice`` says; earlier models bill
    ``"none"`` and a named tool."""
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "description": "The city"}},
            },
        },
    }
    base = {"messages": [{"role": "user", "content": "Weather in Paris?"}], "tools": [tool]}
    named = {"type": "function", "function": {"name": "get_weather"}}
    for model, same in (("gpt-5-mini", True), ("gpt-4o", False)):
        counts = {
            chat_prompt_estimate(model, {**base, "tool_choice": choice})[0]
            for choice in ("auto", "none", named)
        }
        assert (len(counts) == 1) is same, model
    # The preamble: 82 tokens more than the same definitions cost gpt-4o, less the reply's
    # priming token harmony saves.
    gpt5 = chat_prompt_estimate("gpt-5-mini", base)[0]
    assert gpt5 == chat_prompt_estimate("gpt-4o", base)[0] + 82 - 1


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt-4o-search-preview", (11, "tiktoken")),  # the messages' text alone
        # 4 tokens per message (its role and 3 more), the text, the reply's priming
        ("gpt-4o", (8 + 11 + 3, "tiktoken")),
        ("o3-mini", (8 + 11 + 2, "tiktoken")),  # the reply primed with 2 tokens, not 3
        ("o1-mini", (8 + 11 + 3, "estimate")),  # billed 7 more once: no rule pins it down
    ],
)
def test_models_with_a_billing_of_their_own(model: str, expected: tuple[int, str]) -> None:
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},  # 6 tokens of text
        {"role": "user", "content": "What day is today?"},  # 5 tokens of text
    ]
    tokens, method, _ = chat_prompt_estimate(model, {"messages": messages})
    assert (tokens, method) == expected


#: Recordings added after the structured-output estimate was made (held out from its fit):
#: crewAI's and Mirascope's, then (increment 6, a blind check of every rule) magentic's,
#: ddtrace's, LangSmith's, AgentOps' and simonw/llm's, then increment 7's, 8's and 10's suites.
HELD_OUT = (
    "github.com/crewAIInc/crewAI@",
    "github.com/Mirascope/mirascope@",
    "github.com/jackmpcollins/magentic@",
    "github.com/DataDog/dd-trace-py@",
    "github.com/langchain-ai/langsmith-sdk@",
    "github.com/AgentOps-AI/agentops@",
    "github.com/simonw/llm@",
    "github.com/Scale3-Labs/langtrace-python-sdk@",
    "github.com/lmnr-ai/lmnr-python@",
    "github.com/traceloop/openllmetry-js@",
    "github.com/vicentereig/dspy.rb@",
    "github.com/crmne/ruby_llm@",
    "github.com/alexrudall/ruby-openai@",
    "github.com/activeagents/activeagent@",
    "github.com/instructor-ai/instructor-rb@",
    "github.com/sublayerapp/sublayer@",
    "github.com/BoxcarsAI/boxcars@",
    "github.com/OlympiaAI/raix@",
    "github.com/tmc/langchaingo@",
    "github.com/vxcontrol/langchaingo@",
)


def test_structured_output_schemas_with_tools_are_exact() -> None:
    """A ``json_schema`` response format in a request with tools bills its text (name,
    description, the schema as compact JSON without ``required`` and ``additionalProperties``,
    under ``# Response Formats``) and 1 token: every such recording is counted exactly (4
    fitted on Pydantic AI's, 34 held out from crewAI and Mirascope) unless a plain assistant
    message follows (about 3 tokens more, see ``test_a_plain_answer_beside_a_schema``:
    estimated). Without tools the schema is estimated: within 4 tokens of the bill on the 8 it
    was made on (all but the 4 with tools of the previous 12) and on 98 of the 159 held-out
    ones (langchaingo's 12 and its fork's 2 at the bill, counted blind; of the 145 before,
    84, 82 before increment 8's 3 tokens for a plain answer; 63 of 119 before increment
    7's 26 new: 19 of those within 4, DSPy.rb's gpt-4o-mini ones up to 7 under,
    ActiveAgent's schema with ``format``/``minLength``/``default`` keywords 39 over); crewAI's
    ``$defs`` schemas with descriptions over several lines are up to 18 over."""
    exact: dict[str, list[str]] = {"fitted": [], "held out": []}
    estimated: dict[str, dict[str, int]] = {"fitted": {}, "held out": {}}
    for row in _counted_rows():
        response_format = row["request"].get("response_format") or {}
        if response_format.get("type") != "json_schema":
            continue
        tokens, method, _ = chat_prompt_estimate(row["response_model"], row["request"])
        group = "held out" if row["source"].startswith(HELD_OUT) else "fitted"
        if method == "estimate":
            estimated[group][row["source"]] = tokens - row["prompt_tokens"]
            continue
        assert tokens == row["prompt_tokens"], row["source"]
        assert row["request"].get("tools"), row["source"]
        exact[group].append(row["source"])
    assert (len(exact["fitted"]), len(exact["held out"])) == (4, 34)
    with_tools_estimated = [
        s
        for group in estimated.values()
        for s in group
        if next(r for r in DATA["chat"] if r["source"] == s)["request"].get("tools")
    ]
    assert (
        len(with_tools_estimated) == 4
    )  # 2 with a plain assistant message, 2 with a tool description over several lines
    fitted = estimated["fitted"]
    assert len(fitted) == 8
    assert all(abs(v) <= 4 for v in fitted.values()), fitted
    held_out = estimated["held out"]
    close = sum(abs(v) <= 4 for v in held_out.values())
    assert (close, len(held_out), max(held_out.values())) == (98, 159, 39)


def test_a_structured_output_schema_of_an_unpinned_shape_is_estimated() -> None:
    """Only the keywords of the recorded schemas are pinned: ``items`` (it may be rendered
    otherwise, as ``required`` is dropped) makes the count an estimate, and so does a plain
    assistant message."""
    row = next(
        r
        for r in _counted_rows()
        if (r["request"].get("response_format") or {}).get("type") == "json_schema"
        and r["request"].get("tools")
        and chat_prompt_estimate(r["response_model"], r["request"])[1] != "estimate"
    )
    request = row["request"]
    json_schema = request["response_format"]["json_schema"]
    schema = json_schema["schema"]
    with_items = {
        **schema,
        "properties": {
            **schema["properties"],
            "tags": {"type": "array", "items": {"type": "string"}},
        },
    }
    changed = {
        **request,
        "response_format": {
            "type": "json_schema",
            "json_schema": {**json_schema, "schema": with_items},
        },
    }
    tokens, method, _ = chat_prompt_estimate(row["response_model"], changed)
    assert method == "estimate"
    assert tokens > row["prompt_tokens"]
    answered = {
        **request,
        "messages": [*request["messages"], {"role": "assistant", "content": "ok"}],
    }
    assert chat_prompt_estimate(row["response_model"], answered)[1] == "estimate"
    assert chat_prompt_estimate(row["response_model"], request) == (
        row["prompt_tokens"],
        "tiktoken",
        "o200k_base",
    )


def test_a_pydantic_response_format_is_estimated_as_its_schema() -> None:
    """``parse()`` sends a pydantic model as the client's strict JSON schema: the estimate is
    the one for that schema, not the messages alone."""
    pydantic = pytest.importorskip("pydantic")
    pytest.importorskip("openai")

    class StructuredAnswer(pydantic.BaseModel):
        rating: int
        joke: str

    row = next(
        r for r in DATA["chat"] if r["source"].endswith("test_async_parsed_completion.yaml#0")
    )
    as_class = {**row["request"], "response_format": StructuredAnswer}
    estimate = chat_prompt_estimate(row["response_model"], as_class)
    assert estimate == chat_prompt_estimate(row["response_model"], row["request"])
    assert estimate[1] == "estimate"
    assert abs(estimate[0] - row["prompt_tokens"]) <= 4


def _descriptions(request: dict[str, Any]) -> list[dict[str, Any]]:
    tools = [t.get("function") or {} for t in request.get("tools") or ()]
    return [*tools, *(request.get("functions") or ())]


def _estimate_errors(
    unpinned: str, among: Callable[[str], bool] = lambda source: True
) -> Counter[int]:
    """Estimate minus bill over the recordings (those whose source is ``among``) whose one
    unpinned part is ``unpinned``: ``"calls"`` (several tool calls in one message) or
    ``"descriptions"`` (a function's description over several lines); a recording counts when
    undoing that part (one call kept, the lines joined) makes the rest exact."""
    errors: Counter[int] = Counter()
    for row in _counted_rows():
        if not among(row["source"]):
            continue
        request = copy.deepcopy(row["request"])
        if unpinned == "calls":
            several = [m for m in request["messages"] if len(m.get("tool_calls") or ()) > 1]
            for message in several:
                message["tool_calls"] = message["tool_calls"][:1]
        else:
            several = [f for f in _descriptions(request) if "\n" in f.get("description", "")]
            for function in several:
                function["description"] = function["description"].replace("\n", " ").strip()
        model = row["response_model"]
        if not several or chat_prompt_estimate(model, request)[1] == "estimate":
            continue
        tokens, method, _ = chat_prompt_estimate(model, row["request"])
        assert method == "estimate", row["source"]
        errors[tokens - row["prompt_tokens"]] += 1
    return errors


#: Increment 10's recordings with several calls in one message (every version of such
#: cassettes in the history of the suites already here), held out from the rendering's choice.
SEVERAL_CALLS_HELD_OUT = tuple(
    f"github.com/{source}"
    for source in (
        "Arize-ai/openinference@06693fed70eb",
        "Arize-ai/openinference@6ad7284b1e2e",
        "Arize-ai/openinference@97a266ea194d",
        "Arize-ai/openinference@cfdfe2212423",
        "Arize-ai/openinference@dc7327f3e47c",
        "Arize-ai/openinference@dd5ed6ac3d5c",
        "Mirascope/mirascope@02ef02e56630",
        "Mirascope/mirascope@7260f3161d09",
        "activeagents/activeagent@ea84c843157e",
        "crewAIInc/crewAI@13a491cdb3ef",
        "crewAIInc/crewAI@17f4180b7ecc",
        "crewAIInc/crewAI@8dea33c25767",
        "crewAIInc/crewAI@a9d62172add4",
        "crewAIInc/crewAI@b8d042bfc453",
        "crewAIInc/crewAI@e9a643cee500",
        "lmnr-ai/lmnr-python@d4b84098a719",
    )
)


def test_several_calls_in_one_message_are_estimated() -> None:
    """Several tool calls in one message, estimated as one call to ``multi_tool_use.parallel``
    (compact JSON of ``tool_uses``) and 6 tokens, their results as one message holding a JSON
    array of their texts. Chosen among 5 renderings of the calls (each as a single call,
    ``multi_tool_use.parallel`` compact, spaced or with the arguments as given, a JSON array)
    x 5 of the results (messages of their own as today, each a JSON string, one JSON array,
    compact or not, each without quotes) x a constant per call, on the 52 recordings of
    increments 6 and 7 (34 with nothing else estimated): 32 of those 34 at the bill (the
    previous estimate, each call as a single call plus 21: 12; 4-34 under on 8). Not exact:
    OpenInference's first turn (an assistant message first) 2 over, ruby-openai's 12 under
    (a result with an emoji, escaped ``\\uXXXX`` in that 2025 recording). Held out, increment
    10's 28, counted blind with the previous estimate (0 x1, +1 x8, -2, -8 x3, +33, -47, -53,
    -76, -87, -85, -108, -24..-152 x8): of the 14 with nothing else estimated, 2 at the bill,
    Mirascope's 8 on gpt-5-mini (Azure) 1 over, ActiveAgent's 2 28 under (Wikipedia text
    escaped to ASCII, as in all 2025 recordings; crewAI's 2026 ones bill it as is), an agno
    team's concurrent members 44 under and 65 over. Not exact: stays an estimate."""
    fitted = _estimate_errors("calls", lambda source: not source.startswith(SEVERAL_CALLS_HELD_OUT))
    assert fitted == Counter({0: 32, 2: 1, -12: 1})
    held_out = _estimate_errors("calls", lambda source: source.startswith(SEVERAL_CALLS_HELD_OUT))
    assert held_out == Counter({0: 2, 1: 8, -28: 2, -44: 1, 65: 1})
    # Every recording with several calls (80), other estimated parts or not: the long results
    # of crewAI's manager agents (12, 22-152 under before) are at the bill; Pydantic AI's 9
    # with docstrings besides 2 over (2 under before); OpenInference's other agno team turns
    # 5-12 under (2025, escaped), its agent-framework ones 7 under (3).
    errors: Counter[int] = Counter()
    for row in _counted_rows():
        if any(len(m.get("tool_calls") or ()) > 1 for m in row["request"]["messages"]):
            tokens, method, _ = chat_prompt_estimate(row["response_model"], row["request"])
            assert method == "estimate", row["source"]
            errors[tokens - row["prompt_tokens"]] += 1
    assert errors == Counter({0: 52, 1: 8, 2: 10, -5: 1, -7: 3, -12: 2, -28: 2, -44: 1, 65: 1})


def test_descriptions_over_several_lines_are_estimated_closer() -> None:
    """A description over several lines, trimmed, each line a comment stripped of its blank
    space (a blank line ``//``): the estimate is the bill on 56 of the 59 recordings where
    nothing else is estimated. The lines' rendering chosen on crewAI's 29 among 5 (27 at the
    bill; the previous rule, indented lines as given, 23: its ``Args:``/``Returns:``
    docstrings were 7 over); held out, ddtrace's 5 and OpenInference's 1 at the bill,
    Mirascope's 5 1-2 over. Then the trimming, fitted on Mirascope's 159-line description (4
    recordings, 17 over before, 2 over without it). Then langchaingo's, counted blind: its 12
    gpt-4o recordings (tab-indented lines, 1 over by the previous rule) at the bill (its 16 on
    gpt-4-0613 have property titles besides: ``test_titles_on_gpt_4_0613_are_estimated``),
    then its fork's 7 (vxcontrol/langchaingo, gpt-4o), counted blind: at the bill. Not exact:
    Mirascope's docstring 1 over, two gpt-4-0125-preview requests 6 under."""
    errors = _estimate_errors("descriptions")
    assert errors == Counter({0: 56, -6: 2, 1: 1})


def test_titles_on_gpt_4_0613_are_estimated() -> None:
    """langchaingo's 16 recordings on gpt-4-0613 (``model="gpt-4"``), counted blind, were 10-13
    over the estimate that rendered their properties' titles as comment lines, as 103
    recordings on gpt-4o-class and gpt-3.5-turbo-0125 models bill them; without those lines 10
    are at the bill and 6 are 2-3 over (their descriptions over several lines besides). No
    other recording has titles on gpt-4-0613: such a request is estimated without the lines."""
    errors: Counter[int] = Counter()
    for row in _counted_rows():
        if row["source"].startswith("github.com/tmc/langchaingo@") and row["response_model"] == (
            "gpt-4-0613"
        ):
            for model in (row["request"]["model"], row["response_model"]):
                tokens, method, _ = chat_prompt_estimate(model, row["request"])
                assert method == "estimate"
            errors[tokens - row["prompt_tokens"]] += 1
    assert errors == Counter({0: 10, 3: 5, 2: 1})
    titled = {"type": "object", "properties": {"q": {"title": "Q", "type": "string"}}}
    request = {
        "messages": [{"role": "user", "content": "Hi"}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": titled}}],
    }
    assert chat_prompt_estimate("gpt-4", request)[1] == "estimate"
    assert chat_prompt_estimate("gpt-4o", request)[1] == "tiktoken"


def _errors_by_suite(source_ends: list[str]) -> dict[str, int]:
    errors = {}
    for source_end in source_ends:
        row = _recorded(source_end)
        tokens, method, _ = chat_prompt_estimate(row["response_model"], row["request"])
        assert method == "estimate", source_end
        errors[source_end] = tokens - row["prompt_tokens"]
    return errors


def test_references_arrays_of_objects_and_type_lists_are_estimated_closer() -> None:
    """Tool schemas with a ``$ref``, an array of objects or a list of types are estimated; the
    rendering brings the estimate closer without explaining them: a reference as the
    definition it names (crewAI's 4 recordings of one definition 56 under as ``any``, now 3
    under; Mirascope's 2, 26 -> 9 under), an array of objects as ``Array<`` / the items'
    description / the object / ``>`` (fitted on Sublayer's 2, 7 under -> exact; held out,
    crewAI's 11, one definition with ``["string", "null"]`` besides, 36 -> 32 under, and
    instructor-rb's 1, 31 -> 27 under: no rendering tried explains them)."""
    errors = _errors_by_suite(
        [
            "test_memory_events_are_emitted.yaml#6",  # crewAI, $ref
            "test_structured_output/tool/openai_gpt_4o_completions/async.yaml#0",  # Mirascope
            "imaginary_movie_review_generator/3_reviews.yml#0",  # Sublayer
            "task_steps_generator/ruby_on_rails_project.yml#0",  # Sublayer
            "agents/test_agent_kickoff_with_planning.yaml#0",  # crewAI, array of objects
            "autoticketer/generate.yml#0",  # instructor-rb
        ]
    )
    assert list(errors.values()) == [-3, -9, 0, 0, -32, -27]
    sublayer = _recorded("task_steps_generator/ruby_on_rails_project.yml#0")
    rendered = render_functions(
        [t["function"] for t in sublayer["request"]["tools"]], tools_form=True
    )
    assert "steps?: Array<\n// a single step\n{\n// A brief description" in rendered
    assert "\n}\n>,\n}) => any;" in rendered
    crewai = _recorded("test_memory_events_are_emitted.yaml#6")
    evaluation = next(
        t["function"]
        for t in crewai["request"]["tools"]
        if t["function"]["name"] == "TaskEvaluation"
    )
    rendered = render_functions([evaluation], tools_form=True)
    assert "entities: Array<\n{\n// Name\n// The name of the entity.\nname: string," in rendered


def test_a_plain_answer_beside_a_schema_bills_about_3_more() -> None:
    """With a structured-output schema, a plain assistant message bills about 3 tokens beyond
    itself: the second turn of the same conversation bills 3 more than the first beyond what
    their messages add (Mirascope's and RubyLLM's, no tools, no system message: fitted). Held
    out, crewAI's 2 without tools (two system messages) were 5 under, now 2; its 2 with tools
    4 under, now 1. Estimated."""
    for first_end, second_end in [
        (
            "test_structured_output_resume/openai_gpt_4o_completions.yaml#0",
            "test_structured_output_resume/openai_gpt_4o_completions.yaml#1",
        ),
        (
            "multi-turn_conversations_with_structured_responses.yml#0",
            "multi-turn_conversations_with_structured_responses.yml#1",
        ),
    ]:
        first, second = _recorded(first_end), _recorded(second_end)
        model = first["response_model"]
        messages_added = (
            count_tokens(second["request"]["messages"], model).tokens
            - count_tokens(first["request"]["messages"], model).tokens
        )
        assert second["prompt_tokens"] - first["prompt_tokens"] - messages_added == 3
        for row in (first, second):
            tokens, method, _ = chat_prompt_estimate(model, row["request"])
            assert method == "estimate"
            assert abs(tokens - row["prompt_tokens"]) <= 1
