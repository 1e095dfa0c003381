"""Command line: run the fake Ollama as its own process until SIGINT or SIGTERM."""

import argparse
import signal
import sys
import threading

from simulator.faults import FAULTS
from simulator.gojson import RequestError
from simulator.parsing import parse_go_duration
from simulator.scheduler import DEFAULT_KEEP_ALIVE
from simulator.sim import LENGTHS, Simulator


def parse_args(argv):
    """The CLI options; defaults mimic a small local model on a laptop."""
    parser = argparse.ArgumentParser(prog="python -m simulator", description="Simulated Ollama HTTP server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11435)
    parser.add_argument("--tps", type=float, default=25.0, help="tokens per second")
    parser.add_argument("--jitter", type=float, default=0.25, help="± fraction of the token interval")
    parser.add_argument("--load-delay", type=load_delay, default=1.5,
                        help="cold model load, seconds, or LOW-HIGH (e.g. 0-3) drawn per load")
    parser.add_argument("--keep-alive", type=keep_alive, default=DEFAULT_KEEP_ALIVE,
                        help="seconds (or a Go duration like 5m) a model stays loaded when a request "
                             "does not say; negative = forever")
    parser.add_argument("--lengths", choices=LENGTHS, default="realistic",
                        help="realistic: per-model answer lengths shifted by prompt hints, cut by "
                             "num_predict; fixed: exactly num_predict tokens when set")
    parser.add_argument("--speed-spread", type=float, default=0.2,
                        help="± fraction by which each request's speed differs from --tps")
    parser.add_argument("--seed", type=int, default=0, help="seeds lengths, speeds and load times")
    parser.add_argument("--fault", choices=FAULTS, default="none")
    parser.add_argument("--models", default="llama3.2,qwen2.5:0.5b,deepseek-r1:1.5b",
                        help="comma-separated model names to serve")
    parser.add_argument("--quiet", action="store_true", help="do not log requests to stderr")
    return parser.parse_args(argv)


def load_delay(text):
    """--load-delay: "1.5" is fixed seconds, "0-3" a range each cold load draws from."""
    low, dash, high = text.partition("-")
    try:
        return (float(low), float(high)) if dash else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not seconds or LOW-HIGH: {text!r}") from None


def keep_alive(text):
    """--keep-alive: seconds, or a Go duration as a request's keep_alive may be."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return parse_go_duration(text)
    except RequestError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def main(argv=None):
    """Serve until a signal arrives, then shut down cleanly."""
    args = parse_args(argv)
    sim = Simulator(tokens_per_second=args.tps, jitter=args.jitter, load_delay=args.load_delay,
                    models=[name.strip() for name in args.models.split(",") if name.strip()],
                    seed=args.seed, host=args.host, port=args.port, lengths=args.lengths,
                    speed_spread=args.speed_spread, keep_alive=args.keep_alive)
    sim.log_requests = not args.quiet
    sim.set_fault(args.fault)
    done = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: done.set())
    sim.start()
    print(f"simulated Ollama listening on {sim.url}", flush=True)
    done.wait()
    sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
