"""Token-counting benchmarks: our Rust core against official tiktoken and bpe-openai.

Every shape runs for the three implementations (``ours``, ``tiktoken``, ``bpe_openai``) in one
session, grouped by shape, and first asserts that all of them agree on the token count (outside
the timed part), so under plain ``pytest`` (``--benchmark-disable`` is in ``addopts``: one round
each) this file is a correctness smoke test.

Our core caches counts of texts >= 1 KiB by a 128-bit hash, so every shape except
``cache_60k_x50`` feeds each call a DISTINCT text: each case pre-generates a pool of variants (a
few characters or words differ per copy), pytest-benchmark's per-round ``setup`` hands out the next
unused one (running out is an error, never a silent repeat), the cache is cleared before the case,
and afterwards we assert that our cache served no hit. The peers have no cache but get the very
same texts in the same order.

Full run (about 25 s on 2 cores)::

    python -m pytest benches/test_bench_counting.py --benchmark-enable \
        --benchmark-json=/tmp/bench.json -p no:cacheprovider -q
    python benches/report.py /tmp/bench.json
"""

from __future__ import annotations

import base64
import random
import sysconfig
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
from instrumentation_sdk import clear_token_cache, token_cache_stats

# --------------------------------------------------------------------------------------------
# Texts
# --------------------------------------------------------------------------------------------

_GREETINGS = ("Hi!", "Hello,", "Hey there,", "Good morning!", "Quick question:", "Please")
_ASKS = ("summarize", "translate", "proofread", "shorten", "explain", "review")
_DOCS = ("meeting notes", "release plan", "bug report", "design doc", "sales email", "contract")
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "the weekend")


