"""Alerts: one per status change of a module, delivered to a webhook (JSON POST) and by email.

Each scan pass queues its transitions (:func:`queue_transitions`) and then delivers what is due
(:func:`deliver_due`). A failing receiver is retried with exponential backoff, up to
OPSDASH_ALERT_MAX_ATTEMPTS; nothing here ever raises into the scanner.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import urllib.request
from datetime import datetime, timedelta
from typing import Any

import orjson
from django.conf import settings
from django.core.mail import send_mail
from django.utils import timezone

from ..models import Alert, AlertDelivery, ModuleState, Status

log = logging.getLogger(__name__)
PROBLEMS = (Status.WARNING, Status.CRITICAL)
TIMEOUT_SECONDS = 5


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


def deliver_due(now: datetime | None = None) -> tuple[int, int]:
    """Try every due delivery once; returns (delivered, failed). Never raises."""
    now = now or timezone.now()
    done = failed = 0
    due = AlertDelivery.objects.filter(delivered_at__isnull=True, next_attempt_at__lte=now, attempts__lt=settings.OPSDASH_ALERT_MAX_ATTEMPTS)
    for delivery in due.select_related("alert").order_by("next_attempt_at", "id")[:200]:
        try:
            _send(delivery)
        except Exception as exc:  # any receiver failure is recorded and retried, never raised
            delivery.attempts += 1
            delivery.last_error = str(exc)[:1000] or type(exc).__name__
            delivery.next_attempt_at = now + backoff(delivery.attempts)
            delivery.save(update_fields=["attempts", "last_error", "next_attempt_at"])
            failed += 1
            log.warning("alert delivery %s to %s failed: %s", delivery.pk, delivery.receiver, delivery.last_error)
        else:
            delivery.attempts += 1
            delivery.delivered_at = now
            delivery.save(update_fields=["attempts", "delivered_at"])
            done += 1
    return done, failed


def _send(delivery: AlertDelivery) -> None:
    payload = delivery.alert.payload
    if delivery.receiver == "webhook":
        body = orjson.dumps(payload)
        request = urllib.request.Request(settings.OPSDASH_ALERT_WEBHOOK_URL, data=body, method="POST", headers={"Content-Type": "application/json"})
        if settings.OPSDASH_ALERT_WEBHOOK_SECRET:
            signature = hmac.new(settings.OPSDASH_ALERT_WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
            request.add_header("X-Opsdash-Signature", f"sha256={signature}")
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310 - URL from settings
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
    """What the scanner calls after each pass: queue, then deliver what is due. Never raises."""
    try:
        queue_transitions(transitions)
        deliver_due()
    except Exception:
        log.exception("alerts could not be queued or delivered; the scan goes on")
