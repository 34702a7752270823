"""A user's own API tokens: list, create (the token shown once), revoke. Every change is audited."""

from __future__ import annotations

from django import forms
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext_lazy as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from ..models import ApiToken
from ..services import tokens
from ..services.audit import record


class TokenForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=100, help_text=_("what the token is for, e.g. grafana"))
    read_only = forms.BooleanField(label=_("Read only (cannot start actions)"), required=False, initial=True)
    expires_days = forms.IntegerField(label=_("Expires after (days)"), min_value=1, max_value=3650, required=False)


@never_cache  # the page that shows a new token must not be kept anywhere
@require_http_methods(["GET", "POST"])
def token_list(request: HttpRequest) -> HttpResponse:
    form, created = TokenForm(request.POST or None), None
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            row, created = tokens.create(
                request.user,
                data["name"],
                read_only=data["read_only"],
                expires_days=data["expires_days"],
                by=request.user.get_username(),
            )
        except tokens.TokenError as exc:
            form.add_error("name", str(exc))
        else:
            record(
                request,
                "token_create",
                "ok",
                params={"name": row.name, "read_only": row.read_only, "expires_days": data["expires_days"]},
            )
            form = TokenForm()
    ctx = {"rows": request.user.api_tokens.all(), "form": form, "created": created}
    return render(request, "opsdash/tokens.html", ctx, status=201 if created else 200)


@require_POST
def token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    row = get_object_or_404(ApiToken, pk=pk, user=request.user)  # one's own tokens only
    revoked = tokens.revoke(row)
    record(
        request,
        "token_revoke",
        "ok" if revoked else "failed",
        params={"name": row.name},
        detail="" if revoked else "revoked already",
    )
    return redirect("opsdash:token_list")
