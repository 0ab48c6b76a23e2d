"""What output guards look for: configured secrets, credential formats and personal data.

Each kind is a compiled Python ``re`` pattern plus, where a pattern alone would over-match, a
check of the candidate (Luhn for card numbers, mod-97 and the country's length for IBANs, the
top-level domain of an e-mail address, a digit in a bearer token). Kinds::

    secret                 the values of the config's resolved secret references (8+ characters)
    private_key            PEM private keys (-----BEGIN ... PRIVATE KEY----- to its END line)
    aws_access_key_id      AKIA/ASIA/ABIA/ACCA + 16
    aws_secret_access_key  40 characters assigned to aws_secret_access_key, SecretAccessKey, ...
    github_token           ghp_/gho_/ghu_/ghs_/ghr_ tokens, github_pat_ tokens
    slack_token            xoxb-/xoxp-/xoxa-/xoxr-/xoxs-/xoxe- tokens, Slack webhook URLs
    jwt                    eyJ... . eyJ... . signature
    bearer_token           the token after "Bearer " (with at least one digit: prose is left alone)
    api_key                the value of api_key=, apikey:, client_secret=, access_token=, password=, ...
    email                  local@domain.tld
    card_number            13-19 digits (spaces or dashes between), first digit 2-6, Luhn-valid
    iban                   2 letters, 2 check digits, the country's length, mod-97-valid
    phone                  +country number, 8 to 15 digits (E.164, separators allowed)

**Linear time.** Every pattern is written so a scan costs time linear in the text: each one
starts with a literal or a character class (``re`` then skips to candidate positions in C) and
checks the character before it with a lookbehind placed after that first character (so a run of
candidate characters is entered once, not at each of its positions); repetitions are possessive
or bounded, and no quantified group holds another unbounded quantifier. E-mail addresses are
found from each ``@`` outwards, and a private key's end with ``str.find`` from its BEGIN line,
within the same string. A detector whose required substring (``@``, ``+``, ``AKIA``, ``eyJ``,
``bearer``, ...) is absent does not scan at all. tests/guards measure it on hostile texts.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "GROUPS",
    "KEYED",
    "KINDS",
    "MIN_SECRET_LENGTH",
    "Detector",
    "Finder",
    "Hit",
    "Text",
    "detectors_for",
    "iban_valid",
    "luhn_valid",
]

KINDS: tuple[str, ...] = (
    "secret",
    "private_key",
    "aws_access_key_id",
    "aws_secret_access_key",
    "github_token",
    "slack_token",
    "jwt",
    "bearer_token",
    "api_key",
    "email",
    "card_number",
    "iban",
    "phone",
)
GROUPS: dict[str, tuple[str, ...]] = {
    "secrets": ("secret",),
    "credentials": KINDS[1:9],
    "personal": KINDS[9:],
    "all": KINDS,
}
"""Names that stand for several kinds in ``mask:`` and ``refuse:`` lists."""

MIN_SECRET_LENGTH = 8
"""Configured secret values shorter than this are not searched (``"1"`` or ``"true"`` would
match everywhere and reveal nothing)."""


@dataclass(frozen=True, slots=True)
class Hit:
    """One finding: ``text[start:end]`` is of ``kind`` (only that span is replaced)."""

    start: int
    end: int
    kind: str


class Text:
    """A text to scan, with its lower-case form made once for the case-insensitive detectors."""

    __slots__ = ("_lower", "value")

    def __init__(self, value: str) -> None:
        self.value = value
        self._lower: str | bool | None = False

    @property
    def lower(self) -> str | None:
        """``value.lower()``, or ``None`` when lower-casing changed its length (a few non-ASCII
        letters do), so offsets in it would not be offsets in ``value``."""
        if self._lower is False:
            lowered = self.value.lower()
            self._lower = lowered if len(lowered) == len(self.value) else None
        return self._lower if isinstance(self._lower, str) else None


Check = Callable[[str], bool]


@dataclass(frozen=True, slots=True)
class Detector:
    kind: str
    pattern: re.Pattern[str]
    group: int = 0
    """The group that is masked (a key name or ``Bearer`` before it stays)."""
    check: Check | None = None
    needs: tuple[str, ...] = ()
    """Texts holding none of these are not scanned (a substring test is far cheaper than a scan)."""
    caseless: re.Pattern[str] | None = None
    """For a case-insensitive detector: ``pattern`` is written in lower case and runs on the
    lower-cased text (fast: it starts with literal characters); this one, with ``(?i)``, runs on
    the text itself when lower-casing changed its length. ``needs`` are then lower case."""

    def find(self, scanned: Text) -> list[Hit]:
        source = scanned.value
        if self.caseless is not None:
            lowered = scanned.lower
            haystack = lowered if lowered is not None else source.lower()
            if self.needs and not any(need in haystack for need in self.needs):
                return []
            pattern, subject = (self.pattern, lowered) if lowered is not None else (self.caseless, source)
        else:
            if self.needs and not any(need in source for need in self.needs):
                return []
            pattern, subject = self.pattern, source
        hits: list[Hit] = []
        group, check = self.group, self.check
        for match in pattern.finditer(subject):
            start, end = match.span(group)
            if check is not None and not check(source[start:end]):
                continue
            hits.append(Hit(start, end, self.kind))
        return hits


def _caseless(kind: str, source: str, *, group: int, needs: tuple[str, ...], check: Check | None = None) -> Detector:
    return Detector(
        kind,
        re.compile(source),
        group=group,
        check=check,
        needs=needs,
        caseless=re.compile(source, re.IGNORECASE),
    )


def luhn_valid(candidate: str) -> bool:
    digits = [int(ch) for ch in candidate if ch.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for index, digit in enumerate(reversed(digits)):
        if index % 2:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27,
    "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25,
    "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18,
    "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33,
    "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip
"""IBAN length by country (the SWIFT IBAN registry)."""


def iban_valid(compact: str) -> bool:
    """An IBAN without spaces: the country's length and mod-97 == 1."""
    if _IBAN_LENGTHS.get(compact[:2]) != len(compact):
        return False
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(number) % 97 == 1


