"""What each kind of PII looks like in text: e-mail addresses (also spelt out and spaced), URLs, IBANs, card
numbers and street addresses. Each finder returns (start, end) spans on NFKC text; ``pii.find_pii`` merges them.

Numbers are validated, not only matched: IBANs by their ISO 13616 mod-97 check and per-country length, card
numbers by Luhn plus a known issuer prefix and length, so that product data (EANs, batch codes, model numbers)
written the same way is left alone.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Sequence

Spans = list[tuple[int, int]]

# Words that stand for "@" and "." when an address is spelt out, in the policy's languages (en, de, fr, es, it,
# pt, nl). The policy may replace them (pii.email_at_words / email_dot_words).
AT_WORDS = ("at", "arobase", "arroba", "chiocciola", "klammeraffe", "apenstaartje", "ät")
DOT_WORDS = ("dot", "punkt", "point", "punto", "ponto", "punt")

# Top-level domains a spelt-out address may end in ("anna at shop dot com"): a spelt-out address has no dots to
# find a public suffix by, so its last label must be one of these.
TLDS = (
    "com|net|org|info|biz|io|co|ai|app|dev|shop|store|online|site|xyz|top|me|ly|gl|to|tv|cc|"
    "de|fr|uk|es|it|nl|be|ch|at|pl|ru|cn|jp|br|in|au|ca|us|eu|pt|se|dk|no|fi|ie|mx|ar|nz|za"
).split("|")

EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63})*\.[A-Za-z]{2,24}\b")
_SCHEME_URL = re.compile(r"\b(?:(?:https?|ftp)://|www\.)[^\s<>\"')\]]+", re.IGNORECASE)
# A bare domain: dot-separated ASCII labels, then an optional port and path. Whether its last labels are a public
# suffix is decided by the Public Suffix List (``_public_suffix``), not by this pattern.
_BARE = re.compile(
    r"(?<![\w@.-])(?P<host>(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+(?P<tld>[a-z][a-z0-9-]{0,61}[a-z0-9]))"
    r"(?![\w-]|\.[a-z0-9])(?P<rest>(?::\d{2,5})?(?:[/?#][^\s<>\"')\]]*)?)",
    re.IGNORECASE,
)
# Public suffixes that are also file extensions ("manual.zip", "README.md"): a bare name with one counts as an
# address only with a path.
FILE_SUFFIXES = frozenset({"zip", "mov", "md", "py", "sh", "rs", "pdf", "exe"})


@lru_cache(maxsize=1)
def _extractor() -> Any:
    """The Public Suffix List of the ``tldextract`` package: its bundled snapshot, never fetched (loaded at
    first use, not at import)."""
    import tldextract  # lazy: imports requests

    return tldextract.TLDExtract(cache_dir=None, suffix_list_urls=(), fallback_to_snapshot=True)


def _public_suffix(host: str) -> str:
    """The public suffix (ICANN section) of ``host`` when ``host`` has a registrable name before it, else ""."""
    parts = _extractor().extract_str(host)
    return str(parts.suffix) if parts.domain and parts.suffix else ""


def urls(text: str) -> Spans:
    """Web addresses: with a scheme or ``www.``, or bare (``lumen-deals.click/offer``, ``shop.co.jp``).

    A bare name counts when it ends in a public suffix (Public Suffix List) and its suffix is written in lower
    case, or the whole name in upper case: a capitalised word after a dot is a sentence with a missing space
    ("mug.Black lid", "Acme Co.Ltd"), not an address. A suffix that is also a file extension needs a path."""
    found = [(m.start(), m.end()) for m in _SCHEME_URL.finditer(text)]
    for m in _BARE.finditer(text):
        host, tld = m.group("host"), m.group("tld")
        if not (tld.islower() or host.isupper()) or inside_email(text, m.start()):
            continue
        suffix = _public_suffix(host.lower())
        if not suffix or (suffix in FILE_SUFFIXES and not m.group("rest")):
            continue
        found.append((m.start(), m.end()))
    return found


@lru_cache(maxsize=8)
def _loose_email(at_words: tuple[str, ...], dot_words: tuple[str, ...]) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """An address with spaces around its parts, "@"/"." written as words or in brackets, or letter-spaced; and
    the pattern of a spelt-out or bracketed dot."""
    at = "|".join(re.escape(w) for w in at_words)
    dot = "|".join(re.escape(w) for w in dot_words)
    label = r"(?:\w(?:[ ]\w){1,40}(?!\w)|[\w+-]{1,64})"  # "j a n e" or "jane"
    at_sep = rf"(?:\s*@\s*|\s*[\[({{<]\s*(?:at|@|{at})\s*[\])}}>]\s*|\s+(?P<word>{at})\s+)"
    dot_sep = rf"(?:\s*\.\s*|\s*[\[({{<]\s*(?:dot|\.|{dot})\s*[\])}}>]\s*|\s+(?:{dot})\s+)"
    tld = "|".join(" ?".join(t) for t in sorted(TLDS, key=len, reverse=True))
    address = re.compile(
        rf"(?<![\w.+-])(?P<local>{label}(?:{dot_sep}{label}){{0,4}}){at_sep}"
        rf"(?P<domain>{label}(?:{dot_sep}{label}){{0,4}}{dot_sep}(?:{tld}))(?!\w)",
        re.IGNORECASE,
    )
    return address, re.compile(rf"[\[({{<]|\b(?:{dot})\b", re.IGNORECASE)


def emails(text: str, at_words: Sequence[str] = AT_WORDS, dot_words: Sequence[str] = DOT_WORDS) -> Spans:
    """Plain, bracketed, spelt-out ("anna dot berg at shop dot com", "arobase", "punkt") and spaced addresses."""
    found = [(m.start(), m.end()) for m in EMAIL.finditer(text)]
    pattern, dots = _loose_email(tuple(w.lower() for w in at_words), tuple(w.lower() for w in dot_words))
    for m in pattern.finditer(text):
        # "shop at example.com" is a shop and a URL; "jane.doe at example.com" and "jane at shop dot com" are
        # addresses: a spelt-out "at" needs a spelt-out dot or a local part that reads like one.
        if m.group("word") and not dots.search(m.group("domain")) and not re.search(r"[._+\d-]", m.group("local")):
            continue
        found.append((m.start(), m.end()))
    return found


def inside_email(text: str, start: int) -> bool:
    """True when ``start`` follows an "@" without a space in between (the domain of an address)."""
    before = text[max(0, start - 65) : start]
    return "@" in before and not re.search(r"\s", before.split("@")[-1])


# IBAN length per country (ISO 13616 registry).
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29, "CH": 21,
    "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18,
    "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23,
    "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27,
    "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29,
    "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TN": 24, "TR": 26,
    "UA": 29, "VG": 24, "XK": 20,
}  # fmt: skip
_IBAN_START = re.compile(r"(?<![A-Za-z0-9])([A-Za-z]{2})\s?\d{2}(?=\s?[A-Za-z0-9])")


def iban_ok(iban: str) -> bool:
    """ISO 13616: the country's length, and the number with its first four characters moved last is 1 mod 97."""
    iban = iban.upper()
    if IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban[2:4].isdigit() or not iban.isalnum():
        return False
    return int("".join(str(int(c, 36)) for c in iban[4:] + iban[:4])) % 97 == 1


