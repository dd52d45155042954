"""Template helpers for the people forms that appear on pages other views render."""

from django import template

from indexing.models import Person

register = template.Library()


@register.simple_tag(takes_context=True)
def named_people(context) -> list[str]:
    """Names of the signed-in user's people, for a name field's suggestions."""
    user = context["request"].user
    if not user.is_authenticated:
        return []
    return list(Person.objects.filter(owner=user).exclude(name="").order_by("name").values_list("name", flat=True))