def _iban_prefix(candidate: str) -> int:
    """How many characters of ``candidate`` (spaces included) are an IBAN, or 0.

    A candidate may run on into the next word (``DE89 3704 ... 00 FOO``): the country's length
    says where the IBAN ends.
    """
    length = _IBAN_LENGTHS.get(candidate[:2])
    if length is None:
        return 0
    compact: list[str] = []
    for index, char in enumerate(candidate):
        if char != " ":
            compact.append(char)
            if len(compact) == length:
                end = index + 1
                if end < len(candidate) and candidate[end] != " ":
                    return 0  # the IBAN would end inside a group: not one
                return end if iban_valid("".join(compact)) else 0
    return 0


def _email_ok(candidate: str) -> bool:
    domain = candidate.rpartition("@")[2]
    labels = domain.split(".")
    tld = labels[-1]
    return (
        len(labels) >= 2
        and 2 <= len(tld) <= 63
        and tld.isalpha()
        and all(label and not label.startswith("-") and not label.endswith("-") for label in labels)
    )


def _phone_ok(candidate: str) -> bool:
    return 8 <= sum(ch.isdigit() for ch in candidate) <= 15


def _has_digit(candidate: str) -> bool:
    return any(ch.isdigit() for ch in candidate)


_KEY_NAMES = (
    r"api[_-]?key|apikey|api[_-]?secret|access[_-]?token|auth[_-]?token|refresh[_-]?token|client[_-]?secret"
    r"|secret[_-]?key|private[_-]?key|password|passwd"
)

