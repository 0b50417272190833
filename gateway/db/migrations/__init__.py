"""Versioned migrations: modules named mNNNN_<name>.py with `up(db: peewee.Database)`.

Applied in order, each in its own transaction, recorded in `schema_migration`.
"""
