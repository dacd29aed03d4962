"""OpenLDAP's slapd (Debian's package), a throw-away directory for login tests: plain
LDAP (with StartTLS) and LDAPS on their own ports, a test certificate, the memberof
overlay, users under ou=people and groupOfNames groups under ou=groups. Entries are
added over LDAP (not slapadd), so that the overlay fills memberOf."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from ldap3 import MODIFY_ADD, MODIFY_DELETE, MODIFY_REPLACE, Connection, Server

from tests.peers.tls import self_signed
from tests.peers.tools import free_port, launch, need, run_tool, stop

BASE = "dc=example,dc=org"
PEOPLE = f"ou=people,{BASE}"
GROUPS = f"ou=groups,{BASE}"
ADMIN_DN = f"cn=admin,{BASE}"
ADMIN_PASSWORD = "directory admin"
# The service account the registry searches with (it may read everything but passwords).
SERVICE_DN = f"cn=registry,{BASE}"
SERVICE_PASSWORD = "service account"


def user_dn(uid: str) -> str:
    return f"uid={uid},{PEOPLE}"


def group_dn(cn: str) -> str:
    return f"cn={cn},{GROUPS}"


class Slapd:
    def __init__(self, root: Path) -> None:
        self.binary = need("slapd")
        need("slappasswd")
        self.root = root
        self.port = free_port()
        self.tls_port = free_port()
        self.cert, key = self_signed(root / "tls")
        (root / "data").mkdir(parents=True, exist_ok=True)
        hashed = run_tool(["slappasswd", "-s", ADMIN_PASSWORD]).stdout.strip()
        self.config = root / "slapd.conf"
        self.config.write_text(
            "include /etc/ldap/schema/core.schema\n"
            "include /etc/ldap/schema/cosine.schema\n"
            "include /etc/ldap/schema/inetorgperson.schema\n"
            "include /etc/ldap/schema/nis.schema\n"
            "modulepath /usr/lib/ldap\nmoduleload back_mdb\nmoduleload memberof\n"
            f"TLSCACertificateFile {self.cert}\nTLSCertificateFile {self.cert}\n"
            f"TLSCertificateKeyFile {key}\n"
            f"pidfile {root}/slapd.pid\nargsfile {root}/slapd.args\n\n"
            f'database mdb\nsuffix "{BASE}"\nrootdn "{ADMIN_DN}"\nrootpw {hashed}\n'
            f"directory {root}/data\nmaxsize 10485760\n"
            "index objectClass eq\nindex uid,cn,member eq\noverlay memberof\n"
            "access to attrs=userPassword\n  by self write\n  by anonymous auth\n  by * none\n"
            "access to * by * read\n"
        )
        self.log = root / "slapd.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.tls_port}"

    def start(self) -> Slapd:
        urls = f"{self.url}/ {self.ldaps_url}/"
        args = [self.binary, "-d", "0", "-f", str(self.config), "-h", urls]
        self.process = launch(args, self.port, self.log, "slapd")
        if not self._has(BASE):
            self._load_tree()
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)
            self.process = None

    def pause(self) -> None:
        """Stop answering, with connections still accepted by the kernel: a hung server."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def admin(self) -> Connection:
        return Connection(
            Server("127.0.0.1", port=self.port), ADMIN_DN, ADMIN_PASSWORD, auto_bind=True
        )

    def _has(self, dn: str) -> bool:
        with self.admin() as conn:
            return bool(conn.search(dn, "(objectClass=*)", "BASE"))

    def _load_tree(self) -> None:
        with self.admin() as conn:
            conn.add(BASE, ["dcObject", "organization"], {"dc": "example", "o": "Example"})
            conn.add(PEOPLE, ["organizationalUnit"], {"ou": "people"})
            conn.add(GROUPS, ["organizationalUnit"], {"ou": "groups"})
            conn.add(
                SERVICE_DN,
                ["simpleSecurityObject", "organizationalRole"],
                {"cn": "registry", "userPassword": SERVICE_PASSWORD},
            )

    def add_user(
        self, uid: str, password: str, groups: tuple[str, ...] = (), *, disabled: bool = False
    ) -> str:
        """Add uid=<uid> (employeeType disabled, if so), a member of `groups` (made as
        needed); returns its DN."""
        dn = user_dn(uid)
        with self.admin() as conn:
            attributes = {"uid": uid, "cn": uid, "sn": uid, "userPassword": password}
            if disabled:
                attributes["employeeType"] = "disabled"
            assert conn.add(dn, ["inetOrgPerson"], attributes), conn.result
        for group in groups:
            self.join(uid, group)
        return dn

    def join(self, uid: str, group: str) -> None:
        with self.admin() as conn:
            if conn.search(group_dn(group), "(objectClass=*)", "BASE"):
                assert conn.modify(group_dn(group), {"member": [(MODIFY_ADD, [user_dn(uid)])]})
            else:
                assert conn.add(
                    group_dn(group), ["groupOfNames"], {"cn": group, "member": user_dn(uid)}
                ), conn.result

    def leave(self, uid: str, group: str) -> None:
        with self.admin() as conn:
            assert conn.modify(group_dn(group), {"member": [(MODIFY_DELETE, [user_dn(uid)])]})

    def disable(self, uid: str) -> None:
        with self.admin() as conn:
            assert conn.modify(user_dn(uid), {"employeeType": [(MODIFY_REPLACE, ["disabled"])]})
