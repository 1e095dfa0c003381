"""Receive livegen's webhooks: check the signature, drop repeats, act on the event.

    WEBHOOK_SECRET=whsec_... flask --app examples/webhook_receiver.py run --port 8000

WEBHOOK_SECRET is the same secret the livegen server signs with.
"""
import os

from flask import Flask, request
from standardwebhooks import Webhook, WebhookVerificationError

app = Flask(__name__)
webhook = Webhook(os.environ["WEBHOOK_SECRET"])
seen = set()  # webhook-ids already handled; a real receiver keeps them in its database


@app.post("/hooks/livegen")
def livegen_hook():
    try:
        # The raw body, as sent: parsing and re-encoding it first would break the signature.
        event = webhook.verify(request.get_data(), request.headers)
    except (WebhookVerificationError, ValueError):  # a bad or old signature, or a malformed header
        return "bad signature", 400
    message_id = request.headers["webhook-id"]  # the same on every retry of one delivery
    if message_id in seen:
        return "", 204  # a retry of one we already handled: say yes, do nothing

    data = event["data"]  # the job (or the batch) as its status route shows it
    print(f"{event['type']}: {data.get('job_id') or data.get('batch_id')} is {data['status']}", flush=True)
    if event["type"] == "job.completed" and data["status"] == "completed":
        print(data["output"], flush=True)
    seen.add(message_id)  # only once handled: if handling fails (a 500), the retry gets another go
    return "", 204  # answer quickly (within WEBHOOK_TIMEOUT); do slow work elsewhere
