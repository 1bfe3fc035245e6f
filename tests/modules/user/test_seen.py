"""The import's table of emails already named in the file (digests, not strings)."""

from __future__ import annotations

from modules.user.seen import SeenEmails


def test_the_first_row_of_each_email_is_remembered_through_growth() -> None:
    seen = SeenEmails(expected=10)  # far too small: it grows many times
    keys = [f"user.{i}@example.test" for i in range(20_000)]
    assert [seen.first_row(key, row) for row, key in enumerate(keys, start=2)] == list(
        range(2, 20_002)
    )
    assert [seen.first_row(key, 99_999) for key in keys[::997]] == list(range(2, 20_002, 997))
    assert len(seen) == 20_000


def test_the_table_is_sized_for_the_expected_rows_and_stays_at_most_half_full() -> None:
    seen = SeenEmails(expected=1_000_000)
    assert len(seen._digests) == 1 << 21
    assert seen._digests.itemsize * len(seen._digests) == 16 * 1024 * 1024  # 16 MiB, not strings


def test_each_table_draws_its_own_digest_key() -> None:
    """A false duplicate (a 64-bit collision) does not repeat when the errors CSV is uploaded
    again, and cannot be crafted by someone who chooses emails."""
    first, second = SeenEmails(), SeenEmails()
    assert first._digest("ada@example.test") != second._digest("ada@example.test")
