"""The metalbus wire contract and service runtime.

Everything that crosses a service boundary is defined here: subjects, the event
envelope and its payloads, command (request/reply) definitions, the error
hierarchy. The runtime pieces (bus, database, outbox, settings, telemetry) are
here too so that every service is written the same way.
"""

__version__ = "0.1.0"
