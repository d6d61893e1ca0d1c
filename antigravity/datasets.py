"""BEIR-format datasets and the benchmark task registry.

A BEIR directory holds ``corpus.jsonl`` (``{"_id", "title", "text"}`` per line),
``queries.jsonl`` (``{"_id", "text"}``) and ``qrels/<split>.tsv`` (header, then
``query-id<TAB>corpus-id<TAB>score``) — Thakur et al. (2021), BEIR. Each file may also be
gzip-compressed (``*.gz``).

Query ``metadata`` is never read: in SciFact it holds the gold evidence documents, so
reading it in any retrieval or adaptation path would leak labels. The loader keeps only
``_id`` and ``text``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from antigravity.core.documents import doc_text, validate_document, validate_id
from antigravity.core.errors import DatasetError, DocumentError, TaskNotFoundError

RESOURCES = Path(__file__).parent / "resources"


@dataclass
class BeirDataset:
    """A loaded BEIR dataset.

    Attributes:
        corpus: ``{doc_id: {"title": str, "text": str}}`` in file order.
        queries: ``{query_id: text}`` for every query in ``queries.jsonl`` (all splits).
        qrels: ``{split: {query_id: {doc_id: relevance int}}}`` for the splits loaded.
        name: dataset name (e.g. ``"SciFact"``) or the directory name.
    """

    corpus: dict[str, dict[str, str]]
    queries: dict[str, str]
    qrels: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    name: str = ""

    def split_queries(self, split: str) -> dict[str, str]:
        """``{query_id: text}`` of the queries judged in ``split`` (file order of queries.jsonl)."""
        judged = self.qrels[split]
        return {qid: t for qid, t in self.queries.items() if qid in judged}


def _find(dir_: Path, rel: str) -> Path:
    for cand in (dir_ / rel, dir_ / (rel + ".gz")):
        if cand.is_file():
            return cand
    raise DatasetError(f"BEIR directory {str(dir_)!r} is missing {rel} (or {rel}.gz)")


def _open_binary(path: Path):
    try:
        return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` for each non-blank line; every error names ``file:line``."""
    with _open_binary(path) as fh:
        try:
            for lineno, raw in enumerate(fh, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise DatasetError(f"{path}:{lineno}: not valid UTF-8 (byte {raw[exc.start]:#04x} at column {exc.start + 1})") from None
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DatasetError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from exc
                except RecursionError:
                    raise DatasetError(f"{path}:{lineno}: JSON nested too deeply") from None
                if not isinstance(obj, dict):
                    raise DatasetError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
                yield lineno, obj
        except (EOFError, gzip.BadGzipFile, OSError, zlib.error) as exc:
            raise DatasetError(f"{path}: unreadable ({exc})") from exc


def load_corpus(path: str | Path) -> dict[str, dict[str, str]]:
    """Read a BEIR ``corpus.jsonl[.gz]``; raises :class:`DatasetError` naming file and line on
    a corrupt line, a missing ``_id``/``text``, non-string fields or a duplicate id."""
    path = Path(path)
    corpus: dict[str, dict[str, str]] = {}
    first: dict[str, int] = {}
    for lineno, obj in iter_jsonl(path):
        did, text, title = obj.get("_id"), obj.get("text"), obj.get("title", "")
        if did is None or text is None:
            raise DatasetError(f"{path}:{lineno}: document needs '_id' and 'text'")
        if not isinstance(text, str) or not isinstance(title or "", str):
            raise DatasetError(f"{path}:{lineno}: 'text' and 'title' must be strings")

        did = _unique_id(did, path, lineno, first, "document")
        corpus[did] = {"title": title or "", "text": text}
    return corpus


def _unique_id(raw: Any, path: Path, lineno: int, first: dict[str, int], what: str) -> str:
    """``raw`` checked by the document id rule (:func:`validate_id`) and not seen before in
    this file (``first``: id → line, updated). Raises DatasetError naming file and line."""
    try:
        did = validate_id(raw, where=f"{path}:{lineno}")
    except ValueError as exc:
        raise DatasetError(str(exc)) from None
    if did in first:
        raise DatasetError(f"{path}:{lineno}: duplicate {what} id {did!r} (first on line {first[did]})")
    first[did] = lineno
    return did


def load_queries(path: str | Path) -> dict[str, str]:
    """Read a BEIR ``queries.jsonl[.gz]`` keeping only ``_id`` and ``text`` (``metadata`` is
    deliberately ignored). Ids follow the corpus rule (:func:`validate_id`: non-empty ``str``
    or ``int``). Raises :class:`DatasetError` naming file and line on a corrupt line, a bad
    id, a missing or blank ``text`` or a duplicate id."""
    path = Path(path)
    queries: dict[str, str] = {}
    first: dict[str, int] = {}
    for lineno, obj in iter_jsonl(path):
        qid, text = obj.get("_id"), obj.get("text")
        if qid is None or not isinstance(text, str):
            raise DatasetError(f"{path}:{lineno}: query needs '_id' and a string 'text'")
        qid = _unique_id(qid, path, lineno, first, "query")
        if not text.strip():
            raise DatasetError(f"{path}:{lineno}: query {qid!r} has empty text {text!r}")
        queries[qid] = text
    return queries


def load_qrels(path: str | Path) -> dict[str, dict[str, int]]:
    """Read a BEIR qrels TSV (optional header ``query-id corpus-id score``) into
    ``{query_id: {doc_id: relevance}}``. Raises :class:`DatasetError` naming file and line on
    a malformed row, an empty id or a (query, document) pair judged twice."""
    return _read_qrels(Path(path))[0]


#: a relevance grade: an optional minus sign and ASCII digits (no ``+``, ``_``, Unicode digits, decimals)
_GRADE = re.compile(r"-?[0-9]+")
#: grades must fit a C int (pytrec_eval stores them as one)
GRADE_RANGE = (-(2**31), 2**31 - 1)


def _qrels_lines(path: Path) -> list[str]:
    """The lines of a qrels file (``.gz`` allowed), universal newlines as text mode reads them.
    Raises :class:`DatasetError` naming the file (and ``file:line`` for invalid UTF-8) on an
    unreadable, truncated or not-gzip file."""
    try:
        with _open_binary(path) as fh:
            data = fh.read()
    except (EOFError, gzip.BadGzipFile, OSError, zlib.error) as exc:
        raise DatasetError(f"{path}: unreadable ({exc})") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start].decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
        lineno = before.count("\n") + 1
        column = len(before) - (before.rfind("\n") + 1) + 1
        raise DatasetError(f"{path}:{lineno}: not valid UTF-8 (byte {data[exc.start]:#04x} at column {column})") from None
    return io.StringIO(text, newline=None).readlines()


