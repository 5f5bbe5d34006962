"""The token-counting service a user would otherwise write: Starlette + uvicorn + official tiktoken.

The load benchmark (``test_bench_server.py``) runs it side by side with ``instrumentation-sdk
serve``, under the same uvicorn settings (one worker; uvloop and httptools when installed)::

    python -m uvicorn reference_server:app --app-dir benches --port 8003 --no-access-log

It is deliberately the obvious version, with one courtesy to it: it counts with
``encode_ordinary`` (faster than ``encode`` and the same semantics as ours: text that looks like a
special token counts as ordinary text), and it loads the encodings before the first request.
"""

from __future__ import annotations

import tiktoken
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


def _encoding(model: str) -> tiktoken.Encoding | None:
    try:
        return tiktoken.encoding_for_model(model)  # cached by tiktoken after the first call
    except KeyError:
        return None


async def count(request: Request) -> JSONResponse:
    """``POST /v1/token-counting/count`` with ``{"prompt": str, "model": str}``."""
    body = await request.json()
    model = body.get("model", "gpt-4o")
    encoding = _encoding(model)
    if encoding is None:
        tokens, method, name = (len(body["prompt"]) + 3) // 4, "heuristic", None
    else:
        tokens, method, name = (
            len(encoding.encode_ordinary(body["prompt"])),
            "tiktoken",
            encoding.name,
        )
    return JSONResponse(
        {
            "model": model,
            "prompt_tokens": tokens,
            "token_count_method": method,
            "encoding": name,
        }
    )


for _model in ("gpt-4o", "gpt-4"):
    _encoding(_model)

app = Starlette(routes=[Route("/v1/token-counting/count", count, methods=["POST"])])
