"""What the benchmarks share and need no gevent for: child processes, /proc figures, the bench database, percentiles."""
import contextlib
import ctypes
import math
import os
import platform
import resource
import signal
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pymysql

ROOT = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1


# --- figures -------------------------------------------------------------------------------------
def pct(ordered, p):
    """Nearest-rank percentile (p in 0..100) of an already sorted, non-empty list."""
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def fmt(value, width, spec=""):
    """`value` right-aligned in `width` columns, '-' for None."""
    return f"{'-' if value is None else format(value, spec):>{width}}"


# --- /proc ---------------------------------------------------------------------------------------
def proc_cpu(pid):
    """user + sys CPU seconds of a process, from /proc/<pid>/stat fields 14 and 15 (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK  # fields[0] is field 3 (state)
    except (OSError, TypeError, IndexError):
        return 0.0


def machine_cpu():
    """(busy, total) jiffies of all CPUs together, from the first line of /proc/stat."""
    with open("/proc/stat") as stat:
        values = [int(x) for x in stat.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def cpu_pct(s0, s1, wall):
    """Between two samples with "cpu" ({name: CPU seconds}) and "machine" (machine_cpu()): each
    process's CPU and the whole machine's busy time, in % of one core (the machine's None if no time passed)."""
    busy = s1["machine"][0] - s0["machine"][0]
    total = s1["machine"][1] - s0["machine"][1]
    cpu = {name: round((s1["cpu"][name] - s0["cpu"][name]) / wall * 100, 1) for name in s0["cpu"]}
    return cpu, busy / total * 100 * NCPU if total else None


def pids_named(*names):
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() in names:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def children_of(pid):
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                kids.append(int(entry.name))
    return kids


# --- this machine --------------------------------------------------------------------------------
def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def command_output(args):
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=10, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_info(database, nofile, **extra):
    """The machine, the database server and the code a run measured (`extra` goes after nofile_limit)."""
    return {"nproc": command_output(["nproc"]),
            "cpu_model": command_output(["sh", "-c", "lscpu | grep 'Model name' | sed 's/.*: *//'"]),
            "kernel": platform.release(), "python": platform.python_version(),
            "database": database, "nofile_limit": nofile, **extra,
            "commit": command_output(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
            "uncommitted_product_files": [line.split(maxsplit=1)[-1] for line in command_output(
                ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"]).splitlines()]}


def machine_line(machine):
    """'2 cores (model), database, commit abc + uncommitted changes' from machine_info()."""
    dirty = " + uncommitted changes" if machine["uncommitted_product_files"] else ""
    return (f"{machine['nproc']} cores ({machine['cpu_model']}), {machine['database']}, commit "
            f"{machine['commit']}{dirty}")


# --- processes -----------------------------------------------------------------------------------
_LIBC = ctypes.CDLL(None, use_errno=True)


def _die_with_us(sig):
    """preexec: the child gets `sig` when this process dies, however it dies."""
    def preexec():
        _LIBC.prctl(1, sig)  # PR_SET_PDEATHSIG
    return preexec


def stop_process(proc, grace):
    """SIGTERM a subprocess.Popen, then SIGKILL after `grace` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def pythonpath():
    """PYTHONPATH for a child that imports `bench.…`: the checkout, then what this process had."""
    return os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])


class Proc:
    """A subprocess with its output in a log file, dying with this process (PR_SET_PDEATHSIG);
    stopped by SIGTERM, then SIGKILL. `drop_env`: variables of this process's environment it does not get."""

    started = []
    drop_env = ("OLLAMA_HOST", "DATABASE_URL", "WEB_CONCURRENCY", "WORKER_CONNECTIONS")

    def __init__(self, name, args, env, log_dir, parent_death=signal.SIGKILL):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        full_env = {k: v for k, v in os.environ.items() if k not in self.drop_env}
        full_env.update({"PYTHONUNBUFFERED": "1", **env})
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(args, cwd=ROOT, env=full_env, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         preexec_fn=_die_with_us(parent_death))  # noqa: PLW1509 - one prctl call
        Proc.started.append(self)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def log_tail(self, chars=3000):
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, grace=25.0):
        stop_process(self.proc, grace)
        return self.proc.returncode

    @classmethod
    def stop_all(cls):
        for proc in reversed(cls.started):
            with contextlib.suppress(Exception):  # best effort on the way out
                proc.stop(grace=10)


# --- the bench database (MariaDB/MySQL, as the URL's user) ---------------------------------------
def migrate(database_url):
    """`flask --app wsgi db upgrade` on `database_url`; RuntimeError if it fails."""
    done = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"],
                          cwd=ROOT, check=False, env={**os.environ, "DATABASE_URL": database_url},
                          capture_output=True, text=True, timeout=120)
    if done.returncode:
        raise RuntimeError("migration failed:\n" + done.stderr[-3000:])


class Db:
    """One autocommit pymysql connection to the server of a URL; `name` is the URL's database, which
    recreate() drops and creates again only if its name contains `marker`."""

    marker = "bench"

    def __init__(self, url):
        parts = urlsplit(url)
        self.parts = parts
        self.name = parts.path.lstrip("/").split("?")[0]
        self.kw = {"host": parts.hostname or "127.0.0.1", "port": parts.port or 3306,
                   "user": unquote(parts.username or "root"), "password": unquote(parts.password or ""),
                   "autocommit": True}
        self.conn = pymysql.connect(**self.kw)

    def execute(self, sql, args=None):
        with self.conn.cursor() as cursor:
            cursor.execute(sql, args)
            return cursor.fetchall()

    def recreate(self):
        if self.marker not in self.name:
            sys.exit(f"refusing to drop database {self.name!r}: its name does not contain '{self.marker}'")
        self.execute(f"DROP DATABASE IF EXISTS `{self.name}`")
        self.execute(f"CREATE DATABASE `{self.name}` CHARACTER SET utf8mb4")

    def version(self):
        return self.execute("SELECT VERSION()")[0][0]
