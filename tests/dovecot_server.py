"""A real IMAP server for the tests: Debian's dovecot-imapd, with a configuration of its own.

No system service is touched: the server gets its own config file, run and state folders,
log file and passwd-file user in a temporary folder, listens on a free loopback port,
and is stopped at the end. Mail reaches it by IMAP APPEND, as a delivery agent would
leave it in the mailbox.

Dovecot never runs mail processes as root. Run as root (as CI is), the mailbox belongs
to Dovecot's own `dovecot` user and the login process to `dovenull` (both made by the
package); run as anyone else, everything is that user's ("running Dovecot as non-root").
"""

from __future__ import annotations

import imaplib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

HOST = "127.0.0.1"
USER = "bounces"
PASSWORD = "dovecot-test-password"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = {host}
{ssl}
# Loopback only, and a test password: plain text login is what this test server allows.
disable_plaintext_auth = no
auth_mechanisms = plain
auth_failure_delay = 0
mail_location = maildir:{root}/Maildir
default_login_user = {login_user}
default_internal_user = {internal_user}
imap_idle_notify_interval = 2 mins
# Dovecot refuses mail users below 500 by default; the test's user may be a system one.
first_valid_uid = {uid}
first_valid_gid = {gid}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = {host}
    port = {port}
  }}
  inet_listener imaps {{
    address = {host}
    port = {tls_port}
  }}
}}
"""


class DovecotServer:
    """`with DovecotServer() as imap: imap.url, imap.append(raw)`; with `tls` (a
    certificate and key), also implicit TLS at `imap.tls_url` (imaps://)."""

    def __init__(self, tls: tuple[Path, Path] | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="dripmail-dovecot-"))
        self.port = _free_port()
        self.tls_port = _free_port() if tls else 0
        self.url = f"imap://{USER}@{HOST}:{self.port}/INBOX"
        self.tls_url = f"imaps://{USER}@localhost:{self.tls_port}/INBOX" if tls else None
        # Without TLS the plain listener offers no STARTTLS: loopback only, as the reader allows.
        ssl = f"ssl = yes\nssl_cert = <{tls[0]}\nssl_key = <{tls[1]}" if tls else "ssl = no"
        if os.geteuid() == 0:
            login_user, internal_user = "dovenull", "dovecot"
        else:
            login_user = internal_user = pwd.getpwuid(os.geteuid()).pw_name
        mail_user = pwd.getpwnam(internal_user)
        (self.root / "Maildir").mkdir()
        (self.root / "home").mkdir()
        (self.root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
        self.config = self.root / "dovecot.conf"
        self.config.write_text(
            CONFIG.format(
                root=self.root,
                host=HOST,
                port=self.port,
                tls_port=self.tls_port,
                ssl=ssl,
                login_user=login_user,
                internal_user=internal_user,
                uid=mail_user.pw_uid,
                gid=mail_user.pw_gid,
            )
        )
        for path in (self.root / "Maildir", self.root / "home"):
            os.chown(path, mail_user.pw_uid, mail_user.pw_gid)
        os.chmod(self.root, 0o755)  # mkdtemp's 0700 would keep the mail user out

    def __enter__(self) -> DovecotServer:
        # Without -F the master returns once its listeners are bound: no waiting on a clock.
        subprocess.run(["dovecot", "-c", str(self.config)], check=True, timeout=60)
        try:
            with self.connect() as conn:  # the server's greeting and a login: it is ready
                assert conn.welcome.startswith(b"* OK")
        except BaseException:
            self.__exit__()
            raise
        return self

    def connect(self) -> imaplib.IMAP4:
        conn = imaplib.IMAP4(HOST, self.port, timeout=30)
        conn.login(USER, PASSWORD)
        conn.select("INBOX")
        return conn

    def append(self, raw: bytes) -> None:
        """A mail delivered to the mailbox, unseen."""
        with self.connect() as conn:
            answer, _ = conn.append("INBOX", None, None, raw)
            assert answer == "OK"

    def flags(self) -> list[tuple[str, bool]]:
        """(Subject, whether \\Seen) of every mail in the mailbox."""
        with self.connect() as conn:
            _, count = conn.select("INBOX")
            if not int(count[0]):
                return []
            _, data = conn.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        found = []
        for item in data:
            if isinstance(item, tuple):
                subject = item[1].decode().split(":", 1)[1].strip()
                found.append((subject, b"\\Seen" in item[0]))
        return found

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text() if path.exists() else ""

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["dovecot", "-c", str(self.config), "stop"], check=False, timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)
