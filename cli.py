"""dripmail's command line: each command parses, makes one library call, prints."""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from campaigns import errors

app = typer.Typer(
    name="dripmail",
    help="Turn an article into a drip campaign of responsive emails, sent per patient.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
console = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Database URL or SQLite file [env: DRIPMAIL_DATABASE_URL; default: dripmail.db]",
    ),
]
NowOption = Annotated[
    str | None,
    typer.Option("--now", help="Engine time, ISO 8601 (UTC when no offset); default: the clock."),
]


def command(example: str) -> Callable[[F], F]:
    """Register a command whose help ends with an example, turning errors into one line."""

    def decorate(func: F) -> F:
        doc = (func.__doc__ or "").strip()
        func.__doc__ = f"{doc}\n\nExample:\n\n    {example}"

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return func(*args, **kwargs)
            except errors.DripmailError as exc:
                for line in str(exc).splitlines() or [type(exc).__name__]:
                    err.print(f"error: {line}", markup=False)
                raise typer.Exit(exc.exit_code) from None
            except _sender_config_error() as exc:
                err.print(f"error: {exc}", markup=False)
                raise typer.Exit(2) from None

        return app.command()(wrapper)  # type: ignore[return-value]

    return decorate


def _sender_config_error() -> type[Exception]:
    from senders.base import SenderConfigurationError

    return SenderConfigurationError


def _store(db: str | None):
    from campaigns.store import Store

    return Store(db)


