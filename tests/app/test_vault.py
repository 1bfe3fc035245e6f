"""The vault: sealed secrets at rest, keys from the settings, ``lapak vault rotate``.

The Sealed column is the sample ``notes`` module's ``notes_secret.secret``. Every log record of
every test here (SQL statements included) is checked for the plaintexts and the tokens.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from cryptography.fernet import Fernet
from flask import Flask
from sqlalchemy import select
from sqlalchemy.exc import StatementError

from app import create_app
from app.cli import main as lapak_main
from app.config import Settings, SettingsError
from app.db import Session, get_database, transaction
from app.log import JsonLineFormatter
from app.vault import Vault, VaultError, fingerprint, get_vault, masked
from tests.app.fake_modules import EMBEDDED_SECRET, embedded_config
from tests.conftest import MODULE_PACKAGES, TEST_VAULT_KEY
from tests.sample_modules.notes.models import NoteSecret
from tests.servers import Services, postgres_bindir

ROOT = Path(__file__).parents[2]
LAPAK = Path(sys.executable).with_name("lapak")

OLD_KEY = Fernet.generate_key().decode()
NEW_KEY = Fernet.generate_key().decode()
STRAY_KEY = Fernet.generate_key().decode()  # in no app's settings

#: Every secret these tests store: none may reach a log record, a dump or a message.
PLAINTEXTS = [f"plain-secret-{n:02d}-acct-7731-{n * 37:04d}" for n in range(12)]
STRAY_PLAINTEXT = "plain-secret-stray-acct-0000-9999"


def raw(services: Services, sql: str, *params: object) -> list[tuple]:
    with psycopg.connect(services.database_url.replace("+psycopg", ""), autocommit=True) as c:
        cursor = c.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def store(app: Flask, *secrets: str | None) -> list[int]:
    """Rows of notes_secret holding ``secrets``, sealed by ``app``'s vault; their ids."""
    with app.app_context(), transaction() as session:
        rows = [NoteSecret(label=f"row {n}", secret=s) for n, s in enumerate(secrets)]
        session.add_all(rows)
        session.flush()
        return [row.id for row in rows]


def read_all(app: Flask) -> dict[int, str | None]:
    with app.app_context():
        rows = Session().execute(select(NoteSecret).order_by(NoteSecret.id)).scalars()
        return {row.id: row.secret for row in rows}


def tokens(services: Services) -> dict[int, str | None]:
    return dict(raw(services, "SELECT id, secret FROM notes_secret ORDER BY id"))


