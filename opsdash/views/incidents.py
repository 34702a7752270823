"""The story of one incident (services.story), and the notes operators and auditors add to it."""

from __future__ import annotations

from django import forms
from django.contrib.auth.decorators import permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_GET, require_POST

from ..models import Incident, IncidentNote
from ..services.access import access_of
from ..services.audit import record
from ..services.events import VIEW_PAYLOADS
from ..services.story import story

NOTE_PERMISSION = "opsdash.add_notes"


class NoteForm(forms.Form):
    text = forms.CharField(
        label=_("Note"), max_length=IncidentNote.MAX_LENGTH, strip=True, widget=forms.Textarea(attrs={"rows": 3})
    )


def _incident(request: HttpRequest, pk: int) -> Incident:
    qs = access_of(request.user).filter(Incident.objects.select_related("module", "backup"), "module__branch")
    return get_object_or_404(qs, pk=pk)


@require_GET
def incident_detail(request: HttpRequest, pk: int) -> HttpResponse:
    incident = _incident(request, pk)
    return _page(request, incident, NoteForm())


def _page(request: HttpRequest, incident: Incident, form: NoteForm, status: int = 200) -> HttpResponse:
    ctx = {
        "incident": incident,
        "module_row": incident.module,
        "story": story(incident, request.user.has_perm(VIEW_PAYLOADS)),
        "form": form,
    }
    return render(request, "opsdash/incident.html", ctx, status=status)


@require_POST
@permission_required(NOTE_PERMISSION, raise_exception=True)
def incident_note(request: HttpRequest, pk: int) -> HttpResponse:
    incident = _incident(request, pk)
    form = NoteForm(request.POST)
    if not form.is_valid():
        return _page(request, incident, form, status=400)
    note = IncidentNote.objects.create(
        incident=incident, author=request.user.get_username(), text=form.cleaned_data["text"]
    )
    module_row = incident.module
    record(
        request,
        "incident_note",
        "ok",
        host=module_row.host,
        branch=module_row.branch,
        module=module_row.module,
        params={"incident": incident.pk, "note": note.pk},
        detail=note.text,
    )
    return redirect(f"{incident.get_absolute_url()}#note-{note.pk}")
