"""Index operations that run CONCURRENTLY on PostgreSQL (a big invoices table keeps taking
writes while they build) and as the plain operations on SQLite (bin/run). Not a migration: the
loader skips modules whose name starts with an underscore."""

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently


def on_postgresql(schema_editor) -> bool:
    return schema_editor.connection.vendor == "postgresql"


class AddIndexConcurrentlyOnPostgres(AddIndexConcurrently):
    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        op = super() if on_postgresql(schema_editor) else super(AddIndexConcurrently, self)
        op.database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        op = super() if on_postgresql(schema_editor) else super(AddIndexConcurrently, self)
        op.database_backwards(app_label, schema_editor, from_state, to_state)


class RemoveIndexConcurrentlyOnPostgres(RemoveIndexConcurrently):
    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        op = super() if on_postgresql(schema_editor) else super(RemoveIndexConcurrently, self)
        op.database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        op = super() if on_postgresql(schema_editor) else super(RemoveIndexConcurrently, self)
        op.database_backwards(app_label, schema_editor, from_state, to_state)