KEYED: dict[str, re.Pattern[str]] = {
    "aws_secret_access_key": re.compile(r"(?i)^(?:aws_?)?secret_?access_?key$"),
    "api_key": re.compile(rf"(?i)^(?:{_KEY_NAMES})$"),
}
"""Structured content names a credential by its key (``{"password": "..."}``): a string value
(6+ characters) under such a key is that kind whatever it looks like."""

# Each pattern starts with a literal or a character class and checks the character before it
# with a lookbehind placed after that first character: re then skips to candidate positions in
# C (a leading lookbehind would be tried at every position of the text).
_BUILTIN: tuple[Detector, ...] = (
    Detector(
        "aws_access_key_id",
        re.compile(r"A(?<![A-Z0-9]A)(?:KIA|SIA|BIA|CCA)[A-Z0-9]{16}+(?![A-Z0-9])"),
        needs=("AKIA", "ASIA", "ABIA", "ACCA"),
    ),
    _caseless(
        "aws_secret_access_key",
        r"(?:aws_?)?secret_?access_?key[\"']?[ \t]{0,5}+[:=][ \t]{0,5}+[\"']?([a-z0-9/+]{40})(?![a-z0-9/+=])",
        group=1,
        needs=("secret",),
    ),
    Detector(
        "github_token",
        re.compile(
            r"g(?<![A-Za-z0-9_]g)(?:h[pousr]_[A-Za-z0-9]{36,255}+|ithub_pat_[A-Za-z0-9_]{22,255}+)(?![A-Za-z0-9_])"
        ),
        needs=("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
    ),
    Detector(
        "slack_token",
        re.compile(
            r"x(?<![A-Za-z0-9-]x)ox[abposre]-[A-Za-z0-9-]{10,250}+"
            r"|https://hooks\.slack\.com/services/[A-Za-z0-9/_-]{10,250}+"
        ),
        needs=("xox", "hooks.slack.com"),
    ),
    Detector(
        "jwt",
        re.compile(r"e(?<![A-Za-z0-9_-]e)yJ[A-Za-z0-9_-]{4,}+\.eyJ[A-Za-z0-9_-]{4,}+\.[A-Za-z0-9_-]*+"),
        needs=("eyJ",),
    ),
    _caseless(
        "bearer_token",
        r"b(?<![a-z0-9_]b)earer[ \t]{1,10}+([a-z0-9._~+/=-]{8,}+)",
        group=1,
        needs=("bearer",),
        check=_has_digit,
    ),
    _caseless(
        "api_key",
        r"(?:a(?<![a-z0-9]a)(?:pi[_-]?key|pikey|pi[_-]?secret|ccess[_-]?token|uth[_-]?token)"
        r"|r(?<![a-z0-9]r)efresh[_-]?token|c(?<![a-z0-9]c)lient[_-]?secret|s(?<![a-z0-9]s)ecret[_-]?key"
        r"|p(?<![a-z0-9]p)(?:rivate[_-]?key|assword|asswd))"
        r"[\"']?[ \t]{0,5}+[:=][ \t]{0,5}+[\"']?([^\s\"'&,;<>\x00]{6,}+)",
        group=1,
        needs=("key", "secret", "token", "passw"),
    ),
    Detector(
        "card_number",
        re.compile(r"[2-6](?<![0-9][2-6])(?:[ -]?+[0-9]){12,18}+(?![0-9])"),
        check=luhn_valid,
    ),
    Detector(
        "phone",
        re.compile(r"\+(?<![\w+]\+)[1-9][0-9]{0,3}+(?:[ .-]?+(?:\([0-9]{1,5}+\)|[0-9]{1,5}+)){1,8}+"),
        check=_phone_ok,
        needs=("+",),
    ),
)

_PRIVATE_KEY_BEGIN = re.compile(r"-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----")
_IBAN = re.compile(r"[A-Z](?<![A-Za-z0-9][A-Z])[A-Z][0-9]{2}(?: ?+[A-Z0-9]){11,32}+")


class _PrivateKeys:
    """BEGIN ... PRIVATE KEY lines to the END line after them (the whole rest of the string when
    there is none: a truncated key is still a key)."""

    kind = "private_key"

    def find(self, scanned: Text) -> list[Hit]:
        text = scanned.value
        if "-----BEGIN " not in text:
            return []
        hits: list[Hit] = []
        position = 0
        while True:
            match = _PRIVATE_KEY_BEGIN.search(text, position)
            if match is None:
                return hits
            limit = text.find("\x00", match.end())  # strings are scanned joined by NUL: stay in this one
            limit = len(text) if limit < 0 else limit
            end_line = text.find("-----END ", match.end(), limit)
            close = text.find("-----", end_line + 9, limit) if end_line >= 0 else -1
            end = close + 5 if close >= 0 else limit
            hits.append(Hit(match.start(), end, self.kind))
            position = end


_LOCAL_PART = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")
_DOMAIN = re.compile(r"[A-Za-z0-9-]{1,63}+(?:\.[A-Za-z0-9-]{1,63}+)++")


class _Emails:
    """local@domain.tld, found from each ``@`` outwards: the local part (at most 64 characters,
    and all of the run before the ``@``) to the left, the domain to the right. Anchoring at ``@``
    keeps a scan to the ``@`` signs and what is next to them, instead of every letter."""

    kind = "email"

    def find(self, scanned: Text) -> list[Hit]:
        text = scanned.value
        hits: list[Hit] = []
        at = text.find("@")
        while at >= 0:
            start = at
            while start > 0 and at - start <= 64 and text[start - 1] in _LOCAL_PART:
                start -= 1
            domain = _DOMAIN.match(text, at + 1)
            after = at + 1
            if domain is not None:
                after = domain.end()
                if start < at and at - start <= 64 and _email_ok(text[start:after]):
                    hits.append(Hit(start, after, self.kind))
            at = text.find("@", max(after, at + 1))
        return hits


class _IBANs:
    kind = "iban"

    def find(self, scanned: Text) -> list[Hit]:
        hits: list[Hit] = []
        for match in _IBAN.finditer(scanned.value):
            length = _iban_prefix(match.group(0))
            if length:
                hits.append(Hit(match.start(), match.start() + length, self.kind))
        return hits


class _Secrets:
    """The configured secret values, read from the resolver each scan (a refresh adds values)."""

    kind = "secret"

    def __init__(self, pattern: Callable[[], re.Pattern[str] | None]) -> None:
        self._pattern = pattern

    def find(self, scanned: Text) -> list[Hit]:
        pattern = self._pattern()
        if pattern is None:
            return []
        return [
            Hit(match.start(), match.end(), self.kind)
            for match in pattern.finditer(scanned.value)
            if match.end() - match.start() >= MIN_SECRET_LENGTH
        ]


class Finder(Protocol):
    """A detector: its ``kind`` and the hits in a text."""

    @property
    def kind(self) -> str: ...

    def find(self, scanned: Text) -> list[Hit]: ...


def detectors_for(kinds: Sequence[str], secrets: Callable[[], re.Pattern[str] | None] | None = None) -> list[Finder]:
    """The detectors of ``kinds`` (in :data:`KINDS` order); ``secrets`` gives the configured
    values' pattern (the ``secret`` kind finds nothing without it)."""
    wanted = set(kinds)
    found: list[Finder] = []
    builtin = {detector.kind: detector for detector in _BUILTIN}
    for kind in KINDS:
        if kind not in wanted:
            continue
        if kind == "secret":
            if secrets is not None:
                found.append(_Secrets(secrets))
        elif kind == "private_key":
            found.append(_PrivateKeys())
        elif kind == "iban":
            found.append(_IBANs())
        elif kind == "email":
            found.append(_Emails())
        else:
            found.append(builtin[kind])
    return found