def _grade(raw: str, path: Path, lineno: int) -> int:
    """A relevance grade read strictly (:data:`_GRADE`, within :data:`GRADE_RANGE`); surrounding
    whitespace is allowed."""
    g = raw.strip()
    if not _GRADE.fullmatch(g):
        raise DatasetError(f"{path}:{lineno}: relevance {raw!r} is not an integer (an optional '-' and ASCII digits)")
    score = int(g)
    if not GRADE_RANGE[0] <= score <= GRADE_RANGE[1]:
        raise DatasetError(f"{path}:{lineno}: relevance {raw!r} is out of range [{GRADE_RANGE[0]}, {GRADE_RANGE[1]}]")
    return score


def _read_qrels(path: Path) -> tuple[dict[str, dict[str, int]], dict[tuple[str, str], int]]:
    """:func:`load_qrels` plus the line of each ``(query id, doc id)`` pair."""
    qrels: dict[str, dict[str, int]] = {}
    lines: dict[tuple[str, str], int] = {}
    for lineno, line in enumerate(_qrels_lines(path), 1):
        parts = line.rstrip("\n").split("\t")
        if not line.strip() or (lineno == 1 and parts[0] == "query-id"):
            continue
        if len(parts) == 4:  # TREC style: qid 0 docid score
            parts = [parts[0], parts[2], parts[3]]
        if len(parts) != 3:
            raise DatasetError(f"{path}:{lineno}: expected 3 tab-separated columns, got {len(parts)}")
        score = _grade(parts[2], path, lineno)
        qid, did = parts[0].strip(), parts[1].strip()
        if not qid or not did:
            row = line.rstrip("\n")
            raise DatasetError(f"{path}:{lineno}: empty {'document' if qid else 'query'} id in row {row!r}")
        if (qid, did) in lines:
            raise DatasetError(f"{path}:{lineno}: query {qid!r} judges document {did!r} twice (first on line {lines[qid, did]})")
        lines[qid, did] = lineno
        qrels.setdefault(qid, {})[did] = score
    return qrels, lines


