"""Settings read from the environment: DATABASE_URL and OLLAMA_HOST the way users write them."""
import pytest

from webapp.config import database_url, ollama_url


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