def ibans(text: str) -> Spans:
    """IBANs, dense or in groups, any case; the span ends where the country's length does."""
    found: Spans = []
    for m in _IBAN_START.finditer(text):
        length = IBAN_LENGTHS.get(m.group(1).upper())
        if length is None:
            continue
        chars: list[str] = []
        i = m.start()
        while i < len(text) and len(chars) < length:
            if text[i].isalnum() and text[i].isascii():
                chars.append(text[i])
            elif not (text[i] == " " and chars and i + 1 < len(text) and text[i + 1].isalnum()):
                break
            i += 1
        if len(chars) == length and not (i < len(text) and text[i].isalnum()) and iban_ok("".join(chars)):
            found.append((m.start(), i))
    return found


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum card numbers carry; random digit runs pass it one time in ten."""
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = int(ch)
        if i % 2 == parity:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def gtin_ok(digits: str) -> bool:
    """GTIN-8/12/13/14 (EAN, UPC) check digit: weights 3 and 1 from the right."""
    if len(digits) not in (8, 12, 13, 14):
        return False
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(reversed(digits[:-1]), 1))
    return (10 - total % 10) % 10 == int(digits[-1])


# Issuer prefixes (inclusive ranges on the first digits) and the lengths they issue. Visa's 13-digit and
# Maestro's 12-15-digit numbers are left out: they collide with EAN-13 barcodes and are no longer issued.
CARD_ISSUERS: tuple[tuple[str, str, tuple[int, ...]], ...] = (
    ("4", "4", (16, 19)),  # Visa
    ("51", "55", (16,)),  # Mastercard
    ("2221", "2720", (16,)),  # Mastercard 2-series
    ("34", "34", (15,)),  # American Express
    ("37", "37", (15,)),
    ("6011", "6011", (16, 17, 18, 19)),  # Discover
    ("644", "649", (16, 17, 18, 19)),
    ("65", "65", (16, 17, 18, 19)),
    ("300", "305", (14, 15, 16, 17, 18, 19)),  # Diners Club
    ("36", "36", (14, 15, 16, 17, 18, 19)),
    ("38", "39", (16, 17, 18, 19)),
    ("3528", "3589", (16, 17, 18, 19)),  # JCB
    ("62", "62", (16, 17, 18, 19)),  # UnionPay
    ("50", "50", (16, 17, 18, 19)),  # Maestro
    ("56", "58", (16, 17, 18, 19)),
    ("63", "63", (16, 17, 18, 19)),
    ("67", "67", (16, 17, 18, 19)),
    ("2200", "2204", (16, 17, 18, 19)),  # Mir
)
# A run of digit groups; any separator (space, - . / _ : · • | *), with spaces around it, joins the groups.
_DIGIT_RUN = re.compile(r"(?<!\d)\d+(?:[ \t]{0,2}[-./_:·•|*–—]?[ \t]{0,2}\d+)*")


def card_ok(digits: str) -> bool:
    if len(set(digits)) < 2 or not luhn_ok(digits):
        return False
    return any(lo <= digits[: len(lo)] <= hi and len(digits) in lengths for lo, hi, lengths in CARD_ISSUERS)


def cards(text: str, product_code: re.Pattern[str]) -> Spans:
    """Card numbers, dense or grouped with any separator, or spelt digit by digit; the longest valid window of
    whole groups in each digit run. Groups must look like a card's (all single digits, or all of 3 or more)."""
    found: Spans = []
    for run in _DIGIT_RUN.finditer(text):
        groups = [(g.start(), g.end()) for g in re.finditer(r"\d+", run.group())]
        best: tuple[int, int] | None = None
        for i in range(len(groups)):
            digits = ""
            for j in range(i, len(groups)):  # windows of whole groups, at most 19 digits
                digits += run.group()[groups[j][0] : groups[j][1]]
                if len(digits) > 19:
                    break
                sizes = {e - s for s, e in groups[i : j + 1]}
                if len(digits) < 14 or (j > i and sizes != {1} and min(sizes) < 3) or not card_ok(digits):
                    continue
                if best is None or groups[j][1] - groups[i][0] > best[1] - best[0]:
                    best = (groups[i][0], groups[j][1])
        if best is not None and not product_code.search(text[: run.start() + best[0]]):
            found.append((run.start() + best[0], run.start() + best[1]))
    return found