def short_chat_prompts(n: int) -> list[str]:
    """``n`` distinct chat-style prompts of ~70 bytes (words and a ticket number vary)."""
    prompts = []
    for i in range(n):
        g, a, d, w = (
            _GREETINGS[i % 6],
            _ASKS[i // 6 % 6],
            _DOCS[i // 36 % 6],
            _DAYS[i // 216 % 6],
        )
        prompts.append(f"{g} can you {a} the {d} from {w} (ticket #{i})?")
    assert len(set(prompts)) == n
    return prompts


@cache
def _python_source() -> str:
    """Real Python: the stdlib's ``asyncio/*.py``, concatenated (~490 KB on 3.11)."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted((stdlib / "asyncio").glob("*.py"))
    text = "".join(f.read_text(encoding="utf-8") for f in files)
    assert len(text) > 100_000, f"too little stdlib source under {stdlib}"
    return text


def _fit_bytes(text: str, size: int) -> str:
    """``text`` cut to exactly ``size`` UTF-8 bytes (padded with newlines at a char boundary)."""
    data = text.encode("utf-8")[:size].decode("utf-8", errors="ignore")
    return data + "\n" * (size - len(data.encode("utf-8")))


def code_variants(n: int, size: int = 60_000, tag: str = "code") -> list[str]:
    """``n`` distinct ``size``-byte slices of real Python source: the same 60 KB of asyncio code,
    each copy with its own header comment and one edited line in the middle."""
    src = _python_source()
    texts = []
    for i in range(n):
        header = f"# bench {tag} variant {i:05d}: {_ASKS[i % 6]} the {_DOCS[i // 6 % 6]}\n"
        body = src[: size + 200]
        mid = body.index("\n", len(body) // 2)
        body = f"{body[:mid]}  # edited {i}{body[mid:]}"
        texts.append(_fit_bytes(header + body, size))
    assert len(set(texts)) == n
    return texts


# Public-domain openings (Natsume Soseki, Dazai Osamu, Akutagawa Ryunosuke, Luo Guanzhong,
# Tao Yuanming, the Analects, Lu Xun), shuffled sentence by sentence into varied prose.
_CJK_SENTENCES = (  # CJK punctuation on purpose
    "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。",
    "何でも薄暗いじめじめした所でニャーニャー泣いていた事だけは記憶している。",
    "吾輩はここで始めて人間というものを見た。しかもあとで聞くとそれは書生という人間中で一番獰悪な種族であったそうだ。",
    "親譲りの無鉄砲で小供の時から損ばかりしている。小学校に居る時分学校の二階から飛び降りて一週間ほど腰を抜かした事がある。",
    "メロスは激怒した。必ず、かの邪智暴虐の王を除かなければならぬと決意した。",
    "メロスには政治がわからぬ。メロスは、村の牧人である。笛を吹き、羊と遊んで暮して来た。",
    "けれども邪悪に対しては、人一倍に敏感であった。きょう未明メロスは村を出発し、野を越え山越え、十里はなれた此のシラクスの市にやって来た。",
    "ある日の暮方の事である。一人の下人が、羅生門の下で雨やみを待っていた。",
    "広い門の下には、この男のほかに誰もいない。ただ、所々丹塗の剥げた、大きな円柱に、蟋蟀が一匹とまっている。",
    "国境の長いトンネルを抜けると雪国であった。夜の底が白くなった。信号所に汽車が止まった。",
    "話说天下大势，分久必合，合久必分。周末七国分争，并入于秦。",  # noqa: RUF001
    "及秦灭之后，楚、汉分争，又并入于汉。汉朝自高祖斩白蛇而起义，一统天下，后来光武中兴，传至献帝，遂分为三国。",  # noqa: RUF001
    "推其致乱之由，殆始于桓、灵二帝。桓帝禁锢善类，崇信宦官。",  # noqa: RUF001
    "晋太元中，武陵人捕鱼为业。缘溪行，忘路之远近。忽逢桃花林，夹岸数百步，中无杂树，芳草鲜美，落英缤纷。",  # noqa: RUF001
    "渔人甚异之，复前行，欲穷其林。林尽水源，便得一山，山有小口，仿佛若有光。",  # noqa: RUF001
    "土地平旷，屋舍俨然，有良田美池桑竹之属。阡陌交通，鸡犬相闻。",  # noqa: RUF001
    "子曰：学而时习之，不亦说乎？有朋自远方来，不亦乐乎？人不知而不愠，不亦君子乎？",  # noqa: RUF001
    "子曰：温故而知新，可以为师矣。学而不思则罔，思而不学则殆。",  # noqa: RUF001
    "我冒了严寒，回到相隔二千余里，别了二十余年的故乡去。",  # noqa: RUF001
    "时候既然是深冬；渐近故乡时，天气又阴晦了，冷风吹进船舱中，呜呜的响。",  # noqa: RUF001
    "从篷隙向外一望，苍黄的天底下，远近横着几个萧索的荒村，没有一些活气。",  # noqa: RUF001
    "今日は良い天気ですね。明日の会議は午後三時から第二会議室で行います。資料の準備をお願いします。",
    "本季度销售额同比增长百分之十二，主要得益于新产品的推出和海外市场的扩张。",  # noqa: RUF001
)


def cjk_variants(n: int, size: int = 40_000) -> list[str]:
    """``n`` distinct ~``size``-byte Chinese/Japanese texts: the sentences above in a different
    seeded order for each copy (same vocabulary and statistics, different text)."""
    texts = []
    for i in range(n):
        rng = random.Random(i)
        parts: list[str] = []
        used = 0
        while used < size:
            sentence = rng.choice(_CJK_SENTENCES)
            parts.append(sentence)
            used += len(sentence.encode("utf-8")) + 1
        texts.append(_fit_bytes("\n".join(parts), size))
    assert len(set(texts)) == n
    return texts


def repeated_char_variants(n: int, size: int = 100_000, char: str = "a") -> list[str]:
    """``n`` distinct runs of one repeated character, ``size`` to ``size + n - 1`` bytes.

    The copies differ by length only: different letters would not be the same workload (a run of
    'a' is 12,500 o200k tokens, of 'g' 50,000, and the merge time differs by more than 2x).
    """
    return [char * (size + i) for i in range(n)]


def base64_variants(n: int, size: int = 100_000) -> list[str]:
    """``n`` distinct ``size``-byte base64 strings of seeded random bytes, on one line (an
    attachment pasted into a prompt): many short pieces, split at every change of letter case."""
    raw = size * 3 // 4
    return [
        base64.b64encode(random.Random(i).randbytes(raw)).decode("ascii")[:size] for i in range(n)
    ]


_JS_NAMES = ("e", "t", "n", "r", "i", "o", "a", "s", "u", "c", "l", "f", "d", "h", "p", "m")
_JS_PROPS = (
    "length", "prototype", "call", "apply", "push", "indexOf", "createElement", "nodeType",
    "getAttribute", "addEventListener", "preventDefault", "style", "display", "innerHTML",
    "className", "parentNode", "toLowerCase", "replace", "exports", "default", "then", "value",
)  # fmt: skip
_JS_STRINGS = ('"none"', '"block"', '"click"', '"div"', '"string"', '"object"', '"use strict"')


def _minified_statement(rng: random.Random) -> str:
    """One statement in the style of a minifier's output: one-letter names, no spaces."""
    a, b, c = (rng.choice(_JS_NAMES) for _ in range(3))
    prop, other = rng.choice(_JS_PROPS), rng.choice(_JS_PROPS)
    num = rng.randrange(1000)
    word = rng.choice(_JS_STRINGS)
    return rng.choice(
        (
            f"var {a}={b}.{prop}({c},{num})||{{}};",
            f"if({a}&&{a}.{prop}>{num}){{{b}.{other}({c});return!0}}",
            f"for(var {a}=0,{b}={c}.{prop};{a}<{b};{a}++){c}[{a}].{other}={word};",
            f"{a}.{prop}=function({b},{c}){{return typeof {b}==={word}?{c}:{b}.{other}}};",
            f"{a}[{b}]=({c}.{prop}||[]).concat([{num},{num * 7 % 997}]);",
            f"!function({a}){{{a}.{prop}={a}.{other}.bind({a})}}({b});",
        )
    )


def minified_js_variants(n: int, size: int = 100_000) -> list[str]:
    """``n`` distinct ``size``-byte runs of minifier-style JavaScript (seeded statements)."""
    texts = []
    for i in range(n):
        rng = random.Random(i)
        parts: list[str] = ['"use strict";']
        used = len(parts[0])
        while used < size:
            parts.append(_minified_statement(rng))
            used += len(parts[-1])
        texts.append("".join(parts)[:size])
    return texts


# Japanese and Korean prose (written for these benchmarks, plus the Japanese openings above):
# sentences built from alternatives, so copies vary in wording and order, not just order.
_JA_SUBJECTS = ("私は", "先生は", "子供たちは", "彼女は", "友人は", "祖母は", "町の人々は")
_JA_PLACES = (
    "駅前の喫茶店で",
    "図書館の窓際で",
    "海辺の小さな宿で",
    "山あいの村で",
    "会社の会議室で",
)
_JA_ACTIONS = (
    "古い手紙を読み返していた。",
    "明日の予定について静かに話し合った。",
    "雨が止むのを待ちながら本を開いた。",
    "季節の野菜を使った料理を作った。",
    "新しい計画の資料を丁寧に確認した。",
    "遠くから聞こえる鐘の音に耳を澄ませた。",
)
_KO_SUBJECTS = ("나는", "선생님은", "아이들은", "그녀는", "친구는", "할머니께서는", "동네 사람들은")
_KO_PLACES = (
    "역 앞 카페에서",
    "도서관 창가에서",
    "바닷가 작은 숙소에서",
    "산골 마을에서",
    "회사 회의실에서",
)
_KO_ACTIONS = (
    "오래된 편지를 다시 읽고 있었다.",
    "내일 일정에 대해 조용히 이야기를 나누었다.",
    "비가 그치기를 기다리며 책을 펼쳤다.",
    "제철 채소로 맛있는 음식을 만들었다.",
    "새로운 계획의 자료를 꼼꼼하게 확인했다.",
    "멀리서 들려오는 종소리에 귀를 기울였다.",
    "데이터를 분석한 결과 사용자 수가 지난달보다 크게 늘어났다.",
    "고객의 의견을 반영하여 서비스 품질을 꾸준히 개선하고 있습니다.",
)
_JA_OPENINGS = tuple(s for s in _CJK_SENTENCES if any("\u3040" <= ch <= "\u30ff" for ch in s))


def _prose_variants(n: int, size: int, sentence: Callable[[random.Random], str]) -> list[str]:
    texts = []
    for i in range(n):
        rng = random.Random(i)
        parts: list[str] = []
        used = 0
        while used < size:
            parts.append(sentence(rng))
            used += len(parts[-1].encode("utf-8")) + 1
        texts.append(_fit_bytes("\n".join(parts), size))
    assert len(set(texts)) == n
    return texts


def japanese_variants(n: int, size: int = 40_000) -> list[str]:
    """``n`` distinct ~``size``-byte Japanese texts: built sentences and literary openings."""

    def sentence(rng: random.Random) -> str:
        if rng.random() < 0.3:
            return rng.choice(_JA_OPENINGS)
        return rng.choice(_JA_SUBJECTS) + rng.choice(_JA_PLACES) + rng.choice(_JA_ACTIONS)

    return _prose_variants(n, size, sentence)


def korean_variants(n: int, size: int = 40_000) -> list[str]:
    """``n`` distinct ~``size``-byte Korean texts (Hangul words between spaces)."""

    def sentence(rng: random.Random) -> str:
        return f"{rng.choice(_KO_SUBJECTS)} {rng.choice(_KO_PLACES)} {rng.choice(_KO_ACTIONS)}"

    return _prose_variants(n, size, sentence)


# --------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    group: str
    encoding: str
    pool: Callable[[int], list[str]]  # n -> n distinct texts
    texts_per_round: int  # distinct texts counted per round
    repeats: int  # how many times each text is counted per round (>1: the cache case)
    rounds: int
    warmup_rounds: int
    check_samples: int = 3  # pool texts every implementation must agree on

    @property
    def rounds_needed(self) -> int:
        return self.rounds + self.warmup_rounds


CASES = {
    case.group: case
    for case in (
        Case("short_chat", "o200k_base", short_chat_prompts, 200, 1, 600, 10, check_samples=200),
        Case("code_60k", "o200k_base", code_variants, 1, 1, 300, 3),
        Case(
            "code_60k_cl100k",
            "cl100k_base",
            lambda n: code_variants(n, tag="cl100k"),
            1,
            1,
            300,
            3,
        ),
        Case("cjk", "o200k_base", cjk_variants, 1, 1, 300, 3),
        Case("repeated_char_100k", "o200k_base", repeated_char_variants, 1, 1, 80, 2),
        Case("base64_100k", "o200k_base", base64_variants, 1, 1, 100, 2),
        Case("minified_js_100k", "o200k_base", minified_js_variants, 1, 1, 100, 2),
        Case("japanese", "o200k_base", japanese_variants, 1, 1, 300, 3),
        Case("korean", "o200k_base", korean_variants, 1, 1, 300, 3),
        Case(
            "cache_60k_x50",
            "o200k_base",
            lambda n: code_variants(n, tag="cache"),
            1,
            50,
            25,
            1,
        ),
    )
}


@cache
def case_pool(group: str, rounds: int) -> tuple[str, ...]:
    """The case's texts: enough for ``rounds`` rounds without using any text twice."""
    case = CASES[group]
    n = rounds * case.texts_per_round
    return tuple(case.pool(max(n, case.check_samples)))


_AGREEMENT: dict[str, tuple[dict[str, list[int]], list[str]]] = {}


def agreement(group: str, all_counters, pool) -> tuple[dict[str, list[int]], list[str]]:
    """Counts of every loadable implementation on sample texts, and any disagreement.

    Computed once per case (outside any timing) and asserted by each implementation's test.
    """
    if group not in _AGREEMENT:
        _AGREEMENT[group] = _agreement(group, all_counters, pool)
    return _AGREEMENT[group]


def _agreement(group: str, all_counters, pool) -> tuple[dict[str, list[int]], list[str]]:
    case = CASES[group]
    k = case.check_samples
    samples = list(pool[:: max(1, len(pool) // k)][:k])  # spread over the pool
    counts = {c.impl: [c.count(t) for t in samples] for c in all_counters(case.encoding)}
    reference = counts["ours"]
    problems = [
        f"{impl} disagrees with ours on sample {i} ({len(samples[i].encode())} bytes): "
        f"{got[i]} != {reference[i]}"
        for impl, got in counts.items()
        for i in range(len(samples))
        if got[i] != reference[i]
    ]
    return counts, problems


def run_case(benchmark, counter, all_counters, group: str) -> None:
    """Time ``counter`` (the implementation under test) on case ``group``."""
    case = CASES[group]
    assert case.encoding == counter.encoding
    # Disabled (plain pytest): pedantic runs one round, so one round's texts are enough.
    pool = case_pool(group, case.rounds_needed if benchmark.enabled else 1)
    counts, problems = agreement(group, all_counters, pool)
    assert not problems, "\n".join(problems)

    batches: Iterator[tuple[str, ...]] = (
        pool[i : i + case.texts_per_round] for i in range(0, len(pool), case.texts_per_round)
    )
    handed_out: list[tuple[str, ...]] = []

    def setup():
        batch = next(batches, None)
        assert batch is not None, f"{group}: text pool exhausted, a text would repeat"
        handed_out.append(batch)
        return (batch,), {}

    count = counter.count
    repeats = range(case.repeats)

    def one_round(batch: tuple[str, ...]) -> int:
        total = 0
        for text in batch:
            for _ in repeats:
                total += count(text)
        return total

    clear_token_cache()
    result = benchmark.pedantic(
        one_round,
        setup=setup,
        rounds=case.rounds,
        warmup_rounds=case.warmup_rounds,
        iterations=1,
    )
    stats = token_cache_stats()

    # The timed function computed the right thing: its last round against another implementation.
    others = [c for c in all_counters(case.encoding) if c.impl != counter.impl]
    reference = others[0] if others else counter
    expected = sum(reference.count(t) for t in handed_out[-1]) * case.repeats
    assert result == expected, f"{counter.impl} last round: {result} != {reference.impl} {expected}"

    round_bytes = sum(len(t.encode("utf-8")) for t in handed_out[-1])
    benchmark.extra_info.update(
        impl=counter.impl,
        shape=group,
        encoding=case.encoding,
        calls_per_round=case.texts_per_round * case.repeats,
        bytes_per_round=round_bytes * case.repeats,
        text_bytes=round_bytes // case.texts_per_round,
        tokens_per_round=result,
        rounds_run=len(handed_out),
        agreed_impls=sorted(counts),
    )

    if counter.impl == "ours":
        benchmark.extra_info["cache"] = stats
        if case.repeats > 1:
            # The cache case: each text is a miss once, then a hit.
            assert stats["misses"] == len(handed_out), stats
            assert stats["hits"] == len(handed_out) * (case.repeats - 1), stats
        else:
            # Every other case measured real counting, never a cached answer.
            assert stats["hits"] == 0, f"{group}: the count cache served a repeated text: {stats}"


# --------------------------------------------------------------------------------------------
# Benchmarks
# --------------------------------------------------------------------------------------------


@pytest.mark.benchmark(group="short_chat")
def test_short_chat(benchmark, counter_for, all_counters):
    """200 distinct ~70-byte chat prompts per round (o200k_base / gpt-4o)."""
    run_case(benchmark, counter_for("o200k_base"), all_counters, "short_chat")


@pytest.mark.benchmark(group="code_60k")
def test_code_60k(benchmark, counter_for, all_counters):
    """60 KB of real Python source (stdlib asyncio), o200k_base."""
    run_case(benchmark, counter_for("o200k_base"), all_counters, "code_60k")


@pytest.mark.benchmark(group="code_60k_cl100k")
def test_code_60k_cl100k(benchmark, counter_for, all_counters):
    """The same 60 KB of Python source, cl100k_base (gpt-4)."""
    run_case(benchmark, counter_for("cl100k_base"), all_counters, "code_60k_cl100k")


@pytest.mark.benchmark(group="cjk")
def test_cjk(benchmark, counter_for, all_counters):
    """40 KB of Chinese/Japanese prose, o200k_base."""
    run_case(benchmark, counter_for("o200k_base"), all_counters, "cjk")


@pytest.mark.benchmark(group="repeated_char_100k")
def test_repeated_char_100k(benchmark, counter_for, all_counters):
    """100 KB of one repeated letter: one 100 KB pretokenizer piece, the BPE merge's worst case."""
    run_case(benchmark, counter_for("o200k_base"), all_counters, "repeated_char_100k")


@pytest.mark.benchmark(group="base64_100k")
def test_base64_100k(benchmark, counter_for, all_counters):
    """100 KB of base64 on one line, o200k_base."""
    run_case(benchmark, counter_for("o200k_base"), all_counters, "base64_100k")


@pytest.mark.benchmark(group="minified_js_100k")
def test_minified_js_100k(benchmark, counter_for, all_counters):
    """100 KB of minifier-style JavaScript (no whitespace, one-letter names), o200k_base."""
    run_case(benchmark, counter_for("o200k_base"), all_counters, "minified_js_100k")


@pytest.mark.benchmark(group="japanese")
def test_japanese(benchmark, counter_for, all_counters):
    """40 KB of Japanese prose, o200k_base."""
    run_case(benchmark, counter_for("o200k_base"), all_counters, "japanese")


@pytest.mark.benchmark(group="korean")
def test_korean(benchmark, counter_for, all_counters):
    """40 KB of Korean prose, o200k_base."""
    run_case(benchmark, counter_for("o200k_base"), all_counters, "korean")


@pytest.mark.benchmark(group="cache_60k_x50")
def test_cache_60k_x50(benchmark, counter_for, all_counters):
    """One 60 KB prompt counted 50 times per round: ours counts once and then hits its cache."""
    run_case(benchmark, counter_for("o200k_base"), all_counters, "cache_60k_x50")
