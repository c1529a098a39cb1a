"""The configuration engine: typed sections validated once at start-up.

The device runs unattended, so a typo has to stop it at start-up with a message that names the
key, the bad value and what was expected -- not surface hours later as a KeyError in a worker
thread. Every problem in a file is collected in one pass and reported together, so an operator
fixes the file once.

A schema is frozen dataclasses whose fields carry their validators (``edge.config.fields``); a
component declares its own section beside itself (the tracker its ``TrackingConfig``, a source
plugin its config), and the device's root schema (``edge.settings``) and the fleet collector's
(``edge.fleet.config``) assemble them. Modules: ``errors`` (the exception and how values are
shown), ``fields`` (checks and field declarations), ``yaml_lines`` (YAML with line numbers and
bounds), ``build`` (the validating pass: ``load_typed``, ``parse_typed``).
"""

from edge.config.errors import ConfigError

# Only the exception here: a component that declares its section imports ``edge.config.fields``,
# and must not pull in the YAML reader (``edge analyze`` never reads a config).
__all__ = ["ConfigError"]
