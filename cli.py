"""dripmail's command line: each command parses, makes one library call, prints."""

from __future__ import annotations

import functools
import inspect
import logging
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from rich.text import Text

from campaigns import errors

if TYPE_CHECKING:
    from campaigns.settings import Settings
    from campaigns.storage.store import Store

app = typer.Typer(
    name="dripmail",
    help="Turn an article into a drip campaign of responsive emails, sent per patient.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _group(name: str, help_text: str) -> typer.Typer:
    """A command group (`dripmail NAME ...`) added to the app."""
    group = typer.Typer(help=help_text, no_args_is_help=True, rich_markup_mode=None)
    app.add_typer(group, name=name)
    return group


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
MetricsPortOption = Annotated[
    int | None,
    typer.Option(
        "--metrics-port",
        min=0,
        max=65535,
        help="Serve Prometheus /metrics and /healthz on this port (0: any free one) of "
        "127.0.0.1, or of DRIPMAIL_METRICS_HOST [env: DRIPMAIL_METRICS_PORT; default: off]",
    ),
]
# `enroll` and `import`: the sign-up waits for the patient's confirmation (double opt-in).
DoubleOptInOption = Annotated[
    bool,
    typer.Option(
        "--double-opt-in",
        help="Email a confirmation first; plan the sequence once the patient confirms",
    ),
]
NowOption = Annotated[
    str | None,
    typer.Option("--now", help="Engine time, ISO 8601 (UTC when no offset); default: the clock."),
]


def command(
    example: str, *, name: str | None = None, group: typer.Typer | None = None
) -> Callable[[F], F]:
    """Register a command (on `group`, default the top level) whose help ends with an
    example, turning errors into one line."""

    def decorate(func: F) -> F:
        # cleandoc: an indented docstring line would reach the help as a run of spaces.
        doc = inspect.cleandoc(func.__doc__ or "")
        func.__doc__ = f"{doc}\n\nExample:\n\n    {example}"

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return func(*args, **kwargs)
            except errors.DripmailError as exc:
                for line in str(exc).splitlines() or [type(exc).__name__]:
                    err.print(f"error: {line}", markup=False)
                raise typer.Exit(exc.exit_code) from None

        return (group or app).command(name=name)(wrapper)  # type: ignore[return-value]

    return decorate


def _n(count: int, noun: str, nouns: str | None = None) -> str:
    """A count with its noun agreeing: `1 email`, `2 emails`."""
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"


def _dripmail_version() -> str:
    try:
        return version("dripmail")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "(not installed)"


def _version(value: bool) -> None:
    if value:
        from campaigns.storage.store import head_revision

        # Both versions: the release, and the newest schema it knows (`db current`).
        typer.echo(f"dripmail {_dripmail_version()} (database schema {head_revision()})")
        raise typer.Exit()


@app.callback()
def main(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit"
        ),
    ] = False,
) -> None:
    """The options before any command (`--version`); the app's help is the Typer's."""


def _settings() -> Settings:
    """The command's settings: every DRIPMAIL_* and SENDGRID_* variable, read once."""
    from campaigns.settings import Settings

    return Settings.from_env()


def _store(db: str | None, settings: Settings | None = None, *, existing: bool = False) -> Store:
    """The command's store; `existing` (commands that only read) never creates a database."""
    from campaigns.storage.store import Store

    return Store(db, settings=settings, existing=existing)


def _now(value: str | None, field: str = "--now") -> datetime:
    """`--now` (or another date-time option): UTC when no offset, within the range."""
    from campaigns.planning.schedule import parse_instant, zone

    if not value:
        return datetime.now(UTC)
    try:
        return parse_instant(value, zone("UTC"))
    except ValueError as exc:
        raise errors.InputError(str(exc), field=field) from None


def _setup_logging(settings: Settings) -> None:
    """Log to stderr at DRIPMAIL_LOG_LEVEL, as text or JSON lines (DRIPMAIL_LOG_FORMAT)."""
    from campaigns.logformat import setup_logging

    setup_logging(settings.log_level, settings.log_format, stream=sys.stderr)


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
    url: Annotated[
        str | None,
        typer.Option("--url", help="The article's public address: site links are made absolute"),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite hand edits; write over 60 emails")
    ] = False,
    max_size: Annotated[
        str, typer.Option("--max-size", help="Largest article to read, like 5MB")
    ] = "2MB",
) -> None:
    """Split an article into an editable campaign folder (campaign.yaml + one file per email)."""
    from campaigns.authoring.folder import build_campaign_folder

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
        url=url,
        force=force,
        max_size=max_size,
    )
    for path in written.files:
        console.print(f"wrote {path}")
    console.print(
        f"{_n(written.emails, 'email')}; edit them, then: dripmail render {out} --out previews"
    )
    if written.author or written.date:
        about = [f"by {written.author}" if written.author else "", written.date or ""]
        console.print("article: " + ", ".join(part for part in about if part), markup=False)
    if written.dropped:
        count = len(written.dropped)
        console.print(
            f"left out {count} site template tag{'s' if count != 1 else ''} with no text "
            f"of {'their' if count != 1 else 'its'} own (includes, embeds): "
            + ", ".join(written.dropped),
            markup=False,
        )
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
    language: Annotated[
        str | None, typer.Option(help="One of the campaign's languages (default: the contact's)")
    ] = None,
    db: DbOption = None,
) -> None:
    """Write every email of a campaign as .html, .txt and .eml, with an index.html."""
    from campaigns.reporting.export import export_for

    settings = _settings()
    store = _store(db, settings) if email else None
    index = export_for(store, campaign, out, email=email, settings=settings, language=language)
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
    language: Annotated[
        str | None, typer.Option(help="BCP 47 tag like es or pt-BR (default: the campaign's)")
    ] = None,
    restart: Annotated[
        bool, typer.Option("--restart", help="Already enrolled: start the sequence again")
    ] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Enroll a suppressed or unsubscribed address (new consent)"),
    ] = False,
    attribute: Annotated[
        list[str] | None,
        typer.Option(
            "--attribute",
            metavar="NAME=VALUE",
            help="An attribute kept on the contact (repeat for several)",
        ),
    ] = None,
    double_opt_in: DoubleOptInOption = False,
    now: NowOption = None,
    db: DbOption = None,
) -> None:
    """Enroll one contact: publishes the campaign and plans one email per step.

    Signing up again is ignored unless --restart; a suppressed or unsubscribed address
    is not enrolled unless --force. --attribute patient_type=new gives the contact an
    attribute that steps read as {{ attributes.patient_type }} and in `when:`.
    --double-opt-in (or `confirm: double` in campaign.yaml) sends a confirmation email
    first (by `dripmail run`); the sequence starts when the patient confirms.
    """
    from campaigns.planning.enroll import enroll_ref
    from campaigns.planning.signups import Signup, attribute_option

    when = _now(now)  # a bad --now opens no database
    attributes = dict(attribute_option(text) for text in attribute or ())
    report = enroll_ref(
        _store(db),
        campaign,
        Signup(
            email,
            first_name,
            timezone,
            signed_up_at,
            consent,
            attributes=attributes,
            language=language,
        ),
        now=when,
        restart=restart,
        force=force,
        double=True if double_opt_in else None,
    )
    if report.pending or report.resent:
        console.print(
            f"confirmation email owed for {report.campaign}: "
            "the sequence starts when the patient confirms"
        )
    elif report.awaiting:
        console.print(
            # A repeat replaces what the request holds (planning/held_changes.py): say so.
            f"already awaiting confirmation in {report.campaign} (asked less than a day ago); "
            "the details it holds are now this sign-up's"
        )
    elif report.enrolled:
        console.print(
            f"enrolled contact into {report.campaign}: {_n(report.steps, 'email')} planned"
        )
    elif report.restarted:
        console.print(
            f"restarted the sequence in {report.campaign}: {_n(report.steps, 'email')} planned"
        )
    elif report.suppressed:
        console.print("not enrolled: the address is suppressed (use --force with new consent)")
    elif report.unsubscribed:
        console.print("not enrolled: the address unsubscribed (use --force with new consent)")
    else:
        console.print(f"already enrolled in {report.campaign}; nothing changed")


