"""`dripmail run` and `dripmail serve` as systemd runs them: READY=1 on NOTIFY_SOCKET,
and SIGTERM as a clean stop (exit 0, no delivery left `claimed`).

Each test starts the real command as a subprocess with NOTIFY_SOCKET pointing at an
AF_UNIX datagram socket the test holds (a path, or the abstract namespace), the way
systemd does for a `Type=notify` unit, and reads what the process says there.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.real_clock import always_open_campaign, open_zone
from tests.smtp_server import Faults, SmtpTestServer

DEADLINE = 120.0  # seconds: a bound for a broken run, never a speed figure
CONTACTS = 200


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket like systemd's notify socket, at a short path (sun_path is 108 bytes)."""
    folder = tempfile.mkdtemp(prefix="dm-", dir="/tmp")
    path = os.path.join(folder, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(DEADLINE)
    yield sock, path
    sock.close()
    os.unlink(path)
    os.rmdir(folder)


@pytest.fixture
def abstract_notify_socket() -> Iterator[tuple[socket.socket, str]]:
    """The same in the abstract namespace: NOTIFY_SOCKET=@name (what systemd may pass)."""
    name = f"dripmail-test-{os.getpid()}-{time.monotonic_ns()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(DEADLINE)
    yield sock, "@" + name
    sock.close()


def heard(sock: socket.socket, until: str) -> list[str]:
    """Every line received until one equal to `until` (each datagram may hold several)."""
    lines: list[str] = []
    while until not in lines:
        lines += sock.recv(4096).decode().splitlines()
    return lines


def dripmail(cwd: Path, env: dict[str, str], *args: str, **popen: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cli", *args],
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200", **env},
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **popen,  # type: ignore[arg-type]
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
    return process.returncode, out, err


def import_contacts(folder: Path, clinic_folder: Path, env: dict[str, str]) -> None:
    """CONTACTS sign-ups made on 2026-03-02, every email of theirs overdue now, in a zone
    where the campaign's all-day window is open at this hour (`run` loops on the real clock,
    and CI runs at any hour)."""
    zone = open_zone()
    csv_file = folder / "contacts.csv"
    csv_file.write_text(
        "email,first_name,timezone,signed_up_at,consent\n"
        + "".join(
            f"patient{i}@example.com,Pat{i},{zone},2026-03-02T10:00,web form\n"
            for i in range(CONTACTS)
        )
    )
    imported = dripmail(
        folder, env, "import", str(clinic_folder), str(csv_file), "--now", "2026-03-02T12:00Z"
    )
    code, _, err = finish(imported)
    assert code == 0, err


def counts(url: str) -> dict[str, int]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT status, COUNT(*) FROM deliveries GROUP BY status"))
            return {status: count for status, count in rows}
    finally:
        engine.dispose()


def stop_mid_run(
    url: str, clinic_folder: Path, tmp_path: Path, sock: socket.socket, address: str, *run: str
) -> None:
    """Start `dripmail run *run` against a slow relay, SIGTERM it once sending is under way:
    it says READY=1, then STOPPING=1, exits 0, and no row is left claimed or sending."""
    with SmtpTestServer(Faults(delay=0.02)) as relay:
        env = {
            "DRIPMAIL_DATABASE_URL": url,
            "DRIPMAIL_SMTP_HOST": "127.0.0.1",
            "DRIPMAIL_SMTP_PORT": str(relay.port),
            "DRIPMAIL_SMTP_SECURITY": "none",
            "DRIPMAIL_PUBLIC_URL": "https://mail.clinic.example",
            "NOTIFY_SOCKET": address,
        }
        import_contacts(tmp_path, clinic_folder, env)
        worker = dripmail(
            tmp_path, env, "run", "--sender", "smtp", "--batch-size", "10", "--interval", "1s",
            *run,
        )  # fmt: skip
        try:
            assert "READY=1" in heard(sock, until="READY=1")
            deadline = time.monotonic() + DEADLINE
            while len(relay.received) < 5:  # sending is under way
                assert worker.poll() is None, worker.communicate()
                assert time.monotonic() < deadline, "the worker sent nothing"
                time.sleep(0.01)
            worker.send_signal(signal.SIGTERM)
            assert "STOPPING=1" in heard(sock, until="STOPPING=1")
            code, out, err = finish(worker)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        received = len(relay.received)

    assert code == 0, err
    assert out.startswith("database: ")
    assert "Traceback" not in err
    by_status = counts(url)
    assert by_status.get("claimed", 0) == 0
    assert by_status.get("sending", 0) == 0
    # Stopped in the middle: what reached the relay is `sent`, exactly, and the rest
    # waits in the queue for the next run.
    assert by_status.get("sent", 0) == received
    assert 5 <= received < CONTACTS
    assert by_status.get("scheduled", 0) >= CONTACTS - received


def test_run_says_ready_and_stops_cleanly_on_sigterm(tmp_path, notify_socket):
    url = f"sqlite:///{tmp_path / 'dripmail.db'}"
    clinic_folder = always_open_campaign(tmp_path / "clinic")
    stop_mid_run(url, clinic_folder, tmp_path, *notify_socket)


def test_run_with_workers_says_ready_once_all_are_and_stops_them_cleanly(
    postgres_url, tmp_path, abstract_notify_socket
):
    clinic_folder = always_open_campaign(tmp_path / "clinic")
    stop_mid_run(postgres_url, clinic_folder, tmp_path, *abstract_notify_socket, "--workers", "2")


def test_serve_says_ready_once_listening_and_exits_0_on_sigterm(tmp_path, abstract_notify_socket):
    sock, address = abstract_notify_socket
    env = {
        "DRIPMAIL_DATABASE_URL": f"sqlite:///{tmp_path / 'dripmail.db'}",
        "DRIPMAIL_PUBLIC_URL": "https://mail.clinic.example",
        "NOTIFY_SOCKET": address,
    }
    server = dripmail(tmp_path, env, "serve", "--port", "0")
    try:
        assert "READY=1" in heard(sock, until="READY=1")
        # READY=1 came once the socket was listening: a request is answered now.
        port = None
        while port is None:
            line = server.stderr.readline()  # type: ignore[union-attr]
            assert line, server.communicate()
            if "serving on http://127.0.0.1:" in line:
                port = int(line.rsplit(":", 1)[1])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=30) as answer:
            assert answer.read() == b"ok"
        server.send_signal(signal.SIGTERM)
        assert "STOPPING=1" in heard(sock, until="STOPPING=1")
        code, _, err = finish(server)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert code == 0, err
    assert "Traceback" not in err


def test_a_sender_no_campaign_can_use_fails_the_start_before_ready(
    clinic_folder, tmp_path, notify_socket
):
    sock, address = notify_socket
    env = {"DRIPMAIL_DATABASE_URL": f"sqlite:///{tmp_path / 'dripmail.db'}"}
    import_contacts(tmp_path, clinic_folder, env)

    # No public URL for the unsubscribe links: nothing could go, so no READY=1.
    code, _, err = finish(
        dripmail(tmp_path, {**env, "NOTIFY_SOCKET": address}, "run", "--sender", "smtp")
    )

    assert code == 2
    assert err.startswith("error: ") and "set DRIPMAIL_PUBLIC_URL" in err
    sock.setblocking(False)
    with pytest.raises(BlockingIOError):
        sock.recv(4096)
