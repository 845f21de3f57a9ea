"""A scored prompt-injection heuristic, run on what was decoded, not only on what arrived.

Each string is unwrapped first (URL escapes, HTML entities, ``\\uXXXX`` escapes, base64
runs, up to three layers) and NFKC-normalised with invisible characters dropped, so an
encoded payload scores like a plain one. Every variant is matched against each signal's
regex (behind a cheap literal guard); a signal counts once, and the string's score is
the sum of its signals' weights (capped at 1). Signals:

* ``role_tag``: chat-template role markers (``<|system|>``, ``[INST]``, ``</system>``);
* ``override``: "ignore previous instructions" and its paraphrases;
* ``hidden_block``: ``<IMPORTANT>`` / ``<SYSTEM>``-style blocks, instructions in comments;
* ``secrecy``: "do not tell the user", "without informing";
* ``exfiltration``: "send the contents of ~/.ssh", "include the API key";
* ``shell``: shell metacharacter sequences (``; os.system(``, ``| bash``, ``$(curl``),
  counted only in fields declared as plain text;
* ``backticks``: backtick-heavy payloads, also only in plain-text fields.

The weights were tuned on ``tests/content/corpus``: the benign corpus (code, shell in
documentation, JSON, multilingual text, Markdown) must pass at the default threshold.
"""

from __future__ import annotations

import base64
import binascii
import html
import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import unquote

from wardgate.content.unicode import strip_invisible

__all__ = ["Score", "decode_layers", "score_text"]

#: name -> (weight, literal guards (lowercase; any present lets the regex run), regex)
_SIGNALS: dict[str, tuple[float, tuple[str, ...], str]] = {
    "role_tag": (
        0.6,
        ("<|", "inst]", "<<sys", "system", "assistant"),
        r"<\|(?:im_start|system|assistant|user)\|?>|\[/?INST\]|<<SYS>>"
        r"|</?(?:system|assistant)(?:_prompt)?>|^\s*(?:system|assistant)\s*:\s",
    ),
    "override": (
        0.8,
        ("ignore", "disregard", "forget", "override", "bypass", "skip", "instruction",
         "you are now", "from now on"),
        r"\b(?:ignore|disregard|forget|override|bypass|skip)\s+(?:all\s+|any\s+|the\s+)?"
        r"(?:of\s+)?(?:your\s+|the\s+)?(?:previous|prior|above|earlier|preceding|former|"
        r"system|original|existing)\s+(?:instructions?|prompts?|rules|directions|guidelines|"
        r"directives|context|messages)"
        r"|\bnew\s+(?:system\s+)?instructions?\s*:|\byou\s+are\s+now\s+(?:a|an|in|DAN)\b"
        r"|\bfrom\s+now\s+on,?\s+you\s+(?:will|must|are)\b",
    ),
    "hidden_block": (
        0.6,
        ("<",),
        r"<(?:important|instructions?|secret|hidden)>|<!--[^>]{0,200}?\b(?:instruction|ignore|"
        r"assistant|model)\b",
    ),
    "secrecy": (
        0.4,
        ("user",),
        r"\b(?:do\s+not|don'?t|never)\s+(?:tell|inform|mention|reveal\s+this\s+to|show)\s+"
        r"(?:this\s+to\s+)?the\s+user\b|\bwithout\s+(?:telling|informing|notifying)\s+the\s+user\b",
    ),
    "exfiltration": (
        0.5,
        ("ssh", "id_rsa", ".env", "api", "password", "credential", "private", "secret", "token",
         "passwd"),
        r"\b(?:send|post|upload|forward|include|append|exfiltrate|leak|pass|attach|read|copy)"
        r"\b[^.\n]{0,60}?"
        r"(?:~/\.ssh|id_rsa|\.env\b|api[_ ]?keys?\b|passwords?\b|credentials|private\s+keys?"
        r"|secrets?\b|tokens?\b|/etc/passwd)",
    ),
    "shell": (
        0.8,
        (";", "&", "|", "`", "$(", "os.system", "__import__"),
        r"[;&|`]\s*(?:os\.system|subprocess\.\w+|eval|exec)\s*\("
        r"|\b(?:curl|wget)\b[^\n|;]{0,200}\|\s*(?:ba|z|da)?sh\b"
        r"|\$\(\s*(?:curl|wget|bash|sh|nc|python\d?|perl)\b"
        r"|[;&|]\s*(?:rm\s+-rf|nc\s+-e|bash\s+-i|chmod\s+\+x|curl|wget)\b"
        r"|\bos\.system\s*\(|__import__\s*\(",
    ),
}  # fmt: skip
_PLAIN_ONLY = frozenset({"shell", "backticks"})
# Cheap literal guards first: most strings contain none, and ``in`` on a lowercased
# string costs tens of nanoseconds where an alternation of regexes costs microseconds.
_CHECKS = tuple(
    (name, guards, re.compile(rx, re.IGNORECASE | re.MULTILINE))
    for name, (_, guards, rx) in _SIGNALS.items()
)
_WEIGHTS = {name: weight for name, (weight, _, _) in _SIGNALS.items()} | {"backticks": 0.4}

