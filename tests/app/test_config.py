"""Settings: LAPAK_* variables and .env, embedded defaults, and refusals that name the variable."""

from __future__ import annotations

import base64
import os
import re
import stat
from dataclasses import fields
from importlib import import_module
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

import modules
from app import create_app
from app.config import (
    DERIVED_SETTINGS,
    MIN_SECRET_LENGTH,
    Settings,
    SettingsError,
    misspelled_settings,
)
from tests.app.fake_modules import embedded_config

SECRET = "k" * MIN_SECRET_LENGTH
VAULT_KEY = base64.urlsafe_b64encode(b"v" * 32).decode()


@pytest.fixture(autouse=True)
def _no_dotenv_from_the_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Settings read ./.env when no path is given: run in an empty directory, not the checkout.
    monkeypatch.chdir(tmp_path)


def settings(tmp_path: Path, **variables: str) -> Settings:
    """Settings from exactly these ``LAPAK_<NAME>`` variables (instance folder in tmp_path)."""
    environ = {"LAPAK_INSTANCE_PATH": str(tmp_path / "instance")}
    environ.update({f"LAPAK_{name.upper()}": value for name, value in variables.items()})
    return Settings.from_env(environ=environ, dotenv_path=tmp_path / "absent.env")


# --- embedded defaults ------------------------------------------------------------------------


def test_defaults_need_no_services(tmp_path: Path) -> None:
    defaults = settings(tmp_path)

    assert defaults.env == "development"
    assert defaults.production is False
    assert defaults.instance_path == (tmp_path / "instance").resolve()
    assert defaults.database_url == f"sqlite:///{(tmp_path / 'instance').resolve()}/lapak.db"
    assert defaults.replica_urls == ()
    assert defaults.redis_url is None
    assert defaults.modules is None
    assert defaults.module_packages == ("modules",)
    assert defaults.log_level == "INFO"
    assert defaults.web_workers >= 1


def test_default_instance_folder_is_instance_under_the_working_directory(
    tmp_path: Path,
) -> None:
    defaults = Settings.from_env(environ={}, dotenv_path=tmp_path / "absent.env")

    assert defaults.instance_path == (tmp_path / "instance").resolve()
    assert defaults.database_url == f"sqlite:///{(tmp_path / 'instance').resolve()}/lapak.db"


def test_missing_secret_is_generated_once_and_kept_in_the_instance_folder(
    tmp_path: Path,
) -> None:
    first = settings(tmp_path)
    second = settings(tmp_path)

    kept = tmp_path / "instance" / "development-secret"
    assert first.secret_is_generated is True
    assert len(first.secret_key) >= MIN_SECRET_LENGTH
    assert kept.read_text() == first.secret_key
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert second.secret_key == first.secret_key


def test_empty_development_secret_file_is_not_used_as_the_secret(tmp_path: Path) -> None:
    (tmp_path / "instance").mkdir()
    (tmp_path / "instance" / "development-secret").write_text("")

    assert len(settings(tmp_path).secret_key) >= MIN_SECRET_LENGTH


def test_generated_secret_differs_between_instance_folders(tmp_path: Path) -> None:
    one = Settings.from_env(environ={"LAPAK_INSTANCE_PATH": str(tmp_path / "one")})
    other = Settings.from_env(environ={"LAPAK_INSTANCE_PATH": str(tmp_path / "other")})

    assert one.secret_key != other.secret_key


def test_given_secret_is_used_and_nothing_is_written(tmp_path: Path) -> None:
    given = settings(tmp_path, secret_key=SECRET)

    assert (given.secret_key, given.secret_is_generated) == (SECRET, False)
    assert not (tmp_path / "instance" / "development-secret").exists()


def test_secret_is_generated_flag_cannot_be_set_from_the_environment(tmp_path: Path) -> None:
    given = settings(tmp_path, secret_key=SECRET, secret_is_generated="true")

    assert given.secret_is_generated is False


# --- production secret ------------------------------------------------------------------------


def test_production_refuses_a_missing_secret_and_writes_none(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"^LAPAK_SECRET_KEY is required in production"):
        settings(tmp_path, env="production")

    assert not (tmp_path / "instance" / "development-secret").exists()


