"""Services: the one implementation the HTTP API and the dashboard both call."""
