"""Alerts: one per status change of a module, per host that stops or resumes reporting and
per module overdue for its read in full (the scrub), delivered to a webhook (JSON POST) and by email.

Each scan pass queues its transitions (:func:`queue_transitions`) and then delivers what is due
(:func:`deliver_due`). A failing receiver is retried with exponential backoff, up to
OPSDASH_ALERT_MAX_ATTEMPTS; nothing here ever raises into the scanner.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
import urllib.request
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

import apprise
import orjson
from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode

from ..models import PROBLEM_STATUSES, Alert, AlertDelivery, Incident, ModuleState, ScanHost, Status
from . import maintenance, mutes
from .heartbeats import newly_stale
from .scrub import flag_overdue

log = logging.getLogger(__name__)
TIMEOUT_SECONDS = 5  # per HTTP call of the webhook (the SMTP timeout is in settings.MAILERS)
# A delivery being sent is not due for anyone else this long (longer than any send may take).
CLAIM_LEASE = timedelta(minutes=2)
# The longest a pass spends starting deliveries; the rest waits for the next pass.
DELIVERY_BUDGET_SECONDS = 30.0


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """urllib would follow a 301/302 with a GET and no body, and call that delivered: a redirect
    is a failure to fix in OPSDASH_ALERT_WEBHOOK_URL instead."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirect)


DIGEST = Alert.Event.DIGEST  # the daily digest (services.digest): its emails and the channels of its event
SEVERITY_RANK = {"": 0, "healthy": 0, "gone": 0, "warning": 1, "critical": 2}


def receivers(event: str = Alert.Event.PROBLEM, branch: str = "", severity: str = "critical") -> list[str]:
    """Who gets an alert of ``event`` about ``branch`` (empty: a host's alert) at ``severity``:
    the webhook and the email addresses (every event but the escalation and the digest), and
    each channel whose route takes it (``channel:<name>``; its URL stays in the settings)."""
    out = []
    if event == DIGEST:
        out += [f"email:{a}" for a in settings.OPSDASH_DIGEST_EMAILS]
    elif event != Alert.Event.ESCALATED:
        out += ["webhook"] if settings.OPSDASH_ALERT_WEBHOOK_URL else []
        out += [f"email:{a}" for a in settings.OPSDASH_ALERT_EMAILS]
    for channel in settings.OPSDASH_ALERT_CHANNELS:
        if event not in channel["events"]:
            continue
        if channel["branches"] and branch not in channel["branches"]:
            continue  # a host's alert (no branch) goes only to channels of every branch
        if event != DIGEST and SEVERITY_RANK.get(severity, 2) < SEVERITY_RANK[channel["min_severity"]]:
            continue
        out.append(f"channel:{channel['name']}")
    return out


def _severity(event: str, status: str, previous: str) -> str:
    """How bad what an alert tells is, for the routes' min_severity."""
    if event in (Alert.Event.RECOVERED, Alert.Event.GONE):
        return previous or status
    if event in (Alert.Event.HOST_STALE, Alert.Event.HOST_BACK):
        return "critical"
    if event == Alert.Event.VERIFY_OVERDUE:
        return "warning"
    return status


def _event(old: str | None, new: str) -> str | None:
    if new in PROBLEM_STATUSES and old != new:
        return Alert.Event.PROBLEM
    if new == Status.HEALTHY and old in PROBLEM_STATUSES:
        return Alert.Event.RECOVERED
    if new == Status.GONE and old != Status.GONE and old is not None:
        return Alert.Event.GONE
    return None


def _queue(
    event: str,
    payload: dict[str, Any],
    now: datetime,
    module: ModuleState | None,
    host: str,
    status: str = "",
    previous: str = "",
    quiet: Quiet | None = None,
) -> Alert:
    suppressed = (quiet or Quiet(now)).why(event, module, host)
    targets = (
        [] if suppressed else receivers(event, module.branch if module else "", _severity(event, status, previous))
    )
    with transaction.atomic():  # an alert is never left without its deliveries
        alert = Alert.objects.create(
            module=module,
            host=host,
            event=event,
            status=status,
            previous_status=previous,
            payload=payload,
            created_at=now,
            suppressed=suppressed,
        )
        AlertDelivery.objects.bulk_create(
            [AlertDelivery(alert=alert, receiver=r, next_attempt_at=now) for r in targets]
        )
    return alert


