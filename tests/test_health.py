"""`/healthz` answers whatever the database does; `/readyz` says whether the database answers and
is migrated to this code's head, and why not."""
import pytest
import requests
from conftest import make_app
from sqlalchemy.engine import make_url

from helpers import both_backends, wait_until
from servers import Gunicorn
from tcpproxy import TcpProxy


@both_backends
def test_ready_when_migrated_to_head(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json["status"] == "ready" and response.json["migration"] == head_of(client.application)
    assert response.headers["Cache-Control"] == "no-store"
    assert "Set-Cookie" not in response.headers  # a probe every few seconds must not mint sessions


def head_of(app):
    from webapp.telemetry import schema_version

    return schema_version.head(app)


def test_not_ready_before_the_migrations(tmp_path):
    app = make_app(f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert "migration none" in response.json["reason"] and "db upgrade" in response.json["reason"]


def test_not_ready_behind_the_head(client, app):
    from webapp.extensions import db

    db.session.execute(db.text("UPDATE alembic_version SET version_num = '0007'"))
    db.session.commit()
    response = client.get("/readyz")
    assert response.status_code == 503 and "at migration 0007" in response.json["reason"]


def test_healthz_touches_no_database():
    app = make_app("mysql+pymysql://root@127.0.0.1:9/none", DB_CONNECT_TIMEOUT=1)  # nothing listens on 9
    client = app.test_client()
    assert client.get("/healthz").status_code == 200 and client.get("/healthz").json == {"status": "ok"}
    unready = client.get("/readyz")
    assert unready.status_code == 503 and "did not answer" in unready.json["reason"]


def test_probes_are_not_rate_limited(database_url):
    app = make_app(database_url, RATE_LIMIT_PER_MINUTE=1)
    client = app.test_client()
    assert all(client.get(path).status_code == 200 for _ in range(5) for path in ("/healthz", "/readyz"))


@pytest.mark.mysql
@pytest.mark.parametrize("backend", ["mysql"], indirect=True)
def test_a_database_outage_under_gunicorn(database_url):
    """Through a real gunicorn: /readyz is 503 while the database is away and 200 once it is back;
    /healthz is 200 throughout."""
    url = make_url(database_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 3306)
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    try:
        with Gunicorn(proxied, DB_CONNECT_TIMEOUT="1", DB_READ_TIMEOUT="2") as web:
            probe = lambda path: requests.get(web.url + path, timeout=10)  # noqa: E731
            assert probe("/readyz").status_code == 200
            proxy.cut()
            wait_until(lambda: probe("/readyz").status_code == 503, 20, "/readyz to say 503")
            during = probe("/readyz")
            assert during.json()["status"] == "unavailable" and "did not answer" in during.json()["reason"]
            assert probe("/healthz").status_code == 200
            proxy.restore()
            wait_until(lambda: probe("/readyz").status_code == 200, 20, "/readyz to say 200 again")
            assert probe("/healthz").status_code == 200
    finally:
        proxy.close()


def test_ready_when_a_newer_release_has_migrated_ahead(client, app):
    """A rolling deploy: the release step migrated past this code; its processes stay ready."""
    from webapp.extensions import db

    db.session.execute(db.text("UPDATE alembic_version SET version_num = 'a1b2c3d4e5f6'"))
    db.session.commit()
    response = client.get("/readyz")
    assert response.status_code == 200 and response.json["migration"] == "a1b2c3d4e5f6"


def test_not_ready_when_the_pool_times_out(client, monkeypatch):
    """A pool that has no connection to give (QueuePool's TimeoutError carries no driver error)."""
    import sqlalchemy.exc

    from webapp.telemetry import schema_version

    def no_connection():
        raise sqlalchemy.exc.TimeoutError("QueuePool limit of size 5 overflow 10 reached")

    monkeypatch.setattr(schema_version, "current", no_connection)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json == {"status": "unavailable", "reason": "The database did not answer: TimeoutError."}
