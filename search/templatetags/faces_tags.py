from django import template

register = template.Library()


@register.filter
def box_style(box) -> str:
    """CSS placing a relative face box [x, y, w, h] over its image."""
    x, y, w, h = (max(0.0, min(1.0, float(v))) for v in box)
    return f"left:{x * 100:.2f}%;top:{y * 100:.2f}%;width:{w * 100:.2f}%;height:{h * 100:.2f}%"
