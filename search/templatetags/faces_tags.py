from django import template

register = template.Library()


@register.filter
def box_style(box) -> str:
    """CSS placing a relative face box [x, y, w, h] over its image."""
    x, y, w, h = (max(0.0, min(1.0, float(v))) for v in box)
    return f"left:{x * 100:.2f}%;top:{y * 100:.2f}%;width:{w * 100:.2f}%;height:{h * 100:.2f}%"


@register.filter
def aspect(photo) -> str:
    """The photo's width / height for the ``--ar`` of a photo frame (1 when unknown)."""
    width, height = getattr(photo, "width", None), getattr(photo, "height", None)
    return f"{width / height:.5f}" if width and height else "1"


@register.filter
def label_below(box) -> bool:
    """Put a box's label under it when the box touches the top of the photo."""
    return float(box[1]) < 0.08


@register.filter
def timecode(seconds) -> str:
    """Seconds into a video as people read it: ``0:12``, ``1:05:03``."""
    total = max(0, int(round(float(seconds or 0))))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
