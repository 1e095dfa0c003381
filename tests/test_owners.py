"""Owners: API keys, who may list, read and cancel which jobs, queue caps, and cross-site posts."""
import hashlib
import re
import secrets
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import sqlalchemy as sa

from webapp import owners, queue, ratelimits, statuses
from webapp.extensions import db
from webapp.models import ApiKey, Batch, Job, new_job_id, utcnow
from webapp.owners import keys

from helpers import both_backends, row

API = "/api/v1/ai/generation"
FORM = "application/x-www-form-urlencoded"
CROSS_SITE = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}


def bearer(secret):
    return {"Authorization": f"Bearer {secret}"} if secret else {}


def create(client, secret=None, prompt="Hello", model=None):
    body = {"prompt": prompt, **({"model": model} if model else {})}
    return client.post(API, json=body, headers=bearer(secret))


def create_id(client, secret=None, **fields):
    response = create(client, secret, **fields)
    assert response.status_code == 202, response.get_json()
    return response.get_json()["job_id"]


def cancel(client, job_id, secret=None):
    return client.post(f"{API}/{job_id}/cancel", headers=bearer(secret))


def listed(client, secret, query=""):
    response = client.get(f"{API}?{query}", headers=bearer(secret))
    assert response.status_code == 200, response.get_json()
    return [job["job_id"] for job in response.get_json()["jobs"]]


def cli(app, *args):
    return app.test_cli_runner().invoke(args=list(args))


def cli_key(app, name):
    """A key made as an operator makes one; its secret."""
    made = cli(app, "keys", "create", name)
    assert made.exit_code == 0, made.output
    return made.stdout.strip()


def csrf_token(client):
    page = client.get("/").get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def browser(app):
    """A browser of its own (its own cookie jar), having opened `/`; with its CSRF token."""
    client = app.test_client()
    return client, csrf_token(client)


def browser_job(client, token, prompt="Hello"):
    response = client.post("/jobs", data={"prompt": prompt, "csrf_token": token})
    assert response.status_code == 303, response.get_data(as_text=True)
    return response.headers["Location"].rsplit("/", 1)[1]


def job_count():
    return db.session.scalar(sa.select(sa.func.count()).select_from(Job))


def state(job_ids):
    """What a refused request must not change: how many jobs, and each victim's row."""
    db.session.rollback()  # a fresh read on MySQL too (REPEATABLE READ would show a snapshot)
    return job_count(), [(row(j).status, row(j).cancel_requested, row(j).version) for j in job_ids]


def assert_401(response):
    assert response.status_code == 401
    assert response.get_json()["success"] is False
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


# 1. API keys from the command line


@both_backends
def test_keys_create_prints_the_secret_once_and_list_shows_only_its_hint(app, client):
    made = cli(app, "keys", "create", "alice")
    assert made.exit_code == 0, made.output
    secret = made.stdout.strip()
    assert secret.startswith(keys.PREFIX) and made.output.count(secret) == 1
    hint = db.session.scalar(sa.select(ApiKey.hint).where(ApiKey.name == "alice"))
    assert secret.startswith(hint) and len(hint) < len(secret) // 2
    shown = cli(app, "keys", "list")
    assert shown.exit_code == 0 and "alice" in shown.output and hint in shown.output
    assert secret not in shown.output
    assert row(create_id(client, secret)).owner.startswith("key:")


@both_backends
def test_the_keys_table_holds_no_secret_in_clear(app, client):
    made = [cli_key(app, name) for name in ("alice", "bob")]
    for secret in made:
        create_id(client, secret)
    cells = [str(value) for table in ("ai_api_keys", "ai_generation_jobs")
             for record in db.session.execute(sa.text(f"SELECT * FROM {table}")) for value in record]
    for secret in made:
        assert not [cell for cell in cells if secret in cell]
        assert hashlib.sha256(secret.encode()).hexdigest() in cells


