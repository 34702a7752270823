from django.http import HttpRequest


def wants_fragment(request: HttpRequest) -> bool:
    """An htmx swap asks for the fragment; a history restore after a cache miss needs the whole page."""
    return bool(request.htmx) and not request.htmx.history_restore_request
