"""Alembic environment: migrations run on the connection :func:`broker.registry.database.migrate` passes."""

from alembic import context

from broker.registry.database import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # `alembic` on the command line: BROKER_DATABASE_URL or the embedded default
    from broker.registry.database import create_engine
    from broker.settings import Settings

    engine = create_engine(Settings.from_env().database_url)
    with engine.begin() as connection:
        context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
