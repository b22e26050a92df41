"""sd_notify (campaigns/notify.py) against real AF_UNIX datagram sockets: a path, and the
abstract namespace that NOTIFY_SOCKET=@name stands for."""

from __future__ import annotations

import logging
import os
import socket
import tempfile

from campaigns.notify import NOBODY, Notifier


def test_ready_status_and_stopping_reach_a_socket_at_a_path():
    folder = tempfile.mkdtemp(prefix="dm-", dir="/tmp")
    path = os.path.join(folder, "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(10)
        notifier = Notifier(path)

        assert notifier.ready("sending due emails")
        assert sock.recv(4096) == b"READY=1\nSTATUS=sending due emails"
        assert notifier.status("sent 12\nfailed 0")  # one line each: a newline would be a key
        assert sock.recv(4096) == b"STATUS=sent 12 failed 0"
        assert notifier.stopping()
        assert sock.recv(4096) == b"STOPPING=1"
    os.unlink(path)
    os.rmdir(folder)


def test_an_at_sign_means_the_abstract_namespace():
    name = f"dripmail-unit-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(10)
        assert Notifier("@" + name).ready()
        assert sock.recv(4096) == b"READY=1"


def test_without_a_socket_nothing_is_sent():
    assert not Notifier(None).enabled
    assert not Notifier("").ready()
    assert not NOBODY.stopping()


def test_a_socket_that_is_gone_is_logged_and_the_work_goes_on(caplog):
    with caplog.at_level(logging.WARNING, logger="dripmail.notify"):
        assert not Notifier("/nonexistent/dripmail/notify").ready()
    assert "could not notify the service manager" in caplog.text
