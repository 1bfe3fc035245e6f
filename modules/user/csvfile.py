"""Reading user CSV files as people really save them.

:func:`inspect_file` looks at an uploaded file once, before any work: it refuses what is not
a CSV text file, decides the encoding (a BOM, else strict UTF-8, else Windows-1252, or what the
admin chose), sniffs the delimiter from the header line, and counts the non-blank data records
(with the csv module, so quoted fields with embedded newlines count once). :func:`read_chunks`
then streams the records in fixed-size chunks whose positions are stable across runs (the
import resumes by position). The csv module rather than pandas: it is C code too, streams, and
a row with too many cells becomes that row's error instead of stopping the whole file.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from app.errors import Invalid

ENCODINGS = ("utf-8", "utf-8-sig", "utf-16", "cp1252", "latin-1")
DELIMITERS = (",", ";", "\t")
COLUMNS = ("email", "name", "role", "phone", "password_hash")
_BLOCK = 1 << 20
_SAMPLE = 64 * 1024
_BINARY_MAGIC = (b"PK\x03\x04", b"%PDF", b"\x89PNG", b"\x1f\x8b", b"GIF8", b"\xff\xd8\xff")
_HEADER_SEPARATORS = re.compile(r"[\s_]+")


class InvalidImportFile(Invalid):
    code = "invalid-import-file"
    title = "The file cannot be imported"


@dataclass(frozen=True)
class FileShape:
    encoding: str
    delimiter: str
    header: list[str]
    #: Known column name -> header as written in the file.
    columns: dict[str, str]
    unknown_columns: list[str]
    data_rows: int


def column_key(header: str) -> str:
    """``" Password Hash "`` -> ``"password_hash"``: case, spaces and underscores do not matter."""
    return _HEADER_SEPARATORS.sub("_", header.strip().lower()).strip("_")


def inspect_file(path: Path, encoding: str | None = None, max_rows: int | None = None) -> FileShape:
    with path.open("rb") as handle:
        head = handle.read(_SAMPLE)
    if not head.strip():
        raise InvalidImportFile("the file is empty")
    encoding = encoding or detect_encoding(path, head)
    if encoding not in ("utf-16",) and (head.startswith(_BINARY_MAGIC) or _contains_nul(path)):
        raise InvalidImportFile("this is not a CSV text file (it looks binary)")
    try:
        sample = head.decode(encoding, errors="ignore" if len(head) == _SAMPLE else "strict")
    except UnicodeDecodeError:
        raise InvalidImportFile(f"the file is not valid {encoding}") from None
    first_line = sample.lstrip("\ufeff").splitlines()[0] if sample.strip() else ""
    delimiter = max(DELIMITERS, key=first_line.count) if first_line else ","
    data_rows = 0
    header: list[str] | None = None
    try:
        with path.open(encoding=encoding, newline="") as text:
            for record in csv.reader(text, delimiter=delimiter):
                if header is None:
                    header = [cell.strip().lstrip("\ufeff") for cell in record]
                    continue
                if encoding == "utf-16" and "\x00" in "".join(record):
                    raise InvalidImportFile("this is not a CSV text file (it contains NUL)")
                if any(cell.strip() for cell in record):
                    data_rows += 1
                    if max_rows is not None and data_rows > max_rows:
                        raise InvalidImportFile(
                            f"the file has more than {max_rows} data rows, the import limit"
                        )
    except (UnicodeDecodeError, csv.Error) as error:
        raise InvalidImportFile(f"the file cannot be read as {encoding} CSV: {error}") from None
    if not header or not any(header):
        raise InvalidImportFile("the file has no header row")
    if data_rows == 0:
        raise InvalidImportFile("the file has a header but no data rows")
    columns, unknown = map_columns(header)
    return FileShape(encoding, delimiter, header, columns, unknown, data_rows)


def _contains_nul(path: Path) -> bool:
    """A NUL byte anywhere (PostgreSQL text cannot hold one; only binary files have them)."""
    with path.open("rb") as handle:
        while block := handle.read(_BLOCK):
            if b"\x00" in block:
                return True
    return False


def read_header(path: Path, encoding: str, delimiter: str) -> FileShape:
    """The shape of a file already inspected at upload (no row count)."""
    with path.open(encoding=encoding, newline="") as text:
        header = [
            cell.strip().lstrip("\ufeff")
            for cell in next(csv.reader(text, delimiter=delimiter), [])
        ]
    columns, unknown = map_columns(header)
    return FileShape(encoding, delimiter, header, columns, unknown, 0)


def map_columns(header: list[str]) -> tuple[dict[str, str], list[str]]:
    """Known column -> header as written, and the headers Lapak does not know."""
    columns: dict[str, str] = {}
    unknown: list[str] = []
    for name in header:
        key = column_key(name)
        if key in COLUMNS and key not in columns:
            columns[key] = name
        else:
            unknown.append(name)
    return columns, unknown


def detect_encoding(path: Path, head: bytes) -> str:
    """A BOM decides; otherwise UTF-8 if the whole file decodes strictly, else Windows-1252."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with path.open("rb") as handle:
            while block := handle.read(_BLOCK):
                decoder.decode(block)
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        try:
            with path.open("rb") as handle:
                while block := handle.read(_BLOCK):
                    block.decode("cp1252")
        except UnicodeDecodeError:
            return "latin-1"  # every byte is a Latin-1 character
        return "cp1252"
    return "utf-8"


def read_chunks(
    path: Path, shape: FileShape, chunk_rows: int
) -> Iterator[tuple[int, list[list[str]]]]:
    """``(index of the first record, records)`` per chunk of ``chunk_rows`` data records.

    The csv module (C code) streams the file, so memory stays flat whatever its size. Blank
    records are kept (as empty lists) so that positions and spreadsheet row numbers (index + 2)
    are the same on every run: the import resumes by position.
    """
    with path.open(encoding=shape.encoding, newline="") as text:
        records = csv.reader(text, delimiter=shape.delimiter)
        next(records, None)  # the header
        start = 0
        while chunk := list(itertools.islice(records, chunk_rows)):
            yield start, chunk
            start += len(chunk)


def template() -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(COLUMNS)
    return buffer.getvalue()
