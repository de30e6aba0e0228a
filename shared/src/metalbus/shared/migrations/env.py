"""Alembic environment shared by every service.

The runtime (:meth:`metalbus.shared.db.Database.migrate`) passes an open connection in
``config.attributes["connection"]``; the version locations (the ``shared`` branch and the
service's own) are set on the config, so ``upgrade heads`` brings every branch up to date.
"""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=context.config.attributes.get("metadata"),
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
