"""Database setup, models and migrations."""
