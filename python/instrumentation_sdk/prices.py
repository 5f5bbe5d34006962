"""What a span cost: a dated, versioned price table and ``cost_usd`` from a span's token counts.

The package ships ``data/prices.json``: per model, USD per million input, cached-input and output
tokens, from the providers' public price pages (the file names its date, version and sources).
A model is found by its exact name, else by the longest listed name it starts with followed by
``-``, ``:``, ``@`` or ``/`` (``gpt-4o-2024-08-06`` is ``gpt-4o``; ``gpt-4o`` is not ``gpt-4``).
A model that is not listed has no cost (``None``), never zero.

Users extend or override entries with ``configure(prices=...)`` (a mapping, or the path of a JSON
file shaped like the shipped one) or the ``INSTRUMENTATION_SDK_PRICES`` variable (a path). The
SQLite store computes ``cost_usd`` when it stores a span, with the prices of that moment.

>>> table = default_prices()
>>> table.cost("gpt-4o-2024-08-06", prompt_tokens=1_000_000, completion_tokens=100_000)
3.5
>>> table.cost("my-local-llama", prompt_tokens=10, completion_tokens=10) is None
True
>>> load_prices({"my-local-llama": {"input": 0.0, "output": 0.0}}).cost("my-local-llama", 10, 10)
0.0
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, NamedTuple, TypeAlias

import msgspec

__all__ = [
    "PRICES_ENV_VAR",
    "Price",
    "PriceTable",
    "PricesSource",
    "default_prices",
    "load_prices",
    "record_cost",
]

#: Environment variable naming a JSON price file merged over the shipped table.
PRICES_ENV_VAR: Final = "INSTRUMENTATION_SDK_PRICES"

#: What ``configure(prices=...)`` accepts: model -> price entry, or a JSON file's path.
PricesSource: TypeAlias = Mapping[str, Any] | str | os.PathLike[str]

_SEPARATORS: Final = ("-", ":", "@", "/")
_PER: Final = 1_000_000
_COST_DECIMALS: Final = 12
#: Distinct model strings whose lookup a table remembers before it starts over.
_MAX_REMEMBERED: Final = 4096


class Price(NamedTuple):
    """USD per million tokens; ``cached_input`` ``None`` bills cached tokens as input."""

    input: float
    cached_input: float | None
    output: float


class PriceTable:
    """Prices by model name (lowercase), with the table's ``version`` and ``as_of`` date."""

    __slots__ = ("_by_length", "_found", "as_of", "models", "version")

    def __init__(self, models: Mapping[str, Price], *, version: int | str, as_of: str) -> None:
        # Read-only: lookups are remembered, so the table must not change under them.
        self.models: Mapping[str, Price] = MappingProxyType(
            {name.lower(): price for name, price in models.items()}
        )
        self.version = version
        self.as_of = as_of
        # Longest names first, so the longest matching prefix wins.
        self._by_length = sorted(self.models, key=len, reverse=True)
        # Lookups by the model string as given: the exporter prices every span, and a dated
        # name ("gpt-4o-2024-08-06") would otherwise walk the whole table each time.
        self._found: dict[str, tuple[str, Price] | None] = {}

    def __repr__(self) -> str:
        return (
            f"PriceTable({len(self.models)} models, version={self.version!r}, as_of={self.as_of!r})"
        )

    def lookup(self, model: str) -> tuple[str, Price] | None:
        """``(listed name, price)`` for ``model``, or ``None`` when it is not priced.

        >>> default_prices().lookup("claude-sonnet-4-5-20250929")[0]
        'claude-sonnet-4-5'
        >>> default_prices().lookup("gpt-4.5-preview") is None
        True
        """
        try:
            return self._found[model]
        except KeyError:
            pass
        found = self._search(model)
        if len(self._found) >= _MAX_REMEMBERED:  # bounded: model strings come from spans
            self._found.clear()
        self._found[model] = found
        return found

    def _search(self, model: str) -> tuple[str, Price] | None:
        name = model.strip().lower()
        price = self.models.get(name)
        if price is not None:
            return name, price
        for listed in self._by_length:
            if name.startswith(listed) and name[len(listed)] in _SEPARATORS:
                return listed, self.models[listed]
        return None

    def cost(
        self,
        model: str,
        prompt_tokens: int | None,
        completion_tokens: int | None,
        cache_read_tokens: int | None = None,
    ) -> float | None:
        """USD for one call, or ``None`` for an unpriced model or a call with no token count.

        ``cache_read_tokens`` are the part of ``prompt_tokens`` read from the provider's
        cache (billed at ``cached_input``); a missing count is taken as zero when the other is
        known.
        """
        found = self.lookup(model)
        if found is None or (prompt_tokens is None and completion_tokens is None):
            return None
        price = found[1]
        prompt = max(prompt_tokens or 0, 0)
        cached = min(max(cache_read_tokens or 0, 0), prompt)
        cached_price = price.input if price.cached_input is None else price.cached_input
        total = (
            (prompt - cached) * price.input
            + cached * cached_price
            + max(completion_tokens or 0, 0) * price.output
        )
        # Rounded to 1e-12 USD (far below a token's price) so a stored cost reads as the
        # decimal it is (1.155e-05, not 1.1550000000000001e-05).
        return round(total / _PER, _COST_DECIMALS)

    def merged(self, overrides: Mapping[str, Price]) -> PriceTable:
        """A copy with ``overrides`` added or replacing entries (the version notes the change)."""
        version = self.version if not overrides else f"{self.version}+custom"
        return PriceTable({**self.models, **overrides}, version=version, as_of=self.as_of)


