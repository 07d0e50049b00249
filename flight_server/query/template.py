"""Parse trees by literal template: texts that differ only in their literals share one parse.

A lookup whose key is a literal (``WHERE id = 123``, then ``= 456``) is a new text every call,
and DuckDB's ``json_serialize_sql`` (the analysis in :mod:`.statement`) costs about as much as
the lookup itself. DuckDB's parse tree keeps a literal as its text (``{"kind": "INTEGER",
"text": "123"}``, a string as its unescaped value), so the tree of ``= 456`` is the tree of
``= 123`` with that text changed. :class:`Templates` keeps, per *template* (the text with every
plain string and number literal replaced by a marker of its class), one parse tree whose literals
are *sentinels*, and where each sentinel sits; the tree of a new text of that template is the
sentinel tree with the new literal texts put in place.

Only what is provably the same tree is used:

* literals are the tokens DuckDB's own tokenizer calls constants, and only the plain forms
  (``'...'`` without a prefix or a backslash, digits, digits ``.`` digits, at most 18 digits); anything else
  (``E'..'``, ``x'..'``, ``$$..$$``, ``1e5``, ``0x1F``, ``1_000``) stays part of the template text;
* a template is built on the *second* text seen with it (a one-off statement costs no extra
  parse), by parsing the sentinel text once; it is kept only if every sentinel appears exactly
  once, as a literal's text (or that text negated: ``-5`` is folded into one constant), and if
  the sentinel tree with that second text's literals equals DuckDB's tree of that text
  (positions aside: ``query_location`` is never read by the analysis and is left as parsed).
"""

from __future__ import annotations

import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Final

import duckdb
import orjson

SIZE: Final = 1024  # templates remembered (LRU)
_STRING: Final = re.compile(rb"'(?:[^']|'')*'")
_NUMBER: Final = re.compile(rb"[0-9]+(?:\.[0-9]+)?(?![0-9A-Za-z_.$'\x80-\xff])")
_IDENT: Final = re.compile(rb"[0-9A-Za-z_$.\x80-\xff]")
POSITIONS: Final = frozenset({"query_location", "query_location_length"})  # where a node sits in the text
_NONCE: Final = str(secrets.randbelow(9 * 10**8) + 10**8)  # 9 digits, per process
_MARK = {"s": "\x00s\x00", "i": "\x00i\x00", "d": "\x00d\x00"}
_NOT_YET: Final = object()  # a template seen once
_USELESS: Final = object()  # a template whose tree does not follow its literals


def split(sql: str) -> tuple[str, list[tuple[str, str]]] | None:
    """``(template, literals)``: ``sql`` with each plain literal replaced by a marker of its class
    (``s`` string, ``i`` integer, ``d`` decimal) and the literals' tree texts, in text order;
    None when ``sql`` has no such literal (its text is its own key) or cannot be tokenised."""
    if "\x00" in sql:
        return None
    try:
        tokens = duckdb.tokenize(sql)
    except (duckdb.Error, RuntimeError):
        return None
    raw = sql.encode()  # the tokenizer's positions are UTF-8 byte offsets
    parts: list[bytes] = []
    literals: list[tuple[str, str]] = []
    last = 0
    for pos, kind in tokens:
        if pos > 0 and _IDENT.match(raw, pos - 1):
            continue  # E'..', x'..', a number glued to something: not a plain literal
        if kind == duckdb.token_type.string_const:
            m = _STRING.match(raw, pos)
            if m is None or b"\\" in m.group():
                continue  # DuckDB's lexer reads some backslash sequences in strings: not plain
            cls, text = "s", m.group()[1:-1].decode().replace("''", "'")
        elif kind == duckdb.token_type.numeric_const:
            m = _NUMBER.match(raw, pos)
            if m is None or sum(c in b"0123456789" for c in m.group()) > 18:
                continue
            cls, text = ("d" if b"." in m.group() else "i"), m.group().decode()
        else:
            continue
        parts += (raw[last:pos], _MARK[cls].encode())
        literals.append((cls, text))
        last = m.end()
    if not literals:
        return None
    parts.append(raw[last:])
    return b"".join(parts).decode(), literals


