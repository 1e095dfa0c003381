"""One generate/chat request: validation, cold load, prompt eval, paced tokens and the fault."""

import random
import time

from simulator import catalog, faults, generation, gojson, lengths, parsing
from simulator.gojson import RequestError

_POLL = 0.05  # how often a long wait checks whether the client hung up


class ClientGone(Exception):
    """A write failed or the peer closed its end: stop generating."""


class Stopped(Exception):
    """The simulator is shutting down."""


class Session:
    """Plays a request against the simulator's clock, model state and the fault it drew."""

    def __init__(self, sim, kind, record, wire):
        self.sim = sim
        self.kind = kind
        self.record = record
        self.wire = wire
        self.fault = record.fault
        self.started = time.monotonic()
        self.pace = None
        self.speed = sim.tokens_per_second  # this request's tokens per second, drawn before sampling
        self.holding = None  # (model key, keep_alive) while this request uses a loaded model

    def run(self, raw):
        """Answer the request; never raises for client or shutdown trouble."""
        try:
            try:
                self._serve(raw)
            except RequestError as exc:
                self.wire.json(exc.status, {"error": exc.message})
        except ClientGone:
            self.sim.recorder.update(self.record, client_closed=True)
            self.wire.close()
        except Stopped:
            self.wire.close()
        finally:
            self.sim.recorder.update(self.record, finished=True)

    def pause(self, seconds):
        """Sleep on the stop Event; long waits also notice a client that hung up."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.sim.stopping.wait(min(left, _POLL)):
                raise Stopped()
            if left > _POLL and self.wire.peer_closed():
                raise ClientGone()

    def _serve(self, raw):
        body = gojson.decode_object(raw, parsing.STRUCTS[self.kind])
        self.sim.recorder.update(self.record, body=body)
        if self.fault == "bad_request":
            raise RequestError(400, faults.BAD_REQUEST[self.kind])
        ask = parsing.parse(self.kind, body)
        self._check_model(ask)
        key = catalog.key(ask.model)
        if ask.load_only and ask.keep_alive == 0:
            self.sim.scheduler.unload(key)  # unloading never loads first
            return self.wire.json(200, generation.reply(self.kind, ask.model, done=True, reason="unload"))
        parsing.check_options(ask.options)
        if self.fault == "busy":
            raise RequestError(503, faults.BUSY)
        self.sim.scheduler.acquire(key, self.pause, fail=self.fault == "load_fail")
        self.holding = (key, ask.keep_alive)
        try:
            self._answer(ask)
        finally:
            self._release_model()

    def _release_model(self):
        # Also called just before the last write, so a client that has seen the end of the
        # response finds its keep_alive already applied (keep_alive 0: unloaded).
        if self.holding:
            self.sim.scheduler.release(*self.holding)
            self.holding = None

    def _check_model(self, ask):
        if not ask.model and self.kind == "chat":
            raise RequestError(400, "model is required")
        if self.fault == "unknown_model" or not self.sim.has_model(ask.model):
            raise RequestError(404, f"model '{ask.model}' not found")
        if ask.think and not catalog.can_think(ask.model):
            raise RequestError(400, f'"{ask.model}" does not support thinking')

    def _answer(self, ask):
        loaded = time.monotonic()
        if ask.load_only:
            self._release_model()
            return self.wire.json(200, generation.reply(self.kind, ask.model, done=True, reason="load"))
        prompt_tokens = generation.prompt_count(ask)
        self.pause(prompt_tokens / self.sim.prompt_eval_rate)
        evaluated = time.monotonic()
        out = _Streamed(self, ask) if ask.stream else _Buffered(self, ask)
        eval_count, reason, answer = self._sample(ask, out)
        if reason is None:
            return  # a fault ended the stream early
        finished = time.monotonic()
        stats = generation.metrics(finished - self.started, loaded - self.started, prompt_tokens,
                                   evaluated - loaded, eval_count, finished - evaluated)
        if self.fault == "missing_metrics":
            del stats["prompt_eval_count"], stats["prompt_eval_duration"]  # as on a prompt-cache hit
        context = None
        if self.kind == "generate" and not ask.raw:
            context = generation.context_ids(ask, prompt_tokens, answer)
        self._release_model()
        out.finish(reason, context, stats)

    def _sample(self, ask, out):
        """Pace and send the tokens; return (eval_count, done_reason or None, answer tokens)."""
        plan = generation.plan(ask, self._seed(ask), self._draw(ask),
                               think=ask.think or self.fault == "thinking")
        if self.sim.script is not None:  # a test's own answer, token by token, then the EOS
            thoughts = [token for token in plan.tokens if token[0] == "thinking"]
            plan = generation.Plan(tokens=thoughts + [("response", text) for text in self.sim.script],
                                   natural_end=True)
        emitter = generation.Emitter(ask.options.get("stop") or [], merge=self.fault == "merged")
        self.pace = random.Random(f"pace\x00{self.sim.seed}\x00{ask.text}")
        cut = max(1, len(plan.tokens) // 3)
        answer = []
        for sampled, (channel, text) in enumerate(plan.tokens, start=1):
            self.pause(self._interval())
            self.sim.recorder.count_token(self.record)
            if channel == "response":
                answer.append(text)
            if _emit(channel, text, emitter, out):
                return sampled, "stop", answer
            if sampled == cut and self._interrupt(out):
                return sampled, None, answer
        if plan.natural_end:
            # Sampling the EOS takes a step too, so eval_count / eval_duration stays the true speed.
            self.pause(self._interval())
        for piece in emitter.flush():
            out.send(text=piece)
        # The old Go runner also counts the EOS token it sampled (OLLAMA.md section 6).
        if plan.natural_end:
            return len(plan.tokens) + 1, "stop", answer
        return len(plan.tokens), "length", answer

    def _interrupt(self, out):
        """Apply a mid-stream fault a third of the way in; True when the response ends here."""
        if self.fault == "stall":
            self.pause(self.sim.stall_seconds)
        elif self.fault == "error_midstream":
            out.fail(faults.MIDSTREAM_ERROR)
        elif self.fault == "eof":
            out.cut_short()
        elif self.fault == "drop":
            self.wire.drop()
        return self.fault in ("error_midstream", "eof", "drop")

    def _draw(self, ask):
        """Set this request's speed and return its natural answer length (None: until num_predict)."""
        sim = self.sim
        model = catalog.key(ask.model)
        rng = random.Random(f"draw\x00{sim.seed}\x00{model}\x00{ask.text}\x00{sim.next_draw()}")
        spread = min(max(sim.speed_spread, 0.0), 0.99)
        self.speed = sim.tokens_per_second * (1.0 + rng.uniform(-spread, spread))
        sim.recorder.update(self.record, tokens_per_second=self.speed)
        if sim.lengths == "fixed":
            return generation.fixed_length(ask, sim.default_tokens)
        seed = _option_seed(ask)
        if seed is not None:  # like a fixed seed at temperature > 0: the same answer every time
            rng = random.Random(f"length\x00{seed}\x00{model}\x00{ask.text}")
        return lengths.draw(ask.model, ask.text, rng)

    def _interval(self):
        jitter = min(max(self.sim.jitter, 0.0), 0.99)
        return (1.0 + self.pace.uniform(-jitter, jitter)) / self.speed

    def _seed(self, ask):
        seed = _option_seed(ask)
        return self.sim.seed if seed is None else seed