class Quiet:
    """What keeps alerts from being sent at ``now``: the maintenance windows and the mutes in
    force, each read once (on first need) for a whole batch of alerts."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    @cached_property
    def windows(self) -> maintenance.Windows:
        return maintenance.Windows.load()

    @cached_property
    def muted(self) -> mutes.Mutes:
        return mutes.Mutes.load(self.now)

    def why(self, event: str, module: ModuleState | None, host: str) -> str:
        """Why an alert goes to no one: "maintenance" (a window covers it), "silenced" (a silence
        in force covers its module), or "" (it is sent). The digest is never held back."""
        if event == DIGEST:
            return ""
        if module is None:
            return "maintenance" if self.windows.covering(host, now=self.now) else ""
        if self.windows.covering(module.host, module.branch, module.module, self.now):
            return "maintenance"
        if event != Alert.Event.RECOVERED and self.muted.state(module) == "silenced":
            return "silenced"
        return ""


def queue_transitions(transitions: list[tuple[ModuleState, str | None, str]], now: datetime | None = None) -> int:
    """An alert (and a delivery per receiver) for each transition worth telling."""
    now = now or timezone.now()
    quiet = Quiet(now)
    made = 0
    for module_row, old, new in transitions:
        event = _event(old, new)
        if event is None:
            continue
        payload = _payload(module_row, event, old, new, now)
        _queue(event, payload, now, module_row, module_row.host, new, old or "", quiet)
        made += 1
    return made


def _link(path: str) -> str:
    base = settings.OPSDASH_PUBLIC_URL.rstrip("/")
    return f"{base}{path}" if base else path


def _payload(module_row: ModuleState, event: str, old: str | None, new: str, now: datetime) -> dict[str, Any]:
    return {
        "event": event,
        "host": module_row.host,
        "branch": module_row.branch,
        "module": module_row.module,
        "status": new,
        "previous_status": old,
        "findings": [{"code": f.get("code"), "message": f.get("message")} for f in module_row.findings],
        "url": _link(module_row.get_absolute_url()),
        "at": now.isoformat(),
    }


def queue_host_alerts(stale: list[ScanHost], back: list[str], now: datetime | None = None) -> int:
    """One alert per host that stopped reporting (``stale``, as heartbeats.newly_stale claimed
    them) and per host that reports again (``back``)."""
    now = now or timezone.now()
    quiet = Quiet(now)
    for row in stale:
        payload = {
            "event": Alert.Event.HOST_STALE,
            "host": row.host,
            "last_scan_at": row.last_pass_at.isoformat(),
            "stale_after_seconds": settings.OPSDASH_STALE_SECONDS,
            "modules": row.modules,
            "url": _link(reverse("opsdash:module_list") + "?" + urlencode({"q": row.host})),
            "at": now.isoformat(),
        }
        _queue(Alert.Event.HOST_STALE, payload, now, None, row.host, quiet=quiet)
    for host in back:
        payload = {
            "event": Alert.Event.HOST_BACK,
            "host": host,
            "url": _link(reverse("opsdash:module_list")),
            "at": now.isoformat(),
        }
        _queue(Alert.Event.HOST_BACK, payload, now, None, host, quiet=quiet)
    return len(stale) + len(back)


def queue_overdue(modules: list[ModuleState], now: datetime | None = None) -> int:
    """One alert per module that has just become overdue for its read in full (the scrub)."""
    now = now or timezone.now()
    quiet = Quiet(now)
    for module_row in modules:
        payload = {
            "event": Alert.Event.VERIFY_OVERDUE,
            "host": module_row.host,
            "branch": module_row.branch,
            "module": module_row.module,
            "status": module_row.status,
            "verified_at": module_row.verified_at.isoformat() if module_row.verified_at else None,
            "scrub_days": settings.OPSDASH_SCRUB_DAYS,
            "url": _link(module_row.get_absolute_url()),
            "at": now.isoformat(),
        }
        _queue(Alert.Event.VERIFY_OVERDUE, payload, now, module_row, module_row.host, module_row.status, quiet=quiet)
    return len(modules)


def queue_escalations(now: datetime | None = None) -> int:
    """Once per incident: a problem still open and unacknowledged OPSDASH_ESCALATION_MINUTES
    after it opened is sent again, to the channels of the "escalated" event."""
    minutes = settings.OPSDASH_ESCALATION_MINUTES
    if not minutes:
        return 0
    now = now or timezone.now()
    due = Incident.objects.filter(ended_at__isnull=True, escalated_at__isnull=True, source=Incident.Source.SCAN).filter(
        opened_at__lte=now - timedelta(minutes=minutes)
    )
    quiet = Quiet(now)
    made = 0
    for incident in due.select_related("module"):
        module_row = incident.module
        if quiet.muted.state(module_row) or module_row.status not in PROBLEM_STATUSES:
            continue  # acknowledged or silenced: known; or it recovered and the scan has not ended it yet
        if not Incident.objects.filter(pk=incident.pk, escalated_at__isnull=True).update(escalated_at=now):
            continue  # another scanner escalated it
        payload = _payload(module_row, Alert.Event.ESCALATED, module_row.status, module_row.status, now)
        payload["open_since"] = incident.opened_at.isoformat()
        payload["minutes"] = minutes
        _queue(
            Alert.Event.ESCALATED,
            payload,
            now,
            module_row,
            module_row.host,
            module_row.status,
            module_row.status,
            quiet,
        )
        made += 1
    return made


def backoff(attempts: int) -> timedelta:
    """30 s, 1 min, 2 min, ... capped at an hour."""
    return timedelta(seconds=min(30 * 2 ** max(attempts - 1, 0), 3600))


def deliver_due(now: datetime | None = None, budget_seconds: float = DELIVERY_BUDGET_SECONDS) -> tuple[int, int]:
    """Try each due delivery once; returns (delivered, failed). Never raises.

    Bounded, so that the scanner is never held up: a kind of receiver (the webhook, the mail
    server) that fails is not tried again in the same call, and no delivery starts after
    ``budget_seconds``; what is left stays due for the next pass. Each delivery is claimed with a
    conditional UPDATE first, so scanners on several hosts sharing the database never send the
    same alert twice.
    """
    now = now or timezone.now()
    deadline = time.monotonic() + budget_seconds
    done = failed = 0
    broken: set[str] = set()
    due = AlertDelivery.objects.filter(
        delivered_at__isnull=True, next_attempt_at__lte=now, attempts__lt=settings.OPSDASH_ALERT_MAX_ATTEMPTS
    )
    for delivery in due.select_related("alert").order_by("next_attempt_at", "id")[:200]:
        kind = delivery.receiver.split(":", 1)[0]
        if kind in broken or time.monotonic() > deadline or not _claim(delivery, now):
            continue
        delivery.attempts += 1
        try:
            _send(delivery)
        except Exception as exc:  # any receiver failure is recorded and retried, never raised
            broken.add(kind)
            delivery.last_error = f"{type(exc).__name__}: {exc}"[:1000]
            delivery.next_attempt_at = now + backoff(delivery.attempts)
            delivery.save(update_fields=["attempts", "last_error", "next_attempt_at"])
            failed += 1
            last = delivery.attempts >= settings.OPSDASH_ALERT_MAX_ATTEMPTS
            log.log(
                logging.ERROR if last else logging.WARNING,
                "alert delivery %s to %s failed (attempt %s%s): %s",
                delivery.pk,
                delivery.receiver,
                delivery.attempts,
                ", giving up" if last else "",
                delivery.last_error,
            )
        else:
            delivery.delivered_at = now
            delivery.save(update_fields=["attempts", "delivered_at"])
            done += 1
    return done, failed


def _claim(delivery: AlertDelivery, now: datetime) -> bool:
    """Take a due delivery for this process: push its next attempt past the send's timeout, but
    only if nobody else did since it was read. A process that dies mid-send leaves it due again
    after the lease."""
    claimed = AlertDelivery.objects.filter(
        pk=delivery.pk, delivered_at__isnull=True, next_attempt_at=delivery.next_attempt_at
    ).update(next_attempt_at=now + CLAIM_LEASE)
    return claimed == 1


def _send(delivery: AlertDelivery) -> None:
    payload = delivery.alert.payload
    if delivery.receiver.startswith("channel:"):
        _send_channel(delivery.receiver.split(":", 1)[1], payload)
        return
    if delivery.receiver == "webhook":
        body = orjson.dumps(payload)
        request = urllib.request.Request(
            settings.OPSDASH_ALERT_WEBHOOK_URL, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        if settings.OPSDASH_ALERT_WEBHOOK_SECRET:
            signature = hmac.new(settings.OPSDASH_ALERT_WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
            request.add_header("X-Opsdash-Signature", f"sha256={signature}")
        with _opener.open(request, timeout=TIMEOUT_SECONDS) as response:
            if not 200 <= response.status < 300:
                raise OSError(f"webhook answered {response.status}")
        return
    address = delivery.receiver.split(":", 1)[1]
    subject, lines = _mail(payload)
    send_mail(subject, "\n".join([*lines, "", payload["url"]]), None, [address], fail_silently=False)


def _send_channel(name: str, payload: dict[str, Any]) -> None:
    """One alert through Apprise to the channel ``name``. Its URL (with its secrets) stays
    here: errors name the channel, never the URL."""
    channel = next((c for c in settings.OPSDASH_ALERT_CHANNELS if c["name"] == name), None)
    if channel is None:
        raise OSError(f"channel {name} is no longer configured")
    sender = apprise.Apprise()
    if not sender.add(channel["url"]):
        raise OSError(f"channel {name}: Apprise does not understand its URL")
    subject, lines = _mail(payload)
    body = "\n".join([*lines, "", payload.get("url", "")]).strip()
    if not sender.notify(title=subject, body=body, body_format=apprise.NotifyFormat.TEXT):
        raise OSError(f"channel {name}: the service refused the alert or did not answer")


def _mail(payload: dict[str, Any]) -> tuple[str, list[str]]:
    """The subject and the lines of an alert's email."""
    host = payload["host"]
    if payload["event"] == Alert.Event.HOST_STALE:
        text = (
            f"The scanner of host {host} has not reported since {payload['last_scan_at']} (more than "
            f"{payload['stale_after_seconds']} s): the status of its {payload['modules']} module(s) may be out of date."
        )
        return f"[opsdash] host {host} stopped reporting", [text]
    if payload["event"] == Alert.Event.HOST_BACK:
        return f"[opsdash] host {host} reports again", [f"The scanner of host {host} reports again."]
    if payload["event"] == Alert.Event.VERIFY_OVERDUE:
        where = f"{payload['branch']}/{payload['module']} on {host}"
        when = f"since {payload['verified_at']}" if payload["verified_at"] else "ever"
        text = (
            f"The log of {where} has not been read in full {when}, although the scrub reads every log "
            f"at least once every {payload['scrub_days']} day(s): damage to bytes already seen would not be found. "
            "Raise OPSDASH_SCRUB_BYTES_PER_PASS, or run Verify on the module."
        )
        return f"[opsdash] {where}: not read in full in time", [text]
    if payload["event"] == Alert.Event.DIGEST:
        return payload["subject"], list(payload["lines"])
    if payload["event"] == Alert.Event.ESCALATED:
        where = f"{payload['branch']}/{payload['module']} on {host}"
        text = (
            f"{where} has been {payload['status']} since {payload['open_since']} and nobody has acknowledged it "
            f"({payload['minutes']} minutes)."
        )
        return f"[opsdash] still {payload['status']}, unacknowledged: {where}", [text] + [
            f"- {f['code']}: {f['message']}" for f in payload["findings"]
        ]
    subject = f"[opsdash] {payload['branch']}/{payload['module']} on {host}: {payload['status']}"
    lines = [
        f"{payload['branch']}/{payload['module']} on {host} is {payload['status']} (was {payload['previous_status'] or 'unknown'}).",
        "",
    ]
    return subject, lines + [f"- {f['code']}: {f['message']}" for f in payload["findings"]]


def after_pass(
    transitions: list[tuple[ModuleState, str | None, str]],
    back: list[str] | None = None,
    overdue_of: str | None = None,
    now: datetime | None = None,
) -> None:
    """What a scanner calls after each pass, with or without transitions: queue them, the
    alerts of hosts that stopped reporting (found by any scanner) or report again (``back``) and
    of the modules of host ``overdue_of`` that just became overdue for their read in full, then
    deliver what is due (new alerts and retries). Never raises."""
    now = now or timezone.now()
    try:
        mutes.review(now)  # a silence that things outgrew ends first, and lets its alert through
        queue_transitions(transitions, now)
        queue_host_alerts(newly_stale(now), back or [], now)
        if overdue_of is not None:
            queue_overdue(flag_overdue(overdue_of, now), now)
        queue_escalations(now)
    except Exception:
        log.exception("alerts could not be queued; the scan goes on")
    try:
        deliver_due(now)
    except Exception:
        log.exception("alerts could not be delivered; the scan goes on")
