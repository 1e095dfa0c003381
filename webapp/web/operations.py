"""What each API route answers, in a few words keyed by method and path (`openapi` joins them to the routes)."""
from webapp.web import rules, validation
from webapp.web.schemas import ref

JSON = "application/json"
API = "/api/v1/ai/generation"
BATCHES = f"{API}/batches"


def reply(description, schema=None, media=JSON, headers=None, links=None):
    """An OpenAPI response object."""
    answer = {"description": description}
    if schema is not None:
        answer["content"] = {media: {"schema": schema}}
    if headers:
        answer["headers"] = headers
    if links:
        answer["links"] = links
    return answer


def header(description, schema=None, required=False):
    return {"description": description, "required": required, "schema": schema or {"type": "string"}}


def path_param(name, description):
    return {"name": name, "in": "path", "required": True, "description": description, "schema": {"type": "string"}}


def query(rules, names=None, **descriptions):
    """Query parameters as the validator's rules describe themselves."""
    return [{"name": name, "in": "query", "required": False, "description": descriptions.get(name, ""),
             "schema": rules[name].schema()} for name in names or rules]


def linked(parameter, field, **operations):
    """OpenAPI links: follow-up operations that take `parameter` from the response's `field`."""
    return {name: {"operationId": operation, "parameters": {parameter: f"$response.body#/{field}"}}
            for name, operation in operations.items()}


# The words for each error status; `openapi` adds each to the operations that can answer it.
RETRY_AFTER = {"Retry-After": header("Seconds to wait before trying again.", {"type": "integer"})}
ERRORS = {
    400: ("A field is missing, of the wrong type or out of range (`field` names it), or the body is malformed.",
          None),
    401: ("An API key is needed, or the one sent is not valid.",
          {"WWW-Authenticate": header("Bearer realm=\"livegen\"", required=True)}),
    403: ("The request came from a page on another origin: it can change nothing here.", None),
    404: ("No such job or batch, or not one this caller may see (the same answer either way).", None),
    408: ("The request body stopped arriving (REQUEST_BODY_TIMEOUT).", None),
    409: ("It has already ended: there is nothing to cancel.", None),
    413: ("The body is too large (1 MB; MAX_BATCH_BYTES for a batch).", None),
    414: ("The address is too long.", None),
    415: ("The body is not JSON (send Content-Type: application/json).", None),
    429: ("Too many new jobs this minute (with Retry-After), or too many waiting in the queue.", RETRY_AFTER),
    431: ("A header is too large.", None),
    503: ("The database is busy or unreachable: retry after Retry-After.", RETRY_AFTER),
}
JOB_ID = path_param("job_id", "The job's id, as create answered it.")
BATCH_ID = path_param("batch_id", "The batch's id, as create answered it.")
INCLUDE = {"name": "include", "in": "query", "required": False, "schema": {"enum": list(validation.INCLUDES)},
           "description": "`output`: the text so far too (and the thinking)."}
LAST_EVENT_ID = {"name": "Last-Event-ID", "in": "header", "required": False, "schema": {"type": "string"},
                 "description": "The id of the last event received: a reconnect resumes after it."}
LOCATION = {"Location": header("The new job's status address.", required=True)}
ATTACHMENT = {"Content-Disposition": header("attachment; filename=…", required=True)}
# Besides these, every operation may answer 414 and 431, every one that reads the database 503, and
# every POST 403 (from a page on another origin): `openapi` adds them.
READ = (401, 404)  # 401: a malformed Authorization header, or a missing key under PRIVATE_JOBS
OWNER = (401, 404)  # only the owner's key may: anyone else gets the 404 of an unknown id
CREATE = (400, 401, 408, 413, 415, 429)
JOB_LINKS = linked("job_id", "job_id", status="api.status", progress="streams.progress", cancel="api.cancel",
                   webhooks="api.webhooks")
BATCH_LINKS = linked("batch_id", "batch_id", status="batches.status", items="batches.items",
                     progress="batch_stream.progress", cancel="batches.cancel", retry="batches.retry",
                     results_jsonl="batches.results_jsonl", results_csv="batches.results_csv",
                     log="batches.log_text", webhooks="batches.webhooks")
LIST_LINKS = {"next": {"operationId": "api.listing", "parameters": {"after": "$response.body#/next"}}}