@command(
    "dripmail import campaigns/sleep contacts.csv --consent 'clinic sign-up form, 2026'",
    name="import",
)
def import_(
    campaign: Annotated[str, typer.Argument(help="Campaign folder or published campaign name")],
    csv_file: Annotated[
        Path,
        typer.Argument(
            metavar="CSV",
            help="Columns email, first_name, timezone, signed_up_at, consent, tags (a;b), "
            "events (booked@2026-03-09T14:00;...), "
            "or as exports name them (Email Address, First Name, Time zone); "
            "other columns are kept on each contact",
        ),
    ],
    consent: Annotated[str | None, typer.Option(help="Consent text for rows without one")] = None,
    encoding: Annotated[
        str | None,
        typer.Option(help="The file's encoding when not UTF-8, like cp1252 (older Excel)"),
    ] = None,
    double_opt_in: DoubleOptInOption = False,
    now: NowOption = None,
    db: DbOption = None,
) -> None:
    """Import contacts from CSV; bad rows are reported by line and left out (exit 1).

    With --double-opt-in (or `confirm: double` in campaign.yaml) each new contact gets a
    confirmation email first (sent by `dripmail run`), and is enrolled on confirming.
    """
    from campaigns.planning.enroll import import_ref

    when = _now(now)  # a bad --now opens no database
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("importing", total=None)
        report = import_ref(
            _store(db),
            campaign,
            csv_file,
            now=when,
            consent=consent,
            encoding=encoding,
            progress=lambda done, total: progress.update(task, completed=done, total=total),
            double=True if double_opt_in else None,
        )
    for line, message in report.rejected:
        err.print(f"{csv_file}:{line}: {message}", markup=False)
    if report.attributes:
        kept = ", ".join(
            header if header == name else f"{header} (as {name})"
            for header, name in report.attributes.items()
        )
        console.print(f"kept on each contact: {kept}")
    console.print(
        f"imported {report.enrolled}, already enrolled {report.already}, "
        f"suppressed {report.suppressed}, rejected {len(report.rejected)}"
    )
    if report.pending or report.resent or report.awaiting:
        console.print(
            f"awaiting confirmation {report.pending + report.resent + report.awaiting}: "
            "each is enrolled when they confirm by email"
        )
    if report.events:
        console.print(
            f"events recorded {report.events}: {_n(report.converted, 'enrollment')} converted, "
            f"{_n(report.cancelled, 'pending email')} cancelled"
        )
    if report.rejected:
        raise typer.Exit(1)


@command("dripmail schedule campaigns/sleep --email pat@example.com")
def schedule(
    campaign: Annotated[str, typer.Argument(help="Campaign folder or published campaign name")],
    email: Annotated[str | None, typer.Option(help="Only this contact")] = None,
    limit: Annotated[int, typer.Option(help="Contacts to show at most")] = 20,
    sample: Annotated[
        bool, typer.Option("--sample", help="Sample sign-ups in several zones, not contacts")
    ] = False,
    signed_up_at: Annotated[
        str | None,
        typer.Option(help="Sample sign-up time (no offset: that wall time in each zone)"),
    ] = None,
    zone: Annotated[
        list[str] | None, typer.Option("--zone", help="Sample zone (repeat for several)")
    ] = None,
    now: NowOption = None,
    db: DbOption = None,
) -> None:
    """Print each contact's emails in their local time and in UTC, with why each moved.

    The note column says when a day off, a closed date, the window's hours, one email
    per opening or min_gap moved an email, and when DST changed the UTC offset; for a
    pending email, first when the patient's own choice holds it ("paused by the patient
    until ...", "fewer emails: 7 days between emails"). For steps with `when:`, the when
    column says whether the contact gets it and why.
    """
    from campaigns.planning.ranges import MAX_SHOWN, check_count
    from campaigns.reporting.reports import calendar_for

    when = _now(now)
    try:
        check_count(limit, MAX_SHOWN)
    except ValueError as exc:
        raise errors.InputError(str(exc), field="--limit") from None
    entries = calendar_for(
        _store(db, existing=not sample),  # sample sign-ups need no contacts
        campaign,
        email=email,
        limit=limit,
        now=when,
        sample=sample,
        signed_up_at=signed_up_at,
        zones=tuple(zone or ()),
    )
    # A `when` column only for a campaign with conditions: who gets each step and why.
    conditional = any(e.condition for e in entries)
    columns = ("contact", "zone", "#", "subject", "local time", "UTC", "status", "note")
    table = Table(*columns, *(("when",) if conditional else ()))
    for e in entries:
        table.add_row(
            e.contact,
            e.timezone,
            str(e.position),
            e.subject,
            f"{e.local:%a %Y-%m-%d %H:%M %Z}",
            f"{(e.sent_at or e.due_at):%Y-%m-%d %H:%M}",
            e.status,
            e.note,
            *((Text(e.condition),) if conditional else ()),  # `[returning]` is no markup
        )
    if email and not entries:
        err.print(f"error: {email} is not enrolled in {campaign}", markup=False)
        raise typer.Exit(1)
    console.print(table)


# -- sending -------------------------------------------------------------------------------


