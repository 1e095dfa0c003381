"""Settings read from the environment: DATABASE_URL and OLLAMA_HOST the way users write them, and
a bad value that names itself."""
import os
import subprocess
import sys

import pytest

from webapp.config import SettingError, database_url, from_env, ollama_url

from servers import ROOT


def test_database_url_defaults_to_sqlite_in_instance():
    assert database_url(None, "/srv/app/instance") == "sqlite:////srv/app/instance/livegen.sqlite3"


@pytest.mark.parametrize(("raw", "expected"), [
    ("mysql://u:p@db/livegen", "mysql+pymysql://u:p@db/livegen"),
    ("mysql+pymysql://u:p@db/livegen", "mysql+pymysql://u:p@db/livegen"),
    ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
])
def test_database_url_mysql_means_pymysql(raw, expected):
    assert database_url(raw, "/i") == expected


@pytest.mark.parametrize(("env", "expected"), [
    ({}, "http://127.0.0.1:11434"),
    ({"OLLAMA_URL": "http://gpu:11434/"}, "http://gpu:11434"),
    ({"OLLAMA_URL": "http://a:1", "OLLAMA_HOST": "b"}, "http://a:1"),
    ({"OLLAMA_HOST": "0.0.0.0"}, "http://127.0.0.1:11434"),
    ({"OLLAMA_HOST": "0.0.0.0:8080"}, "http://127.0.0.1:8080"),
    ({"OLLAMA_HOST": "gpu-box"}, "http://gpu-box:11434"),
    ({"OLLAMA_HOST": "gpu-box:9000"}, "http://gpu-box:9000"),
    ({"OLLAMA_HOST": "http://gpu-box"}, "http://gpu-box:80"),
    ({"OLLAMA_HOST": "https://ollama.com"}, "https://ollama.com:443"),
    ({"OLLAMA_HOST": "[::]:11434"}, "http://[::1]:11434"),
    ({"OLLAMA_HOST": "http://proxy:8080/ollama/"}, "http://proxy:8080/ollama"),
])
def test_ollama_host_is_parsed_like_ollama_does(env, expected):
    assert ollama_url(env) == expected


@pytest.mark.parametrize(("name", "value", "message"), [
    ("WORKER_CONCURRENCY", "abc", "WORKER_CONCURRENCY must be a whole number, got 'abc'"),
    ("PROGRESS_INTERVAL", "fast", "PROGRESS_INTERVAL must be a number, got 'fast'"),
    ("DB_READ_TIMEOUT", "0", "DB_READ_TIMEOUT must be a number above 0, got '0'"),
    ("LOG_LEVEL", "loud", "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'LOUD'"),
])
def test_a_bad_setting_names_itself(name, value, message):
    with pytest.raises(SettingError) as raised:
        from_env({name: value}, "/i")
    assert str(raised.value) == message


def run_process(args, **env):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "DATABASE_URL": "sqlite://", **env})


def test_the_worker_stops_at_start_on_a_bad_setting_with_its_name_not_a_traceback():
    done = run_process(["worker.py"], WORKER_CONCURRENCY="abc")
    assert done.returncode != 0
    assert "WORKER_CONCURRENCY must be a whole number, got 'abc'" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_web_app_stops_at_start_on_a_bad_setting_with_its_name_not_a_traceback():
    done = run_process(["-c", "import wsgi"], DB_POOL_SIZE="ten")
    assert done.returncode != 0
    assert "DB_POOL_SIZE must be a whole number, got 'ten'" in done.stderr
    assert "Traceback" not in done.stderr


def test_gunicorn_stops_at_start_on_a_bad_setting_of_its_own():
    done = run_process(["-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"], WORKER_CONNECTIONS="many")
    assert done.returncode != 0
    assert "WORKER_CONNECTIONS must be a whole number, got 'many'" in done.stderr
    assert "Traceback" not in done.stderr