def _option_seed(ask):
    """options.seed when the request fixes one (not -1), else None."""
    seed = ask.options.get("seed")
    is_number = isinstance(seed, (int, float)) and not isinstance(seed, bool)
    return int(seed) if is_number and seed != -1 else None


def _emit(channel, text, emitter, out):
    """Send one sampled token (or hold it back); True when it completed a stop string."""
    if channel == "thinking":
        out.send(thinking=text)
        return False
    pieces, hit_stop = emitter.feed(text)
    for piece in pieces:
        out.send(text=piece)
    return hit_stop


class _Streamed:
    """stream true: every chunk goes out as an NDJSON line at once."""

    def __init__(self, session, ask):
        self.wire = session.wire
        self.kind = session.kind
        self.model = ask.model

    def send(self, text="", thinking=""):
        self.wire.chunk(generation.reply(self.kind, self.model, text, thinking))

    def fail(self, message):
        self.wire.chunk({"error": message})  # status is already 200: the error is one more line
        self.wire.end()

    def cut_short(self):
        self.wire.end()  # the repeat-guard case: a clean end with no done:true

    def finish(self, reason, context, stats):
        self.wire.chunk(generation.reply(self.kind, self.model, done=True, reason=reason,
                                         context=context, stats=stats))
        self.wire.end()


class _Buffered:
    """stream false: collect everything, answer with one object at the end (routes.go does the same)."""

    def __init__(self, session, ask):
        self.wire = session.wire
        self.kind = session.kind
        self.model = ask.model
        self.text = []
        self.thinking = []

    def send(self, text="", thinking=""):
        self.text.append(text)
        self.thinking.append(thinking)

    def fail(self, message):
        raise RequestError(500, message)

    def cut_short(self):
        # Ollama answers with the last chunk it had, done:false, when the runner ends without done.
        self.wire.json(200, self._whole())

    def finish(self, reason, context, stats):
        self.wire.json(200, self._whole(done=True, reason=reason, context=context, stats=stats))

    def _whole(self, **final):
        return generation.reply(self.kind, self.model, "".join(self.text), "".join(self.thinking), **final)
