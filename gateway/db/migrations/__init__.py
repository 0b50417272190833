"""Versioned migrations: modules named mNNNN_<name>.py with `up(db: peewee.Database)`.

Applied in order, each in its own transaction, recorded in `schema_migration`. Each one
is frozen DDL (`_ddl.py`): it never imports the models, so it means the same thing
however the models change later. A schema change is a new migration.
"""