def test_production_refuses_a_short_secret(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as refused:
        settings(tmp_path, env="production", secret_key="k" * (MIN_SECRET_LENGTH - 1))

    assert str(refused.value) == f"LAPAK_SECRET_KEY must be at least {MIN_SECRET_LENGTH} characters"


def test_production_accepts_a_long_enough_secret(tmp_path: Path) -> None:
    production = settings(tmp_path, env="production", secret_key=SECRET, vault_keys=VAULT_KEY)

    assert production.production is True
    assert production.secret_key == SECRET


def test_production_ignores_a_development_secret_left_in_the_instance_folder(
    tmp_path: Path,
) -> None:
    settings(tmp_path)  # a development run leaves its generated secret behind

    with pytest.raises(SettingsError, match="LAPAK_SECRET_KEY"):
        settings(tmp_path, env="production")


# --- refusals that name the variable ----------------------------------------------------------


@pytest.mark.parametrize("env", ["staging", "prod", ""])
def test_unknown_lapak_env_is_refused(tmp_path: Path, env: str) -> None:
    with pytest.raises(SettingsError) as refused:
        settings(tmp_path, env=env)

    assert str(refused.value) == (
        f"LAPAK_ENV must be one of development, test, production, not {env!r}"
    )


def test_lapak_env_is_case_insensitive(tmp_path: Path) -> None:
    assert settings(tmp_path, env=" Test ").env == "test"


@pytest.mark.parametrize("url", ["not a url", "postgresql//missing-colon", "://nothing"])
def test_unparseable_database_url_is_refused(tmp_path: Path, url: str) -> None:
    with pytest.raises(SettingsError, match=r"^LAPAK_DATABASE_URL is not a database URL"):
        settings(tmp_path, database_url=url)


@pytest.mark.parametrize("url", ["mysql://lapak@db/lapak", "oracle://lapak@db/lapak"])
def test_database_other_than_postgresql_or_sqlite_is_refused(tmp_path: Path, url: str) -> None:
    backend = url.split(":")[0]

    with pytest.raises(SettingsError) as refused:
        settings(tmp_path, database_url=url)

    assert str(refused.value) == (
        f"LAPAK_DATABASE_URL: Lapak runs on PostgreSQL or SQLite, not {backend!r}"
    )


def test_replicas_need_a_postgresql_primary(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as refused:
        settings(tmp_path, replica_urls="postgresql://lapak@replica/lapak")

    assert str(refused.value) == "LAPAK_REPLICA_URLS needs a PostgreSQL LAPAK_DATABASE_URL"


def test_malformed_replica_url_is_refused_naming_the_replica_variable(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"^LAPAK_REPLICA_URLS is not a database URL"):
        settings(
            tmp_path,
            database_url="postgresql://lapak@primary/lapak",
            replica_urls="postgresql://lapak@replica/lapak, nonsense",
        )


@pytest.mark.parametrize(
    ("url", "scheme"),
    [("http://localhost:6379/0", "http"), ("localhost:6379", "localhost"), ("6379", "")],
)
def test_redis_url_with_another_scheme_is_refused(tmp_path: Path, url: str, scheme: str) -> None:
    with pytest.raises(SettingsError) as refused:
        settings(tmp_path, redis_url=url)

    assert str(refused.value) == (
        f"LAPAK_REDIS_URL must look like redis://host:6379/0 (or rediss://, unix://), "
        f"not scheme {scheme!r}"
    )


@pytest.mark.parametrize(
    "url", ["redis://localhost:6379/0", "rediss://cache:6380/1", "unix:///run/redis.sock"]
)
def test_redis_urls_are_accepted(tmp_path: Path, url: str) -> None:
    assert settings(tmp_path, redis_url=url).redis_url == url


def test_empty_redis_url_means_no_redis(tmp_path: Path) -> None:
    assert settings(tmp_path, redis_url="  ").redis_url is None


@pytest.mark.parametrize(
    "name",
    [
        "web_workers",
        "replica_connect_timeout",
        "embedded_job_threads",
        "outbox_max_attempts",
        "max_json_bytes",
    ],
)
def test_non_integer_count_is_refused_naming_the_variable(tmp_path: Path, name: str) -> None:
    with pytest.raises(SettingsError) as refused:
        settings(tmp_path, **{name: "four"})

    assert str(refused.value) == f"LAPAK_{name.upper()} must be a whole number, not 'four'"


def test_fractional_web_workers_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"^LAPAK_WEB_WORKERS must be a whole number"):
        settings(tmp_path, web_workers="2.5")


@pytest.mark.parametrize(
    "name", ["web_workers", "embedded_job_threads", "outbox_max_attempts", "max_json_bytes"]
)
def test_zero_count_is_refused_naming_the_variable(tmp_path: Path, name: str) -> None:
    with pytest.raises(SettingsError) as refused:
        settings(tmp_path, **{name: "0"})

    assert str(refused.value) == f"LAPAK_{name.upper()} must be at least 1"


def test_integer_settings_are_read_as_integers(tmp_path: Path) -> None:
    read = settings(tmp_path, web_workers=" 3 ", outbox_max_attempts="12", max_json_bytes="2048")

    assert (read.web_workers, read.outbox_max_attempts, read.max_json_bytes) == (3, 12, 2048)


def test_non_numeric_replica_retry_seconds_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as refused:
        settings(tmp_path, replica_retry_seconds="soon")

    assert str(refused.value) == "LAPAK_REPLICA_RETRY_SECONDS must be a number, not 'soon'"


def test_unknown_log_level_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"^LAPAK_LOG_LEVEL 'LOUD' is not a logging level"):
        settings(tmp_path, log_level="LOUD")


