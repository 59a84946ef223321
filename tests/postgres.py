"""A throwaway PostgreSQL server for tests: its own data directory and unix socket, no TCP port.

``make setup`` (and ``.ci/run``) install Debian's ``postgresql`` when it is missing; a test that asks
for PostgreSQL fails, rather than skips, when the server or psycopg is not there. The server runs as
the ``postgres`` user when the tests run as root (``initdb`` and ``pg_ctl`` refuse root), with trust
authentication on a socket in a private temporary directory, and is stopped with
``pg_ctl stop -m immediate`` at the end of the session. Every step is bounded by a timeout.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

__all__ = ["create_database", "postgres_server"]

STEP_TIMEOUT = 60  # seconds, for every initdb / pg_ctl / SQL step

_MISSING = ("run `make setup` (as root it installs it), or `sudo apt-get install -y postgresql`; "
            "`make test` installs it in CI")


def _binaries() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if not found:
        pytest.fail(f"PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb): {_MISSING}",
                    pytrace=False)
    return Path(found[-1]).parent


def _as_server_user(argv: list[str]) -> list[str]:
    """``argv`` run as ``postgres`` when we are root (initdb and pg_ctl refuse to run as root)."""
    if os.geteuid() != 0:
        return argv
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.fail(f"running as root, but there is no `postgres` user to run the server as: {_MISSING}",
                    pytrace=False)
    runuser = shutil.which("runuser")
    if runuser:
        return [runuser, "-u", "postgres", "--", *argv]
    return ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(f"'{a}'" for a in argv)]


def _run(argv: list[str], what: str) -> None:
    try:
        done = subprocess.run(_as_server_user(argv), capture_output=True, text=True, timeout=STEP_TIMEOUT,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail(f"PostgreSQL {what} took more than {STEP_TIMEOUT} s: {' '.join(argv)}", pytrace=False)
    if done.returncode != 0:
        pytest.fail(f"PostgreSQL {what} failed ({done.returncode}): {' '.join(argv)}\n"
                    f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}", pytrace=False)


def create_database(server_url: str, name: str | None = None) -> str:
    """A new empty database on the server of ``server_url``; returns its URL."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(server_url)
    name = name or f"t_{secrets.token_hex(6)}"
    host = url.query["host"]
    with psycopg.connect(dbname="postgres", user="postgres", host=host, autocommit=True,
                         connect_timeout=STEP_TIMEOUT) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')  # name: our own [a-z0-9_]
    return url.set(database=name).render_as_string(hide_password=False)


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a private PostgreSQL server; yields the SQLAlchemy URL of its database ``flonnx``."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.fail("psycopg is not installed: pip install -e '.[postgresql]' (part of `make setup`)",
                    pytrace=False)
    bindir = _binaries()
    base = Path(tempfile.mkdtemp(prefix="flonnx-pg-"))  # short: a socket path has ~100 bytes
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        os.chown(base, entry.pw_uid, entry.pw_gid)
    data, log = base / "data", base / "server.log"
    started = False
    try:
        _run([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
              "--locale=C", "--no-sync", "--no-instructions"], "initdb")
        options = f"-c listen_addresses='' -k {base} -c fsync=off -c max_connections=50"
        _run([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", str(STEP_TIMEOUT),
              "-o", options, "start"], "start")
        started = True
        url = f"postgresql+psycopg://postgres@/flonnx?host={base}"
        create_database(url, "flonnx")
        yield url
    finally:
        if started:
            _stop(bindir, data)
        shutil.rmtree(base, ignore_errors=True)


def _stop(bindir: Path, data: Path) -> None:
    """``pg_ctl stop -m immediate``; if that fails, SIGKILL the postmaster named in its PID file."""
    try:
        done = subprocess.run(_as_server_user([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                                               "-w", "-t", str(STEP_TIMEOUT), "stop"]),
                              capture_output=True, timeout=STEP_TIMEOUT + 5, stdin=subprocess.DEVNULL)
        if done.returncode == 0:
            return
    except subprocess.TimeoutExpired:
        pass
    try:
        pid = int((data / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGKILL)
    except (OSError, ValueError, IndexError):
        pass
