"""A real Keystone for the tests: Debian's `keystone` (Zed) under uwsgi, private to one run.

`start(workdir)` makes a MariaDB database of its own (`vwks_<id>`) and writes a
keystone.conf (that database, fernet keys under `workdir`), runs `keystone-manage
db_sync`, `fernet_setup`, `credential_setup` and `bootstrap` (admin / adminpw,
project admin, role admin), serves it with uwsgi on a free loopback port, and
makes what the tests use through Keystone's own API:

- project `service` with user `vifwire` (roles admin and service): the service
  user vifwire validates tokens with and the Nova notifier posts as;
- projects `alpha` and `beta`, each with a member user (`alice`, `bob`).

One uwsgi worker with one thread. SQLite was tried first: it left "database is
locked" behind (a second thread revoking while another issued a token; later an
endpoint delete after Tempest's clean-up, for minutes).

`stop()` ends the uwsgi it started, by its pid, and drops its database. The approach
is that of /work/shared/peers/tempest (setup.sh, services.sh).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pymysql

from vifwire.settings import KeystoneCredentials

ADMIN_PASSWORD = "adminpw"
PASSWORD = "secretpw"  # every other user's
CONF = """[DEFAULT]
log_file = {dir}/keystone.log
[database]
connection = {database_url}
[token]
provider = fernet
expiration = 7200
[fernet_tokens]
key_repository = {dir}/fernet-keys
[fernet_receipts]
key_repository = {dir}/fernet-keys
[credential]
key_repository = {dir}/credential-keys
[oslo_policy]
enforce_scope = false
enforce_new_defaults = false
"""


def missing() -> str | None:
    """Why a Keystone cannot run here (None: it can)."""
    for tool in ("keystone-manage", "uwsgi"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (Debian packages keystone, uwsgi-core, " \
                   "uwsgi-plugin-python3; scripts/install.sh test)"
    if not Path("/usr/bin/keystone-wsgi-public").exists():
        return "/usr/bin/keystone-wsgi-public not installed (Debian package keystone)"
    try:
        pymysql.connect(**MARIADB).close()
    except pymysql.Error as exc:
        return f"MariaDB at 127.0.0.1:3306 (root) unreachable, Keystone's database: {exc}"
    return None


# Keystone keeps its database in the machine's MariaDB, in a database of the run's
# own: on SQLite, Debian's Keystone left "database is locked" behind under Tempest's
# clean-up (an endpoint delete failed for minutes).
MARIADB = {"host": "127.0.0.1", "port": 3306, "user": "root"}


def _mariadb(statement: str) -> None:
    conn = pymysql.connect(**MARIADB)
    try:
        with conn.cursor() as cursor:
            cursor.execute(statement)
    finally:
        conn.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Keystone:
    url: str  # http://127.0.0.1:<port>/v3
    workdir: Path
    process: subprocess.Popen[bytes]
    database: str  # its MariaDB database, dropped by stop()
    projects: dict[str, str] = field(default_factory=dict)  # name -> id
    users: dict[str, str] = field(default_factory=dict)  # name -> id

    def credentials(self, username: str = "vifwire",
                    project: str = "service") -> KeystoneCredentials:
        password = ADMIN_PASSWORD if username == "admin" else PASSWORD
        return KeystoneCredentials(auth_url=self.url, username=username, password=password,
                                   project_name=project)

    def token(self, username: str, project: str) -> str:
        password = ADMIN_PASSWORD if username == "admin" else PASSWORD
        body = {"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": username, "domain": {"id": "default"}, "password": password}}},
            "scope": {"project": {"name": project, "domain": {"id": "default"}}}}}
        answer = httpx.post(f"{self.url}/auth/tokens", json=body, timeout=30)
        answer.raise_for_status()
        return answer.headers["X-Subject-Token"]

    def revoke(self, token: str) -> None:
        admin = self.token("admin", "admin")
        httpx.delete(f"{self.url}/auth/tokens", timeout=30,
                     headers={"X-Auth-Token": admin, "X-Subject-Token": token}
                     ).raise_for_status()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # uwsgi's master leads its group
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        _mariadb(f"DROP DATABASE IF EXISTS `{self.database}`")


def _manage(conf: Path, *args: str) -> None:
    done = subprocess.run(["keystone-manage", "--config-file", str(conf), *args],
                          capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"keystone-manage {args[0]} failed: {done.stderr[-2000:]}")


def start(workdir: Path) -> Keystone:
    workdir.mkdir(parents=True, exist_ok=True)
    for keys in ("fernet-keys", "credential-keys"):
        (workdir / keys).mkdir(exist_ok=True)
    conf = workdir / "keystone.conf"
    database = f"vwks_{uuid.uuid4().hex[:12]}"
    _mariadb(f"CREATE DATABASE `{database}`")
    conf.write_text(CONF.format(dir=workdir, database_url=(
        f"mysql+pymysql://root@127.0.0.1:3306/{database}")))
    port = _free_port()
    url = f"http://127.0.0.1:{port}/v3"
    try:
        _manage(conf, "db_sync")
    except BaseException:
        _mariadb(f"DROP DATABASE IF EXISTS `{database}`")
        raise
    _manage(conf, "fernet_setup", "--keystone-user", "root", "--keystone-group", "root")
    _manage(conf, "credential_setup", "--keystone-user", "root", "--keystone-group", "root")
    _manage(conf, "bootstrap", "--bootstrap-password", ADMIN_PASSWORD,
            "--bootstrap-username", "admin", "--bootstrap-project-name", "admin",
            "--bootstrap-role-name", "admin", "--bootstrap-region-id", "RegionOne",
            "--bootstrap-public-url", url, "--bootstrap-internal-url", url,
            "--bootstrap-admin-url", url)
    with (workdir / "uwsgi.stdout").open("ab") as log:
        process = subprocess.Popen(
            ["uwsgi", "--plugin", "python3", "--http-socket", f"127.0.0.1:{port}",
             "--wsgi-file", "/usr/bin/keystone-wsgi-public", "--master", "--processes", "1",
             "--threads", "1", "--enable-threads", "--lazy-apps", "--die-on-term",
             "--add-header", "Connection: close",  # uwsgi http-socket: no keep-alive
             "--env", f"OS_KEYSTONE_CONFIG_FILES={conf}", "--logto",
             str(workdir / "uwsgi.log")],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
    keystone = Keystone(url, workdir, process, database)
    try:
        _wait(keystone)
        _populate(keystone)
    except BaseException:
        keystone.stop()
        raise
    return keystone


def _wait(keystone: Keystone) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if keystone.process.poll() is not None:
            raise RuntimeError(f"uwsgi exited {keystone.process.returncode}; see "
                               f"{keystone.workdir}/uwsgi.log")
        try:
            if httpx.get(keystone.url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"Keystone did not answer at {keystone.url} within 60 s")


def _populate(keystone: Keystone) -> None:
    admin = keystone.token("admin", "admin")
    api = httpx.Client(base_url=keystone.url, headers={"X-Auth-Token": admin}, timeout=30)
    with api:
        roles = {r["name"]: r["id"] for r in api.get("/roles").json()["roles"]}
        if "service" not in roles:
            roles["service"] = api.post("/roles", json={"role": {"name": "service"}}
                                        ).json()["role"]["id"]
        for project in ("service", "alpha", "beta"):
            made = api.post("/projects", json={"project": {"name": project,
                                                           "domain_id": "default"}})
            made.raise_for_status()
            keystone.projects[project] = made.json()["project"]["id"]
        keystone.projects["admin"] = api.get("/projects", params={"name": "admin"}
                                             ).json()["projects"][0]["id"]
        for user, project, granted in (("vifwire", "service", ("admin", "service")),
                                       ("alice", "alpha", ("member", "reader")),
                                       ("bob", "beta", ("member", "reader"))):
            made = api.post("/users", json={"user": {"name": user, "password": PASSWORD,
                                                     "domain_id": "default"}})
            made.raise_for_status()
            keystone.users[user] = made.json()["user"]["id"]
            for role in granted:
                api.put(f"/projects/{keystone.projects[project]}/users/"
                        f"{keystone.users[user]}/roles/{roles[role]}").raise_for_status()
