"""Who may do what, for every route: who the caller is (a browser session, an API key, the open
API's anonymous caller), the job lookups that 404 for anyone it is not theirs to see or touch,
the rate limit and the queue cap. Each aborts with the right HTTP error; `errors` turns it into
JSON or a page."""
import secrets

from flask import current_app, request, session
from werkzeug.exceptions import NotFound, TooManyRequests, Unauthorized

from webapp import owners, queue, ratelimits
from webapp.batches import store as batch_store
from webapp.owners import keys

SESSION_OWNER = "owner"


def no_such_job(job_id):
    """The one 404 for a job id that names no job, or none of the caller's: the same answer,
    so an id that is not yours is not confirmed to exist."""
    return NotFound(f"No job with id '{job_id[:64]}'.")


def get_job_or_404(job_id):
    """The job with this public id, read fresh; 404 when there is none."""
    job = queue.get(job_id)
    if job is None:
        raise no_such_job(job_id)
    return job


def readable_job_or_404(job_id):
    """The job, for reading: anyone with its link may, unless PRIVATE_JOBS makes reads owner-only."""
    job = get_job_or_404(job_id)
    if not may_read(job):
        raise no_such_job(job_id)
    return job


def own_job_or_404(job_id, owner):
    """The job, for changing it: only its owner may."""
    job = get_job_or_404(job_id)
    if job.owner != owner:
        raise no_such_job(job_id)
    return job


def may_read(job):
    return not current_app.config["PRIVATE_JOBS"] or job.owner in readers()


def browser_owner(create=False):
    """This browser's owner name, from its signed session cookie (made on first visit), or None."""
    token = session.get(SESSION_OWNER)
    if token is None and create:
        token = session[SESSION_OWNER] = secrets.token_urlsafe(18)
    return owners.browser(token) if token else None


def api_owner():
    """The owner an API call acts as: its key's; without a key, the open API's anonymous caller,
    but only while no key exists (then 401)."""
    secret = bearer_secret()
    if secret is not None:
        return _key_owner(secret)
    if keys.any_exist(current_app.config["API_TOKEN"]):
        raise _unauthorized("This API needs a key: send 'Authorization: Bearer <key>'.")
    return owners.ANONYMOUS


def readers():
    """Every owner the request speaks for when it reads: its browser session, and its key (or,
    with none while the API is open, the anonymous caller)."""
    names = {browser_owner()} - {None}
    secret = bearer_secret()
    if secret is not None:
        names.add(_key_owner(secret))
    elif not keys.any_exist(current_app.config["API_TOKEN"]):
        names.add(owners.ANONYMOUS)
    return names


def bearer_secret(refuse=None):
    """The key an `Authorization: Bearer <key>` header carries, None without the header; for
    any other form of it, `refuse(message)` is raised (the API's 401 unless given: the operator's
    page answers its sign-in form)."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, secret = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise (refuse or _unauthorized)("Send the key as 'Authorization: Bearer <key>'.")
    return secret.strip()


def _key_owner(secret):
    if keys.matches_token(secret, current_app.config["API_TOKEN"]):
        return owners.TOKEN
    key = keys.find(secret)
    if key is None:
        raise _unauthorized("This key is not valid (revoked, or never made): send 'Authorization: Bearer <key>' "
                            "with a current key.")
    return owners.key(key.secret_hash)


def _unauthorized(message):
    return Unauthorized(message, www_authenticate=['Bearer realm="livegen"'])


def admit(owner, items=None):
    """Before a new job, or a batch of `items` items: the rate limit, then the owner's cap on
    queued single jobs (MAX_QUEUED_PER_OWNER), or on its batches' unfinished items
    (MAX_QUEUED_BATCH_ITEMS). 429 for any.
    A key is counted as itself; a browser or the open API by its address, since a new session
    costs nothing."""
    counted = owner if owners.is_key(owner) else f"addr:{request.remote_addr or 'unknown'}"
    wait = ratelimits.hit(counted, current_app.config["RATE_LIMIT_PER_MINUTE"])
    if wait:
        raise TooManyRequests(f"Too many new jobs; try again in {wait} s.", retry_after=wait)
    if items is not None:
        cap = current_app.config["MAX_QUEUED_BATCH_ITEMS"]
        left = batch_store.remaining_items(owner)
        if cap > 0 and left + items > cap:
            raise TooManyRequests(f"Your batches have {left:,} items yet to run; {items:,} more would pass "
                                  f"{cap:,}, the most allowed (MAX_QUEUED_BATCH_ITEMS): wait, or cancel a batch.")
        return
    cap = current_app.config["MAX_QUEUED_PER_OWNER"]
    if cap > 0 and queue.queued_count(owner, cap) >= cap:
        raise TooManyRequests(f"You have {cap} jobs waiting in the queue, the most allowed "
                              "(MAX_QUEUED_PER_OWNER): wait for some to start, or cancel some.")


def no_such_batch(batch_id):
    """As no_such_job: one answer for a batch that is not there and one that is not yours."""
    return NotFound(f"No batch with id '{batch_id[:64]}'.")


def readable_batch_or_404(batch_id):
    """The batch, for reading: as a job, anyone with its link, unless PRIVATE_JOBS."""
    batch = batch_store.get(batch_id)
    if batch is None or (current_app.config["PRIVATE_JOBS"] and batch.owner not in readers()):
        raise no_such_batch(batch_id)
    return batch


def own_batch_or_404(batch_id, owner):
    """The batch, for changing it: only its owner may."""
    batch = batch_store.get(batch_id)
    if batch is None or batch.owner != owner:
        raise no_such_batch(batch_id)
    return batch
