"""The training objectives, one module each (each registers itself with ``@register_objective``; every
module here is imported when the registry is first used, so a new objective is one new file)."""
