"""A create request's webhook fields, checked: `webhook` (where) and `webhook_events_filter`
(which of start, output, completed; default completed)."""
from flask import current_app

from webapp.web.validation import InvalidInput
from webapp.webhooks import targets

FIELDS = ("webhook", "webhook_events_filter")


def take_webhook_fields(body):
    """The webhook fields, taken out of a create body (so the rest is checked as a generation
    request), unchecked: `checked` checks them once the request has been admitted (the check may
    look the name up in DNS, which an unlimited caller must not be able to make us do)."""
    if not isinstance(body, dict):  # the request's own check says what a body must be
        return {}
    return {field: body.pop(field) for field in FIELDS if field in body}


def checked(fields):
    """{"webhook", "webhook_events"} from the taken fields, both None when no webhook is asked
    for. Raises InvalidInput."""
    url, events = fields.get("webhook"), fields.get("webhook_events_filter")
    if url is None:
        if events is not None:
            raise InvalidInput("webhook_events_filter", "needs a webhook to send them to")
        return {"webhook": None, "webhook_events": None}
    return {"webhook": _url(url), "webhook_events": _events(events)}


def _url(value):
    config = current_app.config
    if not isinstance(value, str) or not 0 < len(value) <= targets.MAX_URL:
        raise InvalidInput("webhook", f"must be a URL of at most {targets.MAX_URL} characters")
    if not value.isascii():
        raise InvalidInput("webhook", "must be written in ASCII (percent-encode the path, punycode the host)")
    if not config["WEBHOOK_SECRET"]:
        raise InvalidInput("webhook", "cannot be used here: this server has no WEBHOOK_SECRET to sign with")
    try:
        return targets.check(value, config["WEBHOOK_ALLOW_HTTP"], config["WEBHOOK_ALLOW_PRIVATE"])
    except targets.Refused as refusal:
        raise InvalidInput("webhook", str(refusal)) from None


def _events(value):
    if value is None:
        return ",".join(targets.DEFAULT_EVENTS)
    if (not isinstance(value, list) or not value or len(value) > len(targets.EVENTS)
            or not all(isinstance(event, str) and event in targets.EVENTS for event in value)
            or len(set(value)) != len(value)):
        raise InvalidInput("webhook_events_filter", f"must be a list of {', '.join(targets.EVENTS)}, each once")
    return ",".join(event for event in targets.EVENTS if event in value)  # in the order they happen
