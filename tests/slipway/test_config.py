"""Configuration: working defaults, a YAML file, environment variables, clear errors."""
from pathlib import Path

import pytest

from slipway.config import ConfigError, load


def test_defaults_work_with_no_file_and_no_environment():
    config = load(None, environ={})
    assert config.server.port == 8080
    assert config.data_dir == "./slipway-data"
    assert config.database_url == f"sqlite:///{Path('./slipway-data').resolve() / 'slipway.db'}"
    assert config.storage.driver == "filesystem"
    assert config.storage_path == Path("./slipway-data").resolve() / "storage"
    assert config.network.allow_private is False


def test_yaml_file_then_environment_override(tmp_path):
    path = tmp_path / "slipway.yaml"
    path.write_text("data_dir: /srv/slipway\nserver:\n  port: 9000\n  trusted_proxies: [10.0.0.0/8]\n"
                    "storage:\n  driver: s3\n  s3_bucket: images\n")
    config = load(str(path), environ={"SLIPWAY_SERVER__PORT": "9100", "SLIPWAY_STORAGE__S3_REDIRECT": "false"})
    assert config.data_dir == "/srv/slipway"
    assert config.server.port == 9100
    assert config.server.trusted_proxies == ["10.0.0.0/8"]
    assert config.storage.s3_bucket == "images" and config.storage.s3_redirect is False
    assert config.database_url == "sqlite:////srv/slipway/slipway.db"


def test_config_file_named_by_environment_and_short_forms(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("log_level: debug\n")
    config = load(None, environ={"SLIPWAY_CONFIG": str(path), "SLIPWAY_DATA_DIR": "/d",
                                 "SLIPWAY_ADMIN_PASSWORD": "pw-from-env", "SLIPWAY_DATABASE_URL": "postgresql://x/y",
                                 "SLIPWAY_NETWORK__ALLOWLIST": "127.0.0.1/32, example.org"})
    assert config.log_level == "debug" and config.data_dir == "/d"
    assert config.auth.admin_password == "pw-from-env"
    assert config.database_url == "postgresql://x/y"
    assert config.network.allowlist == ["127.0.0.1/32", "example.org"]
    assert load(None, environ={"SLIPWAY_CONFIG": str(path), "SLIPWAY_LOG_LEVEL": "warning"}).log_level == "warning"


@pytest.mark.parametrize("text,message", [
    ("server:\n  prot: 1\n", "unknown setting 'prot'"),
    ("nosuch:\n  a: 1\n", "unknown setting 'nosuch'"),
    ("server:\n  port: eighty\n", "setting server.port must be a whole number"),
    ("server:\n  workers: maybe\n", "setting server.workers must be true or false"),
    ("- a list\n", "must hold a mapping"),
    ("a: [unclosed\n", "not valid YAML"),
])
def test_bad_config_files_say_what_is_wrong(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load(str(path), environ={})
    assert message in str(err.value)


def test_missing_file_and_bad_environment_variable(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load(str(tmp_path / "missing.yaml"), environ={})
    with pytest.raises(ConfigError, match="unknown setting section 'serverr'"):
        load(None, environ={"SLIPWAY_SERVERR__PORT": "1"})


def test_secret_key_is_generated_once_and_private(tmp_path):
    config = load(None, environ={"SLIPWAY_DATA_DIR": str(tmp_path / "data")})
    first = config.secret_key()
    again = load(None, environ={"SLIPWAY_DATA_DIR": str(tmp_path / "data")}).secret_key()
    assert first == again and len(first) >= 40
    assert oct((tmp_path / "data" / "secret.key").stat().st_mode & 0o777) == "0o600"