OPERATIONS = {
    f"POST {API}": {
        "summary": "Start a generation", "tags": ["Jobs"], "body": "GenerationRequest", "errors": CREATE,
        "description": "Queues a job and answers at once; follow it with its status or its progress stream.",
        "responses": {202: reply("Queued.", ref("Created"), headers=LOCATION, links=JOB_LINKS)},
    },
    f"GET {API}": {
        "summary": "List your jobs", "tags": ["Jobs"], "errors": (400, 401),
        "description": "The caller's own jobs, newest first, a page at a time (batch items are listed "
                       "through their batch).",
        "parameters": query(validation.LIST_FILTERS, limit="Jobs per page.",
                            after="The `next` of the previous page.", status="Only jobs in this status.",
                            model="Only jobs of this model."),
        "responses": {200: reply("A page of jobs.", ref("JobList"), links=LIST_LINKS)},
    },
    f"GET {API}/{{job_id}}/status": {
        "summary": "Read a job", "tags": ["Jobs"], "parameters": [JOB_ID, INCLUDE], "errors": (400, *READ),
        "description": "Its status, progress, speed, time left and token counts; its text once completed.",
        "responses": {200: reply("The job.", ref("JobStatus"))},
    },
    f"POST {API}/{{job_id}}/cancel": {
        "summary": "Cancel a job", "tags": ["Jobs"], "parameters": [JOB_ID], "errors": (*OWNER, 409),
        "description": "A queued job ends at once; a running one stops within a second. 409 once it has ended.",
        "responses": {202: reply("Cancelled, or cancel requested.", ref("Cancelled"))},
    },
    f"GET {API}/{{job_id}}/progress": {
        "summary": "Follow a job (Server-Sent Events)", "tags": ["Jobs"], "errors": (400, *READ),
        "parameters": [JOB_ID, INCLUDE, LAST_EVENT_ID],
        "description": "A snapshot at once, then an event at each change, until the job ends or the stream "
                       "has lasted SSE_MAX_DURATION (`timeout`: reconnect). Each item below is one event.",
        "responses": {200: reply("The event stream.", ref("JobEvent"), media="text/event-stream")},
    },
    f"GET {API}/{{job_id}}/webhooks": {
        "summary": "A job's webhook deliveries", "tags": ["Webhooks"], "parameters": [JOB_ID], "errors": OWNER,
        "description": "Its webhook, the events it asked for, and each delivery's state, oldest first "
                       "(its owner's only).",
        "responses": {200: reply("The deliveries.", ref("Webhooks"))},
    },
    f"POST {BATCHES}": {
        "summary": "Start a batch", "tags": ["Batches"], "body": "BatchRequest", "errors": CREATE,
        "description": "Many prompts as one piece of work; every bad item is refused by its index before "
                       "anything is queued.",
        "responses": {202: reply("Queued.", ref("BatchCreated"), links=BATCH_LINKS,
                                 headers={"Location": header("The new batch's address.", required=True)})},
    },
    f"GET {BATCHES}": {
        "summary": "List your batches", "tags": ["Batches"], "errors": (400, 401),
        "parameters": query(validation.LIST_FILTERS, ("limit", "after"), after="The `next` of the previous page."),
        "responses": {200: reply("A page of batches, newest first.", ref("BatchList"))},
    },
    f"GET {BATCHES}/{{batch_id}}": {
        "summary": "Read a batch", "tags": ["Batches"], "parameters": [BATCH_ID], "errors": READ,
        "description": "Its counters, pace and time left.",
        "responses": {200: reply("The batch.", ref("BatchStatus"))},
    },
    f"GET {BATCHES}/{{batch_id}}/items": {
        "summary": "A batch's items", "tags": ["Batches"], "errors": (400, *READ),
        "parameters": [BATCH_ID, *query({
            "limit": rules.Count(1, 1000, default=100), "after": rules.Count(-1, 10**9, default=-1)},
            limit="Items per page.", after="The last index of the previous page (its `next`).")],
        "responses": {200: reply("A page of items, in order.", ref("BatchItems"))},
    },
    f"POST {BATCHES}/{{batch_id}}/cancel": {
        "summary": "Cancel a batch", "tags": ["Batches"], "parameters": [BATCH_ID], "errors": (*OWNER, 409),
        "responses": {202: reply("Queued items cancelled; running ones stop within a second.",
                                 ref("BatchCancelled"))},
    },
    f"POST {BATCHES}/{{batch_id}}/retry": {
        "summary": "Retry a batch's failed items", "tags": ["Batches"], "parameters": [BATCH_ID], "errors": OWNER,
        "responses": {202: reply("The failed items are queued again.", ref("BatchRetried"))},
    },
    f"GET {BATCHES}/{{batch_id}}/results.jsonl": {
        "summary": "A batch's results as JSON Lines", "tags": ["Batches"], "parameters": [BATCH_ID], "errors": READ,
        "responses": {200: reply("One item per line, as the items list shows it.", {"type": "string"},
                                 media="application/x-ndjson", headers=ATTACHMENT)},
    },
    f"GET {BATCHES}/{{batch_id}}/results.csv": {
        "summary": "A batch's results as CSV", "tags": ["Batches"], "parameters": [BATCH_ID], "errors": READ,
        "responses": {200: reply("A header row, then one row per item.", {"type": "string"}, media="text/csv",
                                 headers=ATTACHMENT)},
    },
    f"GET {BATCHES}/{{batch_id}}/log.txt": {
        "summary": "A batch's log", "tags": ["Batches"], "parameters": [BATCH_ID], "errors": READ,
        "responses": {200: reply("One line per ended item.", {"type": "string"}, media="text/plain",
                                 headers=ATTACHMENT)},
    },
    f"GET {BATCHES}/{{batch_id}}/progress": {
        "summary": "Follow a batch (Server-Sent Events)", "tags": ["Batches"], "errors": (400, *READ),
        "parameters": [BATCH_ID, *query({"after": rules.Count(0, 10**11 - 1, default=0)},
                                        after="Start after this log number (as Last-Event-ID does)."),
                       {**LAST_EVENT_ID, "schema": {"type": "string", "pattern": "^[0-9]{1,11}$"}}],
        "description": "`item` as each item ends, `progress` when the counters move, then `complete`.",
        "responses": {200: reply("The event stream.", ref("BatchEvent"), media="text/event-stream")},
    },
    f"GET {BATCHES}/{{batch_id}}/webhooks": {
        "summary": "A batch's webhook deliveries", "tags": ["Webhooks"], "parameters": [BATCH_ID],
        "errors": OWNER, "responses": {200: reply("The deliveries.", ref("Webhooks"))},
    },
    "GET /api/v1/openapi.json": {
        "summary": "This document", "tags": ["About"], "public": True,
        "responses": {200: reply("OpenAPI 3.1.", {"type": "object"}, headers={"ETag": header("Its version.")}),
                      304: reply("Unchanged since the ETag sent in If-None-Match.")},
    },
    "GET /api/docs": {
        "summary": "This document as a page", "tags": ["About"], "public": True,
        "responses": {200: reply("HTML.", {"type": "string"}, media="text/html")},
    },
}