def _now(value: str | None) -> datetime:
    if not value:
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise errors.InputError(f"{value!r} is not an ISO date-time", field="--now") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _setup_logging() -> None:
    level = os.environ.get("DRIPMAIL_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


# -- build ---------------------------------------------------------------------------------


@command("dripmail split article.txt --out campaigns/sleep --org 'Balanced Ketamine'")
def split(
    article: Annotated[Path, typer.Argument(help="The article: .txt, .md or .html")],
    out: Annotated[Path, typer.Option("--out", help="Campaign folder to write")],
    cadence: Annotated[
        str, typer.Option(help="Days after sign-up for each email")
    ] = "0,2,4,7,10,14",
    title: Annotated[str | None, typer.Option(help="Title, when the article has none")] = None,
    name: Annotated[
        str | None, typer.Option(help="Campaign name (default: from the title)")
    ] = None,
    min_words: Annotated[int, typer.Option(help="Merge sections shorter than this")] = 30,
    max_words: Annotated[int, typer.Option(help="Split sections longer than this")] = 450,
    emails: Annotated[
        int | None, typer.Option(help="Pack the article into exactly N emails")
    ] = None,
    minutes: Annotated[
        float | None, typer.Option(help="Aim each email at M minutes of reading")
    ] = None,
    org: Annotated[str | None, typer.Option("--org", help="Organisation name")] = None,
    sender: Annotated[
        str | None, typer.Option("--from", help="Sender: 'Name <address>' or an address")
    ] = None,
    address: Annotated[
        str | None, typer.Option("--address", help="Postal address for the footer")
    ] = None,
    defaults: Annotated[
        Path | None, typer.Option(help="YAML file of defaults (see README)")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite hand edits")] = False,
) -> None:
    """Split an article into an editable campaign folder (campaign.yaml + one file per email)."""
    from campaigns.split import build_campaign_folder

    written = build_campaign_folder(
        article,
        out,
        cadence=cadence,
        title=title,
        name=name,
        min_words=min_words,
        max_words=max_words,
        emails=emails,
        minutes=minutes,
        organisation=org,
        sender=sender,
        postal_address=address,
        defaults_file=defaults,
        force=force,
    )
    for path in written.files:
        console.print(f"wrote {path}")
    console.print(f"{written.emails} emails; edit them, then: dripmail render {out} --out previews")
    for field_name in written.placeholders:
        console.print(
            f"placeholder: {field_name} (set it in {out / 'campaign.yaml'} before sending)"
        )


@command("dripmail render campaigns/sleep --out previews --sample")
def render(
    campaign: Annotated[str, typer.Argument(help="Campaign folder or published campaign name")],
    out: Annotated[Path, typer.Option("--out", help="Folder for .html, .txt, .eml and index.html")],
    email: Annotated[str | None, typer.Option(help="Personalise for this enrolled contact")] = None,
    sample: Annotated[
        bool, typer.Option("--sample", help="Personalise for a sample contact")
    ] = False,
    db: DbOption = None,
) -> None:
    """Write every email of a campaign as .html, .txt and .eml, with an index.html."""
    from campaigns.export import export_for

    index = export_for(_store(db) if email else None, campaign, out, email=email)
    console.print(f"wrote {index}")


# -- contacts ------------------------------------------------------------------------------


@command("dripmail enroll campaigns/sleep --email pat@example.com --timezone Europe/London")
def enroll(
    campaign: Annotated[str, typer.Argument(help="Campaign folder or published campaign name")],
    email: Annotated[str, typer.Option(help="The contact's address")],
    first_name: Annotated[str | None, typer.Option(help="First name for greetings")] = None,
    timezone: Annotated[
        str | None, typer.Option(help="IANA zone (default: the campaign's)")
    ] = None,
    signed_up_at: Annotated[
        str | None, typer.Option(help="ISO time; no offset = contact's zone")
    ] = None,
    consent: Annotated[
        str, typer.Option(help="Where and how consent was given")
    ] = "enrolled by staff with dripmail enroll",
    now: NowOption = None,
    db: DbOption = None,
) -> None:
    """Enroll one contact: publishes the campaign and plans one email per step."""
    from campaigns.enroll import Signup, enroll_ref

    report = enroll_ref(
        _store(db),
        campaign,
        Signup(email, first_name, timezone, signed_up_at, consent),
        now=_now(now),
    )
    if report.enrolled:
        console.print(f"enrolled contact into {report.campaign}: {report.steps} emails planned")
    elif report.suppressed:
        console.print("not enrolled: the address is suppressed")
    else:
        console.print(f"already enrolled in {report.campaign}; nothing changed")


@command("dripmail import campaigns/sleep contacts.csv --consent 'clinic sign-up form, 2026'")
def import_(
    campaign: Annotated[str, typer.Argument(help="Campaign folder or published campaign name")],
    csv_file: Annotated[
        Path, typer.Argument(metavar="CSV", help="email,first_name,timezone,signed_up_at,consent")
    ],
    consent: Annotated[str | None, typer.Option(help="Consent text for rows without one")] = None,
    now: NowOption = None,
    db: DbOption = None,
) -> None:
    """Import contacts from CSV; bad rows are reported by line and left out (exit 1)."""
    from campaigns.enroll import import_ref

    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("importing", total=None)
        report = import_ref(
            _store(db),
            campaign,
            csv_file,
            now=_now(now),
            consent=consent,
            progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
    for line, message in report.rejected:
        err.print(f"{csv_file}:{line}: {message}", markup=False)
    console.print(
        f"imported {report.enrolled}, already enrolled {report.already}, "
        f"suppressed {report.suppressed}, rejected {len(report.rejected)}"
    )
    if report.rejected:
        raise typer.Exit(1)


app.registered_commands[-1].name = "import"


@command("dripmail schedule campaigns/sleep --email pat@example.com")
def schedule(
    campaign: Annotated[str, typer.Argument(help="Campaign folder or published campaign name")],
    email: Annotated[str | None, typer.Option(help="Only this contact")] = None,
    limit: Annotated[int, typer.Option(help="Contacts to show at most")] = 20,
    now: NowOption = None,
    db: DbOption = None,
) -> None:
    """Print each contact's emails in their local time and in UTC."""
    from campaigns.reports import calendar_for

    entries = calendar_for(_store(db), campaign, email=email, limit=limit, now=_now(now))
    table = Table("contact", "zone", "#", "subject", "local time", "UTC", "status")
    for e in entries:
        table.add_row(
            e.contact,
            e.timezone,
            str(e.position),
            e.subject,
            f"{e.local:%a %Y-%m-%d %H:%M %Z}",
            f"{(e.sent_at or e.due_at):%Y-%m-%d %H:%M}",
            e.status,
        )
    console.print(table)


# -- sending -------------------------------------------------------------------------------


@command("dripmail run --once --now 2026-03-09T14:00Z")
def run(
    once: Annotated[bool, typer.Option("--once", help="Send what is due, then stop")] = False,
    now: NowOption = None,
    sender: Annotated[
        str | None, typer.Option(help="file, smtp, sendgrid or null (default: the campaign's)")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Deliveries claimed per batch")] = 500,
    interval: Annotated[float, typer.Option(help="Seconds between ticks without --once")] = 30.0,
    db: DbOption = None,
) -> None:
    """Send due emails of every published campaign (no campaign folder needed)."""
    from campaigns.dispatch import run_worker

    _setup_logging()
    for report in run_worker(
        _store(db),
        now=_now(now) if now else None,
        once=once or bool(now),
        sender=sender,
        batch_size=batch_size,
        interval=interval,
    ):
        console.print(
            f"sent {report.sent}, failed {report.failed}, unknown {report.unknown}, "
            f"retrying {report.retrying}, deferred {report.deferred}, skipped {report.skipped}"
        )


@command("dripmail retry --unknown --older-than 24h")
def retry(
    unknown: Annotated[
        bool, typer.Option("--unknown", help="Re-queue deliveries whose outcome was lost")
    ] = False,
    older_than: Annotated[
        str, typer.Option(help="Only those unknown for at least this long (m, h, d, w)")
    ] = "24h",
    now: NowOption = None,
    db: DbOption = None,
) -> None:
    """Re-queue `unknown` deliveries: they may have arrived, so only when staff decide."""
    from campaigns.dispatch import retry_unknown
    from campaigns.schedule import parse_delay

    if not unknown:
        raise errors.InputError("say what to retry: --unknown", field="retry")
    try:
        age = parse_delay(older_than).as_timedelta()
    except ValueError as exc:
        raise errors.InputError(str(exc), field="--older-than") from None
    count = retry_unknown(_store(db), older_than=age, now=_now(now))
    console.print(f"re-queued {count} unknown deliveries")


@command("dripmail send-test campaigns/sleep --step welcome --to staff@clinic.example")
def send_test(
    campaign: Annotated[str, typer.Argument(help="Campaign folder or published campaign name")],
    step: Annotated[str, typer.Option(help="Step key (file name without number and .md)")],
    to: Annotated[str, typer.Option(help="Staff address to send the test to")],
    sender: Annotated[
        str | None, typer.Option(help="file, smtp or sendgrid (default: the campaign's)")
    ] = None,
    db: DbOption = None,
) -> None:
    """Send one email of a campaign to a staff address, marked as a test; nothing is recorded."""
    from campaigns.dispatch import send_test as send
    from campaigns.publish import open_campaign

    store = _store(db)
    result = send(store, open_campaign(store, campaign), step, to, sender=sender, now=_now(None))
    if result.outcome != "sent":
        raise errors.DripmailError(f"the test was not sent ({result.outcome}): {result.error}")
    console.print(f"sent a test of {step} ({result.provider_id})")


app.registered_commands[-1].name = "send-test"


@command("dripmail status")
def status(
    campaign: Annotated[str | None, typer.Argument(help="Only this campaign")] = None,
    db: DbOption = None,
) -> None:
    """Count deliveries by state, per campaign."""
    from campaigns.reports import status_counts
    from campaigns.store import DeliveryStatus

    counts = status_counts(_store(db), campaign)
    table = Table("campaign", *DeliveryStatus.ALL)
    for name, by_state in counts.items():
        table.add_row(name, *(str(by_state[state]) for state in DeliveryStatus.ALL))
    console.print(table if counts else "no deliveries yet")


# -- demo ----------------------------------------------------------------------------------


@command("dripmail demo")
def demo(
    folder: Annotated[Path, typer.Option("--dir", help="Where the demo writes")] = Path(
        "dripmail-demo"
    ),
) -> None:
    """Build the clinic campaign, enroll three patients, send in simulated time, offline."""
    from campaigns.demo import run_demo

    with err.status("running the demo in simulated time…"):
        result = run_demo(folder)
    table = Table(
        "when (patient's local time)",
        "UTC",
        "patient",
        "zone",
        "#",
        "email",
        "status",
        title="Timeline",
    )
    for e in result.timeline:
        table.add_row(
            f"{e.local:%a %d %b %Y %H:%M %Z}",
            f"{(e.sent_at or e.due_at):%d %b %H:%M}",
            e.first_name or e.contact,
            e.timezone,
            str(e.position),
            e.subject,
            e.status,
        )
    console.print(table)
    emls = sorted(result.outbox.glob("*.eml"))
    console.print(f"campaign folder: {result.campaign_folder}")
    console.print(f"previews:        {result.previews / 'index.html'}")
    console.print(f"outbox:          {result.outbox} ({len(emls)} .eml files, index.csv)")
    console.print(f"database:        {result.database}")


if __name__ == "__main__":
    app()