def _sentinel(cls: str, i: int) -> str:
    if cls == "s":
        return f"\x01miniodb:{_NONCE}:{i}\x01"
    return f"{_NONCE}{i:04d}" + (".25" if cls == "d" else "")


def _strip(obj: Any) -> Any:
    if isinstance(obj, list):
        return [_strip(x) for x in obj]
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in POSITIONS}
    return obj


class _Template:
    __slots__ = ("count", "kind", "paths", "tree")

    def __init__(self, kind: str, count: int, tree: bytes, paths: list[tuple[tuple, int, bool]]) -> None:
        self.kind, self.count, self.tree, self.paths = kind, count, tree, paths

    def fill(self, literals: list[tuple[str, str]]) -> dict:
        tree = orjson.loads(self.tree)
        for path, i, negated in self.paths:
            node = tree
            for step in path:
                node = node[step]
            node["text"] = "-" + literals[i][1] if negated else literals[i][1]
        return tree


def _find(tree: Any, sentinels: dict[str, int]) -> list[tuple[tuple, int, bool]] | None:
    """Where each sentinel is a literal's text; None unless each is found exactly once and
    nowhere else (an alias, a name, a text it is part of)."""
    found: list[tuple[tuple, int, bool]] = []
    stray = False

    def walk(o: Any, path: tuple) -> None:
        nonlocal stray
        if isinstance(o, list):
            for i, x in enumerate(o):
                walk(x, (*path, i))
        elif isinstance(o, dict):
            lit = o.get("text") if path and path[-1] == "literal" else None
            if isinstance(lit, str):
                negated = lit.startswith("-")
                if lit.removeprefix("-") in sentinels:
                    found.append((path, sentinels[lit.removeprefix("-")], negated))
                    return
            for k, v in o.items():
                walk(v, (*path, k))
        elif isinstance(o, str) and _NONCE in o:
            stray = True

    walk(tree, ())
    if stray or sorted(i for _, i, _ in found) != list(range(len(sentinels))):
        return None
    return found


class Templates:
    """Sentinel trees by template (bounded LRU, thread-safe); ``parse`` is DuckDB's
    ``json_serialize_sql`` as a dict."""

    def __init__(self, parse: Callable[[str], dict], size: int = SIZE) -> None:
        self._parse = parse
        self._size = size
        self._known: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def tree(self, sql: str) -> tuple[tuple[str, list] | None, tuple[str, int, dict] | None]:
        """``(split, found)``: the split of ``sql`` (None: it has no plain literal) and, when its
        template has a checked sentinel tree, ``(kind, parameter count, tree of sql)``."""
        parts = split(sql)
        if parts is None:
            return None, None
        with self._lock:
            known = self._known.get(parts[0])
            if known is not None:
                self._known.move_to_end(parts[0])
        if isinstance(known, _Template):
            return parts, (known.kind, known.count, known.fill(parts[1]))
        return parts, None

    def learn(self, parts: tuple[str, list], kind: str, count: int, tree: dict) -> None:
        """After a full parse of a text (``tree``, its split ``parts``): remember the template on
        the first sight, build and check its sentinel tree on the second."""
        template, literals = parts
        with self._lock:
            known = self._known.get(template)
            if known is None:
                self._set(template, _NOT_YET)
                return
        if known is not _NOT_YET:
            return
        built: Any = _USELESS
        sentinels = {_sentinel(cls, i): i for i, (cls, _) in enumerate(literals)}
        text = template
        for i, (cls, _) in enumerate(literals):
            s = _sentinel(cls, i)
            text = text.replace(_MARK[cls], f"'{s}'" if cls == "s" else s, 1)
        try:
            stree = self._parse(text)
        except (duckdb.Error, orjson.JSONDecodeError):
            stree = {"error": True}
        paths = None if stree.get("error") else _find(stree, sentinels)
        if paths is not None:
            candidate = _Template(kind, count, orjson.dumps(stree), paths)
            if _strip(candidate.fill(literals)) == _strip(tree):
                built = candidate
        with self._lock:
            self._set(template, built)

    def _set(self, template: str, value: Any) -> None:
        self._known[template] = value
        self._known.move_to_end(template)
        while len(self._known) > self._size:
            self._known.popitem(last=False)
