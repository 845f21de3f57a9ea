"""Unicode tells: characters that hide or reorder text, and look-alike identifiers.

* ``bidi``: the explicit directional controls (U+202A-U+202E, U+2066-U+2069) and marks
  (U+200E, U+200F, U+061C) that make text display in another order than it is read;
* ``invisible``: zero-width and other invisible formatting characters (U+200B-U+200D,
  U+2060-U+2064, U+FEFF, U+180E, U+00AD) that split words past a filter or hide text
  (a zero-width joiner inside an emoji sequence is not counted);
* ``tag``: the tag block U+E0000-U+E007F, which can carry a whole hidden ASCII message;
* ``confusable``: an identifier (a key, or a value that looks like a name) that mixes
  scripts (Latin with Cyrillic or Greek look-alikes) or that NFKC folding changes
  (fullwidth letters): ``pаypal`` with a Cyrillic ``а`` is not ``paypal``.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

__all__ = ["Tell", "find_tells", "is_confusable_identifier", "strip_invisible"]

Tell = Literal["bidi", "invisible", "tag", "confusable"]

_BIDI = "\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c"
_INVISIBLE = "\u200b-\u200d\u2060-\u2064\ufeff\u180e\u00ad"
_TAG = "\U000e0000-\U000e007f"
_ANY = re.compile(f"([{_BIDI}])|([{_INVISIBLE}])|([{_TAG}])")
_HIDDEN = re.compile(f"[{_BIDI}{_INVISIBLE}{_TAG}]")
_IDENTIFIER = re.compile(r"[^\W\d][\w.\-]{0,127}")
_SCRIPTS = ("LATIN", "CYRILLIC", "GREEK", "ARMENIAN", "CHEROKEE")


def find_tells(text: str, *, identifier: bool = False) -> set[Tell]:
    """The tells in ``text`` (empty for plain text); ``identifier`` adds the look-alike test."""
    found: set[Tell] = set()
    if not text.isascii():
        for match in _ANY.finditer(text):
            if match.group(2) == "\u200d" and _joins_emoji(text, match.start()):
                continue
            found.add("bidi" if match.group(1) else "invisible" if match.group(2) else "tag")
            if len(found) == 3:
                break
        if identifier and is_confusable_identifier(text):
            found.add("confusable")
    return found


def _joins_emoji(text: str, at: int) -> bool:
    """A zero-width joiner inside an emoji sequence (👨‍👩‍👧) is how emoji are written."""
    if at == 0 or at + 1 >= len(text):
        return False
    before, after = text[at - 1], text[at + 1]
    return unicodedata.category(before) in ("So", "Sk", "Mn") and (
        unicodedata.category(after) == "So"
    )


def is_confusable_identifier(text: str) -> bool:
    """Whether an identifier-like ``text`` mixes look-alike scripts or folds under NFKC."""
    if text.isascii() or _IDENTIFIER.fullmatch(text) is None:
        return False
    if unicodedata.normalize("NFKC", text) != text:
        return True
    scripts = set()
    for char in text:
        if char.isalpha() and not char.isascii():
            name = unicodedata.name(char, "")
            script = name.split(" ", 1)[0]
            if script not in _SCRIPTS:
                # A single non-Latin-lookalike script (Japanese, Arabic...) is a real name.
                return False
            scripts.add(script)
        elif char.isalpha():
            scripts.add("LATIN")
    return len(scripts) > 1


def strip_invisible(text: str) -> str:
    """``text`` without bidi, invisible and tag characters (for matching, not output)."""
    return text if text.isascii() else _HIDDEN.sub("", text)