_STREET_EN = (
    r"Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|Terrace|"
    r"Square|Sq|Highway|Hwy|Parkway|Pkwy|Circle|Cir|Crescent|Close|Gardens|Row|Alley"
)
# Lower case: street words that are also product words ("road bike", "hard drive", "court shoes", "place
# setting") count only before punctuation, a number, a direction or a unit designator, or at the end.
_STRONG_LOWER = (
    r"(?:street(?!\s+(?:style|food|art|wear|fashion|lamps?|lights?|signs?|maps?|scene|photography|party|market|"
    r"dance|shoes|bike|parking|view|level|legal|racer|racing))|avenue|ave|boulevard|blvd|parkway|pkwy)"
)
_WEAK_LOWER = r"st|road|rd|lane|ln|drive|dr|court|ct|way|place|pl|terrace|square|sq|highway|hwy|circle|crescent|close"
_WEAK_END = r"(?=\s*(?:[,.;:)]|$|\d|(?:nw|ne|sw|se|n|s|e|w|apt|suite|unit)\b))"
# Words that are not part of a street name: units, counts and function words ("28 inch road bike").
_NOT_NAME = (
    r"mm|cm|m|km|in|inch|inches|ft|feet|yd|g|kg|lb|lbs|oz|ml|l|tb|gb|mb|v|w|a|hz|mah|rpm|mp|k|x|"
    r"piece|pieces|pc|pcs|pack|set|seater|way|speed|tier|drawer|door|person|people|player|"
    r"best|top|great|favourite|favorite|"
    r"the|an|of|to|for|with|and|or|on|at|by|from|more|per|each|our|your|my|his|her|their|its|this|that|these|those"
)
_LOWER_NAME = rf"(?:(?!(?:{_NOT_NAME})\s)[a-z][\w'’-]*\s+)"
ADDRESS = re.compile(
    r"\b\d{1,5}[A-Za-z]?,?\s+(?:(?:[NSEW]|North|South|East|West)\.?\s+)?(?:[A-Z][\w'’-]+\s+){1,3}"
    r"(?:" + _STREET_EN + r")\b\.?(?:\s+(?:NW|NE|SW|SE|N|S|E|W)\b)?(?:,?\s+(?:Apt|Suite|Unit|#)\.?\s*\w+)?"
    r"|\b\d{1,5}[a-z]?,?\s+(?:(?:n|s|e|w|north|south|east|west)\.?\s+)?" + _LOWER_NAME + r"{1,3}"
    r"(?:(?:" + _STRONG_LOWER + r")\b|(?:" + _WEAK_LOWER + r")\b" + _WEAK_END + r")\.?"
    r"(?:\s+(?:nw|ne|sw|se|n|s|e|w)\b)?(?:,?\s+(?:apt|suite|unit|#)\.?\s*\w+)?"
    # German/Dutch/Scandinavian: name + street word, then the number.
    r"|\b[A-ZÄÖÜ][\wäöüß-]*(?:straße|strasse|str\.|weg|platz|allee|gasse|ring|damm|ufer|straat|laan|gatan|vej)"
    r"\s+\d{1,4}\s?[a-z]?\b"
    r"|\b[a-zäöü][\wäöüß-]*(?:straße|strasse|str\.|allee|gasse|straat|laan|gatan|vej)\s+\d{1,4}\s?[a-z]?\b"
    # French/Spanish/Italian/Portuguese: number, street word, name.
    r"|\b\d{1,4}(?:\s?(?:bis|ter))?,?\s+(?i:rue|avenue|av\.|boulevard|bd|place|chemin|allée|impasse|quai|calle|"
    r"avenida|plaza|paseo|via|viale|piazza|corso|rua|praça|travessa)\s+(?:(?:de|del|de la|des|du|della|da|do|"
    r"la|le|l')\s*)?[A-ZÀ-Ý][\w'’-]+"
    r"|\b\d{1,4}(?:\s?(?:bis|ter))?,?\s+(?:rue|avenue|boulevard|chemin|allée|impasse|quai|calle|avenida|paseo|"
    r"viale|piazza|rua|praça|travessa)\s+(?:(?:de|del|de la|des|du|della|da|do|la|le|l')\s*)?[a-zà-ÿ][\w'’-]+"
    r"|\b(?i:calle|via|rua|avenida)\s+[A-ZÀ-Ý][\w'’-]+(?:\s+[A-ZÀ-Ý][\w'’-]+)?,?\s+(?:n[º°o.]\s*)?\d{1,4}\b"
    r"|\b(?:calle|rua|avenida)\s+[a-zà-ÿ][\w'’-]+(?:\s+[a-zà-ÿ][\w'’-]+)?,?\s+(?:n[º°o.]\s*)?\d{1,4}\b"
    r"|\bP\.?\s?O\.?\s+Box\s+\d{1,8}\b"
)


def addresses(text: str) -> Spans:
    return [(m.start(), m.start() + len(m.group().rstrip(".,"))) for m in ADDRESS.finditer(text)]
