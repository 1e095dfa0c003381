"""A job's (or batch's) webhook deliveries on its page: what was sent, how the receiver answered,
when the next try is. Readable by whoever may read the job; the URL shows only its origin, as
its path and query may hold the receiver's own secret."""
from urllib.parse import urlsplit

from flask import Blueprint, render_template, url_for
from markupsafe import Markup

from webapp.web.access import readable_batch_or_404, readable_job_or_404
from webapp.webhooks import outbox

bp = Blueprint("webhook_pages", __name__)
STOP_POLLING = 286  # htmx 2: "stop polling" once nothing is pending


def origin_of(url):
    parts = urlsplit(url or "")
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else None


def section(owner, rows, refresh_url):
    """The rendered section (None without a webhook) and its status: polled while a delivery
    is still to be sent."""
    if not owner.webhook:
        return None, STOP_POLLING
    pending = any(row.status == outbox.PENDING for row in rows)
    html = render_template("_deliveries.html", target=origin_of(owner.webhook), rows=rows, pending=pending,
                           refresh_url=refresh_url, events=(owner.webhook_events or "").split(","))
    return Markup(html), (200 if pending else STOP_POLLING)


def of_job(job):
    return section(job, outbox.of_job(job.id) if job.webhook else [],
                   url_for("webhook_pages.job_deliveries", job_id=job.job_id))


def of_batch(batch):
    return section(batch, outbox.of_batch(batch.id) if batch.webhook else [],
                   url_for("webhook_pages.batch_deliveries", batch_id=batch.batch_id))


@bp.get("/jobs/<job_id>/webhooks")
def job_deliveries(job_id):
    html, status = of_job(readable_job_or_404(job_id))
    return html or "", status


@bp.get("/batches/<batch_id>/webhooks")
def batch_deliveries(batch_id):
    html, status = of_batch(readable_batch_or_404(batch_id))
    return html or "", status