@both_backends
def test_a_revoked_key_gets_401_on_create_list_and_cancel(app, client):
    secret = cli_key(app, "alice")
    job_id = create_id(client, secret)
    assert listed(client, secret) == [job_id]
    revoked = cli(app, "keys", "revoke", "alice")
    assert revoked.exit_code == 0 and "alice" in revoked.output
    assert_401(create(client, secret))
    assert_401(client.get(API, headers=bearer(secret)))
    assert_401(cancel(client, job_id, secret))
    assert row(job_id).status == statuses.QUEUED and job_count() == 1
    assert "alice" not in cli(app, "keys", "list").output


@both_backends
def test_a_duplicate_name_and_an_unknown_revoke_fail_clearly(app):
    cli_key(app, "alice")
    again = cli(app, "keys", "create", " alice ")
    assert again.exit_code != 0 and "already a key named 'alice'" in again.output
    assert keys.PREFIX not in again.stdout
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ApiKey)) == 1
    missing = cli(app, "keys", "revoke", "nobody")
    assert missing.exit_code != 0 and "no key named 'nobody'" in missing.output


# 2. When the API needs a key


@both_backends
@pytest.mark.parametrize("guard", ["key", "token"])
def test_once_a_key_exists_create_list_and_cancel_need_one(app, client, guard):
    job_id = create_id(client)  # while the API is still open
    if guard == "key":
        keys.create("alice")
    else:
        app.config["API_TOKEN"] = "s3cret-token"
    assert_401(create(client))
    assert_401(client.get(API))
    assert_401(cancel(client, job_id))
    assert job_count() == 1 and row(job_id).status == statuses.QUEUED


@both_backends
def test_without_any_key_the_api_is_open_and_its_jobs_are_anonymous(client):
    job_id = create_id(client)
    assert row(job_id).owner == owners.ANONYMOUS
    assert listed(client, None) == [job_id]
    assert cancel(client, job_id).status_code == 202


@both_backends
def test_jobs_belong_to_the_key_or_the_token_that_made_them(app, client):
    app.config["API_TOKEN"] = "s3cret-token"
    secret = keys.create("alice")
    stored = db.session.scalar(sa.select(ApiKey.secret_hash).where(ApiKey.name == "alice"))
    assert row(create_id(client, secret)).owner == owners.key(stored)
    assert row(create_id(client, "s3cret-token")).owner == owners.TOKEN


# 3. One key, another key's jobs


@both_backends
def test_a_key_lists_and_cancels_none_of_another_keys_jobs(client):
    a, b = keys.create("a"), keys.create("b")
    mine, theirs = create_id(client, a), create_id(client, b)
    assert listed(client, a) == [mine] and listed(client, b) == [theirs]
    unknown_id = new_job_id()
    refused, unknown = cancel(client, theirs, a), cancel(client, unknown_id, a)
    assert refused.status_code == unknown.status_code == 404
    expected = unknown.get_json()
    assert refused.get_json() == {**expected, "error": expected["error"].replace(unknown_id, theirs)}
    job = row(theirs)
    assert job.status == statuses.QUEUED and job.cancel_requested is False
    assert cancel(client, theirs, b).status_code == 202


@both_backends
def test_a_key_cannot_stop_another_keys_running_job(app, client):
    a, b = keys.create("a"), keys.create("b")
    theirs = create_id(client, b)
    assert queue.claim("w1", app.config["LEASE_SECONDS"]).job_id == theirs
    assert cancel(client, theirs, a).status_code == 404
    job = row(theirs)
    assert job.status == statuses.PROCESSING and job.cancel_requested is False


@both_backends
@pytest.mark.parametrize("private", [True, False])
def test_private_jobs_hide_a_keys_job_from_other_keys_and_browsers(app, client, private):
    app.config["PRIVATE_JOBS"] = private
    a, b = keys.create("a"), keys.create("b")
    url = f"{API}/{create_id(client, a)}/status"
    assert client.get(url, headers=bearer(a)).status_code == 200
    assert client.get(url, headers=bearer(b)).status_code == (404 if private else 200)
    assert app.test_client().get(url).status_code == (404 if private else 200)


