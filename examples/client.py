"""Start a generation on a livegen server and follow it: progress on stderr, the text on stdout.

    python examples/client.py "Write a haiku" [--url http://127.0.0.1:5000] [--key lg_...]

Exit status: 0 completed, 1 failed (or refused), 2 cancelled.
"""
import argparse
import json
import sys

import requests
import sseclient  # pip install sseclient-py


def follow(url, headers):
    """The stream's events; when it closes before the end (SSE_MAX_DURATION, a restart), reconnect
    with Last-Event-ID, and the server sends only what this client lacks."""
    last_id = None
    while True:
        resume = {"Last-Event-ID": last_id} if last_id else {}
        with requests.get(url, headers={**headers, **resume}, stream=True, timeout=(10, 60)) as response:
            response.raise_for_status()
            for event in sseclient.SSEClient(response).events():
                last_id = event.id or last_id
                yield event.event, json.loads(event.data)


def main():
    parser = argparse.ArgumentParser(description="Run a prompt on livegen and print the answer as it comes.")
    parser.add_argument("prompt")
    parser.add_argument("--url", default="http://127.0.0.1:5000")
    parser.add_argument("--key", help="an API key (lg_...), when the server needs one")
    args = parser.parse_args()
    api = args.url.rstrip("/") + "/api/v1/ai/generation"
    headers = {"Authorization": f"Bearer {args.key}"} if args.key else {}

    created = requests.post(api, json={"prompt": args.prompt}, headers=headers, timeout=30)
    if created.status_code != 202:
        sys.exit(f"refused ({created.status_code}): {created.json()['error']}")
    job_id = created.json()["job_id"]
    print(f"job {job_id}", file=sys.stderr)

    for name, data in follow(f"{api}/{job_id}/progress?include=output", headers):
        if name == "output":  # a piece of the text; "reset": a retry starts the text over
            if data.get("reset"):
                print("\n[the job started over]", file=sys.stderr)
            print(data["text"], end="", flush=True)
        elif name == "progress":
            left = data.get("estimated_remaining")  # ms; absent until the server has seen this model run
            left = "no estimate yet" if left is None else f"about {left / 1000:.0f} s left"
            print(f"[{data['status']}] {data.get('progress', 0):.0f}% | {data.get('current_tokens', 0)} tokens"
                  f" | {data.get('tokens_per_second', 0):.1f} tok/s | {left}", file=sys.stderr)
        elif name == "complete":
            print(f"\ndone: {data.get('completion_tokens')} tokens in {data['elapsed_time'] / 1000:.1f} s",
                  file=sys.stderr)
            return 0
        elif name == "error":  # failed or cancelled
            print(f"\n{data['status']}: {data['error']}", file=sys.stderr)
            return 2 if data["status"] == "cancelled" else 1


if __name__ == "__main__":
    sys.exit(main())
