"""The limit on new jobs holds across web processes: the count is in the database."""
from datetime import datetime, timedelta

import pytest
import requests
import sqlalchemy as sa

from webapp import ratelimits
from webapp.extensions import db
from webapp.models import RateWindow

from helpers import both_backends
from servers import Gunicorn

API = "/api/v1/ai/generation"


@both_backends
def test_a_minute_allows_the_limit_then_says_how_long_to_wait(app):
    at = datetime(2026, 11, 27, 12, 0, 45)
    assert [ratelimits.hit("1.2.3.4", 3, now=at) for _ in range(4)] == [0, 0, 0, 15]
    assert ratelimits.hit("5.6.7.8", 3, now=at) == 0, "each client has its own count"
    assert ratelimits.hit("1.2.3.4", 3, now=at + timedelta(seconds=20)) == 0, "a new minute starts afresh"
    assert ratelimits.hit("1.2.3.4", 0, now=at) == 0, "0 is no limit"
    assert ratelimits.prune(now=at + timedelta(minutes=5)) == 3
    assert db.session.scalars(sa.select(RateWindow)).all() == []


@pytest.mark.mysql
@pytest.mark.parametrize("backend", ["mysql"], indirect=True)
def test_two_web_processes_share_one_limit(app, database_url):
    with Gunicorn(database_url, RATE_LIMIT_PER_MINUTE="10") as web_a, \
            Gunicorn(database_url, RATE_LIMIT_PER_MINUTE="10") as web_b:
        answers = [requests.post(f"{web.url}{API}", json={"prompt": f"job {n}"}, timeout=10)
                   for n, web in enumerate([web_a, web_b] * 15)]
    accepted = [a for a in answers if a.status_code == 202]
    refused = [a for a in answers if a.status_code == 429]
    assert len(accepted) + len(refused) == 30 and all(int(a.headers["Retry-After"]) > 0 for a in refused)
    # At most 10 in any one minute, in total (the 30 may straddle a minute's end).
    windows = db.session.execute(sa.select(RateWindow.hits)).scalars().all()
    assert len(accepted) == sum(min(hits, 10) for hits in windows) and len(accepted) <= 10 * len(windows)
    assert len(windows) <= 2 and len(accepted) <= 20