def load_beir(data_dir: str | Path, splits: tuple[str, ...] = ("test",), name: str | None = None) -> BeirDataset:
    """Load a BEIR directory: corpus, queries, and the qrels of ``splits``.

    Raises:
        DatasetError: the directory or one of its files is missing or malformed, or a qrels
            file names a query or document the dataset does not have.
    """
    d = Path(data_dir).expanduser()
    if not d.is_dir():
        raise DatasetError(f"data directory {str(d)!r} does not exist")
    corpus = load_corpus(_find(d, "corpus.jsonl"))
    queries = load_queries(_find(d, "queries.jsonl"))
    qrels = {split: _split_qrels(d, split, queries, corpus)[0] for split in splits}
    return BeirDataset(corpus=corpus, queries=queries, qrels=qrels, name=name or d.name)


def _split_qrels(d: Path, split: str, queries: dict[str, str], corpus: dict | None = None) -> tuple[dict[str, dict[str, int]], Path]:
    """The qrels of ``split`` in BEIR directory ``d`` and their file; every query id must be in
    ``queries`` and, when ``corpus`` is given, every document id in ``corpus``."""
    qpath = _find(d, f"qrels/{split}.tsv")
    q, lines = _read_qrels(qpath)
    for what, known, pos, src in (("query", queries, 0, "queries.jsonl"), ("document", corpus, 1, "corpus.jsonl")):
        bad = [(ln, pair[pos]) for pair, ln in lines.items() if known is not None and pair[pos] not in known]
        if bad:
            raise DatasetError(f"{qpath}:{bad[0][0]}: {what} id {bad[0][1]!r} is not in {src} ({len(bad)} such qrels rows)")
    return q, qpath


def load_judgments(data_dir: str | Path, split: str) -> tuple[dict[str, str], dict[str, dict[str, int]], Path]:
    """The labelled queries of one BEIR split without reading the corpus: ``(queries, qrels,
    qrels file)`` with ``queries`` = ``{query id: text}`` (from ``queries.jsonl``, never its
    ``metadata``) for the query ids of the split's qrels ``{query id: {doc id: relevance}}``.

    Raises:
        DatasetError: the directory, ``queries.jsonl`` or ``qrels/<split>.tsv`` is missing or
            malformed, or the qrels name a query that ``queries.jsonl`` does not have.
    """
    d = Path(data_dir).expanduser()
    if not d.is_dir():
        raise DatasetError(f"data directory {str(d)!r} does not exist")
    queries = load_queries(_find(d, "queries.jsonl"))
    qrels, qpath = _split_qrels(d, split, queries)
    return {qid: queries[qid] for qid in qrels}, qrels, qpath


# -- task registry ---------------------------------------------------------------------


@dataclass(frozen=True)
class TaskSpec:
    """A benchmark task: a BEIR dataset found via ``env_var``, else the copy shipped in
    ``antigravity/resources/<resource>`` checked against ``sha256`` (decompressed bytes)."""

    name: str
    env_var: str
    resource: str
    sha256: dict[str, str]
    license: str
    citation: str
    adapt_split: str = "train"
    eval_split: str = "test"


