"""A plugin module (``COMPSAFE_PLUGINS=toy_plugin``): importing it registers the toy task
and scorer of ``toy_extension.py``, as a user's own module would."""

from toy_extension import register

register()
