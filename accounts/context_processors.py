from .models import has_face_consent


def consent(request):
    """Expose the consent state lazily so navigation can hide face features."""
    return {"has_face_consent": lambda: has_face_consent(request.user)}
