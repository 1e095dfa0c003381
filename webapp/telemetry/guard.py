"""The METRICS_TOKEN check, shared by the web's /metrics and the worker's metrics port."""
import hmac

WWW_AUTHENTICATE = 'Bearer realm="livegen metrics"'
REFUSAL = "Send the METRICS_TOKEN as 'Authorization: Bearer <token>'.\n"


def allowed(authorization, token):
    """True when no token is set, or the Authorization header carries it (compared in constant
    time, so the answer's timing does not tell how much of a guess was right)."""
    if not token:
        return True
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