TASKS: dict[str, TaskSpec] = {
    "SciFact": TaskSpec(
        name="SciFact",
        env_var="ANTIGRAVITY_SCIFACT_DIR",
        resource="scifact",
        sha256={
            "corpus.jsonl": "dec31c8182f3d744c7d2c09423756fd1d17cbef75808db13ba01cc0aab4d1ac6",
            "queries.jsonl": "8ff84a7c903f722981cd8d595c022660140c51867b27608a6d4910db86080313",
            "qrels/test.tsv": "68c0ac63f1c24b9e8ce497649694f09b2d0850bab7ec2b103cc66996f5f8b3a3",
            "qrels/train.tsv": "ac0902d9b1cb717df182aaff1306175877fdb8f55bb5c3e8597ad694fc8e539f",
        },
        license="CC BY-NC 2.0",
        citation="Wadden et al. (2020), Fact or Fiction: Verifying Scientific Claims; BEIR (Thakur et al., 2021)",
    )
}


def get_task(name: str) -> TaskSpec:
    """Look up a task by name (case-insensitive). Raises :class:`TaskNotFoundError`."""
    for key, spec in TASKS.items():
        if isinstance(name, str) and key.lower() == name.lower():
            return spec
    raise TaskNotFoundError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)} (or pass --data-dir DIR)")


def verify_shipped(spec: TaskSpec) -> Path:
    """Check the sha256 of every shipped file of ``spec`` (decompressed); return its folder.

    Raises:
        DatasetError: a file is missing or its digest differs (a damaged install).
    """
    root = RESOURCES / spec.resource
    for rel, digest in spec.sha256.items():
        path = root / (rel + ".gz")
        try:
            with gzip.open(path, "rb") as fh:
                h = hashlib.sha256()
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        except (OSError, EOFError) as exc:
            raise DatasetError(f"shipped {spec.name} file {path} is unreadable: {exc}") from exc
        if h.hexdigest() != digest:
            raise DatasetError(f"shipped {spec.name} file {path} has sha256 {h.hexdigest()}, expected {digest}")
    return root


def resolve_task_dir(task: str, data_dir: str | Path | None = None, *, verify: bool = True) -> Path:
    """Folder holding ``task``'s BEIR files: ``data_dir`` if given, else ``$<env_var>``, else
    the verified shipped copy (``verify=False``: its folder, unchecked — to name a file in an
    error). Raises :class:`TaskNotFoundError` / :class:`DatasetError`."""
    spec = get_task(task)
    if data_dir:
        return Path(data_dir).expanduser()
    env = os.environ.get(spec.env_var)
    if env:
        return Path(env).expanduser()
    return verify_shipped(spec) if verify else RESOURCES / spec.resource


def qrels_file(data_dir: str | Path, split: str) -> Path:
    """The qrels file of ``split`` in a BEIR folder: ``qrels/<split>.tsv``, else ``.tsv.gz``
    (the plain path when neither exists)."""
    d = Path(data_dir).expanduser()
    plain = d / "qrels" / f"{split}.tsv"
    gz = d / "qrels" / f"{split}.tsv.gz"
    return gz if not plain.is_file() and gz.is_file() else plain


def load_task(task: str, data_dir: str | Path | None = None, splits: tuple[str, ...] | None = None) -> BeirDataset:
    """Load a registered task (adaptation and evaluation splits by default)."""
    spec = get_task(task)
    splits = splits or (spec.adapt_split, spec.eval_split)
    return load_beir(resolve_task_dir(task, data_dir), splits=splits, name=spec.name)


def read_jsonl_documents(path: Any) -> list[tuple[str, str, dict[str, Any], bool]]:
    """Read and validate a whole JSONL corpus file (``.gz`` allowed) before anything is
    written: one validated ``(id, text, payload, is_empty)`` per document, file order.

    Raises:
        DatasetError: unreadable file, invalid JSON, a line that is not an object (file:line).
        DocumentError: a record the API would refuse, or a duplicate id (file:line and id).
    """
    path = Path(path)
    out: list[tuple[str, str, dict[str, Any], bool]] = []
    seen: dict[str, int] = {}
    for lineno, obj in iter_jsonl(path):
        where = f"{path}:{lineno}"
        item = validate_document(obj, index=len(out), where=where)
        if item[0] in seen:
            raise DocumentError(f"{where}: duplicate document id {item[0]!r} (first on line {seen[item[0]]})")
        seen[item[0]] = lineno
        out.append(item)
    return out
