"""Configuration: working defaults, a YAML file, environment variables, clear errors."""
import os
import signal
import subprocess
from pathlib import Path

import pytest

from slipway.config import ConfigError, load
from tests.conftest import ROOT, SLIPWAY, free_port


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


def test_environment_values_keep_their_text_and_are_parsed_by_the_settings_type():
    # A password like 0755 used to become 493, "yes" became True and 12:30 (sexagesimal YAML) 750.
    config = load(None, environ={"SLIPWAY_ADMIN_PASSWORD": "0755", "SLIPWAY_AUTH__SECRET_KEY": "yes",
                                 "SLIPWAY_NOTIFICATIONS__SMTP_PASSWORD": "12:30", "SLIPWAY_AUTH__ADMIN_USER": "null",
                                 "SLIPWAY_SERVER__PORT": "09100", "SLIPWAY_SERVER__WORKERS": "no",
                                 "SLIPWAY_AUTH__USER_SIGNUP": "on", "SLIPWAY_NOTIFICATIONS__RETRY_DELAYS": "1, 2",
                                 "SLIPWAY_SERVER__TRUSTED_PROXIES": "['10.0.0.0/8', '::1/128']"})
    assert config.auth.admin_password == "0755"
    assert config.auth.secret_key == "yes"
    assert config.notifications.smtp_password == "12:30"
    assert config.auth.admin_user == "null"
    assert config.server.port == 9100 and config.server.workers is False and config.auth.user_signup is True
    assert config.notifications.retry_delays == [1, 2]
    assert config.server.trusted_proxies == ["10.0.0.0/8", "::1/128"]
    # An empty number or switch is "not set"; an empty string is an empty string.
    config = load(None, environ={"SLIPWAY_SERVER__PORT": "", "SLIPWAY_SERVER__WORKERS": "",
                                 "SLIPWAY_NOTIFICATIONS__MAIL_FROM": ""})
    assert config.server.port == 8080 and config.server.workers is True and config.notifications.mail_from == ""


def test_yaml_file_scalars_are_read_by_the_settings_type(tmp_path):
    path = tmp_path / "slipway.yaml"
    path.write_text("auth:\n  admin_password: 0755\n  secret_key: yes\n  user_signup: yes\n"
                    "notifications:\n  smtp_password: 12:30\n  smtp_port: 0587\n  retry_delays: [5, 10]\n"
                    "  mail_from:\nstorage:\n")
    config = load(str(path), environ={})
    assert config.auth.admin_password == "0755" and config.auth.secret_key == "yes"
    assert config.auth.user_signup is True
    assert config.notifications.smtp_password == "12:30" and config.notifications.smtp_port == 587
    assert config.notifications.retry_delays == [5, 10] and config.notifications.mail_from == ""
    assert config.storage.driver == "filesystem"


@pytest.mark.parametrize("name,value,message", [
    ("SLIPWAY_NOTIFICATIONS__SMTP_TLS", "tls",
     "setting notifications.smtp_tls must be one of none, starttls, ssl, got 'tls' "
     "(from SLIPWAY_NOTIFICATIONS__SMTP_TLS)"),
    ("SLIPWAY_STORAGE__DRIVER", "s4", "setting storage.driver must be one of filesystem, s3, got 's4'"),
    ("SLIPWAY_BUILDS__BACKEND", "podman", "setting builds.backend must be one of buildah, docker, got 'podman'"),
    ("SLIPWAY_BUILDS__ISOLATION", "rootless", "setting builds.isolation must be one of chroot, oci, got 'rootless'"),
    ("SLIPWAY_BUILDS__STORAGE_DRIVER", "overlay2",
     "setting builds.storage_driver must be one of auto, overlay, fuse-overlayfs, vfs, got 'overlay2'"),
    ("SLIPWAY_BUILDS__NETWORK", "host", "setting builds.network must be one of public, none, got 'host'"),
    ("SLIPWAY_LOG_LEVEL", "verbose", "setting log_level must be one of debug, info, warning, error, critical"),
    ("SLIPWAY_SERVER__PORT", "12:30", "setting server.port must be a whole number, got '12:30'"),
    ("SLIPWAY_NOTIFICATIONS__RETRY_DELAYS", "30,soon", "setting notifications.retry_delays must be a list of whole"),
])
def test_choice_and_number_settings_refuse_unknown_values_naming_the_allowed_ones(name, value, message):
    with pytest.raises(ConfigError) as err:
        load(None, environ={name: value})
    assert message in str(err.value)


def test_a_choice_typo_in_the_file_is_refused_too(tmp_path):
    path = tmp_path / "slipway.yaml"
    path.write_text("notifications:\n  smtp_tls: start_tls\n")
    with pytest.raises(ConfigError, match=r"setting notifications.smtp_tls must be one of none, starttls, ssl, "
                                          r"got 'start_tls'$"):
        load(str(path), environ={})
    # Case is not a typo.
    path.write_text("notifications:\n  smtp_tls: STARTTLS\nlog_level: DEBUG\n")
    config = load(str(path), environ={"SLIPWAY_STORAGE__DRIVER": "S3"})
    assert (config.notifications.smtp_tls, config.log_level, config.storage.driver) == ("starttls", "debug", "s3")


def test_slipway_serve_refuses_to_start_with_an_unknown_choice(tmp_path):
    env = {**os.environ, "SLIPWAY_DATA_DIR": str(tmp_path / "data"), "SLIPWAY_SERVER__HOST": "127.0.0.1",
           "SLIPWAY_SERVER__PORT": str(free_port()), "SLIPWAY_NOTIFICATIONS__SMTP_TLS": "tls", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(SLIPWAY + ["serve"], env=env, cwd=str(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 2, (out, err)
    assert "setting notifications.smtp_tls must be one of none, starttls, ssl, got 'tls'" in err
    assert not (tmp_path / "data").exists()
