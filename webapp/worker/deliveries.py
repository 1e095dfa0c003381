"""The webhook sender: takes due deliveries from the outbox, signs each as Standard Webhooks
specifies, posts it through a session that refuses private addresses at the moment it connects,
and records the answer (delivered, due again after a back-off, or failed)."""
import http.cookiejar
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import gevent
import requests
from requests_hardened import Config, Manager
from sqlalchemy.exc import SQLAlchemyError
from standardwebhooks import Webhook

from webapp.extensions import discard_session
from webapp.models import utcnow
from webapp.telemetry import totals
from webapp.webhooks import outbox
from webapp.worker import metrics

log = logging.getLogger(__name__)
POLL = 0.5          # seconds between looks at the outbox when nothing was due
PARALLEL = 4        # deliveries in flight at once: one slow receiver does not hold up the rest
USER_AGENT = "livegen-webhooks/1"


def signed_headers(secret, delivery_id, body, now=None):
    """The three Standard Webhooks headers for `body` (a str), signed with `secret` (whsec_...)."""
    moment = now or datetime.now(UTC)
    return {"webhook-id": delivery_id, "webhook-timestamp": str(int(moment.timestamp())),
            "webhook-signature": Webhook(secret).sign(delivery_id, moment, body),
            "content-type": "application/json", "user-agent": USER_AGENT}


def http_session(allow_private, timeout):
    """requests with its address filter (requests-hardened): the name is resolved once, the
    address checked, and the connection made to that same address, so a name that changes its
    answer between the check and the connect (DNS rebinding) cannot reach a private address.
    Redirects are not followed: a 3xx is an answer that is not a success."""
    session = Manager(Config(default_timeout=(min(5.0, timeout), timeout), never_redirect=True,
                             ip_filter_enable=not allow_private, ip_filter_allow_loopback_ips=False,
                             user_agent_override=USER_AGENT)).get_session()
    # No HTTP(S)_PROXY or .netrc from the environment: a proxy resolves the name again, past the
    # filter; and no cookies: one receiver's would travel with another owner's deliveries.
    session.trust_env = False
    session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    return session


def attempt(session, secret, delivery, deadline):
    """One try: (delivered?, status code or None, error or None). Only the status line and the
    headers are read (the body never is), all within `deadline` seconds: a receiver that drips
    its answer a byte at a time would pass every per-read timeout."""
    try:
        with gevent.Timeout(deadline):  # fires in the worker process, where gevent patches sockets
            response = session.post(delivery.url, data=delivery.body.encode("utf-8"), stream=True,
                                    headers=signed_headers(secret, delivery.delivery_id, delivery.body))
            response.close()
    except gevent.Timeout:
        return False, None, "The receiver did not answer in time."
    except (requests.RequestException, ValueError) as error:  # ValueError: a URL urllib3 cannot parse
        return False, None, _reason(error)
    if 200 <= response.status_code < 300:
        return True, response.status_code, None
    return False, response.status_code, f"The receiver answered {response.status_code}."


def _reason(error):
    """A sentence a person reads on the job's page."""
    if "InvalidIPAddress" in type(error).__name__:
        return (f"Refused: the address {error} is loopback, private, link-local or metadata "
                "(WEBHOOK_ALLOW_PRIVATE=1 allows it).")
    if isinstance(error, requests.Timeout):
        return "The receiver did not answer in time."
    return f"Could not reach the receiver: {type(error).__name__}."


class Sender:
    """A thread of the worker process that sends what the outbox holds."""

    def __init__(self, app):
        self.app = app
        config = app.config
        self.secret, self.delays = config["WEBHOOK_SECRET"], config["WEBHOOK_RETRY_DELAYS"]
        self.deadline = config["WEBHOOK_TIMEOUT"] * 2  # a whole try, connect to headers
        # A claimed delivery is someone else's to send again only after its try surely ended.
        self.lease = self.deadline + 30
        self.session = http_session(config["WEBHOOK_ALLOW_PRIVATE"], config["WEBHOOK_TIMEOUT"])
        self.pool = ThreadPoolExecutor(PARALLEL, thread_name_prefix="webhook")
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.serve, name="webhooks", daemon=True)

    def start(self):
        """Nothing to sign with, nothing to send: no thread then (a create asking for a webhook
        was refused; deliveries already recorded wait for a worker that has the secret)."""
        if self.secret:
            self.thread.start()

    def stop(self, timeout=5.0):
        self.stopping.set()
        if self.thread.is_alive():
            self.thread.join(timeout)
        self.pool.shutdown(wait=False, cancel_futures=True)

    def serve(self):
        """Keep up to PARALLEL tries in flight: a slot is refilled as soon as its try ends, so one
        slow receiver holds one slot, not the others' turn."""
        in_flight = set()
        while not self.stopping.is_set():
            in_flight = {future for future in in_flight if not future.done()}
            try:
                taken = self._claim(PARALLEL - len(in_flight)) if len(in_flight) < PARALLEL else []
            except Exception:  # a bug must not end this worker's webhooks for good
                log.exception("webhooks: sending failed")
                taken = []
            in_flight |= {self.pool.submit(self._send, delivery) for delivery in taken}
            if not taken:
                self.stopping.wait(POLL)

    def send_due(self):
        """Send what is due now, up to PARALLEL at once, and wait for them; the number sent."""
        taken = self._claim(PARALLEL)
        for future in [self.pool.submit(self._send, delivery) for delivery in taken]:
            future.result()
        return len(taken)

    def _claim(self, limit):
        with self.app.app_context():
            try:
                return outbox.claim(utcnow(), self.lease, limit=limit)
            except SQLAlchemyError as error:
                log.warning("webhooks: outbox read failed, database error: %s", error)
                return []
            finally:
                discard_session()

    def _send(self, delivery):
        started = time.monotonic()
        ok, code, error = attempt(self.session, self.secret, delivery, self.deadline)
        result = metrics.webhook_result(ok, code)
        metrics.WEBHOOK_SEND.labels(result).observe(time.monotonic() - started)
        with self.app.app_context():
            try:
                totals.webhook_tried(result)  # in settle's transaction: its commit counts the try
                outbox.settle(delivery, ok, code, error, self.delays)
            except SQLAlchemyError as db_error:  # the lease runs out and it is sent again: at least once
                log.warning("webhooks: %s sent but not recorded, database error: %s", delivery.delivery_id, db_error)
            finally:
                discard_session()
        log.info("webhook %s (%s) to %s: %s", delivery.delivery_id, delivery.event, delivery.url,
                 "delivered" if ok else error)
