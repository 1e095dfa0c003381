"""JSON Schemas of the API's bodies: requests from the validators' rules, answers from the fields the code sends."""
from webapp import statuses
from webapp.batches.store import MAX_ITEMS
from webapp.web import events, validation, webhook_input
from webapp.web.batch_input import DEFAULTS
from webapp.webhooks import outbox, targets

TIME = {"type": "string", "format": "date-time"}


def maybe(schema):
    """`schema` or null."""
    return {"anyOf": [schema, {"type": "null"}]}


def ref(name):
    return {"$ref": f"#/components/schemas/{name}"}


def obj(properties, optional=(), **more):
    """An object whose properties are all required but the `optional` ones."""
    required = [name for name in properties if name not in optional]
    return {"type": "object", "properties": properties, "required": required, **more}


INT, NUMBER, STRING, BOOL = ({"type": kind} for kind in ("integer", "number", "string", "boolean"))
COUNT = {"type": "integer", "minimum": 0}
MS = {"type": "integer", "minimum": 0, "description": "milliseconds"}
STATUS = {"type": "string", "enum": list(statuses.ALL)}


def webhook_properties(allow_http=False):
    """The webhook fields of a create body (`webhook_input.FIELDS`), as `targets` checks them."""
    scheme = "^https?://" if allow_http else "^https://"
    shapes = {
        "webhook": {"type": ["string", "null"], "format": "uri", "minLength": 1, "maxLength": targets.MAX_URL,
                    "pattern": scheme, "description": "Where to POST its events, signed with Standard "
                    "Webhooks; a public address only. Refused when the server has no WEBHOOK_SECRET."},
        "webhook_events_filter": {"type": ["array", "null"], "items": {"enum": list(targets.EVENTS)},
                                  "minItems": 1, "maxItems": len(targets.EVENTS), "uniqueItems": True,
                                  "default": list(targets.DEFAULT_EVENTS),
                                  "description": "Which events to send (needs `webhook`)."},
    }
    return {name: shapes[name] for name in webhook_input.FIELDS}


def generation_request(allow_http=False):
    """The create body: `validation.FIELDS`, each as its rule describes itself, and the webhook fields."""
    properties = {name: rule.schema() for name, rule in validation.FIELDS.items()}
    required = [name for name, rule in validation.FIELDS.items() if getattr(rule, "required", False)]
    return {"type": "object", "properties": {**properties, **webhook_properties(allow_http)},
            "required": required, "additionalProperties": False}


def batch_item():
    """One item of a batch: a create body without webhooks (the batch has them)."""
    properties = {name: rule.schema() for name, rule in validation.FIELDS.items()}
    return {"type": "object", "properties": properties, "required": ["prompt"], "additionalProperties": False,
            "description": "Like a create body; the batch's model, system and options fill what it leaves out."}


def batch_request(allow_http=False):
    shared = {name: validation.FIELDS[name].schema() for name in DEFAULTS}
    items = {"type": "array", "minItems": 1, "maxItems": MAX_ITEMS, "items": ref("BatchItem")}
    return {"type": "object", "properties": {"items": items, **shared, **webhook_properties(allow_http)},
            "required": ["items"], "additionalProperties": False}


JOB = {
    "job_id": STRING, "status": STATUS,
    "phase": maybe({"type": "string", "examples": ["waiting_model", "thinking", "generating", "saving"]}),
    "progress": {"type": "number", "minimum": 0, "maximum": 100}, "progress_is_estimate": BOOL,
    "expected_tokens": maybe(INT), "current_tokens": COUNT, "tokens_per_second": NUMBER, "elapsed_time": MS,
    "estimated_remaining": maybe(INT), "estimated_remaining_low": maybe(INT),
    "estimated_remaining_high": maybe(INT), "time_since_submit": maybe(MS),
    "prompt_tokens": maybe(COUNT), "completion_tokens": maybe(COUNT), "total_tokens": maybe(COUNT),
    "error_message": maybe(STRING), "output_attempt": COUNT, "output_chars": COUNT, "thinking_chars": COUNT,
    "thinking_tokens": maybe(COUNT), "prompt": STRING, "model": STRING, "attempts": COUNT,
    "queue_position": maybe(COUNT), "version": INT, "created_at": TIME, "started_at": maybe(TIME),
    "completed_at": maybe(TIME), "last_update_at": maybe(TIME), "timestamp": maybe(INT),
    "result": {**maybe(STRING), "description": "the text, once completed"},
    "last_error": {**maybe(STRING), "description": "the previous attempt's error, while queued or processing"},
    "output": {"type": "string", "description": "with include=output: the text so far"},
    "thinking": {**maybe(STRING), "description": "with include=output: the thinking so far"},
}
JOB_OPTIONAL = ("result", "last_error", "output", "thinking")

