from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from eventstore import CODES
from opsdash.models import Incident, ModuleState

pytestmark = pytest.mark.django_db


def test_the_demo_shows_every_code_but_unreadable_and_creates_the_users(tmp_path, settings, capsys):
    settings.OPSDASH_HOST_NAME = "demohost"
    root = tmp_path / "demo"
    call_command("demo", data_root=str(root), events_per_module=30)
    out = capsys.readouterr().out
    assert "password: " in out

    states = ModuleState.objects.all()
    assert states.values("branch").distinct().count() >= 4 and states.count() >= 12
    seen = {f["code"] for state in states for f in state.findings}
    assert seen == set(CODES) - {"unreadable"}
    assert {s.status for s in states} == {"healthy", "warning", "critical"}
    assert states.filter(status="healthy", findings=[]).count() >= 3

    recoveries = Incident.objects.filter(source="store-server")
    assert recoveries.count() >= 5
    days = {i.opened_at.date() for i in recoveries}
    assert (max(days) - min(days)).days >= 14  # history spread over several weeks

    for username, group in (("manager", "managers"), ("operator", "operators"), ("auditor", "auditors")):
        assert list(User.objects.get(username=username).groups.values_list("name", flat=True)) == [group]


def test_the_demo_uses_the_given_password_and_refuses_a_non_empty_folder(tmp_path, capsys):
    root = tmp_path / "demo"
    call_command("demo", data_root=str(root), password="s3cret-demo", events_per_module=10)
    assert "password: " not in capsys.readouterr().out
    assert User.objects.get(username="operator").check_password("s3cret-demo")
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="not empty"):
        call_command("demo", data_root=str(root), events_per_module=10)


def test_demo_events_lie_in_the_past_weeks(tmp_path):
    from datetime import UTC, datetime, timedelta

    from eventstore import EventStore
    from eventstore.demo import write_demo_root

    now = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
    write_demo_root(tmp_path / "demo", events_per_module=60, now_ms=int(now.timestamp() * 1000))
    for module in EventStore(tmp_path / "demo").modules():
        times = [datetime.fromisoformat(e["createdAt"]) for e in module.read_events()]
        assert times and max(times) <= now and min(times) >= now - timedelta(days=29), module
