"""A real PostgreSQL server for the tests, started from the installed server binaries.

``make install`` installs them when they are missing (Debian's ``postgresql`` package);
``ORCHESTRATOR_TEST_PG_BINDIR`` names another directory holding ``initdb`` and ``pg_ctl``.
The server gets a fresh data directory (``initdb``, trust for the superuser, a password
for one more role), listens on a free loopback port and a Unix socket of its own, and is
stopped and deleted at the end. ``initdb`` refuses to run as root, so as root the server
runs as the ``postgres`` system user the package creates (``runuser -u postgres``), in a
directory it owns. ``pg_ctl start --wait`` returns once the server accepts connections
(bounded by a timeout), so nothing here sleeps.

A guardian process holds the read end of a pipe from the test process: when that pipe
closes (the tests end, or their process is killed), it stops the server and deletes its
directory, so no server outlives the tests that started it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SUPERUSER = "postgres"
SECRET_USER, SECRET_PASSWORD = "secretive", "s3cr3t-pa55word"
START_TIMEOUT_S = 60

GUARDIAN = """
import shutil, subprocess, sys
pg_ctl, data, root, *runas = sys.argv[1:]
sys.stdin.read()  # until the test process closes the pipe, or dies
subprocess.run([*runas, pg_ctl, "stop", "-D", data, "-m", "immediate", "-w"],
               capture_output=True, check=False)
shutil.rmtree(root, ignore_errors=True)
"""


def bindir() -> Path:
    """The directory of ``initdb`` and ``pg_ctl``: the newest Debian version, else PATH."""
    named = os.environ.get("ORCHESTRATOR_TEST_PG_BINDIR")
    if named:
        return Path(named)
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if versions:
        return versions[-1].parent
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise RuntimeError(
        "the PostgreSQL tests need the server binaries (initdb, pg_ctl): `make install` "
        "installs them (apt-get install postgresql), or set ORCHESTRATOR_TEST_PG_BINDIR"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PostgresServer:
    """One test server: where it lives and how to reach it."""

    root: Path
    port: int
    bin: Path
    user: str | None  # the system user it runs as (as root), else None: this user

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "socket"

    def url(self, dbname: str = "postgres", *, user: str = SUPERUSER, password: str = "") -> str:
        """A TCP URL of a database on this server."""
        secret = f":{password}" if password else ""
        return f"postgresql://{user}{secret}@127.0.0.1:{self.port}/{dbname}"

    def run(self, *command: str) -> subprocess.CompletedProcess[str]:
        """A server program, as the server's user, failing loudly with its output."""
        argv = [str(self.bin / command[0]), *command[1:]]
        if self.user is not None:
            argv = ["runuser", "-u", self.user, "--", *argv]
        done = subprocess.run(
            argv, cwd=self.root, capture_output=True, text=True, check=False,
            timeout=START_TIMEOUT_S * 2,
        )  # fmt: skip
        if done.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{argv} failed: {done.stdout}{done.stderr}\n{tail}")
        return done

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """Run SQL as the superuser through the Unix socket."""
        return self.run(
            "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(self.socket_dir),
            "-p", str(self.port), "-U", SUPERUSER, "-d", dbname, "-At", "-c", sql,
        ).stdout  # fmt: skip

    def create_database(self, name: str) -> str:
        """A new empty database; its URL."""
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def guard(self) -> subprocess.Popen[bytes]:
        """The guardian: it stops the server once its stdin closes (see the module)."""
        runas = ["runuser", "-u", self.user, "--"] if self.user is not None else []
        return subprocess.Popen(
            [sys.executable, "-c", GUARDIAN, str(self.bin / "pg_ctl"), str(self.data),
             str(self.root), *runas],
            stdin=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip


def _owner() -> str | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError("running as root, and no unprivileged user to run PostgreSQL as")


def _start(server: PostgresServer, *, durable: bool) -> None:
    options = (
        f"-c listen_addresses=127.0.0.1 -p {server.port} -k {server.socket_dir} "
        "-c max_connections=200"
    )
    if not durable:  # the tests never crash the server: its writes need not reach the disk
        options += " -c fsync=off -c full_page_writes=off"
    server.run(
        "pg_ctl", "start", "-D", str(server.data), "-l", str(server.root / "server.log"),
        "-o", options, "--wait", "-t", str(START_TIMEOUT_S),
    )  # fmt: skip


@contextlib.contextmanager
def postgres_server(*, durable: bool = False) -> Iterator[PostgresServer]:
    """Start a throwaway server; stop and delete it on exit.

    ``durable``: with ``fsync`` on, as a real server runs (for measurements).
    """
    binaries = bindir()
    root = Path(tempfile.mkdtemp(prefix="orchestrator-pg-"))
    user = _owner()
    (root / "socket").mkdir()
    if user is not None:  # as root: the server's user owns its directory
        entry = pwd.getpwnam(user)
        for path in (root, root / "socket"):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    server = PostgresServer(root, _free_port(), binaries, user)
    guardian = server.guard()  # from here on, the server never outlives this process
    try:
        server.run(
            "initdb", "-D", str(server.data), "-U", SUPERUSER, "--auth=trust",
            "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions",
        )  # fmt: skip
        with (server.data / "pg_hba.conf").open("w") as hba:  # a password for one role
            hba.write(
                "local all all trust\n"
                f"host all {SECRET_USER} 127.0.0.1/32 scram-sha-256\n"
                "host all all 127.0.0.1/32 trust\n"
            )
        for attempt in range(3):  # the free port may be taken in between: another one
            try:
                _start(server, durable=durable)
                break
            except RuntimeError:
                if attempt == 2:
                    raise
                server.port = _free_port()
        server.psql(f"CREATE ROLE {SECRET_USER} LOGIN PASSWORD '{SECRET_PASSWORD}'")
        yield server
    finally:
        assert guardian.stdin is not None
        guardian.stdin.close()  # stop the server, delete its directory
        guardian.wait(timeout=START_TIMEOUT_S)