def _price(name: str, entry: object) -> Price:
    """One entry, checked: ``ValueError`` names the model and what is wrong."""
    if isinstance(entry, Price):
        return entry
    if not isinstance(entry, Mapping):
        raise ValueError(
            f"prices[{name!r}] must be a mapping with input, output and optionally cached_input "
            f"(USD per million tokens), got {type(entry).__name__}"
        )
    unknown = sorted(set(entry) - {"input", "cached_input", "output"})
    if unknown:
        raise ValueError(f"prices[{name!r}]: unknown key(s) {', '.join(map(repr, unknown))}")
    values: dict[str, float | None] = {}
    for key in ("input", "cached_input", "output"):
        value = entry.get(key)
        if value is None and key == "cached_input":
            values[key] = None
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value < 0
        ):
            raise ValueError(
                f"prices[{name!r}][{key!r}] must be a number >= 0 (USD per million tokens), "
                f"got {value!r}"
            )
        values[key] = float(value)
    input_, output = values["input"], values["output"]
    assert input_ is not None
    assert output is not None
    return Price(input_, values["cached_input"], output)


def _entries(models: object, where: str) -> dict[str, Price]:
    if not isinstance(models, Mapping):
        raise ValueError(f"{where} must map model names to prices, got {type(models).__name__}")
    entries: dict[str, Price] = {}
    for name, entry in models.items():
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"{where}: a model name must be a non-empty str, got {name!r}")
        entries[name.strip()] = _price(name, entry)
    return entries


def _read_file(path: Path) -> dict[str, Price]:
    try:
        document = msgspec.json.decode(path.read_bytes())
    except OSError as error:
        raise ValueError(f"prices: cannot read {path}: {error.strerror or error}") from None
    except msgspec.DecodeError as error:
        raise ValueError(f"prices: {path} is not JSON: {error}") from None
    # The shipped file's shape ({"models": {...}, ...}) or a plain mapping of models.
    models = document.get("models", document) if isinstance(document, dict) else document
    return _entries(models, f"prices file {path}")


@functools.cache
def default_prices() -> PriceTable:
    """The table shipped with this release (``data/prices.json``)."""
    raw = resources.files(__package__).joinpath("data", "prices.json").read_bytes()
    document = msgspec.json.decode(raw)
    return PriceTable(
        _entries(document["models"], "data/prices.json"),
        version=document["version"],
        as_of=document["as_of"],
    )


def load_prices(source: PricesSource | None = None) -> PriceTable:
    """The shipped table with ``source`` merged over it: a mapping of model -> ``{"input",
    "output", "cached_input"}`` (USD per million tokens), or the path of a JSON file holding such
    a mapping (alone or under ``"models"``). ``None``: the shipped table as is. Bad entries
    raise ``ValueError`` naming the model and the key.
    """
    base = default_prices()
    if source is None:
        return base
    if isinstance(source, str | os.PathLike):
        return base.merged(_read_file(Path(source).expanduser()))
    if isinstance(source, Mapping):
        return base.merged(_entries(source, "prices"))
    raise TypeError(
        f"prices must be a mapping of model -> prices or a JSON file's path, got "
        f"{type(source).__name__}"
    )


def _int_or_none(value: object) -> int | None:
    return value if type(value) is int else None


def record_cost(record: Mapping[str, Any], table: PriceTable) -> float | None:
    """``cost_usd`` of an exported record: its ``actual_model`` (the model that answered) when
    that is priced, else its ``model``; tokens from its metadata. ``None`` when unpriced."""
    metadata = record.get("metadata") or {}
    prompt = _int_or_none(metadata.get("prompt_tokens"))
    completion = _int_or_none(metadata.get("completion_tokens"))
    if prompt is None and completion is None:
        return None
    cached = _int_or_none(metadata.get("cache_read_tokens"))
    actual = metadata.get("actual_model")
    for model in (actual, record.get("model")):
        if isinstance(model, str) and model:
            cost = table.cost(model, prompt, completion, cached)
            if cost is not None:
                return cost
    return None
