"""Every private member of Ultralytics (8.4.190) that umop_yolo relies on, in one place.

PRIVATE_MEMBERS names each one with what we use it for; `tests/test_ultralytics_internals.py` pins that each exists
with the signature of 8.4.190, so an Ultralytics upgrade that renames or changes one fails that test instead of
training wrongly. Where we replace or set a private member rather than override a method, it is done here.
"""

from __future__ import annotations

from collections.abc import Mapping


def stay_offline(environ: Mapping[str, str]) -> None:
    """What `YOLO_AUTOINSTALL=false` / `YOLO_OFFLINE=1` give when set before Ultralytics is imported, for an Ultralytics
    that is imported already: no `pip install` of a missing module, no pip update check, no telemetry. A variable the
    user set is left to Ultralytics."""
    import ultralytics.utils
    from ultralytics.utils import checks, events

    if "YOLO_AUTOINSTALL" not in environ:
        ultralytics.utils.AUTOINSTALL = checks.AUTOINSTALL = False
    if "YOLO_OFFLINE" not in environ:
        checks.ONLINE = False
        events.events.enabled = False