def test_log_level_is_upper_cased(tmp_path: Path) -> None:
    assert settings(tmp_path, log_level="debug").log_level == "DEBUG"


# --- database URLs ----------------------------------------------------------------------------


def test_postgres_scheme_is_normalised_to_postgresql_psycopg(tmp_path: Path) -> None:
    read = settings(tmp_path, database_url="postgres://lapak:secret@db.internal:5432/lapak")

    assert read.database_url == "postgresql+psycopg://lapak:secret@db.internal:5432/lapak"


@pytest.mark.parametrize(
    "url",
    [
        "postgres://lapak:secret@db.internal:5432/lapak",
        "postgresql://lapak:secret@db.internal:5432/lapak",
        "postgresql+psycopg2://lapak:secret@db.internal:5432/lapak",
        "postgresql+psycopg://lapak:secret@db.internal:5432/lapak",
    ],
)
def test_every_postgresql_url_runs_on_psycopg_3(tmp_path: Path, url: str) -> None:
    read = make_url(settings(tmp_path, database_url=url).database_url)

    assert (read.get_backend_name(), read.get_driver_name()) == ("postgresql", "psycopg")
    assert (read.username, read.password, read.host, read.port, read.database) == (
        "lapak",
        "secret",
        "db.internal",
        5432,
        "lapak",
    )


def test_password_with_reserved_characters_survives_normalisation(tmp_path: Path) -> None:
    read = settings(tmp_path, database_url="postgres://lapak:p%40ss%2Fw0rd@db/lapak")

    assert make_url(read.database_url).password == "p@ss/w0rd"


def test_replica_urls_are_split_trimmed_and_normalised(tmp_path: Path) -> None:
    read = settings(
        tmp_path,
        database_url="postgres://lapak@primary/lapak",
        replica_urls=" postgres://lapak@replica-a/lapak ,, postgresql://lapak@replica-b/lapak ",
    )

    replicas = [make_url(url) for url in read.replica_urls]
    assert [(u.get_driver_name(), u.host) for u in replicas] == [
        ("psycopg", "replica-a"),
        ("psycopg", "replica-b"),
    ]
    assert read.replica_urls[0] == "postgresql+psycopg://lapak@replica-a/lapak"


