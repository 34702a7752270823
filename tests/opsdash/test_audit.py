from __future__ import annotations

import pytest

from opsdash.models import AppendOnlyError, AuditEntry

pytestmark = pytest.mark.django_db


def test_audit_entries_cannot_be_changed_or_deleted():
    entry = AuditEntry.objects.create(actor="operator", action="rebuild", outcome="ok")
    entry.outcome = "failed"
    with pytest.raises(AppendOnlyError):
        entry.save()
    with pytest.raises(AppendOnlyError):
        entry.delete()
    with pytest.raises(AppendOnlyError):
        AuditEntry.objects.filter(pk=entry.pk).update(outcome="failed")
    with pytest.raises(AppendOnlyError):
        AuditEntry.objects.all().delete()
    assert AuditEntry.objects.get().outcome == "ok"


def test_the_admin_is_read_only(admin_client):
    AuditEntry.objects.create(actor="operator", action="rebuild", outcome="ok")
    assert admin_client.get("/admin/opsdash/auditentry/").status_code == 200
    assert admin_client.get("/admin/opsdash/auditentry/add/").status_code == 403
    entry = AuditEntry.objects.get(outcome="ok")
    assert admin_client.post(f"/admin/opsdash/auditentry/{entry.pk}/delete/").status_code == 403
    # Both attempts are themselves in the trail, and the entry is untouched.
    assert list(AuditEntry.objects.filter(outcome="refused").order_by("pk").values_list("actor", "action")) == [
        ("admin", "opsdash_auditentry_add"),
        ("admin", "opsdash_auditentry_delete"),
    ]
    assert AuditEntry.objects.get(pk=entry.pk).outcome == "ok"
