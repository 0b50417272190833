"""The Ringside dashboard (Textual) and the `ringside` command line."""
