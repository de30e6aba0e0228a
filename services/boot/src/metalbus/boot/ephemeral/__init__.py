"""The ephemeral environment machines boot to be commissioned and (minimally) deployed.

``build.py`` assembles it from Debian packages; ``init.sh`` is its /init. See
docs/commissioning.md.
"""
