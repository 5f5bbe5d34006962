"""End to end against a real OpenTelemetry backend: Arize Phoenix (from PyPI).

Starts ``phoenix serve`` (offline, its own scratch working dir, free ports), runs
``examples/otlp_service.py`` with only ``INSTRUMENTATION_SDK_EXPORTER=otlp`` and
``OTEL_EXPORTER_OTLP_ENDPOINT`` set, then reads back what Phoenix stored
(``GET /v1/projects/default/spans``) and checks the spans: all there, nested, GenAI attributes.

    python scripts/phoenix_e2e.py --phoenix .venv-phoenix/bin/phoenix   # `make e2e-phoenix`
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--phoenix", default="phoenix", help="the phoenix executable")
    parser.add_argument("--start-timeout", type=float, default=180.0)
    args = parser.parse_args()

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    workdir = tempfile.mkdtemp(prefix="phoenix-e2e-")
    env = {
        **os.environ,
        "PHOENIX_PORT": str(port),
        "PHOENIX_GRPC_PORT": str(free_port()),
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_WORKING_DIR": workdir,
    }
    log = open(Path(workdir) / "phoenix.log", "wb")  # noqa: SIM115
    server = subprocess.Popen([args.phoenix, "serve"], env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + args.start_timeout
        while True:
            try:
                get(f"{base}/v1/projects")
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    print(Path(workdir, "phoenix.log").read_text()[-3000:], file=sys.stderr)
                    print("phoenix did not start", file=sys.stderr)
                    return 1
                time.sleep(0.5)
        print(f"phoenix up at {base}")

        # The service: two environment variables, nothing else.
        service_env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("INSTRUMENTATION_SDK_", "OTEL_"))
        }
        service_env["INSTRUMENTATION_SDK_EXPORTER"] = "otlp"
        service_env["OTEL_EXPORTER_OTLP_ENDPOINT"] = base
        # Content capture on (OpenTelemetry's switch), and OpenInference's names for Phoenix.
        service_env["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] = "true"
        service_env["INSTRUMENTATION_SDK_OTLP_OPENINFERENCE"] = "1"
        subprocess.run(
            [sys.executable, str(ROOT / "examples" / "otlp_service.py")],
            env=service_env,
            check=True,
        )

        spans: list[dict] = []
        for _ in range(40):  # phoenix ingests asynchronously
            spans = get(f"{base}/v1/projects/default/spans?limit=100")["data"]
            if len(spans) >= 3:
                break
            time.sleep(0.5)
        print(json.dumps(spans, indent=1)[:4000])
        by_name = {span["name"]: span for span in spans}
        assert set(by_name) >= {"router", "chat gpt-4o", "chat claude-3-5-sonnet"}, by_name.keys()
        router, chat, failed = (
            by_name["router"],
            by_name["chat gpt-4o"],
            by_name["chat claude-3-5-sonnet"],
        )
        assert chat["parent_id"] == router["context"]["span_id"], (chat, router)
        assert chat["context"]["trace_id"] == router["context"]["trace_id"]
        attributes = chat["attributes"]
        expected = {
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.provider.name": "openai",
            "gen_ai.operation.name": "chat",
            "gen_ai.response.model": "gpt-4o-2024-08-06",
            "gen_ai.conversation.id": "conv-u-1",
            "user.id": "u-1",
        }
        flat = flatten(attributes)
        for key, value in expected.items():
            assert flat.get(key) == value, (key, flat.get(key), flat)
        assert isinstance(flat.get("gen_ai.usage.input_tokens"), int), flat
        # The captured prompt and completion: Phoenix's input and output of the span.
        assert json.loads(flat["input.value"]) == [{"role": "user", "content": "What is OTLP?"}]
        assert flat["output.value"] == "WHAT IS OTLP?", flat
        output = json.loads(flat["gen_ai.output.messages"])
        assert output[0]["parts"][0]["content"] == "WHAT IS OTLP?", output
        events = chat.get("events") or []
        assert [event["name"] for event in events] == ["request_sent"], chat
        assert failed["status_code"].upper() == "ERROR", failed
        print(
            f"phoenix e2e: {len(spans)} spans stored, nested, with GenAI attributes, "
            "captured input/output and events: OK"
        )
        return 0
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


def flatten(attributes: dict, prefix: str = "") -> dict:
    """Phoenix may return dotted keys nested (``{"gen_ai": {"request": ...}}``) or flat."""
    flat: dict = {}
    for key, value in attributes.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


if __name__ == "__main__":
    sys.exit(main())