@pytest.fixture(autouse=True)
def log_records(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every record at every level, SQLAlchemy's statements included; none may hold a secret."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.INFO, logger="sqlalchemy.engine")
    yield caplog
    formatter = logging.Formatter()
    # In teardown caplog.records holds the teardown's records only: ask for the test's.
    for record in caplog.get_records("setup") + caplog.get_records("call"):
        text = record.getMessage() + repr(record.__dict__)
        if record.exc_info:
            text += formatter.formatException(record.exc_info)
        for secret in [*PLAINTEXTS, STRAY_PLAINTEXT]:
            assert secret not in text, f"a plaintext reached a log record: {record.name}"
        assert "gAAAAA" not in text, f"a token reached a log record: {record.name}"


# --- the Vault ------------------------------------------------------------------------------


def test_seal_and_unseal_round_trip() -> None:
    vault = Vault([NEW_KEY], EMBEDDED_SECRET)
    secret = PLAINTEXTS[0] + " ünïcødé ✓"

    first, second = vault.seal(secret), vault.seal(secret)

    assert vault.unseal(first) == vault.unseal(second) == secret
    assert first != second  # a fresh IV each time: equal secrets are not visible as equal
    assert PLAINTEXTS[0] not in first
    assert Vault([NEW_KEY], "another-secret").unseal(first) == secret  # keys alone open it


@pytest.mark.parametrize("change", ["flip a byte", "truncate", "append", "not base64"])
def test_a_changed_token_is_refused_without_quoting_it(change: str) -> None:
    vault = Vault([NEW_KEY], EMBEDDED_SECRET)
    token = vault.seal(PLAINTEXTS[1])
    raw_bytes = bytearray(base64.urlsafe_b64decode(token))
    if change == "flip a byte":
        raw_bytes[40] ^= 0x01  # inside the ciphertext: the HMAC no longer matches
        changed = base64.urlsafe_b64encode(bytes(raw_bytes)).decode()
    elif change == "truncate":
        changed = token[:-10]
    elif change == "append":
        changed = base64.urlsafe_b64encode(bytes(raw_bytes) + b"\x00").decode()
    else:
        changed = token[:50] + "!" + token[51:]

    with pytest.raises(VaultError) as refused:
        vault.unseal(changed)

    assert changed not in str(refused.value)
    assert token[:20] not in str(refused.value)
    assert refused.value.__cause__ is None
    assert refused.value.__suppress_context__
    with pytest.raises(VaultError):
        vault.reseal(changed)
    assert vault.is_current(changed) is False


def test_a_token_under_an_unknown_key_is_a_vault_error_without_the_token() -> None:
    token = Vault([STRAY_KEY], EMBEDDED_SECRET).seal(STRAY_PLAINTEXT)

    with pytest.raises(VaultError) as refused:
        Vault([NEW_KEY, OLD_KEY], EMBEDDED_SECRET).unseal(token)

    message = str(refused.value)
    assert token not in message
    assert STRAY_PLAINTEXT not in message
    assert "could not be opened with any configured vault key" in message
    assert STRAY_KEY not in repr(refused.value)


def test_the_newest_key_seals_and_any_key_opens() -> None:
    old = Vault([OLD_KEY], EMBEDDED_SECRET)
    both = Vault([NEW_KEY, OLD_KEY], EMBEDDED_SECRET)
    new_only = Vault([NEW_KEY], EMBEDDED_SECRET)
    sealed_before = old.seal(PLAINTEXTS[2])

    assert both.unseal(sealed_before) == PLAINTEXTS[2]
    assert both.is_current(sealed_before) is False
    assert new_only.unseal(both.seal(PLAINTEXTS[3])) == PLAINTEXTS[3]
    resealed = both.reseal(sealed_before)
    assert both.is_current(resealed) is True
    assert new_only.unseal(resealed) == PLAINTEXTS[2]
    with pytest.raises(VaultError):
        new_only.unseal(sealed_before)


def test_only_text_is_sealed() -> None:
    vault = Vault([NEW_KEY], EMBEDDED_SECRET)

    with pytest.raises(VaultError, match="only text can be sealed, not bytes"):
        vault.seal(PLAINTEXTS[4].encode())  # type: ignore[arg-type]
    with pytest.raises(VaultError, match="a sealed value is text"):
        vault.unseal(None)  # type: ignore[arg-type]


def test_no_key_or_secret_shows_in_a_repr(tmp_path: Path) -> None:
    settings = Settings.from_env(
        environ={}, overrides=embedded_config(tmp_path, vault_keys=(NEW_KEY, OLD_KEY))
    )
    vault = Vault(settings.vault_keys, settings.secret_key)

    for shown in (repr(vault), repr(settings), str(settings)):
        assert NEW_KEY not in shown
        assert OLD_KEY not in shown
        assert EMBEDDED_SECRET not in shown
    assert repr(vault) == "<Vault with 2 keys>"


def test_fingerprint_is_a_peppered_hmac_per_purpose(tmp_path: Path) -> None:
    card = "4111111111111111"
    app = create_app(embedded_config(tmp_path))
    other = create_app(embedded_config(tmp_path / "other", secret_key="another-" + "z" * 40))

    with app.app_context():
        first, again = fingerprint(card, "payment.card"), fingerprint(card, "payment.card")
        other_purpose = fingerprint(card, "payment.account")
        other_card = fingerprint("4111111111111112", "payment.card")
    with other.app_context():
        other_secret = fingerprint(card, "payment.card")

    assert first == again
    assert len(first) == 64
    assert int(first, 16) >= 0
    assert len({first, other_purpose, other_card, other_secret}) == 4
    assert first != hashlib.sha256(card.encode()).hexdigest()  # never a plain hash
    assert card not in first


def test_get_vault_outside_an_app_is_a_vault_error() -> None:
    with pytest.raises(VaultError, match="application context"):
        get_vault()


def test_masked_shows_only_the_last_four() -> None:
    assert masked("1234") == "•••• 1234"
    assert masked("4111111111111111") == "•••• 1111"


def test_a_token_in_a_log_line_is_redacted() -> None:
    token = Vault([NEW_KEY], EMBEDDED_SECRET).seal("x")
    record = logging.LogRecord("lapak.test", logging.WARNING, __file__, 1, "row %s", (token,), None)

    line = JsonLineFormatter().format(record)

    assert token not in line
    assert '"message": "row [sealed]"' in line


# --- keys from the settings -----------------------------------------------------------------


def test_production_refuses_to_start_without_vault_keys(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as refused:
        create_app(embedded_config(tmp_path, env="production", vault_keys=()))

    assert str(refused.value).startswith("LAPAK_VAULT_KEYS is required in production")
    assert "lapak vault new-key" in str(refused.value)
    assert not (tmp_path / "instance" / "vault-key").exists()


def test_production_ignores_a_vault_key_left_in_the_instance_folder(tmp_path: Path) -> None:
    create_app(embedded_config(tmp_path, env="development", vault_keys=()))
    assert (tmp_path / "instance" / "vault-key").exists()

    with pytest.raises(SettingsError, match="LAPAK_VAULT_KEYS is required in production"):
        create_app(embedded_config(tmp_path, env="production", vault_keys=()))


@pytest.mark.parametrize(
    ("keys", "position"),
    [
        (f"{NEW_KEY},{OLD_KEY[:-2]}", "key 2 of 2"),  # cut short
        (f"{NEW_KEY[:10]}+{NEW_KEY[11:]},{OLD_KEY}", "key 1 of 2"),  # not url-safe
        (f"{NEW_KEY},,{OLD_KEY}", "key 2 of 3"),  # empty
        (base64.urlsafe_b64encode(b"k" * 31).decode(), "key 1 of 1"),  # 31 bytes
        ("correct horse battery staple", "key 1 of 1"),
    ],
)
def test_production_refuses_a_malformed_key_naming_its_position_not_the_key(
    tmp_path: Path, keys: str, position: str
) -> None:
    with pytest.raises(SettingsError) as refused:
        create_app(embedded_config(tmp_path, env="production", vault_keys=keys))

    message = str(refused.value)
    assert message.startswith(f"LAPAK_VAULT_KEYS: {position} ")
    for part in keys.split(","):
        if part:
            assert part not in message
            assert part[:12] not in message


def test_the_same_key_twice_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"^LAPAK_VAULT_KEYS lists the same key twice$"):
        create_app(embedded_config(tmp_path, vault_keys=(NEW_KEY, NEW_KEY)))


def test_new_key_prints_a_key_the_settings_accept(tmp_path: Path) -> None:
    printed = CliRunner().invoke(lapak_main, ["vault", "new-key"])

    assert printed.exit_code == 0, printed.output
    key = printed.stdout.strip()
    app = create_app(embedded_config(tmp_path, env="production", vault_keys=key))
    assert app.extensions["lapak.settings"].vault_keys == (key,)


def test_generated_key_persists_across_two_starts_of_the_embedded_default(
    make_embedded_app: Callable[..., Flask],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    log_records: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr("app._warned", set())  # warnings are once per process
    first = make_embedded_app(env="development", vault_keys=())
    create_secret_table(first)
    (row,) = store(first, PLAINTEXTS[5])

    second = make_embedded_app(env="development", vault_keys=())

    kept = tmp_path / "instance" / "vault-key"
    generated = first.extensions["lapak.settings"]
    assert generated.vault_key_is_generated is True
    assert generated.vault_keys == second.extensions["lapak.settings"].vault_keys
    assert generated.vault_keys == (kept.read_text(),)
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert read_all(second) == {row: PLAINTEXTS[5]}
    warnings = [r.getMessage() for r in log_records.records if "LAPAK_VAULT_KEYS" in r.getMessage()]
    assert len(warnings) == 1
    assert "generated vault key" in warnings[0]


def test_an_instance_vault_key_file_that_is_no_key_is_refused_not_replaced(tmp_path: Path) -> None:
    (tmp_path / "instance").mkdir()
    (tmp_path / "instance" / "vault-key").write_text("not a key\n")

    with pytest.raises(SettingsError, match="does not hold a Fernet key"):
        create_app(embedded_config(tmp_path, env="development", vault_keys=()))
    assert (tmp_path / "instance" / "vault-key").read_text() == "not a key\n"


# --- the Sealed column on PostgreSQL ---------------------------------------------------------


def test_a_sealed_column_stores_only_ciphertext(
    make_app: Callable[..., Flask], services: Services
) -> None:
    app = make_app()
    ids = store(app, PLAINTEXTS[6], PLAINTEXTS[7], None)

    stored = tokens(services)
    assert stored[ids[2]] is None  # None stays None
    for row_id in ids[:2]:
        assert stored[row_id].startswith("gAAAAA")
        assert not any(p in stored[row_id] for p in PLAINTEXTS)
    assert read_all(app) == {ids[0]: PLAINTEXTS[6], ids[1]: PLAINTEXTS[7], ids[2]: None}
    assert Vault([TEST_VAULT_KEY], "x").unseal(stored[ids[0]]) == PLAINTEXTS[6]


def test_a_dump_of_the_database_holds_no_plaintext(
    make_app: Callable[..., Flask], services: Services
) -> None:
    pg_dump = postgres_bindir() / "pg_dump"
    if not pg_dump.exists():
        found = shutil.which("pg_dump")
        if found is None:
            pytest.skip("pg_dump not installed")
        pg_dump = Path(found)
    app = make_app()
    store(app, *PLAINTEXTS[:8])

    dump = subprocess.run(
        [str(pg_dump), "--dbname", services.database_url.replace("+psycopg", "")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout

    assert "COPY public.notes_secret" in dump
    assert dump.count("gAAAAA") >= 8
    for secret in PLAINTEXTS[:8]:
        assert secret not in dump


def test_a_changed_token_in_the_database_is_a_vault_error_without_the_token(
    make_app: Callable[..., Flask], services: Services
) -> None:
    app = make_app()
    (row,) = store(app, PLAINTEXTS[8])
    token = tokens(services)[row]
    changed = token[:60] + ("A" if token[60] != "A" else "B") + token[61:]
    raw(services, "UPDATE notes_secret SET secret = %s WHERE id = %s", changed, row)

    with pytest.raises(VaultError) as refused:
        read_all(app)

    assert changed not in str(refused.value)
    assert changed[:30] not in str(refused.value)
    assert PLAINTEXTS[8] not in str(refused.value)


def test_a_value_the_column_cannot_seal_is_refused_without_quoting_it(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app()

    with pytest.raises(StatementError) as refused:  # SQLAlchemy wraps the VaultError
        store(app, PLAINTEXTS[9].encode())  # type: ignore[arg-type]

    assert isinstance(refused.value.orig, VaultError)
    assert str(refused.value.orig) == "only text can be sealed, not bytes"
    assert PLAINTEXTS[9] not in str(refused.value)
    assert PLAINTEXTS[9] not in repr(refused.value)


# --- lapak vault rotate ---------------------------------------------------------------------


def rotate(app: Flask, *args: str) -> tuple[int, str, str]:
    result = app.test_cli_runner().invoke(lapak_main, ["vault", "rotate", *args])
    return result.exit_code, result.stdout, result.stderr


def test_rotate_leaves_every_row_readable_with_the_new_key_alone(
    make_app: Callable[..., Flask], services: Services
) -> None:
    before = make_app(vault_keys=(OLD_KEY,))
    ids = store(before, *PLAINTEXTS[:5], None)
    rotating = make_app(vault_keys=(NEW_KEY, OLD_KEY))
    ids += store(rotating, PLAINTEXTS[5])  # written after the new key came: already current

    code, out, err = rotate(rotating, "--batch-size", "2")

    assert (code, err) == (0, ""), out + err
    assert "notes_secret.secret: 5 re-sealed, 1 already under the newest key, 0 unreadable" in out
    new_only = Vault([NEW_KEY], "x")
    assert all(new_only.is_current(t) for t in tokens(services).values() if t is not None)
    after = make_app(vault_keys=(NEW_KEY,))
    assert read_all(after) == dict(zip(ids, [*PLAINTEXTS[:5], None, PLAINTEXTS[5]], strict=True))
    again = rotate(rotating, "--batch-size", "2")
    assert again[0] == 0
    assert "notes_secret.secret: 0 re-sealed, 6 already under the newest key" in again[1]


def test_rotate_reports_an_unreadable_row_and_exits_1_after_the_rest(
    make_app: Callable[..., Flask], services: Services
) -> None:
    before = make_app(vault_keys=(OLD_KEY,))
    good = store(before, *PLAINTEXTS[:4])
    stray = make_app(vault_keys=(STRAY_KEY,))
    (lost,) = store(stray, STRAY_PLAINTEXT)
    good += store(before, PLAINTEXTS[4])  # after the unreadable one, in key order
    lost_token = tokens(services)[lost]
    rotating = make_app(vault_keys=(NEW_KEY, OLD_KEY))

    code, out, err = rotate(rotating, "--batch-size", "2")

    assert code == 1
    assert "notes_secret.secret: 5 re-sealed, 0 already under the newest key, 1 unreadable" in out
    assert f"lapak: notes_secret.secret row id={lost}: no configured vault key opens it" in err
    assert "1 sealed value no configured vault key opens" in err
    for shown in (out, err):
        assert lost_token not in shown
        assert lost_token[:20] not in shown
        assert STRAY_PLAINTEXT not in shown
        assert STRAY_KEY not in shown
    assert tokens(services)[lost] == lost_token  # left as it was
    new_only = Vault([NEW_KEY], "x")
    assert all(new_only.is_current(tokens(services)[i]) for i in good)


REFUSE_ONE_UPDATE = """
CREATE OR REPLACE FUNCTION notes_secret_refuse_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id = {row_id} THEN RAISE EXCEPTION 'the test refuses this row'; END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER notes_secret_refuse_update BEFORE UPDATE ON notes_secret
    FOR EACH ROW EXECUTE FUNCTION notes_secret_refuse_update();
"""


@pytest.fixture
def refused_update(services: Services) -> Iterator[Callable[[int], None]]:
    """Make the database refuse any UPDATE of one notes_secret row (the run dies there)."""

    def refuse(row_id: int) -> None:
        raw(services, REFUSE_ONE_UPDATE.format(row_id=int(row_id)))

    try:
        yield refuse
    finally:
        lift(services)


def lift(services: Services) -> None:
    raw(services, "DROP TRIGGER IF EXISTS notes_secret_refuse_update ON notes_secret")
    raw(services, "DROP FUNCTION IF EXISTS notes_secret_refuse_update()")


def test_an_interrupted_rotation_resumes_where_it_stopped(
    make_app: Callable[..., Flask],
    services: Services,
    refused_update: Callable[[int], None],
) -> None:
    before = make_app(vault_keys=(OLD_KEY,))
    ids = store(before, *PLAINTEXTS[:7])
    rotating = make_app(vault_keys=(NEW_KEY, OLD_KEY))
    refused_update(ids[4])  # the third batch of two dies

    code, out, err = rotate(rotating, "--batch-size", "2")

    assert code == 1
    assert "vault rotate stopped" in err
    assert "run it again to resume" in err
    assert "gAAAAA" not in out + err
    new_only = Vault([NEW_KEY], "x")
    stored = tokens(services)
    assert [new_only.is_current(stored[i]) for i in ids] == [True] * 4 + [False] * 3

    lift(services)
    resumed = rotate(rotating, "--batch-size", "2")
    third = rotate(rotating, "--batch-size", "2")

    assert resumed[0] == 0, resumed
    assert "notes_secret.secret: 3 re-sealed, 4 already under the newest key" in resumed[1]
    assert "notes_secret.secret: 0 re-sealed, 7 already under the newest key" in third[1]
    assert read_all(make_app(vault_keys=(NEW_KEY,))) == dict(zip(ids, PLAINTEXTS[:7], strict=True))


# --- the embedded default (SQLite), through the installed lapak command -------------------


def create_secret_table(app: Flask) -> None:
    """notes_secret on an app's database (the sample module has no migrations)."""
    with app.app_context():
        NoteSecret.__table__.create(get_database().primary, checkfirst=True)


@pytest.mark.slow
def test_rotate_on_the_embedded_default_through_the_lapak_command(tmp_path: Path) -> None:
    config = embedded_config(tmp_path, module_packages=MODULE_PACKAGES, vault_keys=(OLD_KEY,))
    before = create_app(config)
    create_secret_table(before)
    ids = store(before, *PLAINTEXTS[:3], None)
    before.extensions["lapak.db"].dispose()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LAPAK_")}
    environ.update(
        LAPAK_ENV="test",
        LAPAK_INSTANCE_PATH=str(tmp_path / "instance"),
        LAPAK_DATABASE_URL=config["database_url"],
        LAPAK_SECRET_KEY=EMBEDDED_SECRET,
        LAPAK_VAULT_KEYS=f"{NEW_KEY},{OLD_KEY}",
        LAPAK_MODULE_PACKAGES=",".join(MODULE_PACKAGES),
        LAPAK_LOG_LEVEL="WARNING",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), environ.get("PYTHONPATH")])),
    )

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(LAPAK), "vault", "rotate", "--batch-size", "2"],
            cwd=tmp_path,
            env=environ,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    first, second = run(), run()

    assert first.returncode == 0, first.stderr
    assert "notes_secret.secret: 3 re-sealed, 0 already under the newest key" in first.stdout
    # The sample module's other tables were never created here: skipped, not an error.
    assert "notes_note" not in first.stdout
    assert "notes_secret.secret: 0 re-sealed, 3 already under the newest key" in second.stdout
    for shown in (first.stdout + first.stderr, second.stdout + second.stderr):
        assert not any(p in shown for p in PLAINTEXTS)
        assert "gAAAAA" not in shown
    after = create_app({**config, "vault_keys": (NEW_KEY,)})
    try:
        assert read_all(after) == dict(zip(ids, [*PLAINTEXTS[:3], None], strict=True))
    finally:
        after.extensions["lapak.db"].dispose()
