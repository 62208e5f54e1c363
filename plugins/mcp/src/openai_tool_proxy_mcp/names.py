"""The names the model sees for MCP tools: OpenAI accepts `^[a-zA-Z0-9_-]{1,64}$`, MCP servers
name tools as they like, and two servers may offer one name.

Worked out over every tool offered at the moment, in three steps, each only for the names the
one before left clashing, so the result does not depend on the order servers connected in:
1. the tool's name, every other character made `_`; longer than 64, cut to 55 and ended with
   `_` and 8 hex digits of a hash of the whole name (distinct names stay distinct);
2. a name offered by two tools or more: each of them is named `<server>_<tool>`, made valid
   the same way;
3. a name still offered twice: each gets `_` and 8 hex digits of a hash of its server and
   tool, cut to fit.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable

MAX = 64
_INVALID = re.compile(r"[^a-zA-Z0-9_-]")

Offer = tuple[str, str]  # (server, the tool's name there)


def openai_names(offers: Iterable[Offer]) -> dict[Offer, str]:
    """A valid, distinct name for each offered tool (see the module's docstring)."""
    names = {offer: valid(offer[1]) for offer in offers}
    clashing = _clashing(names)
    names = {
        offer: valid(f"{offer[0]}_{offer[1]}") if name in clashing else name
        for offer, name in names.items()
    }
    clashing = _clashing(names)
    return {
        offer: fit(name, _digest(f"{offer[0]}\0{offer[1]}")) if name in clashing else name
        for offer, name in names.items()
    }


def valid(name: str) -> str:
    """`name` with every character OpenAI refuses made `_`, cut to 64 if longer (keeping
    distinct names distinct: see `fit`)."""
    cleaned = _INVALID.sub("_", name) or "_"
    return cleaned if len(cleaned) <= MAX else fit(cleaned, _digest(name))


def fit(name: str, suffix: str) -> str:
    """`name` + `_` + `suffix`, `name` cut so that the whole is at most 64 characters."""
    return f"{name[: MAX - len(suffix) - 1]}_{suffix}"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def _clashing(names: dict[Offer, str]) -> set[str]:
    return {name for name, count in Counter(names.values()).items() if count > 1}