# 4. The list of one's own jobs


@both_backends
def test_list_pages_walk_every_own_job_once_newest_first(client):
    a, b = keys.create("a"), keys.create("b")
    mine = []
    for n in range(5):
        mine.append(create_id(client, a, prompt=f"job {n}"))
        create_id(client, b)
    seen, url, pages = [], f"{API}?limit=2", 0
    while url:
        body = client.get(url, headers=bearer(a)).get_json()
        page = [job["job_id"] for job in body["jobs"]]
        assert 0 < len(page) <= 2 and all("result" not in job for job in body["jobs"])
        if body["next"] is None:
            assert body["links"]["next"] is None
        else:
            assert body["next"] == page[-1]
            assert parse_qs(urlsplit(body["links"]["next"]).query) == {"limit": ["2"], "after": [page[-1]]}
        seen, url, pages = seen + page, body["links"]["next"], pages + 1
    assert seen == mine[::-1] and pages == -(-len(mine) // 2)


@both_backends
def test_list_filters_by_status_and_model(client):
    a = keys.create("a")
    small = create_id(client, a, model="qwen2.5:0.5b")
    big = create_id(client, a, model="llama3.2")
    ended = create_id(client, a, model="llama3.2")
    assert cancel(client, ended, a).status_code == 202
    assert listed(client, a, "status=cancelled") == [ended]
    assert listed(client, a, "status=queued") == [big, small]
    assert listed(client, a, "model=llama3.2") == [ended, big]
    assert listed(client, a, "model=llama3.2&status=queued") == [big]
    first = client.get(f"{API}?status=queued&limit=1", headers=bearer(a)).get_json()
    assert [job["job_id"] for job in first["jobs"]] == [big]
    assert listed(client, a, urlsplit(first["links"]["next"]).query) == [small]  # the filter goes on


BAD_LIST = [("limit=0", "limit"), ("limit=101", "limit"), ("limit=x", "limit"), ("status=done", "status"),
            ("colour=red", "colour")]


@both_backends
@pytest.mark.parametrize(("query", "field"), BAD_LIST)
def test_a_bad_list_parameter_is_400_naming_it(client, query, field):
    a = keys.create("a")
    create_id(client, a)
    response = client.get(f"{API}?{query}", headers=bearer(a))
    assert response.status_code == 400
    body = response.get_json()
    assert body["success"] is False and body["field"] == field and body["error"].startswith(f"{field}: ")


@both_backends
def test_after_must_be_one_of_the_callers_own_jobs(client):
    a, b = keys.create("a"), keys.create("b")
    create_id(client, a)
    theirs = create_id(client, b)
    for after in (theirs, new_job_id()):
        response = client.get(f"{API}?after={after}", headers=bearer(a))
        body = response.get_json()
        assert response.status_code == 400 and body["field"] == "after" and "jobs" not in body


# 5. Browsers: each its own jobs

READ_PATHS = (API + "/{}/status", "/jobs/{}", "/jobs/{}/card", "/jobs/{}/output", "/jobs/{}/result")
STREAM_PATHS = (API + "/{}/progress", "/jobs/stream?jobs={}")


@both_backends
def test_a_browser_sees_and_cancels_only_its_own_jobs(app):
    (a, a_token), (b, b_token) = browser(app), browser(app)
    prompt = f"private plan {secrets.token_hex(8)}"
    job_id = browser_job(a, a_token, prompt)
    own_page = a.get("/").get_data(as_text=True)
    assert job_id in own_page and prompt in own_page
    other_page = b.get("/").get_data(as_text=True)
    assert job_id not in other_page and prompt not in other_page
    assert b.post(f"/jobs/{job_id}/cancel", data={"csrf_token": b_token}).status_code == 404
    job = row(job_id)
    assert job.status == statuses.QUEUED and job.cancel_requested is False
    assert a.post(f"/jobs/{job_id}/cancel", data={"csrf_token": a_token}).status_code == 303
    assert row(job_id).status == statuses.CANCELLED


@both_backends
@pytest.mark.parametrize("private", [True, False])
def test_private_jobs_make_reads_owner_only_else_links_share(app, private):
    app.config["PRIVATE_JOBS"] = private
    (a, a_token), (b, _) = browser(app), browser(app)
    keys.create("someone")  # the API is keyed: a browser is not also the anonymous API caller
    job_id = browser_job(a, a_token)
    for path in READ_PATHS:
        url = path.format(job_id)
        assert a.get(url).status_code == 200, url
        assert b.get(url).status_code == (404 if private else 200), url


@both_backends
@pytest.mark.parametrize("path", STREAM_PATHS)
def test_private_jobs_streams_are_404_for_another_browser(app, path):
    app.config["PRIVATE_JOBS"] = True
    (a, a_token), (b, _) = browser(app), browser(app)
    url = path.format(browser_job(a, a_token))
    assert b.get(url).status_code == 404
    response = a.get(url, buffered=False)
    try:
        assert response.status_code == 200 and response.mimetype == "text/event-stream"
        assert next(iter(response.response)).startswith(b"retry:")
    finally:
        response.close()


# 6. The cap on queued jobs per owner


@both_backends
def test_the_fourth_queued_job_of_one_key_is_429_another_key_still_creates(app, client):
    app.config["MAX_QUEUED_PER_OWNER"] = 3
    a, b = keys.create("a"), keys.create("b")
    waiting = [create_id(client, a) for _ in range(3)]
    refused = create(client, a)
    assert refused.status_code == 429
    assert refused.get_json()["success"] is False and "MAX_QUEUED_PER_OWNER" in refused.get_json()["error"]
    assert listed(client, a) == waiting[::-1]
    assert create(client, b).status_code == 202
    assert cancel(client, waiting[0], a).status_code == 202  # only queued jobs count
    assert create(client, a).status_code == 202


# 7. Posts from another site


def post_rules(app):
    rules = [rule for rule in app.url_map.iter_rules() if "POST" in rule.methods]
    assert {rule.endpoint for rule in rules} >= {"api.create", "api.cancel", "pages.create", "pages.cancel"}
    return rules


def post_urls(rule, job_ids, batch_ids=()):
    assert rule.arguments <= {"job_id", "batch_id"}, f"{rule.rule}: teach this test what to fill in"
    if "batch_id" in rule.arguments:
        return [rule.rule.replace("<batch_id>", batch_id) for batch_id in batch_ids]
    return [rule.rule.replace("<job_id>", job_id) for job_id in job_ids] if rule.arguments else [rule.rule]


def victims(client, token):
    """A queued job of this browser's, and one of the open API's: each is one a same-site
    post could cancel."""
    return [browser_job(client, token, "victim"), create_id(client)]


def victim_batches(client, token):
    """A batch of this browser's and one of the open API's, each of two queued items."""
    made = client.post("/batches", data={"prompts": "one\ntwo", "csrf_token": token})
    assert made.status_code == 303, made.get_data(as_text=True)
    api = client.post(f"{API}/batches", json={"items": [{"prompt": "one"}, {"prompt": "two"}]})
    return [made.headers["Location"].rsplit("/", 1)[1], api.get_json()["batch_id"]]


def batch_state(batch_ids):
    db.session.rollback()
    rows = [db.session.scalar(sa.select(Batch).where(Batch.batch_id == b)) for b in batch_ids]
    return [(batch.status, batch.cancel_requested, batch.version, batch.cancelled) for batch in rows]


@both_backends
def test_no_post_route_takes_a_cross_site_form_even_with_cookie_and_token(app, client):
    token = csrf_token(client)
    jobs, batches = victims(client, token), victim_batches(client, token)
    before = state(jobs), batch_state(batches)
    form = urlencode({"prompt": "evil", "prompts": "evil", "csrf_token": token})
    for rule in post_rules(app):
        for url in post_urls(rule, jobs, batches):
            response = client.post(url, data=form, content_type=FORM, headers=CROSS_SITE)
            assert response.status_code == 403, url
    assert (state(jobs), batch_state(batches)) == before


REFUSED = [{"Origin": "https://evil.example"}, {"Origin": "http://localhost:8080"}, {"Origin": "null"},
           {"Sec-Fetch-Site": "same-site"}, {"Sec-Fetch-Site": "same-site", "Origin": "http://localhost"}]
TAKEN = [{"Origin": "http://localhost"}, {"Sec-Fetch-Site": "same-origin"}, {"Sec-Fetch-Site": "none"}, {}]


@both_backends
@pytest.mark.parametrize("headers", REFUSED)
def test_a_post_from_another_origin_is_403_and_changes_nothing(client, headers):
    token = csrf_token(client)
    jobs = victims(client, token)
    before = state(jobs)
    assert client.post("/jobs", data={"prompt": "evil", "csrf_token": token}, headers=headers).status_code == 403
    assert client.post(f"/jobs/{jobs[0]}/cancel", data={"csrf_token": token}, headers=headers).status_code == 403
    assert client.post(f"{API}/{jobs[1]}/cancel", headers=headers).status_code == 403
    assert state(jobs) == before


@both_backends
@pytest.mark.parametrize("headers", TAKEN)
def test_a_post_from_this_site_is_taken(client, headers):
    token = csrf_token(client)
    jobs = victims(client, token)
    assert client.post("/jobs", data={"prompt": "ok", "csrf_token": token}, headers=headers).status_code == 303
    assert client.post(f"/jobs/{jobs[0]}/cancel", data={"csrf_token": token}, headers=headers).status_code == 303
    assert client.post(f"{API}/{jobs[1]}/cancel", headers=headers).status_code == 202
    assert [row(j).status for j in jobs] == [statuses.CANCELLED] * 2 and job_count() == 3


# 8. The rate limit, per key


@both_backends
def test_the_rate_limit_counts_each_key_on_its_own(app, client, monkeypatch):
    at = utcnow().replace(second=15, microsecond=0)  # one fixed moment: no minute ends mid-test
    monkeypatch.setattr(ratelimits, "utcnow", lambda: at)
    app.config["RATE_LIMIT_PER_MINUTE"] = 2
    a, b = keys.create("a"), keys.create("b")
    answers = [create(client, a) for _ in range(3)]
    assert [answer.status_code for answer in answers] == [202, 202, 429]
    assert int(answers[-1].headers["Retry-After"]) == 60 - at.second
    assert create(client, b).status_code == 202  # the same address, another key
    assert len(listed(client, a)) == 2


@both_backends
def test_a_new_key_never_inherits_a_revoked_keys_jobs(app, client):
    """SQLite hands a deleted row's id out again (MySQL may, after a restart): owners are named
    from the secret's hash, so a new key is a new owner even in the old key's row."""
    alice = keys.create("alice")
    job_id = create_id(client, alice)
    assert keys.revoke("alice")
    bob = keys.create("bob")
    assert listed(client, bob) == []
    assert cancel(client, job_id, bob).status_code == 404


@both_backends
def test_keys_create_admin_makes_an_operators_key_and_list_says_which(app):
    assert cli(app, "keys", "create", "alice").exit_code == 0
    made = cli(app, "keys", "create", "ops", "--admin")
    assert made.exit_code == 0, made.output
    assert {key.name: key.admin for key in keys.listed()} == {"alice": False, "ops": True}
    lines = {line.split("\t")[0]: line.split("\t")[2] for line in cli(app, "keys", "list").stdout.splitlines()}
    assert lines == {"alice": "client", "ops": "operator"}