_URL_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
_UNICODE_ESCAPE = re.compile(r"\\u[0-9A-Fa-f]{4}|\\x[0-9A-Fa-f]{2}")
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/_\-]{16,}={0,2}")
_MAX_LAYERS = 3


@dataclass(frozen=True, slots=True)
class Score:
    """A string's score and the signals behind it (names only, never the text)."""

    value: float
    signals: frozenset[str]


def _b64(run: str) -> str | None:
    try:
        raw = base64.b64decode(run + "=" * (-len(run) % 4), altchars=b"-_", validate=False)
    except (binascii.Error, ValueError):
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    printable = sum(c.isprintable() or c in "\n\t" for c in text)
    return text if text and printable >= 0.9 * len(text) else None


_B64_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-"
_B64_TABLE = bytes(97 if c in _B64_CHARS else 32 for c in range(256))
_B64_PROBE = b"a" * 16


def _has_base64_run(text: str) -> bool:
    """Whether ``text`` has 16 base64 characters in a row, at C speed: Python's ``re``
    spends tens of microseconds per kilobyte looking for a class-led run."""
    return _B64_PROBE in text.encode("utf-8", "surrogatepass").translate(_B64_TABLE)


def _unescape_unicode(text: str) -> str:
    return _UNICODE_ESCAPE.sub(lambda m: chr(int(m.group()[2:], 16)), text)


def decode_layers(text: str) -> list[str]:
    """``text`` and what it decodes to, layer by layer (at most three), normalised."""
    variants = [text]
    frontier = [text]
    for _ in range(_MAX_LAYERS):
        found: list[str] = []
        for item in frontier:
            if "%" in item and _URL_ESCAPE.search(item):
                found.append(unquote(item))
            if "&" in item:
                found.append(html.unescape(item))
            if "\\" in item and _UNICODE_ESCAPE.search(item):
                found.append(_unescape_unicode(item))
            if _has_base64_run(item):
                for run in _BASE64_RUN.findall(item):
                    decoded = _b64(run)
                    if decoded is not None:
                        found.append(decoded)
        frontier = [f for f in found if f not in variants]
        if not frontier:
            break
        variants.extend(frontier)
    out = []
    for item in variants:
        clean = strip_invisible(item)
        if not clean.isascii():
            clean = unicodedata.normalize("NFKC", clean)
        out.append(clean)
    return out


def _backtick_heavy(text: str) -> bool:
    ticks = text.count("`")
    return ticks >= 6 and ticks * 25 > len(text)


#: How far a signal's match may reach before and after the guard literal inside it.
_BEFORE, _AFTER = 200, 320
_MAX_WINDOWS = 64


def _found_near(regex: re.Pattern[str], text: str, low: str, guard: str) -> bool:
    """Search ``regex`` only in windows around the guard's occurrences.

    Every signal's match contains one of its guards and is bounded in length, so this
    finds what a full search finds, at a cost that follows the occurrences rather than
    the text's length (Python's ``re`` runs at a few MB/s on these alternations).
    """
    if len(low) != len(text) or len(text) <= _BEFORE + _AFTER:
        return regex.search(text) is not None
    start, windows = 0, 0
    while (at := low.find(guard, start)) >= 0:
        windows += 1
        if windows > _MAX_WINDOWS:
            return regex.search(text, start) is not None
        if regex.search(text, max(0, at - _BEFORE), at + _AFTER) is not None:
            return True
        start = at + 1
    return False


def score_text(text: str, *, plain: bool) -> Score:
    """Score one string; ``plain``: the field is declared as plain text (not code)."""
    signals: set[str] = set()
    for variant in decode_layers(text):
        low = variant.lower()
        for name, guards, regex in _CHECKS:
            if name in signals or (not plain and name in _PLAIN_ONLY):
                continue
            for guard in guards:
                if guard in low and _found_near(regex, variant, low, guard):
                    signals.add(name)
                    break
        if plain and _backtick_heavy(variant):
            signals.add("backticks")
    total = min(1.0, sum(_WEIGHTS[s] for s in signals))
    return Score(total, frozenset(signals))
