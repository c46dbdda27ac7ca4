"""Byte-level checks that run before CSV parsing: encoding and binary content (the header, units and
delimiter are ``core.layout``'s business).

Pure: they look at bytes or text handed to them and never open a file.
"""

from __future__ import annotations

import codecs

from sensor_etl.core.rules import Rule
from sensor_etl.errors import Problem

_MAGIC = {
    b"\x1f\x8b": "gzip-compressed",
    b"PK\x03\x04": "a ZIP archive",
    b"BZh": "bzip2-compressed",
    b"\xfd7zXZ": "xz-compressed",
    b"%PDF": "a PDF document",
    b"\x89PNG": "a PNG image",
    b"PAR1": "a Parquet file",
}
_BOMS = {b"\xff\xfe": "utf-16", b"\xfe\xff": "utf-16"}


def line_breaks(text: str) -> int:
    """Line ends in ``text`` as the CSV reader counts them: LF, CRLF or a lone CR each end a line."""
    return text.count("\n") + text.count("\r") - text.count("\r\n")


class TextChecker:
    """Fed a file's bytes block by block, finds the first reason it is not text in the expected encoding."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self._decoder = codecs.getincrementaldecoder(encoding)("strict")
        self._line = 1
        self._offset = 0
        self._started = False
        self._after_cr = False  # the previous block ended with CR: a LF starting this one ends no new line
        self.problem: Problem | None = None

    def feed(self, block: bytes, final: bool = False) -> None:
        if self.problem is not None:
            return
        if not self._started and block:
            self._started = True
            self.problem = _signature_problem(block, self.encoding)
            if self.problem:
                return
        try:
            text = self._decoder.decode(block, final)
        except UnicodeDecodeError as exc:
            line = self._line + block.count(b"\n", 0, max(exc.start, 0))
            bad = exc.object[exc.start : exc.start + 4]
            self.problem = Problem(
                Rule.ENCODING,
                f"byte {self._offset + exc.start} is not valid {self.encoding} ({bad!r}); save the file as UTF-8 or set ENCODING",
                line=line,
            )
            return
        nul = text.find("\x00")
        if nul >= 0:
            self.problem = Problem(Rule.ENCODING, _nul_message(block), line=self._line + line_breaks(text[:nul]))
            return
        self._line += line_breaks(text) - (self._after_cr and text.startswith("\n"))
        self._after_cr = text.endswith("\r") or (self._after_cr and not text)
        self._offset += len(block)


def _nul_message(block: bytes) -> str:
    """NUL bytes at every other position are UTF-16 text without a byte-order mark; anything else is binary."""
    head = block[:4096]
    for name, start in (("utf-16-le", 1), ("utf-16-be", 0)):
        if len(head) >= 4 and head[start::2].count(0) * 10 >= len(head[start::2]) * 8 and head[1 - start :: 2].count(0) == 0:
            return f"the file looks like {name} text without a byte-order mark (NUL bytes); save it as UTF-8 or set ENCODING={name}"
    return "the file contains a NUL byte: binary data, not CSV text"


def _signature_problem(head: bytes, encoding: str) -> Problem | None:
    for magic, kind in _MAGIC.items():
        if head.startswith(magic):
            return Problem(Rule.ENCODING, f"the file is {kind}, not CSV text; decompress or convert it first", line=1)
    for bom, name in _BOMS.items():
        if head.startswith(bom) and not encoding.startswith("utf-16"):
            return Problem(Rule.ENCODING, f"the file is {name} (byte-order mark {bom!r}); save it as UTF-8 or set ENCODING={name}", line=1)
    return None
