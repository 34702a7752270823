"""Alerts: one per status change of a module, delivered to a webhook (JSON POST) and by email.

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
from typing import Any

import orjson
from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from ..models import Alert, AlertDelivery, ModuleState, Status

log = logging.getLogger(__name__)
PROBLEMS = (Status.WARNING, Status.CRITICAL)
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


def receivers() -> list[str]:
    out = ["webhook"] if settings.OPSDASH_ALERT_WEBHOOK_URL else []
    return out + [f"email:{a}" for a in settings.OPSDASH_ALERT_EMAILS]


def _event(old: str | None, new: str) -> str | None:
    if new in PROBLEMS and old != new:
        return Alert.Event.PROBLEM
    if new == Status.HEALTHY and old in PROBLEMS:
        return Alert.Event.RECOVERED
    if new == Status.GONE and old != Status.GONE and old is not None:
        return Alert.Event.GONE
    return None


def queue_transitions(transitions: list[tuple[ModuleState, str | None, str]], now: datetime | None = None) -> int:
    """An alert (and a delivery per receiver) for each transition worth telling."""
    now = now or timezone.now()
    targets = receivers()
    made = 0
    for state, old, new in transitions:
        event = _event(old, new)
        if event is None:
            continue
        with transaction.atomic():  # an alert is never left without its deliveries
            alert = Alert.objects.create(module=state, event=event, status=new, previous_status=old or "", payload=_payload(state, event, old, new, now), created_at=now)
            AlertDelivery.objects.bulk_create([AlertDelivery(alert=alert, receiver=r, next_attempt_at=now) for r in targets])
        made += 1
    return made


def _payload(state: ModuleState, event: str, old: str | None, new: str, now: datetime) -> dict[str, Any]:
    base = settings.OPSDASH_PUBLIC_URL.rstrip("/")
    return {
        "event": event, "host": state.host, "branch": state.branch, "module": state.module, "status": new,
        "previous_status": old, "findings": [{"code": f.get("code"), "message": f.get("message")} for f in state.findings],
        "url": f"{base}{state.get_absolute_url()}" if base else state.get_absolute_url(), "at": now.isoformat(),
    }


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
    due = AlertDelivery.objects.filter(delivered_at__isnull=True, next_attempt_at__lte=now, attempts__lt=settings.OPSDASH_ALERT_MAX_ATTEMPTS)
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
            log.log(logging.ERROR if last else logging.WARNING, "alert delivery %s to %s failed (attempt %s%s): %s",
                    delivery.pk, delivery.receiver, delivery.attempts, ", giving up" if last else "", delivery.last_error)
        else:
            delivery.delivered_at = now
            delivery.save(update_fields=["attempts", "delivered_at"])
            done += 1
    return done, failed


def _claim(delivery: AlertDelivery, now: datetime) -> bool:
    """Take a due delivery for this process: push its next attempt past the send's timeout, but
    only if nobody else did since it was read. A process that dies mid-send leaves it due again
    after the lease."""
    claimed = AlertDelivery.objects.filter(pk=delivery.pk, delivered_at__isnull=True, next_attempt_at=delivery.next_attempt_at).update(
        next_attempt_at=now + CLAIM_LEASE
    )
    return claimed == 1


def _send(delivery: AlertDelivery) -> None:
    payload = delivery.alert.payload
    if delivery.receiver == "webhook":
        body = orjson.dumps(payload)
        request = urllib.request.Request(settings.OPSDASH_ALERT_WEBHOOK_URL, data=body, method="POST", headers={"Content-Type": "application/json"})
        if settings.OPSDASH_ALERT_WEBHOOK_SECRET:
            signature = hmac.new(settings.OPSDASH_ALERT_WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
            request.add_header("X-Opsdash-Signature", f"sha256={signature}")
        with _opener.open(request, timeout=TIMEOUT_SECONDS) as response:
            if not 200 <= response.status < 300:
                raise OSError(f"webhook answered {response.status}")
        return
    address = delivery.receiver.split(":", 1)[1]
    subject = f"[opsdash] {payload['branch']}/{payload['module']} on {payload['host']}: {payload['status']}"
    lines = [f"{payload['branch']}/{payload['module']} on {payload['host']} is {payload['status']} (was {payload['previous_status'] or 'unknown'}).", ""]
    lines += [f"- {f['code']}: {f['message']}" for f in payload["findings"]]
    lines += ["", payload["url"]]
    send_mail(subject, "\n".join(lines), None, [address], fail_silently=False)


def after_pass(transitions: list[tuple[ModuleState, str | None, str]]) -> None:
    """What the scanner calls after each pass, with or without transitions: queue them, then
    deliver what is due (new alerts and retries). Never raises."""
    try:
        queue_transitions(transitions)
    except Exception:
        log.exception("alerts could not be queued; the scan goes on")
    try:
        deliver_due()
    except Exception:
        log.exception("alerts could not be delivered; the scan goes on")
