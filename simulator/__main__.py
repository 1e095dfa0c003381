"""Command line: run the fake Ollama as its own process until SIGINT or SIGTERM."""

import argparse
import signal
import sys
import threading

from simulator.faults import FAULTS
from simulator.sim import Simulator


def parse_args(argv):
    """The CLI options; defaults mimic a small local model on a laptop."""
    parser = argparse.ArgumentParser(prog="python -m simulator", description="Simulated Ollama HTTP server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11435)
    parser.add_argument("--tps", type=float, default=25.0, help="tokens per second")
    parser.add_argument("--jitter", type=float, default=0.25, help="± fraction of the token interval")
    parser.add_argument("--load-delay", type=float, default=1.5, help="cold model load, seconds")
    parser.add_argument("--fault", choices=FAULTS, default="none")
    parser.add_argument("--models", default="llama3.2,qwen2.5:0.5b,deepseek-r1:1.5b",
                        help="comma-separated model names to serve")
    parser.add_argument("--quiet", action="store_true", help="do not log requests to stderr")
    return parser.parse_args(argv)


def main(argv=None):
    """Serve until a signal arrives, then shut down cleanly."""
    args = parse_args(argv)
    sim = Simulator(tokens_per_second=args.tps, jitter=args.jitter, load_delay=args.load_delay,
                    models=[name.strip() for name in args.models.split(",") if name.strip()],
                    host=args.host, port=args.port)
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