def test_sqlite_url_is_kept(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/elsewhere.db"

    assert settings(tmp_path, database_url=url).database_url == url


# --- modules ----------------------------------------------------------------------------------


def test_lapak_modules_is_a_comma_separated_list(tmp_path: Path) -> None:
    read = settings(tmp_path, modules=" user, auth ,,fetch", module_packages="modules, extra")

    assert read.modules == ("user", "auth", "fetch")
    assert read.module_packages == ("modules", "extra")


def test_empty_lapak_modules_means_every_module(tmp_path: Path) -> None:
    assert settings(tmp_path, modules="").modules is None


# --- .env files and overrides -----------------------------------------------------------------


def test_dotenv_file_fills_in_missing_variables(tmp_path: Path) -> None:
    dotenv = tmp_path / "custom.env"
    dotenv.write_text(
        "# local settings\n"
        "LAPAK_LOG_LEVEL=warning\n"
        'export LAPAK_REDIS_URL="redis://cache:6379/2"\n'
        f"LAPAK_INSTANCE_PATH={tmp_path / 'from-dotenv'}\n"
    )

    read = Settings.from_env(environ={}, dotenv_path=dotenv)

    assert read.log_level == "WARNING"
    assert read.redis_url == "redis://cache:6379/2"
    assert read.instance_path == (tmp_path / "from-dotenv").resolve()


def test_environment_variable_wins_over_dotenv(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("LAPAK_ENV=production\nLAPAK_LOG_LEVEL=ERROR\n")

    read = Settings.from_env(
        environ={"LAPAK_ENV": "test", "LAPAK_INSTANCE_PATH": str(tmp_path / "instance")},
        dotenv_path=dotenv,
    )

    assert read.env == "test"  # not production: no secret needed
    assert read.log_level == "ERROR"  # only in .env


def test_dotenv_in_the_working_directory_is_read_by_default(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("LAPAK_REDIS_URL=redis://from-dotenv:6379/0\n")

    read = Settings.from_env(environ={"LAPAK_INSTANCE_PATH": str(tmp_path / "instance")})

    assert read.redis_url == "redis://from-dotenv:6379/0"


def test_bad_value_in_dotenv_is_refused_naming_the_variable(tmp_path: Path) -> None:
    dotenv = tmp_path / "bad.env"
    dotenv.write_text("LAPAK_WEB_WORKERS=plenty\n")

    with pytest.raises(SettingsError, match=r"^LAPAK_WEB_WORKERS must be a whole number"):
        Settings.from_env(environ={}, dotenv_path=dotenv)


def test_from_env_reads_the_process_environment_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAPAK_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setenv("LAPAK_REDIS_URL", "redis://from-process:6379/0")

    assert Settings.from_env().redis_url == "redis://from-process:6379/0"


def test_variables_outside_lapak_settings_are_ignored(tmp_path: Path) -> None:
    read = settings(tmp_path, test_database_url="postgresql://elsewhere/db")

    assert read.database_url.startswith("sqlite:///")


def test_overrides_win_over_the_environment(tmp_path: Path) -> None:
    read = Settings.from_env(
        environ={"LAPAK_ENV": "production", "LAPAK_REPLICA_URLS": "postgresql://r/db"},
        overrides={
            "env": "test",
            "instance_path": str(tmp_path / "instance"),
            "replica_urls": "",
            "modules": ["user"],
        },
        dotenv_path=tmp_path / "absent.env",
    )

    assert read.env == "test"
    assert read.instance_path == (tmp_path / "instance").resolve()
    assert read.replica_urls == ()
    assert read.modules == ("user",)


def test_overrides_are_validated_like_variables(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"^LAPAK_ENV must be one of"):
        Settings.from_env(
            environ={},
            overrides={"env": "staging", "instance_path": tmp_path},
            dotenv_path=tmp_path / "absent.env",
        )


def test_unknown_override_key_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env(
            environ={"LAPAK_INSTANCE_PATH": str(tmp_path)},
            overrides={"databse_url": "sqlite://"},
            dotenv_path=tmp_path / "absent.env",
        )

    message = str(refused.value)
    assert message.startswith("unknown setting 'databse_url'; known: ")
    assert "database_url" in message.split("known: ")[1].split(", ")


def test_settings_are_immutable(tmp_path: Path) -> None:
    read = settings(tmp_path)

    with pytest.raises(AttributeError):
        read.env = "production"  # type: ignore[misc]


def test_dotenv_changes_neither_the_environ_argument_nor_the_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LAPAK_LOG_LEVEL", raising=False)
    dotenv = tmp_path / "fill.env"
    dotenv.write_text("LAPAK_LOG_LEVEL=ERROR\n")
    environ = {"LAPAK_INSTANCE_PATH": str(tmp_path)}

    Settings.from_env(environ=environ, dotenv_path=dotenv)

    assert environ == {"LAPAK_INSTANCE_PATH": str(tmp_path)}
    assert "LAPAK_LOG_LEVEL" not in os.environ


def test_forwarded_client_ip_is_trusted_only_behind_configured_proxies(tmp_path: Path) -> None:
    from flask import request

    def client_ip(hops: int) -> str:
        app = create_app(
            {
                "env": "test",
                "instance_path": tmp_path,
                "secret_key": "p" * 48,
                "trusted_proxy_hops": hops,
            }
        )
        app.add_url_rule("/ip", "ip", lambda: request.remote_addr or "")
        response = app.test_client().get(
            "/ip",
            headers={"X-Forwarded-For": "203.0.113.9"},
            environ_base={"REMOTE_ADDR": "10.0.0.2"},
        )
        return response.get_data(as_text=True)

    assert client_ip(0) == "10.0.0.2"  # a client cannot spoof its address by default
    assert client_ip(1) == "203.0.113.9"


# --- misspelled variables ---------------------------------------------------------------------

#: Where a module reads one of its settings: ``env.get("name")``, ``module_int(env, "name")``...
_READ_SETTING = re.compile(r"(?:env\.get|module_int|_seconds|_flag)\(\s*(?:[\w.]+,\s*)?\"(\w+)\"")


def test_a_misspelled_variable_is_named_with_the_closest_known_one(tmp_path: Path) -> None:
    given = settings(
        tmp_path, web_workres="3", sales_tax_percnt="11", shoe_size="44", test_redis_url="x"
    )

    warnings = misspelled_settings(given, ["sales_tax_percent"])

    assert warnings == [
        "LAPAK_SALES_TAX_PERCNT is not a Lapak setting and is ignored; "
        "did you mean LAPAK_SALES_TAX_PERCENT?",
        "LAPAK_SHOE_SIZE is not a Lapak setting and is ignored",
        "LAPAK_WEB_WORKRES is not a Lapak setting and is ignored; did you mean LAPAK_WEB_WORKERS?",
    ]


def test_core_module_and_command_settings_are_not_reported(tmp_path: Path) -> None:
    given = settings(tmp_path, web_workers="3", sales_tax_percent="11", port="8001", host="::")

    assert misspelled_settings(given, ["sales_tax_percent"]) == []


def test_create_app_warns_once_about_a_misspelled_variable(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = embedded_config(tmp_path, module_env={"order_max_linez": "5"})

    for _ in range(3):
        create_app(config).extensions["lapak.db"].dispose()

    warned = [r.getMessage() for r in caplog.records if "LAPAK_ORDER_MAX_LINEZ" in r.getMessage()]
    assert warned == [
        "LAPAK_ORDER_MAX_LINEZ is not a Lapak setting and is ignored; "
        "did you mean LAPAK_ORDER_MAX_LINES?"
    ]


def test_every_setting_a_module_reads_is_declared_in_its_manifest() -> None:
    for manifest_file in sorted(Path(modules.__file__).parent.glob("*/__init__.py")):
        package = manifest_file.parent
        read = {
            name
            for source in package.rglob("*.py")
            for name in _READ_SETTING.findall(source.read_text())
        }
        declared = set(import_module(f"modules.{package.name}").manifest.settings)
        assert read <= declared, f"{package.name}: declare {sorted(read - declared)}"


def test_every_setting_is_documented_in_the_readme_by_its_full_name() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    core = {f.name for f in fields(Settings)} - DERIVED_SETTINGS
    declared = core | {
        name
        for manifest_file in Path(modules.__file__).parent.glob("*/__init__.py")
        for name in import_module(f"modules.{manifest_file.parent.name}").manifest.settings
    }

    missing = [
        f"LAPAK_{name.upper()}"
        for name in sorted(declared)
        if not re.search(rf"`LAPAK_{name.upper()}`", readme)
    ]

    assert missing == []


@pytest.mark.parametrize("seconds", ["-1", "61"])
def test_a_replica_trust_window_out_of_range_is_refused(tmp_path: Path, seconds: str) -> None:
    with pytest.raises(SettingsError, match=r"^LAPAK_REPLICA_TRUST_SECONDS must be between 0"):
        settings(tmp_path, replica_trust_seconds=seconds)
