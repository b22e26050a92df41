"""`serve` shares its senders across the requests of its thread pool: patients' "send me
my data" emails at the same moment each go whole, over one SMTP connection, to their own
address (review 1, finding 5). Real aiosmtpd, the SMTP sender dripmail ships."""

from __future__ import annotations

import threading
from collections import Counter

from campaigns.delivery.sender_pool import SerialSenders
from senders.base import Attachment, Message, Outcome
from senders.smtp import SmtpSender
from tests.smtp_server import SmtpTestServer

THREADS, ROUNDS = 4, 10


def data_email(i: int) -> Message:
    """A data email as data_request.data_message builds it: an export attached."""
    address = f"patient{i:02d}@example.com"
    export = (f'{{"email": "{address}"}}' * 2000).encode()
    return Message(
        delivery_id=f"export-{i}",
        from_name="Balanced",
        from_address="care@clinic.example.com",
        to_address=address,
        to_name=None,
        subject="Your data from Balanced",
        preheader=None,
        html=f"<p>Your data, {i}</p>",
        text=f"Your data, {i}\n",
        reply_to=None,
        headers={"Message-ID": f"<dripmail.export-{i}@clinic.example.com>"},
        date=None,
        attachments=(Attachment("my-data.json", "application/json", export),),
    )


def test_concurrent_data_emails_through_serves_senders_each_go_whole_to_their_patient():
    with SmtpTestServer() as server:
        smtp = SmtpSender("127.0.0.1", server.port, security="none", max_wait=0)
        senders = SerialSenders(lambda _campaign: smtp)
        outcomes: dict[int, Outcome] = {}
        errors: list[BaseException] = []

        def request(i: int, barrier: threading.Barrier) -> None:
            barrier.wait()
            try:
                (result,) = senders(None).send([data_email(i)])  # type: ignore[arg-type]
                outcomes[i] = result.outcome
            except Exception as error:  # reported by the assert below
                errors.append(error)

        for round_ in range(ROUNDS):
            barrier = threading.Barrier(THREADS)
            threads = [
                threading.Thread(target=request, args=(round_ * THREADS + k, barrier))
                for k in range(THREADS)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        senders.close()

        assert errors == []
        assert Counter(outcomes.values()) == {Outcome.SENT: THREADS * ROUNDS}
        received = server.received
        assert len(received) == THREADS * ROUNDS
        for mail in received:
            assert mail.rcpt_tos == (mail.message["To"],)  # nobody got another's export
