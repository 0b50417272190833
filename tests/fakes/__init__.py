"""Local fakes of external services (Stripe) for tests and demos."""