BATCH = {
    "batch_id": STRING, "status": STATUS, "model": STRING, "total": COUNT, "queued": COUNT, "running": COUNT,
    "completed": COUNT, "failed": COUNT, "cancelled": COUNT, "ended": COUNT,
    "progress": {"type": "number", "minimum": 0, "maximum": 100}, "tokens": COUNT, "tokens_per_second": NUMBER,
    "elapsed_time": MS, "cancel_requested": BOOL, "log_seq": COUNT, "version": INT, "created_at": TIME,
    "completed_at": maybe(TIME), "estimated_remaining": maybe(INT), "estimated_remaining_low": maybe(INT),
    "estimated_remaining_high": maybe(INT),
}
LOG_LINE = {
    "index": COUNT, "job_id": STRING, "status": STATUS, "seq": COUNT, "tokens": COUNT, "duration": MS,
    "tokens_per_second": NUMBER, "ended_at": maybe(TIME), "error": STRING,
}
ITEM = {
    "index": COUNT, "job_id": STRING, "status": STATUS, "prompt": STRING, "model": STRING,
    "output": maybe(STRING), "error": maybe(STRING), "prompt_tokens": maybe(COUNT),
    "completion_tokens": maybe(COUNT), "elapsed_time": MS, "tokens_per_second": NUMBER, "created_at": TIME,
    "started_at": maybe(TIME), "completed_at": maybe(TIME),
}
DELIVERY = {
    "id": STRING, "event": {"enum": list(targets.EVENTS)},
    "status": {"enum": [outbox.PENDING, outbox.DELIVERED, outbox.FAILED, outbox.SUPERSEDED]}, "attempts": COUNT,
    "last_status_code": maybe(INT), "last_error": maybe(STRING), "next_attempt_at": maybe(TIME),
    "created_at": TIME, "delivered_at": maybe(TIME),
}
LINK = {"type": "string", "format": "uri-reference"}
SUCCESS = {"const": True}


def success(properties, optional=()):
    """A 2xx body: `success: true` and these."""
    return obj({"success": SUCCESS, **properties}, optional)


def data(schema):
    """An SSE event's `data`: one line of JSON."""
    return {"type": "string", "contentMediaType": "application/json", "contentSchema": schema}


def event(name, payload, with_id=True):
    properties = {"event": {"const": name}, "data": data(payload), "id": STRING}
    return {"type": "object", "properties": properties, "required": ["event", "data", *(["id"] * with_id)]}


def subset(fields, names):
    """The fields an event picks out of a snapshot (nulls are left out, so none is required)."""
    return {"type": "object", "properties": {name: fields[name] for name in names}}


TIMEOUT = obj({"status": STATUS, "message": STRING})


def job_events():
    """The events of a job's stream (`streams`, `events`): with include=output, text pieces too."""
    text = obj({"offset": COUNT, "text": STRING, "attempt": COUNT, "reset": {"const": True}}, optional=["reset"])
    return {"oneOf": [
        event("progress", subset(JOB, events.PROGRESS_FIELDS)),
        event("complete", subset(JOB, events.COMPLETE_FIELDS)),
        event("error", obj({"status": STATUS, "error": STRING})),
        event("timeout", TIMEOUT, with_id=False),
        event("output", text), event("thinking", text),
        event("ping", {"type": "object", "maxProperties": 0}, with_id=False),
    ]}


def batch_events():
    return {"oneOf": [
        event("item", obj(LOG_LINE, optional=["error"])), event("progress", ref("Batch")),
        event("complete", ref("Batch")), event("timeout", TIMEOUT),
        event("ping", {"type": "object", "maxProperties": 0}),
    ]}


JOB_LINKS = obj(dict.fromkeys(("status", "progress", "card", "page", "webhooks"), LINK), optional=["webhooks"])
BATCH_LINKS = obj(dict.fromkeys(("status", "items", "progress", "results_jsonl", "results_csv", "log", "page"), LINK))


def components(allow_http=False):
    """Every named schema the document's operations refer to."""
    return {
        "Error": obj({"success": {"const": False}, "error": STRING,
                      "field": {"type": "string", "description": "the request field at fault (400)"}},
                     optional=["field"]),
        "GenerationRequest": generation_request(allow_http),
        "BatchRequest": batch_request(allow_http),
        "BatchItem": batch_item(),
        "Job": obj(JOB, optional=JOB_OPTIONAL),
        "Created": success({"job_id": STRING, "status": {"const": statuses.QUEUED},
                            **{name: JOB[name] for name in events.SUBMIT_FIELDS}, "links": JOB_LINKS}),
        "JobStatus": success({"job": ref("Job")}),
        "JobList": success({"jobs": {"type": "array", "items": ref("Job")}, "next": maybe(STRING),
                            "links": obj({"next": maybe(LINK)})}),
        "Cancelled": success({"job_id": STRING, "cancel": {"enum": [statuses.CANCELLED, "requested"]},
                              "message": STRING}),
        "Batch": obj(BATCH),
        "BatchCreated": success({"batch_id": STRING, "total": COUNT, "links": BATCH_LINKS}),
        "BatchStatus": success({"batch": ref("Batch"), "links": BATCH_LINKS}),
        "BatchList": success({"batches": {"type": "array", "items": ref("Batch")}, "next": maybe(STRING)}),
        "BatchItems": success({"items": {"type": "array", "items": obj(ITEM)}, "next": maybe(COUNT)}),
        "BatchCancelled": success({"batch_id": STRING, "cancelled_now": COUNT, "message": STRING}),
        "BatchRetried": success({"batch_id": STRING, "retried": COUNT}),
        "Webhooks": success({"webhook": maybe(STRING), "events": {"type": "array", "items": STRING},
                             "deliveries": {"type": "array", "items": obj(DELIVERY)}}),
        "JobEvent": job_events(),
        "BatchEvent": batch_events(),
    }
