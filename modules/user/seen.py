"""Which emails a file has named so far, in about 12 bytes per row instead of a whole string.

A 1M-row import used to keep a ``dict`` of every email key (about 140 MB of Python strings
and ints in the work horse). :class:`SeenEmails` keeps an 8-byte keyed BLAKE2b digest of each
key and the row that first named it in two flat arrays, an open-addressing hash table with
linear probing: 1M rows take 24 MB whatever the length of the emails.

False duplicates: two different emails with the same 64-bit digest would make the second a
"duplicates row N" error. For n keys the chance of any such pair is about n²/2^65: 1 in 9
million for a file at the 2,000,000-row limit. It is accepted because it is rare, visible and
harmless: the row is not written (nothing is overwritten), it appears in the errors CSV, and
uploading that CSV again imports it, since the digest key is random per run (which also means
nobody can craft emails that collide on purpose).
"""

from __future__ import annotations

import hashlib
import secrets
from array import array

_EMPTY = 0
_MIN_SLOTS = 1 << 10


class SeenEmails:
    """``first_row(key, row)``: the row that first named ``key`` (``row`` itself if new)."""

    def __init__(self, expected: int = 0) -> None:
        self._key = secrets.token_bytes(16)
        self._count = 0
        slots = _MIN_SLOTS
        while slots < 2 * expected:  # at most half full: short probe sequences
            slots <<= 1
        self._allocate(slots)

    def __len__(self) -> int:
        return self._count

    def first_row(self, email_key: str, row: int) -> int:
        digest = self._digest(email_key)
        mask = self._mask
        digests = self._digests
        slot = digest & mask
        while True:
            found = digests[slot]
            if found == _EMPTY:
                break
            if found == digest:
                return self._rows[slot]
            slot = (slot + 1) & mask
        digests[slot] = digest
        self._rows[slot] = row
        self._count += 1
        if 2 * self._count > len(digests):
            self._grow()
        return row

    def _digest(self, email_key: str) -> int:
        digest = hashlib.blake2b(email_key.encode(), digest_size=8, key=self._key).digest()
        return int.from_bytes(digest, "little") or 1  # 0 marks an empty slot

    def _allocate(self, slots: int) -> None:
        self._mask = slots - 1
        self._digests = array("Q", bytes(8 * slots))
        self._rows = array("I", bytes(4 * slots))  # row numbers stay under 2**32

    def _grow(self) -> None:
        old = zip(self._digests, self._rows, strict=True)
        self._allocate(2 * len(self._digests))
        mask = self._mask
        for digest, row in old:
            if digest == _EMPTY:
                continue
            slot = digest & mask
            while self._digests[slot] != _EMPTY:
                slot = (slot + 1) & mask
            self._digests[slot] = digest
            self._rows[slot] = row
