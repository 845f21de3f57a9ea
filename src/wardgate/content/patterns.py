"""Secret patterns: what the redactor looks for, written once for both scan engines.

Every pattern is a bytes regex in the common subset of Python's ``re`` and Hyperscan
(no look-around, no back-references, every repeat bounded) so that both engines agree,
and declares ``max_len``, the longest text it can match: the stream redactor keeps the
longest ``max_len`` of each stream as its carry-over window, which bounds its memory.

``group`` names the capture group holding the secret itself (0: the whole match), so
``password=hunter2`` keeps its key name and loses only the value. ``trigger`` is an
optional shorter regex that Hyperscan looks for instead (it must match at the same
start); the full ``regex`` confirms. ``check`` is a last test on the secret's bytes
(card numbers must pass Luhn): it returns how many leading bytes of the match are the
secret (0: none), so a card number followed by another number is still found.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from wardgate.errors import ConfigError

__all__ = ["BUILTIN_PATTERNS", "SecretPattern", "luhn_ok", "pattern_from_config"]

# Characters that may sit inside a token; used to build \b-like edges portable to both
# engines (Hyperscan's \b is ASCII, as is Python's on bytes).
_B64 = rb"A-Za-z0-9+/"
_URLSAFE = rb"A-Za-z0-9_\-"


def luhn_ok(digits: bytes) -> bool:
    """The Luhn checksum of the digits in ``digits`` (separators ignored)."""
    nums = [c - 48 for c in digits if 48 <= c <= 57]
    if not 13 <= len(nums) <= 19:
        return False
    total = 0
    for i, n in enumerate(reversed(nums)):
        if i % 2:
            n *= 2
            if n > 9:
                n -= 9
        total += n
    return total % 10 == 0


@dataclass(frozen=True, slots=True)
class SecretPattern:
    """One kind of secret. See the module docstring for the fields.

    Raises:
        ConfigError: the regex does not compile, or ``group`` is not in it.
    """

    kind: str
    regex: bytes
    max_len: int
    group: int = 0
    caseless: bool = False
    trigger: bytes | None = None
    check: Callable[[bytes], int] | None = None
    compiled: re.Pattern[bytes] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,40}", self.kind):
            raise ConfigError(f"secret pattern kind {self.kind!r} must be a lowercase name")
        if self.max_len <= 0:
            raise ConfigError(f"secret pattern {self.kind}: max_len must be positive")
        try:
            compiled = re.compile(self.regex, re.IGNORECASE if self.caseless else 0)
        except re.error as exc:
            raise ConfigError(f"secret pattern {self.kind}: {exc}") from None
        if self.group > compiled.groups:
            raise ConfigError(f"secret pattern {self.kind}: no group {self.group}")
        object.__setattr__(self, "compiled", compiled)

    @property
    def scan_regex(self) -> bytes:
        """What a prefilter engine looks for (the trigger, else the full regex)."""
        return self.trigger if self.trigger is not None else self.regex


def _card(raw: bytes) -> int:
    """The longest prefix of ``raw`` that ends on a digit group and passes Luhn."""
    if luhn_ok(raw):
        return len(raw)
    # Greedy matching may have swallowed a following group ("4111 ... 1111 7"): try
    # each cut at a separator, longest first.
    for cut in range(len(raw) - 1, 12, -1):
        if raw[cut] in b" -" and luhn_ok(raw[:cut]):
            return cut
    return 0


BUILTIN_PATTERNS: tuple[SecretPattern, ...] = (
    SecretPattern("aws_access_key_id", rb"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b", 20),
    SecretPattern(
        "aws_secret_access_key",
        rb"aws_?secret_?(?:access_?)?key\\{0,3}[\"']?\s{0,4}[:=]\s{0,4}\\{0,3}[\"']?(["
        + _B64
        + rb"]{40})\b",
        90,
        group=1,
        caseless=True,
    ),
    SecretPattern(
        "gcp_oauth_token",
        rb"\bya29\.[" + _URLSAFE + rb"]{20,512}",
        517,
        # Fixed-length triggers report one match per token instead of one per extra byte.
        trigger=rb"\bya29\.[" + _URLSAFE + rb"]{20}",
    ),
    SecretPattern(
        "gcp_service_account_key",
        rb"private_key_id\\{0,3}\"\s{0,4}:\s{0,4}\\{0,3}\"([a-f0-9]{40})",
        70,
        group=1,
    ),
    SecretPattern(
        "github_token", rb"\b(?:gh[pousr]_[A-Za-z0-9]{36,251}|github_pat_[A-Za-z0-9_]{82})\b", 255
    ),
    SecretPattern("gitlab_token", rb"\bglpat-[A-Za-z0-9_\-]{20,64}\b", 70),
    SecretPattern(
        "slack_token",
        rb"\bxox[abposr]-[A-Za-z0-9\-]{10,200}",
        205,
        trigger=rb"\bxox[abposr]-[A-Za-z0-9\-]{10}",
    ),
    SecretPattern(
        "slack_webhook",
        rb"https://hooks\.slack\.com/services/T[A-Z0-9]{6,12}/B[A-Z0-9]{6,12}/[A-Za-z0-9]{16,32}",
        110,
    ),
    SecretPattern("stripe_key", rb"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,247}\b", 255),
    SecretPattern(
        "private_key",
        rb"-----BEGIN[A-Z ]{0,24}PRIVATE KEY( BLOCK)?-----[A-Za-z0-9+/=\s\\:,\-]{16,8192}"
        rb"-----END[A-Z ]{0,24}PRIVATE KEY( BLOCK)?-----",
        8300,
        trigger=rb"-----BEGIN[A-Z ]{0,24}PRIVATE KEY",
    ),
    SecretPattern(
        "jwt",
        rb"\beyJ["
        + _URLSAFE
        + rb"]{8,2048}\.eyJ["
        + _URLSAFE
        + rb"]{8,4096}\.["
        + _URLSAFE
        # A JWS signature; an unsigned token ends with the dot.
        + rb"]{0,1024}",
        7200,
        trigger=rb"\beyJ[" + _URLSAFE + rb"]{8}",
    ),
    SecretPattern(
        "bearer_token",
        rb"\bbearer\s{1,4}([A-Za-z0-9\-._~+/]{16,1024}=*)",
        1040,
        group=1,
        caseless=True,
        trigger=rb"\bbearer\s{1,4}[A-Za-z0-9\-._~+/]{16}",
    ),
    SecretPattern(
        "connection_string_password",
        # From the scheme's "://" (a literal, cheap to look for) to the "@" of the host.
        rb"://[^\s:/@\"'<>]{1,128}:([^\s@/\"'<>]{1,256})@",
        390,
        group=1,
        caseless=True,
    ),
    SecretPattern(
        "password_assignment",
        rb"\b(?:password|passwd|pwd|secret|api_?key|access_?token)\\{0,3}[\"']?\s{0,4}[:=]\s{0,4}"
        rb"\\{0,3}[\"']([^\s\"'\\]{6,256})\\{0,3}[\"']",
        300,
        group=1,
        caseless=True,
        trigger=rb"\b(?:password|passwd|pwd|secret|api_?key|access_?token)\\{0,3}[\"']?\s{0,4}[:=]",
    ),
    SecretPattern(
        "payment_card",
        # 13-19 digits together, or in the printed groups (4-4-4-4[-3], Amex 4-6-5).
        rb"\b(?:[3-6][0-9]{12,18}|[3-6][0-9]{3}(?:[ \-][0-9]{4}){3}(?:[ \-]?[0-9]{3})?"
        rb"|3[0-9]{3}[ \-][0-9]{6}[ \-][0-9]{5})\b",
        40,
        check=_card,
        # A shorter, alternation-free prefix of all three shapes: Hyperscan scans it
        # about 25% faster on digit-rich text.
        trigger=rb"\b[3-6][0-9]{3}[ \-]?[0-9]{4}[ \-]?[0-9]{2}",
    ),
)


def pattern_from_config(kind: str, regex: str, *, max_len: int, group: int = 0) -> SecretPattern:
    """An operator's pattern (from the ``[content.redact]`` config section).

    Raises:
        ConfigError: the pattern is not valid for both engines.
    """
    if "(?=" in regex or "(?!" in regex or "(?<" in regex:
        raise ConfigError(f"secret pattern {kind}: look-around is not supported")
    return SecretPattern(kind, regex.encode(), max_len, group=group)


def window(patterns: Iterable[SecretPattern]) -> int:
    """The carry-over a stream needs: the longest text any pattern can match."""
    return max((p.max_len for p in patterns), default=0)
