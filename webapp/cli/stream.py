"""A job's SSE stream with its text (`…/progress?include=output`), read with requests."""
import json

import requests

ENDS = ("complete", "error")
# Longer than the server's 15 s between pings: a silence this long means the connection is dead.
READ_TIMEOUT = 60


class Refused(Exception):
    """The server answered, but with no stream for this job (a 404 under PRIVATE_JOBS, a 503)."""


def progress_url(base_url, job_id):
    return f"{base_url.rstrip('/')}/api/v1/ai/generation/{job_id}/progress?include=output"


def events(base_url, job_id):
    """(event name, data) until the job's `complete` or `error`. A stream that closes first (a
    `timeout` after SSE_MAX_DURATION) is opened again with Last-Event-ID, so the server sends
    only what this reader lacks. Raises Refused, or requests' errors when the server is gone."""
    last_id = None
    while True:
        headers = {"Accept": "text/event-stream", **({"Last-Event-ID": last_id} if last_id else {})}
        with requests.get(progress_url(base_url, job_id), headers=headers, stream=True,
                          timeout=(5, READ_TIMEOUT)) as response:
            if response.status_code != 200:
                raise Refused("does not show this job (PRIVATE_JOBS, or another database)"
                              if response.status_code == 404 else f"answered {response.status_code}")
            got_any = False
            # chunk_size=None: each piece as it arrives (the stream is chunked), not 512 bytes at a time.
            for event_id, name, data in parse(response.iter_content(chunk_size=None)):
                last_id, got_any = event_id or last_id, True
                yield name, data
                if name in ENDS:
                    return
        if not got_any:  # a server that closes at once would have us reconnect forever
            raise Refused("closed the stream before any event")


def parse(chunks):
    """(id, event name, JSON data) per event in a stream of bytes. Lines are split on bytes, at
    line feeds: the text may hold U+2028, which str.splitlines (and so requests' iter_lines with
    decode_unicode) would take for a line end."""
    pending, fields = b"", {}
    for chunk in chunks:
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            line = line.removesuffix(b"\r").decode("utf-8")
            if not line:
                if "data" in fields:
                    yield fields.get("id"), fields.get("event", "message"), json.loads(fields["data"])
                fields = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                fields[name] = f"{fields['data']}\n{value}" if name == "data" and "data" in fields else value
