"""Streaming client for Ollama's /api/generate, per shared/OLLAMA.md. Knows HTTP, not the database."""
import contextlib
import json
import logging
import socket

import requests

log = logging.getLogger(__name__)
CONNECT_TIMEOUT = 5.0
# Nothing at all arrives before the first token: queue wait + model load + prompt eval (§3),
# and long streams can pause for seconds (§7.1). The read timeout must cover all of it.
READ_TIMEOUT = 300.0


MAX_MESSAGE = 1000  # characters of Ollama's error text kept in a job's message


def sentence(text):
    """`text` ending as a sentence: Ollama's own messages often stop mid-air ("unexpected EOF",
    "progress 0.00 - "), and ours are followed by more sentences ("Trying again in 3 s.")."""
    text = text.strip().rstrip(" -:;,")
    return text if text.endswith((".", "!", "?")) else text + "."


class OllamaError(Exception):
    """A generation that did not finish. `retryable` says whether trying again may help."""

    def __init__(self, message, retryable):
        if len(message) > MAX_MESSAGE:  # an error line can be long; the job's row keeps a sentence
            message = message[:MAX_MESSAGE].rstrip() + " …"
        super().__init__(sentence(message))
        self.retryable = retryable


def _error_text(response):
    """Ollama's own message from an error body ({"error": ...}), or the body itself."""
    try:
        return str(response.json()["error"])
    except (ValueError, KeyError, TypeError):
        return response.text.strip()[:300] or response.reason or f"HTTP {response.status_code}"


def _refusal(response, model):
    status = response.status_code
    if status in (400, 404):  # bad request, unknown model: trying again cannot help
        return OllamaError(f"Ollama answered {status} for model '{model}': {_error_text(response)}",
                           retryable=False)
    return OllamaError(f"Ollama answered {status}: {_error_text(response)}", retryable=True)


class Generation:
    """One streaming generation: iterate for chunks (dicts); `close()` stops it in Ollama too."""

    def __init__(self, base_url, body, read_timeout=READ_TIMEOUT, session=None):
        self.url = base_url.rstrip("/") + "/api/generate"
        self.body = body
        self.read_timeout = read_timeout
        self.session = session or requests
        self.response = None
        self.closed = False

    def __iter__(self):
        try:
            self.response = self.session.post(self.url, json=self.body, stream=True,
                                              timeout=(CONNECT_TIMEOUT, self.read_timeout))
            if self.closed:  # closed while connecting
                return
            if self.response.status_code != 200:
                raise _refusal(self.response, self.body.get("model"))
            yield from self._chunks()
        except requests.exceptions.RequestException as error:
            if self.closed:
                return
            raise OllamaError(_describe(error, self.url, self.read_timeout), retryable=True) from error
        finally:
            self.closed = True
            if self.response is not None:
                self.response.close()  # in the reading thread: closing from another one races it

    def _chunks(self):
        for line in self.response.iter_lines(chunk_size=None):
            if not line:
                continue
            try:
                chunk = json.loads(line)
            except ValueError:
                chunk = None
            if not isinstance(chunk, dict):
                raise OllamaError(f"Ollama sent a line that is not a JSON object: {line[:80]!r}",
                                  retryable=True)
            if "error" in chunk:
                raise OllamaError(f"Ollama stopped with an error: {chunk['error']}", retryable=True)
            yield chunk
            if chunk.get("done"):
                return
        if not self.closed:
            raise OllamaError("Ollama ended the stream before the generation was done "
                              "(no final chunk).", retryable=True)

    @property
    def waiting_for_headers(self):
        return self.response is None and not self.closed

    def close(self):
        """Stop the generation from any thread: shutting the socket down ends the reader's
        blocked read, and the closed connection makes Ollama stop generating too. Before the
        headers came (model load) there is no socket to shut yet: the reader closes the
        response as soon as it has one."""
        self.closed = True
        raw = getattr(self.response, "raw", None)
        sock = getattr(getattr(raw, "_connection", None), "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _describe(error, url, read_timeout):
    if isinstance(error, requests.exceptions.ConnectTimeout):
        return f"Ollama at {url} did not accept a connection within {CONNECT_TIMEOUT:.0f} s."
    if isinstance(error, requests.exceptions.ReadTimeout) or "Read timed out" in str(error):
        return f"Ollama sent nothing for {read_timeout:g} s (stalled)."
    if isinstance(error, requests.exceptions.ConnectionError) and "refused" in str(error).lower():
        return f"Ollama is not reachable at {url} (connection refused)."
    if isinstance(error, requests.exceptions.ChunkedEncodingError):
        return "The connection to Ollama was cut in the middle of the generation."
    return f"Talking to Ollama failed: {error}"


def list_models(base_url, timeout=1.0):
    """Names of the models Ollama has (GET /api/tags), or [] when it does not answer in time."""
    try:
        response = requests.get(base_url.rstrip("/") + "/api/tags", timeout=timeout)
        response.raise_for_status()
        return sorted(model["name"] for model in response.json().get("models", []))
    except (requests.RequestException, ValueError, KeyError, TypeError):
        return []


def model_is_loaded(base_url, model, timeout=1.0):
    """True when Ollama's /api/ps lists the model (it will answer without a cold load); False
    when it does not, or does not answer in time (then a load is the safer guess)."""
    wanted = model if ":" in model.rsplit("/", 1)[-1] else f"{model}:latest"
    try:
        response = requests.get(base_url.rstrip("/") + "/api/ps", timeout=timeout)
        response.raise_for_status()
        return any(entry.get("name") in (model, wanted) for entry in response.json().get("models", []))
    except (requests.RequestException, ValueError, KeyError, TypeError, AttributeError):
        return False