@command("dripmail run --once --now 2026-03-09T14:00Z")
def run(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="Send what is due, then stop")] = False,
    now: NowOption = None,
    sender: Annotated[
        str | None,
        typer.Option(
            help="file, smtp, sendgrid, ses, mailgun, postmark or null (default: the campaign's)"
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Deliveries claimed per batch")] = 500,
    interval: Annotated[
        str, typer.Option(help="Time between ticks without --once: seconds, or 30s, 2m")
    ] = "30s",
    lease: Annotated[
        str,
        typer.Option(
            help="How long a claimed batch stays this worker's before others may take it "
            "back (s, m, h), on the database's clock"
        ),
    ] = "5m",
    workers: Annotated[
        int, typer.Option(min=1, help="Worker processes on this machine (PostgreSQL: in parallel)")
    ] = 1,
    outbox: Annotated[
        str | None,
        typer.Option(
            "--outbox",
            help="The file sender's folder, over the campaign's [env: DRIPMAIL_OUTBOX]",
        ),
    ] = None,
    metrics_port: MetricsPortOption = None,
    db: DbOption = None,
) -> None:
    """Send due emails of every published campaign (no folder needed); SIGTERM stops it cleanly."""
    from campaigns.delivery.report import RunReport
    from campaigns.delivery.workers import WorkerOptions, run_worker, run_workers
    from campaigns.monitoring.exporter import open_metrics
    from campaigns.notify import Notifier
    from campaigns.planning.ranges import MAX_BATCH, check_count
    from campaigns.planning.schedule import parse_delay, parse_seconds

    try:
        lease_time = parse_delay(lease).as_timedelta()
    except ValueError as exc:
        raise errors.InputError(str(exc), field="--lease") from None
    try:
        check_count(batch_size, MAX_BATCH)
    except ValueError as exc:
        raise errors.InputError(str(exc), field="--batch-size") from None
    try:
        tick = parse_seconds(interval)
    except ValueError as exc:
        raise errors.InputError(str(exc), field="--interval") from None
    if not lease_time:
        raise errors.InputError("must be longer than zero, like 5m", field="--lease")
    settings = _settings()
    if outbox:  # the operator's choice, over DRIPMAIL_OUTBOX and the campaign file's
        settings = settings.model_copy(update={"outbox": outbox})
    _setup_logging(settings)

    def line(report) -> str:
        return (
            f"sent {report.sent}, failed {report.failed}, unknown {report.unknown}, "
            f"retrying {report.retrying}, deferred {report.deferred}, skipped {report.skipped}"
            + (  # double opt-in: said only when there was some
                f", confirmation emails {report.confirmations}, "
                f"expired sign-ups {report.expired_signups}"
                if report.confirmations or report.expired_signups
                else ""
            )
        )

    shown: list[str] = []

    def held(report) -> None:
        for name, reason in sorted(report.paused.items()):  # delivery/autopause.py
            err.print(
                f"warning: campaign {name} paused itself: {reason}; "
                f"only a person resumes it: dripmail resume {name}",
                markup=False,
            )
        # A campaign kept back by its own problem: one line each, when they change.
        lines = [h.line() for _, h in sorted(report.held.items())]
        if lines and lines != shown:
            for text in lines:
                err.print(f"error: {text}", markup=False)
        shown[:] = lines or shown

    when = _now(now) if now else None
    store = _store(db, settings, existing=True)
    console.print(f"database: {store.location}")
    notifier = Notifier(settings.notify_socket)  # systemd's Type=notify: READY=1, STOPPING=1
    metrics = open_metrics(store, settings, metrics_port)
    if metrics is not None:
        ctx.call_on_close(metrics.close)  # when `run` ends, however it ends
        console.print(f"metrics: {metrics.url}")
    if workers == 1:
        for report in run_worker(
            store,
            now=when,
            once=once or bool(now),
            sender=sender,
            batch_size=batch_size,
            interval=tick,
            lease=lease_time,
            handle_signals=True,
            settings=settings,
            notifier=notifier,
            observer=metrics.metrics.worker(0) if metrics else None,
        ):
            console.print(line(report))
            held(report)
        if shown:
            raise typer.Exit(1)
        return
    if metrics is None:
        store.close()  # each worker process opens its own (the metrics read this one)
    options = WorkerOptions(
        url=store.url,
        now=when,
        once=once or bool(now),
        sender=sender,
        batch_size=batch_size,
        interval=tick,
        lease=lease_time,
        log_level=logging.getLogger().level,
        outbox=settings.outbox,
    )
    total = RunReport()
    # With metrics, each worker's hand-offs and ticks come up here: one port for all.
    observers = metrics.metrics.worker if metrics else None
    for index, report in run_workers(workers, options, notifier, observers):
        total.add(report)
        console.print(f"worker {index}: {line(report)}")
    if options.once:
        console.print(f"all {workers} workers: {line(total)}")
    held(total)
    if shown:
        raise typer.Exit(1)


@command("dripmail retry --unknown --older-than 24h")
def retry(
    unknown: Annotated[
        bool, typer.Option("--unknown", help="Re-queue deliveries whose outcome was lost")
    ] = False,
    older_than: Annotated[
        str, typer.Option(help="Only those unknown for at least this long (s, m, h, d, w)")
    ] = "24h",
    now: NowOption = None,
    db: DbOption = None,
) -> None:
    """Re-queue `unknown` deliveries: they may have arrived, so only when staff decide."""
    from campaigns.delivery.retry import retry_unknown
    from campaigns.planning.schedule import parse_delay

    if not unknown:
        raise errors.InputError("say what to retry: --unknown", field="retry")
    try:
        age = parse_delay(older_than).as_timedelta()
    except ValueError as exc:
        raise errors.InputError(str(exc), field="--older-than") from None
    when = _now(now)
    count = retry_unknown(_store(db, existing=True), older_than=age, now=when)
    console.print(f"re-queued {_n(count, 'unknown delivery', 'unknown deliveries')}")


@command(
    "dripmail send-test campaigns/sleep --step welcome --to staff@clinic.example", name="send-test"
)
def send_test(
    campaign: Annotated[str, typer.Argument(help="Campaign folder or published campaign name")],
    step: Annotated[str, typer.Option(help="Step key (file name without number and .md)")],
    to: Annotated[str, typer.Option(help="Staff address to send the test to")],
    sender: Annotated[
        str | None,
        typer.Option(
            help="file, smtp, sendgrid, ses, mailgun or postmark (default: the campaign's)"
        ),
    ] = None,
    language: Annotated[
        str | None, typer.Option(help="One of the campaign's languages (default: its default)")
    ] = None,
    variant: Annotated[
        str | None, typer.Option(help="An A/B variant of the step: a, b, … (default: its first)")
    ] = None,
    db: DbOption = None,
) -> None:
    """Send one email of a campaign to a staff address, marked as a test; nothing is recorded."""
    from campaigns.delivery.send_test import send_test as send
    from campaigns.storage.publish import open_campaign

    store = _store(db)
    result = send(
        store,
        open_campaign(store, campaign),
        step,
        to,
        sender=sender,
        now=_now(None),
        language=language,
        variant=variant,
    )
    if result.outcome != "sent":
        raise errors.DripmailError(f"the test was not sent ({result.outcome}): {result.error}")
    console.print(f"sent a test of {step} ({result.provider_id})")


@command("dripmail status")
def status(
    campaign: Annotated[str | None, typer.Argument(help="Only this campaign")] = None,
    email: Annotated[
        str | None,
        typer.Option(help="Only this contact: their pending emails, every campaign, and why"),
    ] = None,
    now: NowOption = None,
    db: DbOption = None,
) -> None:
    """Count deliveries by state, per campaign.

    With --email (dripmail status --email pat@example.com), one patient's pending
    emails in every campaign instead, soonest first, and what of their own choice holds
    them ("paused by the patient until ...", "fewer emails: 7 days between emails").
    """
    from campaigns.delivery.heartbeats import heartbeats
    from campaigns.reporting.contact_status import contact_status
    from campaigns.reporting.reports import campaign_pauses, confirmation_states, status_counts
    from campaigns.storage.statuses import DELIVERY_STATES
    from campaigns.storage.store import utcnow

    store = _store(db, existing=True)
    console.print(f"database: {store.location}")
    if email is not None:
        for line in contact_status(store, email, now=_now(now)).lines():
            console.print(line, markup=False, highlight=False)
        return
    state = store.schema_state()
    console.print(
        f"schema: {state.current} (dripmail {_dripmail_version()} knows up to {state.head})"
    )
    counts = status_counts(store, campaign)
    table = Table("campaign", *DELIVERY_STATES)
    for name, by_state in counts.items():
        table.add_row(name, *(str(by_state[state]) for state in DELIVERY_STATES))
    console.print(table if counts else "no deliveries yet")
    for name, asked in confirmation_states(store, campaign).items():  # double opt-in
        console.print(asked.line(name), markup=False, highlight=False)
    # Paused campaigns (and why, when dripmail paused one), and the workers' heartbeats.
    for pause in campaign_pauses(store, campaign):
        console.print(pause.line(), markup=False, highlight=False)
    clock = utcnow()
    beats = heartbeats(store)
    console.print("workers:" if beats else "workers: none has run yet", highlight=False)
    for beat in beats:
        console.print(f"  {beat.line(clock)}", markup=False, highlight=False)


@command("dripmail doctor --resolver 127.0.0.1:5353 --dkim-selector s1 campaigns/sleep")
def doctor(
    folders: Annotated[
        list[Path] | None,
        typer.Argument(help="Campaign folders to check too (default: the published campaigns)"),
    ] = None,
    resolver: Annotated[
        str | None,
        typer.Option(help="DNS server to ask, host:port like 127.0.0.1:5353 or [::1]:53"),
    ] = None,
    dkim_selector: Annotated[
        list[str] | None,
        typer.Option(help="DKIM selector to look for too, beside the provider's (repeatable)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the checks as JSON")] = False,
    db: DbOption = None,
) -> None:
    """Check what would make sending fail or land in spam: database, secret key, public URL,
    each campaign's sender and unsubscribe headers, each From domain's SPF, DKIM, DMARC and
    MX. One line per check, with what to do; exit 1 when any fails."""
    import json

    from campaigns.reporting.doctor import diagnose
    from campaigns.reporting.doctor_dns import resolver_address

    address = resolver_address(resolver) if resolver else None
    result = diagnose(
        _settings(),
        database=db,
        resolver=address,
        dkim_selectors=tuple(dkim_selector or ()),
        folders=tuple(folders or ()),
        now=_now(None),
    )
    if as_json:
        typer.echo(json.dumps([c.as_dict() for c in result.checks], indent=2, ensure_ascii=False))
    else:
        for check in result.checks:
            typer.echo(f"{'✓' if check.ok else '✗'} {check.name}: {check.detail}")
            if not check.ok and check.fix:
                typer.echo(f"    fix: {check.fix}")
        failed = sum(not c.ok for c in result.checks)
        typer.echo(f"{_n(failed, 'problem')} found" if failed else "all checks passed")
    if not result.ok:
        raise typer.Exit(1)


# -- service, statistics, checks, privacy ----------------------------------------------------


@command("DRIPMAIL_PUBLIC_URL=https://mail.clinic.example dripmail serve --port 8026")
def serve(
    host: Annotated[
        str, typer.Option(help="Address to listen on (put an https proxy in front)")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (preview uses 8025)")] = 8026,
    metrics_port: MetricsPortOption = None,
    db: DbOption = None,
) -> None:
    """Answer unsubscribe links (/u/, /p/) and provider events (/webhooks/<provider>)."""
    from campaigns.notify import Notifier
    from campaigns.web.app import serve as run_server

    settings = _settings()
    _setup_logging(settings)
    notifier = Notifier(settings.notify_socket)  # systemd's Type=notify: READY=1 once listening
    run_server(
        _store(db, settings), host=host, port=port, notifier=notifier, metrics_port=metrics_port
    )


@command("dripmail stats ketamine-and-sleep --json")
def stats(
    campaign: Annotated[str, typer.Argument(help="Published campaign name or campaign folder")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")] = False,
    db: DbOption = None,
) -> None:
    """Per step: sent, delivered, bounced, opened, clicked, unsubscribed, complaints, rates.

    With a `goal:`, conversions too: per step those whose last email before the goal
    was that step, and for the campaign the conversion rate over everyone enrolled.
    A step with A/B variants also gets a row per variant, whether the difference is
    meaningful at 95 % (or how many more sends it needs), and the winner if one was chosen.
    """
    import json

    from campaigns.reporting.stats import RATED, campaign_stats

    result = campaign_stats(_store(db, existing=True), campaign)
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
        return

    untracked = result.untracked

    def cell(column: str, value: int, rate: float | None) -> str:
        if column in untracked:
            return "not tracked"
        return str(value) if rate is None else f"{value} ({rate:.1%})"

    goals = bool(result.goals or result.conversions.converted)
    table = Table(
        "#", "step", "sent", "delivered", "bounced", "opened", "clicked", "unsubscribed",
        "complaints", *(["converted"] if goals else []), "rates over", title=f"{result.campaign}",
    )  # fmt: skip
    for column in table.columns:
        # A long step key (or "not tracked") wraps inside its cell instead of being cut;
        # headers stay whole.
        column.overflow = "fold"
        column.min_width = len(str(column.header))
    rows = [(str(s.position or "-"), s.key, s.counts) for s in result.steps]
    rows.append(("", "campaign total", result.total))
    for position, key, c in rows:
        rates = c.rates(untracked)
        table.add_row(
            position,
            key,
            str(c.sent),
            str(c.delivered),
            *(cell(name, getattr(c, name), rates[name]) for name in RATED),
            *([str(c.converted)] if goals else []),
            c.basis,
        )
    console.print(table)
    asked = result.confirmations  # double opt-in sign-ups, when the campaign has any
    if asked.waiting or asked.confirmed or asked.expired:
        console.print(asked.line(result.campaign), markup=False, highlight=False)
    if goals:
        conv = result.conversions
        rate = f" ({conv.rate:.1%})" if conv.rate is not None else ""
        console.print(
            f"conversions ({', '.join(result.goals) or 'no goal now'}): {conv.converted} of "
            f"{conv.enrolled} enrolled{rate}; by the last email sent before the goal, "
            f"{conv.before_any_email} before any email"
        )
    loose = {name: count for name, count in result.campaign_level.items() if count}
    if loose:
        console.print(
            "events naming no delivery (in the total): "
            + ", ".join(f"{name} {count}" for name, count in loose.items())
        )
    if result.total.soft_bounced:
        console.print(
            f"soft bounces: {result.total.soft_bounced} (not in bounced: the address stays "
            "and the provider may still deliver)"
        )
    if untracked:
        console.print(
            f"not tracked: {' and '.join(untracked)} (the sender reports none; SendGrid with "
            "track_opens/track_clicks and its event webhook does)"
        )
    if result.paused:
        console.print(result.paused.line(), markup=False, highlight=False)
    for step in result.variants:
        _print_variants(step, untracked)


def _count_rate(count: int, rate: float | None) -> str:
    return str(count) if rate is None else f"{count} ({rate:.1%})"


def _print_variants(step, untracked: tuple[str, ...]) -> None:
    """One step's A/B variants: a row each, then the winner and the verdict in words."""
    table = Table(
        "variant", "subject", "sent", "delivered", "opened", "clicked", "unsubscribed",
        "converted", title=f"{step.key}: variants (rates over sent)",
    )  # fmt: skip
    for v in step.variants:
        cells = [
            "not tracked"
            if column in untracked
            else _count_rate(getattr(v, column), v.rate(column))
            for column in ("delivered", "opened", "clicked", "unsubscribed", "converted")
        ]
        table.add_row(v.label, v.subject, str(v.sent), *cells)
    console.print(table)
    if step.winner is not None:
        console.print(f"  {step.winner.sentence()}", markup=False)
    console.print(f"  {step.verdict}", markup=False)


@command("dripmail check campaigns/sleep")
def check(
    campaign: Annotated[str, typer.Argument(help="Campaign folder or published campaign name")],
    db: DbOption = None,
) -> None:
    """Lint a campaign offline: postal address, unsubscribe, size, links, alt text, text part."""
    from campaigns.authoring.checks import check_ref

    report = check_ref(campaign, db=db)
    for finding in report.findings:
        (err if finding.severity == "error" else console).print(str(finding), markup=False)
    errors_, warnings = len(report.errors), len(report.warnings)
    console.print(
        f"{report.campaign}: {errors_} error{'' if errors_ == 1 else 's'}, "
        f"{warnings} warning{'' if warnings == 1 else 's'}"
    )
    if report.errors:
        raise typer.Exit(1)


contacts_app = _group(
    "contacts", "What is held on a person, and erasing it (GDPR access and erasure)."
)


@command("dripmail contacts export pat@example.com > pat.json", name="export", group=contacts_app)
def contacts_export(
    email: Annotated[str, typer.Argument(help="The person's address")],
    db: DbOption = None,
) -> None:
    """Print everything held on one person as JSON (contact, enrollments, deliveries, events)."""
    import json

    from campaigns.compliance.privacy import export_contact

    typer.echo(
        json.dumps(export_contact(_store(db, existing=True), email), indent=2, ensure_ascii=False)
    )


@command("dripmail contacts forget pat@example.com", name="forget", group=contacts_app)
def contacts_forget(
    email: Annotated[str, typer.Argument(help="The person's address")],
    db: DbOption = None,
) -> None:
    """Erase a person's address and name, cancel their emails, never mail the address again."""
    from campaigns.compliance.privacy import forget_contact

    report = forget_contact(_store(db), email, now=_now(None))
    who = f"contact {report.contact_id}" if report.contact_id is not None else "no contact held"
    console.print(
        f"erased: {who}; {_n(report.cancelled, 'pending email')} cancelled; "
        "the address is suppressed"
        + ("" if report.scrubbed else " (database file not fully scrubbed: see the log)")
    )


@command("dripmail contacts tag pat@example.com patients sleep", name="tag", group=contacts_app)
def contacts_tag(
    email: Annotated[str, typer.Argument(help="The person's address")],
    tags: Annotated[list[str], typer.Argument(help="Tags to add")],
    db: DbOption = None,
) -> None:
    """Add tags to a contact (newsletters go to tags: `dripmail newsletter schedule --to`)."""
    from campaigns.planning.contacts import retag

    console.print("tags: " + (", ".join(retag(_store(db), email, add=tags)) or "none"))


@command(
    "dripmail contacts event pat@example.com booked --at 2026-03-09T14:00",
    name="event",
    group=contacts_app,
)
def contacts_event(
    email: Annotated[str, typer.Argument(help="The person's address")],
    event: Annotated[str, typer.Argument(help="The event, as a campaign's goal names it")],
    at: Annotated[
        str | None, typer.Option(help="When it happened, ISO 8601 (no offset: contact's zone)")
    ] = None,
    event_id: Annotated[
        str | None, typer.Option(help="Its id in your system: recorded once")
    ] = None,
    now: NowOption = None,
    db: DbOption = None,
) -> None:
    """Record an event (a booking): enrollments whose goal it is stop, pending emails cancelled."""
    from campaigns.planning.conversions import ContactEvent, record_event

    result = record_event(
        _store(db), ContactEvent(event, at, event_id), email=email, source="cli", now=_now(now)
    )
    if not result.recorded:
        console.print(f"{event}: already recorded; nothing changed")
        return
    converted = ", ".join(name for name, _ in result.converted) or "none"
    console.print(
        f"{event} recorded: converted {converted}; {_n(result.cancelled, 'pending email')} "
        "cancelled"
    )


@command("dripmail contacts untag pat@example.com sleep", name="untag", group=contacts_app)
def contacts_untag(
    email: Annotated[str, typer.Argument(help="The person's address")],
    tags: Annotated[list[str], typer.Argument(help="Tags to remove")],
    db: DbOption = None,
) -> None:
    """Remove tags from a contact."""
    from campaigns.planning.contacts import retag

    console.print("tags: " + (", ".join(retag(_store(db), email, remove=tags)) or "none"))


# -- API tokens ------------------------------------------------------------------------------


tokens_app = _group(
    "tokens", "Named, scoped bearer tokens for the API of `dripmail serve` (shown once)."
)


@command("dripmail tokens add crm --scope enroll,read", name="add", group=tokens_app)
def tokens_add(
    name: Annotated[str, typer.Argument(help="A name for who holds it (crm, booking)")],
    scope: Annotated[
        str, typer.Option("--scope", help="Comma-separated, required: enroll, events, read")
    ],
    db: DbOption = None,
) -> None:
    """Make a token; it is printed once, alone on the last line, and only its hash is kept."""
    from campaigns.web.api_tokens import add_token, parse_scopes

    token = add_token(_store(db), name, scope, now=_now(None))
    console.print(
        f"token {name.strip().lower()} made, scopes {', '.join(parse_scopes(scope))}. "
        "It is shown this once: store it now (dripmail keeps only its hash)."
    )
    typer.echo(token)


@command("dripmail tokens list", name="list", group=tokens_app)
def tokens_list(db: DbOption = None) -> None:
    """Show every token's name, scopes, creation, last use and revocation (never the token)."""
    from campaigns.web.api_tokens import list_tokens

    def when(value: datetime | None, none: str) -> str:
        return value.strftime("%Y-%m-%d %H:%MZ") if value else none

    found = list_tokens(_store(db, existing=True))
    if not found:
        console.print("no tokens (add one: dripmail tokens add NAME --scope ...)")
        return
    width = max(4, *(len(t.name) for t in found))
    console.print(
        f"{'NAME':<{width}}  {'SCOPES':<18}  {'CREATED':<17}  {'LAST USED':<17}  REVOKED",
        markup=False,
    )
    for t in found:
        console.print(
            f"{t.name:<{width}}  {','.join(t.scopes):<18}  {when(t.created_at, '-'):<17}  "
            f"{when(t.last_used_at, 'never'):<17}  {when(t.revoked_at, '-')}",
            markup=False,
        )


@command("dripmail tokens revoke crm", name="revoke", group=tokens_app)
def tokens_revoke(
    name: Annotated[str, typer.Argument(help="The token's name")],
    db: DbOption = None,
) -> None:
    """Revoke a token: requests with it are refused (401) from now on."""
    from campaigns.web.api_tokens import revoke_token

    done = revoke_token(_store(db), name, now=_now(None))
    console.print(f"token {name.strip().lower()} " + ("revoked" if done else "was revoked already"))


# -- suppressions --------------------------------------------------------------------------


suppress_app = _group(
    "suppress",
    "Stop email to a person without erasing them (only the address's keyed hash is kept).",
)


@command(
    "dripmail suppress add pat@example.com --reason 'patient phoned'",
    name="add",
    group=suppress_app,
)
def suppress_add(
    emails: Annotated[list[str], typer.Argument(metavar="EMAIL...", help="Addresses to stop")],
    reason: Annotated[
        str | None, typer.Option(help="Why, up to 32 characters (default: added by staff)")
    ] = None,
    now: NowOption = None,
    db: DbOption = None,
) -> None:
    """Never email these addresses again; their pending emails are cancelled at once."""
    from campaigns.compliance.staff import suppress_addresses

    when = _now(now)
    report = suppress_addresses(_store(db), emails, reason=reason, now=when)
    console.print(
        f"{report.new} newly suppressed, {report.already} already suppressed; "
        f"{report.cancelled} pending emails cancelled"
    )


@command(
    "dripmail suppress import mailchimp-unsubscribed.csv --reason 'from Mailchimp'",
    name="import",
    group=suppress_app,
)
def suppress_import(
    file: Annotated[
        Path,
        typer.Argument(metavar="FILE", help="One address a line, or a CSV with an email column"),
    ],
    reason: Annotated[
        str | None, typer.Option(help="Why, up to 32 characters (default: imported list)")
    ] = None,
    now: NowOption = None,
    db: DbOption = None,
) -> None:
    """Suppress every address of a list exported from another email service.

    Unreadable lines are reported by number and left out (exit 1).
    """
    from campaigns.compliance.staff import import_suppressions

    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("suppressing", total=None)
        report = import_suppressions(
            _store(db),
            file,
            reason=reason,
            now=_now(now),
            progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
    for line in report.unreadable:
        err.print(f"{file}:{line}: no email address on this line", markup=False)
    console.print(
        f"{report.new} newly suppressed, {report.already} already suppressed, "
        f"{len(report.unreadable)} unreadable; {report.cancelled} pending emails cancelled"
    )
    if report.unreadable:
        raise typer.Exit(1)


@command("dripmail suppress check pat@example.com", name="check", group=suppress_app)
def suppress_check(
    email: Annotated[str, typer.Argument(help="The address")],
    db: DbOption = None,
) -> None:
    """Say whether an address is suppressed, since when and why."""
    from campaigns.compliance.staff import check_suppression

    state = check_suppression(_store(db, existing=True), email)
    if state.suppressed and state.since is not None:
        console.print(f"yes: suppressed since {state.since:%Y-%m-%d %H:%M} UTC ({state.reason})")
    elif state.removed_at is not None:
        console.print(
            f"no: its suppression was removed {state.removed_at:%Y-%m-%d %H:%M} UTC "
            f"({state.removed_because})"
        )
    else:
        console.print("no: not suppressed")


@command(
    "dripmail suppress remove pat@example.com --reason 'signed up again at reception'",
    name="remove",
    group=suppress_app,
)
def suppress_remove(
    email: Annotated[str, typer.Argument(help="The address")],
    reason: Annotated[
        str | None, typer.Option(help="Why (required, kept), up to 32 characters")
    ] = None,
    now: NowOption = None,
    db: DbOption = None,
) -> None:
    """Let email go to an address again; cancelled emails stay cancelled (enroll --restart)."""
    from campaigns.compliance.staff import remove_suppression

    when = _now(now)
    if remove_suppression(_store(db, existing=True), email, reason=reason, now=when):
        console.print("removed the suppression; new emails may be planned for this address")
    else:
        console.print("not suppressed; nothing changed")


# -- mailbox -------------------------------------------------------------------------------


mailbox_app = _group(
    "mailbox",
    "Bounces, complaints and emailed unsubscribes from a mailbox (Maildir, .eml or IMAP).",
)


@command(
    "dripmail mailbox read --imap imaps://bounces@mail.clinic.example/INBOX --watch",
    name="read",
    group=mailbox_app,
)
def mailbox_read(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(metavar="MAILDIR|FILE.eml...", help="Maildirs or single mails to read"),
    ] = None,
    imap: Annotated[
        str | None,
        typer.Option(
            "--imap",
            metavar="URL",
            help="IMAP mailbox: imaps://user@host:993/INBOX [password: DRIPMAIL_IMAP_PASSWORD]",
        ),
    ] = None,
    watch: Annotated[
        bool,
        typer.Option("--watch", help="Keep reading the IMAP mailbox as mail arrives (IDLE)"),
    ] = False,
    db: DbOption = None,
) -> None:
    """Act on bounces (RFC 3464), complaints (ARF) and unsubscribe mails that verify.

    A hard bounce or a complaint suppresses the address and cancels its pending emails;
    an unsubscribe mail does what the one-click link does. Mails acted on are marked
    read (Maildir: moved to cur/ with the S flag; IMAP: flagged \\Seen); any other mail is
    left unread for a person. Reading twice changes nothing more.
    """
    from campaigns.compliance.mailbox import Watch, read_mailbox

    settings = _settings()
    _setup_logging(settings)
    try:
        report = read_mailbox(
            _store(db, settings), paths or [], imap=imap, watch=Watch() if watch else None
        )
    except KeyboardInterrupt:  # --watch runs until stopped
        raise typer.Exit(0) from None
    for where, why in report.left:
        console.print(f"left for a person: {where} ({why})", markup=False)
    kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(report.kinds.items()))
    console.print(
        f"{_n(report.read, 'mail')} read: {kinds or 'nothing to act on'}"
        f"{f' ({report.duplicates} seen before)' if report.duplicates else ''}; "
        f"{len(report.left)} left for a person; {report.suppressed} addresses suppressed, "
        f"{_n(report.cancelled, 'pending email')} cancelled",
        markup=False,
    )


# -- newsletters ---------------------------------------------------------------------------


newsletter_app = _group(
    "newsletter", "One email (an article or a digest) to tagged contacts, at once or at local time."
)


@command(
    "dripmail newsletter create a.md b.md c.md --out issues/may --url https://example.org/news",
    name="create",
    group=newsletter_app,
)
def newsletter_create(
    articles: Annotated[list[Path], typer.Argument(help="One article, or several for a digest")],
    out: Annotated[Path, typer.Option("--out", help="Newsletter folder to write")],
    title: Annotated[str | None, typer.Option(help="Subject (default: from the articles)")] = None,
    url: Annotated[
        str | None, typer.Option(help="https page the 'read the rest' and digest links go to")
    ] = None,
    org: Annotated[str | None, typer.Option("--org", help="Organisation name")] = None,
    sender: Annotated[
        str | None, typer.Option("--from", help="Sender: 'Name <address>' or an address")
    ] = None,
    address: Annotated[
        str | None, typer.Option("--address", help="Postal address for the footer")
    ] = None,
    defaults: Annotated[
        Path | None, typer.Option(help="Defaults file (organisation, sender, address)")
    ] = None,
    force: Annotated[bool, typer.Option(help="Overwrite a folder that is not empty")] = False,
) -> None:
    """Write an editable newsletter folder (renders with `dripmail render` and the studio)."""
    from campaigns.planning.newsletter import create_newsletter

    made = create_newsletter(
        articles,
        out,
        title=title,
        url=url,
        organisation=org,
        sender=sender,
        postal_address=address,
        defaults_file=defaults,
        force=force,
    )
    console.print(f"wrote {out}: “{made.steps[0].subject}” (name: {made.name})", markup=False)
    for field_name in made.placeholders():
        err.print(f"warning: {out}/campaign.yaml: {field_name} is a placeholder", markup=False)


@command(
    "dripmail newsletter schedule issues/may --to patients --local-time 09:00 --date 2026-06-02",
    name="schedule",
    group=newsletter_app,
)
def newsletter_schedule(
    folder: Annotated[Path, typer.Argument(help="Newsletter folder")],
    to: Annotated[list[str], typer.Option("--to", help="Tag to send to (repeat for several)")],
    at: Annotated[str | None, typer.Option(help="One instant for everyone (ISO 8601)")] = None,
    local_time: Annotated[
        str | None, typer.Option(help="HH:MM in each reader's own zone, with --date")
    ] = None,
    on_date: Annotated[str | None, typer.Option("--date", help="YYYY-MM-DD")] = None,
    max_per_hour: Annotated[
        int | None, typer.Option(help="At most N sends in any clock hour, spread evenly")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print counts per hour and zone; write nothing")
    ] = False,
    now: NowOption = None,
    db: DbOption = None,
) -> None:
    """Plan one delivery per subscribed, unsuppressed member; `dripmail run` sends them."""
    from campaigns.planning.newsletter import open_store, schedule_newsletter
    from campaigns.planning.schedule import INSTANT_EXAMPLE, parse_date

    when = None
    if at is not None:
        if not at.strip():
            raise errors.InputError(
                f"{at!r} is not an ISO date-time: {INSTANT_EXAMPLE}", field="--at"
            )
        when = _now(at, "--at")
    day = None
    if on_date is not None:
        try:
            day = parse_date(on_date)
        except ValueError as exc:
            raise errors.InputError(str(exc), field="--date") from None
    store = open_store(db, read_only=dry_run)
    plan = schedule_newsletter(
        store,
        folder,
        to,
        now=_now(now),
        at=when,
        local_time=local_time,
        on_date=day,
        max_per_hour=max_per_hour,
        dry_run=dry_run,
    )
    hours = Table("hour (UTC)", "emails", title="per hour")
    for hour, count in plan.per_hour:
        hours.add_row(hour.strftime("%Y-%m-%d %H:00"), str(count))
    zones = Table("zone", "emails", title="per zone")
    for name, count in plan.per_zone:
        zones.add_row(name, str(count))
    console.print(hours)
    console.print(zones)
    verb = "would plan" if dry_run else "planned"
    console.print(
        f"{verb} {_n(len(plan.due), 'email')} of {plan.campaign}; left out: "
        f"{plan.skipped_unsubscribed} left the newsletter, {plan.skipped_suppressed} suppressed, "
        f"{plan.skipped_unconfirmed} not confirmed, {plan.already} already planned"
        + (" (dry run: nothing written)" if dry_run else "")
    )
    why = plan.why_nobody()
    if why:
        err.print(f"error: {why}", markup=False)
        raise typer.Exit(1)


@command("dripmail newsletter cancel issues/may", name="cancel", group=newsletter_app)
def newsletter_cancel(
    folder: Annotated[Path, typer.Argument(help="Newsletter folder")],
    now: NowOption = None,
    db: DbOption = None,
) -> None:
    """Cancel every email of this newsletter that has not gone out yet."""
    from campaigns.planning.newsletter import cancel_newsletter

    when = _now(now)
    cancelled = cancel_newsletter(_store(db), folder, now=when)
    console.print(f"cancelled {_n(cancelled, 'email')}")


# -- outbound webhooks ----------------------------------------------------------------------


webhooks_app = _group(
    "webhooks",
    "Tell the clinic's systems what happened: signed outbound webhooks (Standard Webhooks).",
)


@command(
    "dripmail webhooks add https://crm.example.org/dripmail --events sent,bounced,unsubscribed",
    name="add",
    group=webhooks_app,
)
def webhooks_add(
    url: Annotated[str, typer.Argument(help="https URL (http only on 127.0.0.1/localhost/[::1])")],
    events: Annotated[
        str,
        typer.Option(
            help="Comma-separated: enrolled, confirmed, sent, bounced, complained, "
            "unsubscribed, converted"
        ),
    ],
    include_email: Annotated[
        bool, typer.Option("--include-email", help="Add the contact's address to each payload")
    ] = False,
    db: DbOption = None,
) -> None:
    """Add an endpoint; its signing secret is printed once, on the last line."""
    from campaigns.delivery.webhook_endpoints import add_endpoint, parse_events

    names = parse_events(events)
    endpoint, secret = add_endpoint(
        _store(db), url, names, include_email=include_email, now=datetime.now(UTC)
    )
    console.print(
        f"added webhook endpoint {endpoint.id}: {endpoint.url} ({', '.join(endpoint.events)}"
        f"{'; with the address' if endpoint.include_email else ''})",
        markup=False,
    )
    console.print("signing secret (shown only now; keep it like a provider key):")
    typer.echo(secret)


@command("dripmail webhooks list", name="list", group=webhooks_app)
def webhooks_list(db: DbOption = None) -> None:
    """List the endpoints and their events (never their secrets)."""
    from campaigns.delivery.webhook_endpoints import list_endpoints

    found = list_endpoints(_store(db, existing=True))
    if not found:
        console.print("no webhook endpoints (add one: dripmail webhooks add URL --events ...)")
    for e in found:
        console.print(
            f"{e.id}  {e.url}  events: {','.join(e.events)}  "
            f"address: {'yes' if e.include_email else 'no'}  added {e.created_at:%Y-%m-%d %H:%M}",
            markup=False,
        )


@command("dripmail webhooks remove 1", name="remove", group=webhooks_app)
def webhooks_remove(
    endpoint: Annotated[str, typer.Argument(metavar="ID|URL", help="The endpoint's id or URL")],
    db: DbOption = None,
) -> None:
    """Remove an endpoint; its messages not yet delivered are dropped with it."""
    from campaigns.delivery.webhook_endpoints import remove_endpoint

    removed, dropped = remove_endpoint(_store(db, existing=True), endpoint)
    console.print(
        f"removed webhook endpoint {removed.id} ({removed.url}); "
        f"{_n(dropped, 'message')} dropped with it",
        markup=False,
    )


@command("dripmail webhooks status", name="status", group=webhooks_app)
def webhooks_status(db: DbOption = None) -> None:
    """Per endpoint: messages pending, delivered, failed (given up), last error, next attempt."""
    from campaigns.delivery.webhook_endpoints import endpoint_status

    found = endpoint_status(_store(db, existing=True))
    if not found:
        console.print("no webhook endpoints")
    for s in found:
        console.print(f"{s.endpoint.id}  {s.endpoint.url}", markup=False)
        console.print(
            f"  pending {s.pending}, delivered {s.delivered}, failed {s.failed} (given up)"
        )
        console.print(f"  last error: {s.last_error or '-'}", markup=False)
        upcoming = f"{s.next_attempt_at:%Y-%m-%d %H:%M:%S} UTC" if s.next_attempt_at else "-"
        console.print(f"  next attempt: {upcoming}")


@command("dripmail webhooks deliver --once", name="deliver", group=webhooks_app)
def webhooks_deliver(
    once: Annotated[bool, typer.Option("--once", help="Deliver what is due, then stop")] = False,
    interval: Annotated[
        float, typer.Option(min=0.1, help="Seconds between rounds without --once")
    ] = 2.0,
    now: NowOption = None,
    db: DbOption = None,
) -> None:
    """Deliver due webhook messages (`dripmail run` does this too, beside email)."""
    from campaigns.delivery.webhooks import WebhookDeliverer

    settings = _settings()
    _setup_logging(settings)
    deliverer = WebhookDeliverer(_store(db, settings))
    total = [0, 0, 0]
    try:
        while True:
            when = _now(now)
            report = deliverer.drain(now=when) if once else deliverer.run(now=when)
            total = [
                total[0] + report.delivered,
                total[1] + report.retrying,
                total[2] + report.failed,
            ]
            if once:
                break
            time.sleep(interval)
    except KeyboardInterrupt:
        pass
    finally:
        deliverer.close()
    console.print(f"delivered {total[0]}, retrying {total[1]}, given up {total[2]}")


# -- database ------------------------------------------------------------------------------


db_app = _group(
    "db",
    "The database: create or upgrade its schema; back it up, verify and restore backups.",
)


@command(
    "dripmail db upgrade --db postgresql+psycopg://dripmail@db.internal/dripmail",
    name="upgrade",
    group=db_app,
)
def db_upgrade(db: DbOption = None) -> None:
    """Create the schema in an empty database, or upgrade an older one (stop the workers first)."""
    from campaigns.storage.store import Store

    store = Store(db, migrate=False)
    before, after = store.upgrade()
    if before == after:
        console.print(f"{store.display_url}: schema already at {after} (newest)")
    elif before is None:
        console.print(f"{store.display_url}: schema created at {after}")
    else:
        console.print(f"{store.display_url}: schema upgraded from {before} to {after}")


@command(
    "dripmail db current --db postgresql+psycopg://dripmail@db.internal/dripmail",
    name="current",
    group=db_app,
)
def db_current(db: DbOption = None) -> None:
    """Print the database's schema revision and this dripmail's newest."""
    from campaigns.storage.store import UPGRADE_HINT, Store

    store = Store(db, migrate=False)
    state = store.schema_state()
    if state.is_current:
        console.print(f"{store.display_url}: schema {state.current} (newest)")
    elif state.is_newer:
        raise state.newer_error()
    elif state.current is None:
        console.print(f"{store.display_url}: no schema yet ({UPGRADE_HINT}, or any command)")
    else:
        console.print(
            f"{store.display_url}: schema {state.current}, this dripmail needs {state.head}: "
            f"{UPGRADE_HINT}"
        )


def _size(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB" if size >= 100_000 else f"{size / 1000:.1f} kB"


@command(
    "dripmail db backup /var/backups/dripmail/dripmail-$(date +%F).db",
    name="backup",
    group=db_app,
)
def db_backup(
    file: Annotated[Path, typer.Argument(help="The backup file to write (replaced if there)")],
    db: DbOption = None,
) -> None:
    """Copy the database to FILE, consistently, while workers keep sending.

    SQLite: the online backup API, into a temporary file renamed into place. PostgreSQL:
    pg_dump --format=custom (the client tools of the server's version must be installed).
    """
    from campaigns.storage.backup import backup

    store = _store(db, _settings(), existing=True)
    done = backup(store, file)
    console.print(f"backed up {store.location} to {done.path} ({done.method}, {_size(done.size)})")
    console.print(f"check it with: dripmail db verify {done.path}")


@command(
    "dripmail db verify /var/backups/dripmail/dripmail-2026-03-04.db", name="verify", group=db_app
)
def db_verify(
    file: Annotated[Path, typer.Argument(help="A file `dripmail db backup` wrote")],
) -> None:
    """Check a backup without changing it: its integrity, and a migration this dripmail knows.

    SQLite: opened read-only, PRAGMA integrity_check. A pg_dump archive: pg_restore --list
    reads it, and its schema version is read from it.
    """
    from campaigns.storage.backup import SQLITE, verify

    found = verify(file)
    check = "integrity_check ok" if found.method == SQLITE else "pg_restore --list reads it"
    schema = f"schema {found.revision}" + (
        f", older than this dripmail's {found.head}: `dripmail db upgrade` after restoring"
        if found.needs_upgrade
        else " (newest)"
    )
    count = found.deliveries
    rows = "" if count is None else f", {count:,} deliver{'y' if count == 1 else 'ies'}"
    console.print(f"{found.path}: {found.method}, {check}, {schema}{rows}")


@command(
    "dripmail db restore /var/backups/dripmail/dripmail-2026-03-04.db --db new.db",
    name="restore",
    group=db_app,
)
def db_restore(
    file: Annotated[Path, typer.Argument(help="A file `dripmail db backup` wrote")],
    force: Annotated[
        bool, typer.Option("--force", help="Replace a database that already holds data")
    ] = False,
    db: DbOption = None,
) -> None:
    """Put a backup into the database (stop the workers first); it is verified before.

    An empty database only, unless --force. SQLite: the online backup API. PostgreSQL:
    pg_restore --clean --if-exists, in one transaction.
    """
    from campaigns.storage.backup import restore
    from campaigns.storage.store import Store

    settings = _settings()
    store = Store(db, migrate=False, settings=settings)
    found = restore(store, file, force=force)
    console.print(f"restored {found.path} into {store.location} (schema {found.revision})")
    if found.needs_upgrade:
        console.print("its schema is older than this dripmail: run `dripmail db upgrade`")


@command("dripmail preview campaigns/sleep --open")
def preview(
    campaign: Annotated[Path, typer.Argument(help="Campaign folder")],
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8025,
    host: Annotated[
        str, typer.Option(help="Address to listen on (default: this machine only)")
    ] = "127.0.0.1",
    open_browser: Annotated[
        bool, typer.Option("--open", help="Open the studio in the web browser")
    ] = False,
    db: DbOption = None,
) -> None:
    """Preview every email in the browser, live as you edit; fully local (Ctrl+C stops)."""
    from campaigns.studio.server import serve_studio

    serve_studio(
        campaign, host=host, port=port, open_browser=open_browser, db=db, announce=console.print
    )


# -- live edits, pause and resume ---------------------------------------------------------


@command("dripmail plan campaigns/sleep --apply --now 2026-04-01T12:00")
def plan(
    campaign: Annotated[str, typer.Argument(help="The edited campaign folder")],
    apply: Annotated[
        bool, typer.Option("--apply", help="Publish the new version and make the changes")
    ] = False,
    now: NowOption = None,
    db: DbOption = None,
) -> None:
    """Compare a campaign folder with its published version: what changes for whom.

    Without --apply nothing is changed. With it, the new version is published and the
    plan carried out in one transaction.
    """
    from campaigns.authoring.variant_spec import label
    from campaigns.planning.edits import apply_edit, plan_edit

    when = _now(now)
    result = (apply_edit if apply else plan_edit)(_store(db, existing=True), campaign, now=when)
    diff = result.diff
    if diff.unchanged:
        console.print(f"{diff.name}: the folder matches the published version {diff.old_version}")
        return
    console.print(
        f"{diff.name}: {diff.old_version} -> {diff.new_version}, {result.enrolled} enrolled"
    )
    for key, count in result.copy.items():
        console.print(f"  copy changed   {key}: {_n(count, 'pending email')} will use the new copy")
    for key, count in result.added.items():
        console.print(
            f"  step added     {key}: planned for {_n(count, 'contact')}; "
            f"{result.passed[key]} already past its position"
        )
    for key, count in result.removed.items():
        console.print(f"  step removed   {key}: {_n(count, 'pending email')} cancelled")
    for key, old, new in diff.delay_changed:
        console.print(
            f"  delay {old}->{new}  {key}: {_n(result.replanned[key], 'pending email')} re-planned"
        )
    for key, old, new in diff.conditions_changed:
        pending, skipped = result.conditions[key]
        console.print(
            f"  condition      {key}: {_short(old)} -> {_short(new)}: {skipped} of "
            f"{_n(pending, 'pending email')} would be skipped if due now "
            "(decided again when each is due)",
            markup=False,
        )
    for key, counts in result.variants.items():
        shares = ", ".join(f"{label(name)} {count}" for name, count in counts.items())
        console.print(
            f"  variants       {key}: {_n(sum(counts.values()), 'pending email')}: {shares}"
        )
    if diff.timing_changed:
        console.print("  send window or min_gap changed: pending emails re-planned into it")
    for event, count in result.goals.converts.items():
        console.print(
            f"  goal {event}: {_n(count, 'enrolled contact')} already had the event "
            f"({'converted' if result.applied else 'would convert'})"
        )
    if result.goals.converts:
        console.print(
            f"  {_n(result.goals.cancels, 'pending email')} of theirs "
            f"{'cancelled' if result.applied else 'would be cancelled'}"
        )
    for event in result.goals.removed:
        console.print(
            f"  goal {event} removed: contacts converted by it stay converted (nothing resumes)"
        )
    if result.moved:
        console.print(
            f"  {_n(result.moved, 'later email')} move to keep order, openings and min_gap"
        )
    for path, old, new in diff.fields_changed:
        console.print(f"  changed        {path}: {_short(old)} -> {_short(new)}", markup=False)
    for path in diff.files_changed:
        console.print(f"  file changed   {path} ({_file_note(path)})", markup=False)
    for text in result.refusals:
        err.print(f"warning: {text}", markup=False)
    console.print("applied" if result.applied else "not applied yet: run again with --apply")


def _file_note(path: str) -> str:
    """What a changed file other than a step's is to `plan`: a translation, or layout."""
    from campaigns.authoring.languages import language_name, language_of_file

    translated = language_of_file(path)
    if translated is None:
        return "comments or layout only"
    step, tag = translated
    return f"the {language_name(tag)} ({tag}) copy of {step}: its readers' pending emails use it"


def _short(value: str, width: int = 50) -> str:
    """A campaign-file value for one line of `plan`: quoted, long ones cut."""
    text = value if len(value) <= width else value[: width - 1] + "…"
    return f"“{text}”" if text else "(not set)"


@command("dripmail pause campaigns/sleep --email pat@example.com")
def pause(
    campaign: Annotated[str, typer.Argument(help="Campaign folder or published campaign name")],
    email: Annotated[str | None, typer.Option(help="Only this contact")] = None,
    now: NowOption = None,
    db: DbOption = None,
) -> None:
    """Hold a campaign's (or one contact's) pending emails until resume."""
    from campaigns.planning.pause import pause as pause_campaign

    when = _now(now)
    report = pause_campaign(_store(db, existing=True), campaign, email=email, now=when)
    who = "the contact" if email else report.campaign
    if report.changed:
        console.print(f"paused {who}: {_n(report.held, 'pending email')} held")
    else:
        console.print(f"{who} was already paused; nothing changed")


@command("dripmail resume campaigns/sleep --now 2026-04-11T12:00")
def resume(
    campaign: Annotated[str, typer.Argument(help="Campaign folder or published campaign name")],
    email: Annotated[str | None, typer.Option(help="Only this contact")] = None,
    now: NowOption = None,
    db: DbOption = None,
) -> None:
    """Let held emails go again, each later by the pause's length, one per opening."""
    from campaigns.planning.pause import resume as resume_campaign

    when = _now(now)
    report = resume_campaign(_store(db, existing=True), campaign, email=email, now=when)
    who = "the contact" if email else report.campaign
    if report.changed:
        console.print(
            f"resumed {who} after {report.paused_for}: "
            f"{_n(report.held, 'pending email')} moved later"
        )
    else:
        console.print(f"{who} was not paused; nothing changed")


# -- the marketing console, its people and the audit trail -------------------------------


@command("dripmail console --port 8030", name="console")
def console_(
    host: Annotated[
        str,
        typer.Option(help="Address to listen on (default: this machine only; else an https proxy)"),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8030,
    db: DbOption = None,
) -> None:
    """Serve the marketing console for staff: sign-in, roles, campaigns (Ctrl+C stops it)."""
    from campaigns.console.server import serve_console

    settings = _settings()
    _setup_logging(settings)
    serve_console(_store(db, settings), host=host, port=port, announce=console.print)


users_app = _group("users", "People who sign in to the console: add, list, disable, reset.")


def _setup_lines(made: Any, settings: Settings, verb: str) -> None:
    from campaigns.console.accounts import setup_url

    user = made.user
    console.print(
        f"{verb} {user.role} {user.email}: set-up link valid until "
        f"{made.expires_at:%Y-%m-%d %H:%M} UTC, once:",
        markup=False,
    )
    typer.echo(setup_url(settings.console_url, made.token))


@command("dripmail users add ana@clinic.example --role admin", name="add", group=users_app)
def users_add(
    email: Annotated[str, typer.Argument(help="Their email address (they sign in with it)")],
    role: Annotated[str, typer.Option(help="admin, editor, reviewer or viewer")],
    name: Annotated[str | None, typer.Option(help="Display name")] = None,
    db: DbOption = None,
) -> None:
    """Add a person; prints their one-time set-up link (24 hours) on the last line."""
    from campaigns.console.accounts import add_user

    settings = _settings()
    made = add_user(_store(db, settings), email, role, name=name, now=datetime.now(UTC))
    _setup_lines(made, settings, "added")


@command("dripmail users list", name="list", group=users_app)
def users_list(db: DbOption = None) -> None:
    """Everyone with a console account: role, state, authenticator, last sign-in."""
    from campaigns.console.accounts import list_users

    people = list_users(_store(db, existing=True))
    if not people:
        console.print("no console users yet: `dripmail users add EMAIL --role admin`")
        return
    table = Table("email", "name", "role", "state", "2FA", "last sign-in (UTC)")
    for user in people:
        last = f"{user.last_sign_in_at:%Y-%m-%d %H:%M}" if user.last_sign_in_at else "never"
        table.add_row(
            user.email,
            user.name or "",
            user.role,
            user.state,
            "on" if user.two_factor else "off",
            last,
        )
    console.print(table)


@command("dripmail users disable ana@clinic.example", name="disable", group=users_app)
def users_disable(
    email: Annotated[str, typer.Argument(help="Their email address")], db: DbOption = None
) -> None:
    """Disable a person's account and end their sessions (`users reset` enables it again)."""
    from campaigns.console.accounts import disable_user, find_by_email

    store = _store(db, existing=True)
    user = disable_user(store, find_by_email(store, email).id, now=datetime.now(UTC))
    console.print(f"disabled {user.email}; their sessions are ended", markup=False)


@command("dripmail users reset ana@clinic.example", name="reset", group=users_app)
def users_reset(
    email: Annotated[str, typer.Argument(help="Their email address")], db: DbOption = None
) -> None:
    """A new set-up link (last line): password and authenticator are chosen again."""
    from campaigns.console.accounts import find_by_email, reset_user

    settings = _settings()
    store = _store(db, settings, existing=True)
    made = reset_user(store, find_by_email(store, email).id, now=datetime.now(UTC))
    _setup_lines(made, settings, "reset")


@command("dripmail audit --since 2026-12-01 --json")
def audit(
    since: Annotated[
        str | None,
        typer.Option(help="Only actions from this time on, ISO 8601 (UTC when no offset)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line")] = False,
    db: DbOption = None,
) -> None:
    """The audit trail, oldest first: who did what to which object, and when."""
    import json

    from campaigns.storage.audit import entries

    found = entries(_store(db, existing=True), since=_now(since, "--since") if since else None)
    for entry in found:
        if as_json:
            typer.echo(json.dumps(entry.as_dict(), ensure_ascii=False))
            continue
        console.print(entry.line(), markup=False)
    if not found and not as_json:
        console.print("no actions recorded yet")


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
    console.print(f"outbox:          {result.outbox} ({_n(len(emls), '.eml file')}, index.csv)")
    console.print(f"database:        {result.database}")


if __name__ == "__main__":
    app()
